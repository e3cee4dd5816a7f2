//! The demo's MQTT broker: `rumqttd` embedded in the process (pure Rust, nothing to install),
//! listening for MQTT 3.1.1 on a free loopback port. It runs on threads of its own for the
//! life of the process; the demo ends by exiting.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::Context as _;

/// Connections the demo may open: one per scooter, one for the view, and room for reconnects.
const MAX_CONNECTIONS: usize = 64;

/// A running embedded broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EmbeddedBroker {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
}

impl EmbeddedBroker {
    /// Starts the broker and waits until it accepts connections.
    pub(crate) async fn start() -> anyhow::Result<EmbeddedBroker> {
        // rumqttd takes a fixed address: ask the system for a free port, then hand it over.
        let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .context("no free loopback port for the broker")?;
        let config: rumqttd::Config = serde_json::from_value(serde_json::json!({
            "id": 0,
            "router": {
                "max_connections": MAX_CONNECTIONS,
                "max_outgoing_packet_count": 1000,
                "max_segment_size": 4_194_304,
                "max_segment_count": 4
            },
            "v4": { "1": {
                "name": "demo",
                "listen": addr.to_string(),
                "next_connection_delay_ms": 1,
                "connections": {
                    "connection_timeout_ms": 5000,
                    "max_payload_size": 65536,
                    "max_inflight_count": 100
                }
            }},
        }))
        .context("embedded broker configuration")?;
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "the embedded broker stopped");
                }
            })
            .context("cannot start the broker thread")?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("the embedded broker did not start listening on {addr}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(EmbeddedBroker { addr })
    }
}
