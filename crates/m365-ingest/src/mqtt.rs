//! The broker side: one MQTT 5 connection with a persistent session (`clean_start = false`, a
//! session expiry interval), QoS 1 shared subscriptions and manual acknowledgements. Received
//! messages go to the writer with the number of the connection they came on; the writer
//! acknowledges them after its commit, and only while that connection is still the current
//! one (after a reconnect the broker resends what was not acknowledged, with new packet ids).
//! A lost connection is retried with back-off; the session resumes where it was.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Filter, Packet, Publish};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions};
use rumqttc::{Outgoing, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::MqttSettings;
use crate::topic::Topics;
use m365_backoff::Backoff;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Largest message accepted (a `compact` batch of 1000 records is far smaller).
pub const MAX_PACKET_SIZE: u32 = 16 * 1024 * 1024;

/// Why the MQTT side cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    /// A TLS file or setting is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The password file cannot be read.
    #[error("password file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// One received message and the connection it came on.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub publish: Publish,
    /// Number of the connection (see [`Link::generation`]).
    pub generation: u64,
}

/// The state of the broker connection, as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Not connected yet, or reconnecting.
    Connecting,
    /// Connected and subscribed.
    Connected {
        /// Whether the broker still had the session.
        session_present: bool,
    },
    /// The broker refused the credentials or the client: waiting will not help.
    Refused(String),
    /// The connection ended for good (stopping).
    Stopped,
}

/// The running connection.
#[derive(Debug)]
pub struct Link {
    client: AsyncClient,
    generation: Arc<AtomicU64>,
    state: watch::Receiver<LinkState>,
    task: JoinHandle<()>,
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, MqttSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| MqttSetupError::Tls(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(MqttSetupError::Tls(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// The rustls configuration for a TLS broker.
fn tls_config(m: &MqttSettings) -> Result<Arc<rustls::ClientConfig>, MqttSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match &m.ca_file {
        Some(path) => {
            for c in read_certs("CA file", path)? {
                roots
                    .add(c)
                    .map_err(|e| MqttSetupError::Tls(format!("CA file {}: {e}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(MqttSetupError::Tls(
                    "no CA certificates on the system: install ca-certificates or set ca_file"
                        .into(),
                ));
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let cfg = match (&m.client_cert, &m.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("client certificate", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| MqttSetupError::Tls(format!("client key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| MqttSetupError::Tls(format!("client certificate and key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// The connection options: persistent session, manual acknowledgements, Receive Maximum.
pub fn options(m: &MqttSettings, client_id: &str) -> Result<MqttOptions, MqttSetupError> {
    let mut o = MqttOptions::new(client_id, m.broker.host.clone(), m.broker.port);
    o.set_keep_alive(m.keep_alive.0.max(Duration::from_secs(5)))
        .set_clean_start(false)
        .set_session_expiry_interval(Some(
            u32::try_from(m.session_expiry.0.as_secs()).unwrap_or(u32::MAX),
        ))
        .set_manual_acks(true)
        .set_receive_maximum(Some(m.in_flight.0))
        .set_max_packet_size(Some(MAX_PACKET_SIZE))
        .set_connection_timeout(10)
        // Room for one acknowledgement per message in flight, plus subscribe and disconnect.
        .set_request_channel_capacity(usize::from(m.in_flight.0) + 64);
    let password = match (&m.password, &m.password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| MqttSetupError::PasswordFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            Some(text.strip_suffix('\n').unwrap_or(&text).to_owned())
        }
        (None, None) => None,
    };
    if let Some(user) = &m.username {
        o.set_credentials(user.clone(), password.unwrap_or_default());
    }
    if m.broker.tls {
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_config(m)?,
        )));
    }
    Ok(o)
}

impl Link {
    /// Connects (in the background) and subscribes to `topics`; deliveries go to `tx`.
    pub fn start(
        m: &MqttSettings,
        client_id: &str,
        topics: &Topics,
        tx: mpsc::UnboundedSender<Delivery>,
    ) -> Result<Link, MqttSetupError> {
        let opts = options(m, client_id)?;
        let cap = opts.request_channel_capacity();
        let (client, eventloop) = AsyncClient::new(opts, cap);
        let generation = Arc::new(AtomicU64::new(0));
        let (state_tx, state) = watch::channel(LinkState::Connecting);
        let filters: Vec<Filter> = topics
            .subscriptions()
            .into_iter()
            .map(|f| Filter::new(f, QoS::AtLeastOnce))
            .collect();
        let task = tokio::spawn(drive(
            eventloop,
            client.clone(),
            filters,
            generation.clone(),
            state_tx,
            tx,
            Backoff::new(m.reconnect_min.0, m.reconnect_max.0),
        ));
        Ok(Link {
            client,
            generation,
            state,
            task,
        })
    }

    /// Number of the current connection; 0 before the first.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Watches the connection state.
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Acknowledges `d` if it came on the current connection; `false` when it did not (the
    /// broker will resend it).
    pub async fn ack(&self, d: &Delivery) -> bool {
        if d.generation != self.generation() {
            return false;
        }
        match self.client.ack(&d.publish).await {
            Ok(()) => true,
            Err(e) => {
                debug!(error = %e, "acknowledgement not queued");
                false
            }
        }
    }

    /// Disconnects cleanly (the session stays with the broker) and waits for the driver, at
    /// most `timeout`.
    pub async fn stop(self, timeout: Duration) {
        let _ = self.client.try_disconnect();
        let mut task = self.task;
        if tokio::time::timeout(timeout, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Whether a connection error means the broker refused us for a reason that waiting cannot fix.
fn refusal(e: &ConnectionError) -> Option<String> {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword
            | ConnectReturnCode::NotAuthorized
            | ConnectReturnCode::Banned
            | ConnectReturnCode::BadAuthenticationMethod
            | ConnectReturnCode::ClientIdentifierNotValid => Some(format!("{code:?}")),
            _ => None,
        },
        _ => None,
    }
}

async fn drive(
    mut el: EventLoop,
    client: AsyncClient,
    filters: Vec<Filter>,
    generation: Arc<AtomicU64>,
    state: watch::Sender<LinkState>,
    tx: mpsc::UnboundedSender<Delivery>,
    mut backoff: Backoff,
) {
    let mut failures = 0u32;
    let mut session_present = false;
    let mut rng = StdRng::from_entropy();
    loop {
        match el.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                let g = generation.fetch_add(1, Ordering::SeqCst) + 1;
                backoff.reset();
                failures = 0;
                info!(
                    generation = g,
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                // Subscribing again on a resumed session is harmless and picks up filters
                // added to the configuration.
                if let Err(e) = client.try_subscribe_many(filters.clone()) {
                    error!(error = %e, "subscribe not queued");
                }
                session_present = ack.session_present;
            }
            Ok(Event::Incoming(Packet::SubAck(s))) => {
                let mut granted = 0;
                for (code, f) in s.return_codes.iter().zip(&filters) {
                    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
                    match code {
                        R::Success(_) => granted += 1,
                        other => error!(
                            filter = %f.path,
                            reason = ?other,
                            "the broker refused the subscription"
                        ),
                    }
                }
                info!(granted, filters = filters.len(), "subscribed");
                let _ = state.send(LinkState::Connected { session_present });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let g = generation.load(Ordering::SeqCst);
                if tx
                    .send(Delivery {
                        publish: p,
                        generation: g,
                    })
                    .is_err()
                {
                    // The writer is gone: stop.
                    let _ = client.try_disconnect();
                }
            }
            Ok(Event::Incoming(Packet::Disconnect(d))) => {
                warn!(reason = ?d.reason_code, "the broker closed the connection");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = state.send(LinkState::Stopped);
                return;
            }
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => {
                let _ = state.send(LinkState::Stopped);
                return;
            }
            Err(e) => {
                failures += 1;
                if let Some(why) = refusal(&e) {
                    error!(reason = %why, "the broker refused the connection");
                    let _ = state.send(LinkState::Refused(why));
                } else {
                    let _ = state.send(LinkState::Connecting);
                }
                let delay = backoff.next_delay(&mut rng);
                if failures == 1 || failures.is_power_of_two() {
                    warn!(error = %e, retry_in = ?delay, failures, "broker connection lost");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}
