//! The checker's MQTT client: one persistent MQTT 5 session (clean start off, a day of session
//! expiry) subscribed at QoS 1 to every scooter's telemetry, availability and status topics.
//! Messages published while it is away (a broker restart) wait in its session, which mosquitto
//! saves on a clean stop, so it misses nothing. The fleet load test, which restarts no broker,
//! asks for a clean session instead, so a broker of its own leaves nothing behind.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Topics the checker follows.
pub(crate) const TOPICS: [&str; 3] = ["m365/+/telemetry", "m365/+/availability", "m365/+/status"];

/// What the subscriber reports.
#[derive(Debug)]
pub(crate) enum Heard {
    /// A message, and when it arrived.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
        /// When it arrived.
        at: Instant,
    },
    /// (Re)connected; `session_present` says whether the broker kept the session.
    Connected {
        /// Whether the session (and its queued messages) survived.
        session_present: bool,
        /// When.
        at: Instant,
    },
    /// Subscribed to every topic (after the first connection, or a lost session).
    Subscribed,
}

/// Pause between reconnection attempts while the broker is away.
const RETRY: Duration = Duration::from_millis(200);

/// Runs the subscriber on `port` until the receiver is dropped; `persistent` keeps its session
/// for a day while it is away, else the session ends with each connection.
pub(crate) fn spawn(
    port: u16,
    client_id: &str,
    persistent: bool,
) -> mpsc::UnboundedReceiver<Heard> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_clean_start(!persistent);
    if persistent {
        options.set_session_expiry_interval(Some(86_400));
    }
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(Some(1 << 20));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    let session_present = ack.session_present;
                    if tx
                        .send(Heard::Connected {
                            session_present,
                            at: Instant::now(),
                        })
                        .is_err()
                    {
                        return;
                    }
                    if !session_present {
                        for topic in TOPICS {
                            if let Err(e) = client.subscribe(topic, QoS::AtLeastOnce).await {
                                tracing::warn!(error = %e, "checker: subscribe not queued");
                            }
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Heard::Subscribed);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let heard = Heard::Message {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                        at: Instant::now(),
                    };
                    if tx.send(heard).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if tx.is_closed() {
                        return;
                    }
                    tracing::debug!(error = %e, "checker: connection");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
    rx
}
