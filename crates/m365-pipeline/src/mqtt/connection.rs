//! One MQTT connection attempt over rumqttc, 3.1.1 or 5, seen through one small interface:
//! `publish` and `subscribe` calls and a stream of [`NetEvent`]s (incoming messages included). A fresh rumqttc client and event loop are made
//! for every attempt and thrown away when it ends, so nothing queued for a dead connection can be
//! sent later behind the publish window's back; reconnecting (with back-off) is the publisher's
//! decision, not rumqttc's.

use std::str::FromStr;
use std::time::Duration;

use rumqttc::{Outgoing, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::failure::{ErrorKind, RefusalReason};

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttProtocol {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5, as the earlier client spoke.
    #[default]
    V5,
}

impl MqttProtocol {
    /// As written in a configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            MqttProtocol::V311 => "3.1.1",
            MqttProtocol::V5 => "5",
        }
    }

    /// The keep-alive this version can carry for a configured one: 3.1.1 takes whole seconds
    /// or zero (off); rumqttc's MQTT 5 client needs at least 5 s and cannot turn it off.
    pub fn keep_alive(self, configured: Duration) -> Duration {
        let whole = Duration::from_secs(configured.as_secs());
        match self {
            MqttProtocol::V311 if configured.is_zero() => Duration::ZERO,
            MqttProtocol::V311 => whole.max(Duration::from_secs(1)),
            MqttProtocol::V5 => whole.max(Duration::from_secs(5)),
        }
    }
}

/// A protocol version that is not one of the accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected \"3.1.1\" or \"5\", found {0:?}")]
pub struct UnknownProtocol(pub String);

impl FromStr for MqttProtocol {
    type Err = UnknownProtocol;

    /// `3.1.1` (also `311`, `4`, `v4`) or `5` (also `5.0`, `v5`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "3.1.1" | "311" | "4" | "v4" => Ok(MqttProtocol::V311),
            "5" | "5.0" | "v5" => Ok(MqttProtocol::V5),
            _ => Err(UnknownProtocol(s.to_owned())),
        }
    }
}

/// What the connection reports to the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// CONNACK with success.
    Connected,
    /// A QoS 1 PUBLISH left with this packet id.
    Sent(u16),
    /// PUBACK for a packet id; `Err` carries an MQTT 5 failure reason.
    Acked(u16, Result<(), String>),
    /// The DISCONNECT packet was written to the socket (after everything queued before it).
    DisconnectSent,
    /// SUBACK for a [`Connection::subscribe`]; `Err` carries the broker's refusal.
    Subscribed(Result<(), String>),
    /// A message published to a topic this connection subscribed to. It is acknowledged to the
    /// broker (QoS 1) as it arrives, before this event is handled: a consumer that must not
    /// lose one across a crash stores it idempotently and relies on the publisher's resends.
    Message {
        /// The topic it was published to.
        topic: String,
        /// Its payload, as published.
        payload: Vec<u8>,
    },
    /// The connection ended (or never came up).
    Closed(CloseReason),
}

/// Why a connection ended, sorted so the log says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The broker refused the connection (CONNACK with a failure reason).
    Refused(RefusalReason, String),
    /// The TLS handshake failed (certificate not trusted, wrong host name, …).
    Tls(String),
    /// TCP-level failure: refused, unreachable, reset, timed out.
    Network(String),
    /// Anything else (protocol errors, refusals for other reasons).
    Other(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Refused(r, m) if r.is_credentials() => {
                write!(f, "broker refused the credentials: {m}")
            }
            CloseReason::Refused(_, m) => write!(f, "broker refused the connection: {m}"),
            CloseReason::Tls(m) => write!(f, "TLS failure: {m}"),
            CloseReason::Network(m) => write!(f, "network: {m}"),
            CloseReason::Other(m) => write!(f, "{m}"),
        }
    }
}

impl CloseReason {
    /// The kind reported through [`crate::PipelineHandle::last_error`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            CloseReason::Refused(r, _) => ErrorKind::Refused(*r),
            CloseReason::Tls(_) => ErrorKind::Tls,
            CloseReason::Network(_) => ErrorKind::Network,
            CloseReason::Other(_) => ErrorKind::Connection,
        }
    }
}

/// Everything needed to open a connection.
#[derive(Clone)]
pub struct ConnectParams {
    /// Protocol version.
    pub protocol: MqttProtocol,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS configuration when the URL asks for TLS.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// Client id.
    pub client_id: String,
    /// User name and password.
    pub credentials: Option<(String, String)>,
    /// Keep-alive (see [`MqttProtocol::keep_alive`] for what each version can carry).
    pub keep_alive: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Window size (rumqttc's own in-flight limit is set to match).
    pub max_in_flight: u16,
    /// Retained last will: (topic, payload).
    pub last_will: Option<(String, Vec<u8>)>,
    /// Start with a clean session (`true`, what the publisher uses) or resume the one the
    /// broker kept for this client id (`false`: a subscriber then receives the QoS 1 messages
    /// published while it was away; with MQTT 5 the session is asked never to expire).
    pub clean_session: bool,
}

impl std::fmt::Debug for ConnectParams {
    // Hand-written so the password can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectParams")
            .field("protocol", &self.protocol)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .field("client_id", &self.client_id)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("clean_session", &self.clean_session)
            .finish_non_exhaustive()
    }
}

enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// A live connection attempt. Dropping it stops the event loop.
pub struct Connection {
    client: Client,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn transport(p: &ConnectParams) -> rumqttc::Transport {
    match &p.tls {
        Some(cfg) => {
            rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(cfg.clone()))
        }
        None => rumqttc::Transport::tcp(),
    }
}

fn classify_io(e: &std::io::Error) -> CloseReason {
    // rustls reports handshake failures as I/O errors wrapping a rustls::Error.
    if e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
    {
        return CloseReason::Tls(e.to_string());
    }
    CloseReason::Network(e.to_string())
}

fn classify_v4(e: rumqttc::ConnectionError) -> CloseReason {
    use rumqttc::{ConnectReturnCode as C, ConnectionError as E};
    match e {
        E::ConnectionRefused(C::BadUserNamePassword) => CloseReason::Refused(
            RefusalReason::BadCredentials,
            "bad user name or password".into(),
        ),
        E::ConnectionRefused(C::NotAuthorized) => {
            CloseReason::Refused(RefusalReason::NotAuthorized, "not authorised".into())
        }
        E::ConnectionRefused(code) => {
            CloseReason::Refused(RefusalReason::Other, format!("{code:?}"))
        }
        E::Tls(t) => CloseReason::Tls(t.to_string()),
        E::Io(io) => classify_io(&io),
        E::NetworkTimeout => CloseReason::Network("timed out".into()),
        other => CloseReason::Other(other.to_string()),
    }
}

fn classify_v5(e: rumqttc::v5::ConnectionError) -> CloseReason {
    use rumqttc::v5::ConnectionError as E;
    use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as C;
    match e {
        E::ConnectionRefused(C::BadUserNamePassword) => CloseReason::Refused(
            RefusalReason::BadCredentials,
            "bad user name or password".into(),
        ),
        E::ConnectionRefused(C::NotAuthorized) => {
            CloseReason::Refused(RefusalReason::NotAuthorized, "not authorised".into())
        }
        E::ConnectionRefused(code) => {
            CloseReason::Refused(RefusalReason::Other, format!("{code:?}"))
        }
        E::Tls(t) => CloseReason::Tls(t.to_string()),
        E::Io(io) => classify_io(&io),
        E::Timeout(_) => CloseReason::Network("timed out".into()),
        other => CloseReason::Other(other.to_string()),
    }
}

impl Connection {
    /// Starts connecting. Events arrive on the returned receiver; the last one is
    /// [`NetEvent::Closed`].
    pub fn open(p: &ConnectParams) -> (Connection, mpsc::Receiver<NetEvent>) {
        // Bounded: if the publisher is slow, the event loop waits instead of buffering.
        let (tx, rx) = mpsc::channel(usize::from(p.max_in_flight) * 2 + 16);
        let cap = usize::from(p.max_in_flight) + 16;
        let conn = match p.protocol {
            MqttProtocol::V311 => {
                let mut o = rumqttc::MqttOptions::new(p.client_id.clone(), p.host.clone(), p.port);
                o.set_keep_alive(p.protocol.keep_alive(p.keep_alive))
                    .set_clean_session(p.clean_session)
                    .set_inflight(p.max_in_flight.max(1))
                    .set_request_channel_capacity(cap)
                    .set_max_packet_size(1024 * 1024, 1024 * 1024)
                    .set_transport(transport(p));
                if let Some((u, pw)) = &p.credentials {
                    o.set_credentials(u.clone(), pw.clone());
                }
                if let Some((topic, payload)) = &p.last_will {
                    o.set_last_will(rumqttc::LastWill::new(
                        topic.clone(),
                        payload.clone(),
                        QoS::AtLeastOnce,
                        true,
                    ));
                }
                let (client, mut el) = rumqttc::AsyncClient::new(o, cap);
                let mut net = el.network_options();
                net.set_connection_timeout(p.connect_timeout.as_secs().max(1));
                el.set_network_options(net);
                let task = tokio::spawn(async move {
                    loop {
                        let ev = match el.poll().await {
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                                NetEvent::Connected
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(a))) => {
                                NetEvent::Acked(a.pkid, Ok(()))
                            }
                            Ok(rumqttc::Event::Outgoing(Outgoing::Publish(pkid))) if pkid != 0 => {
                                NetEvent::Sent(pkid)
                            }
                            Ok(rumqttc::Event::Outgoing(Outgoing::Disconnect)) => {
                                NetEvent::DisconnectSent
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a))) => {
                                let refused = a
                                    .return_codes
                                    .iter()
                                    .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure));
                                NetEvent::Subscribed(if refused {
                                    Err("the broker refused the subscription".into())
                                } else {
                                    Ok(())
                                })
                            }
                            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(m))) => {
                                NetEvent::Message {
                                    topic: m.topic,
                                    payload: m.payload.to_vec(),
                                }
                            }
                            Ok(_) => continue,
                            Err(e) => {
                                let _ = tx.send(NetEvent::Closed(classify_v4(e))).await;
                                return;
                            }
                        };
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                });
                Connection {
                    client: Client::V4(client),
                    task,
                }
            }
            MqttProtocol::V5 => {
                use rumqttc::v5::mqttbytes::v5::{
                    LastWill, Packet, PubAckReason, SubscribeReasonCode,
                };
                let mut o =
                    rumqttc::v5::MqttOptions::new(p.client_id.clone(), p.host.clone(), p.port);
                o.set_keep_alive(p.protocol.keep_alive(p.keep_alive))
                    .set_clean_start(p.clean_session)
                    .set_outgoing_inflight_upper_limit(p.max_in_flight.max(1))
                    .set_request_channel_capacity(cap)
                    .set_connection_timeout(p.connect_timeout.as_secs().max(1))
                    .set_transport(transport(p));
                if !p.clean_session {
                    // MQTT 5 ends a session at disconnection unless told to keep it.
                    o.set_session_expiry_interval(Some(u32::MAX));
                }
                if let Some((u, pw)) = &p.credentials {
                    o.set_credentials(u.clone(), pw.clone());
                }
                if let Some((topic, payload)) = &p.last_will {
                    o.set_last_will(LastWill::new(
                        topic.clone(),
                        payload.clone(),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                        true,
                        None,
                    ));
                }
                let (client, mut el) = rumqttc::v5::AsyncClient::new(o, cap);
                let task = tokio::spawn(async move {
                    loop {
                        let ev = match el.poll().await {
                            Ok(rumqttc::v5::Event::Incoming(Packet::ConnAck(_))) => {
                                NetEvent::Connected
                            }
                            Ok(rumqttc::v5::Event::Incoming(Packet::PubAck(a))) => {
                                let ok = matches!(
                                    a.reason,
                                    PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                                );
                                NetEvent::Acked(
                                    a.pkid,
                                    if ok {
                                        Ok(())
                                    } else {
                                        Err(format!("{:?}", a.reason))
                                    },
                                )
                            }
                            Ok(rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid)))
                                if pkid != 0 =>
                            {
                                NetEvent::Sent(pkid)
                            }
                            Ok(rumqttc::v5::Event::Outgoing(Outgoing::Disconnect)) => {
                                NetEvent::DisconnectSent
                            }
                            Ok(rumqttc::v5::Event::Incoming(Packet::SubAck(a))) => {
                                let refused = a
                                    .return_codes
                                    .iter()
                                    .find(|c| !matches!(c, SubscribeReasonCode::Success(_)));
                                NetEvent::Subscribed(match refused {
                                    Some(code) => Err(format!("{code:?}")),
                                    None => Ok(()),
                                })
                            }
                            Ok(rumqttc::v5::Event::Incoming(Packet::Publish(m))) => {
                                NetEvent::Message {
                                    topic: String::from_utf8_lossy(&m.topic).into_owned(),
                                    payload: m.payload.to_vec(),
                                }
                            }
                            Ok(_) => continue,
                            Err(e) => {
                                let _ = tx.send(NetEvent::Closed(classify_v5(e))).await;
                                return;
                            }
                        };
                        if tx.send(ev).await.is_err() {
                            return;
                        }
                    }
                });
                Connection {
                    client: Client::V5(client),
                    task,
                }
            }
        };
        (conn, rx)
    }

    /// Queues an MQTT DISCONNECT behind everything already queued: the broker then closes the
    /// session normally and discards the last will. [`NetEvent::DisconnectSent`] follows once it
    /// is written.
    pub fn disconnect(&self) -> Result<(), String> {
        match &self.client {
            Client::V4(c) => c.try_disconnect().map_err(|e| e.to_string()),
            Client::V5(c) => c.try_disconnect().map_err(|e| e.to_string()),
        }
    }

    /// Queues a QoS 1 subscription to `topic` (a topic filter: `+` and `#` allowed) without
    /// waiting; [`NetEvent::Subscribed`] reports the broker's answer and every matching message
    /// then arrives as [`NetEvent::Message`]. Subscriptions belong to one connection: the caller
    /// subscribes again after each [`NetEvent::Connected`] (a clean session forgets them, and a
    /// new connection is a new [`Connection`]). Fails when the request queue is full or closed.
    pub fn subscribe(&self, topic: &str) -> Result<(), String> {
        match &self.client {
            Client::V4(c) => c
                .try_subscribe(topic, QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
            Client::V5(c) => c
                .try_subscribe(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues a QoS 1 publish without waiting. Fails when the connection's request queue is
    /// full or closed, which the publisher treats as a dead connection.
    pub fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        content_type: Option<&str>,
    ) -> Result<(), String> {
        match &self.client {
            Client::V4(c) => c
                .try_publish(topic, QoS::AtLeastOnce, retain, payload)
                .map_err(|e| e.to_string()),
            Client::V5(c) => {
                let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    content_type: content_type.map(str::to_owned),
                    ..Default::default()
                };
                c.try_publish_with_properties(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    retain,
                    payload,
                    props,
                )
                .map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_read_back_what_they_print() {
        for p in [MqttProtocol::V311, MqttProtocol::V5] {
            assert_eq!(p.as_str().parse(), Ok(p));
        }
        assert_eq!("v4".parse(), Ok(MqttProtocol::V311));
        assert_eq!("5.0".parse(), Ok(MqttProtocol::V5));
        assert!("6".parse::<MqttProtocol>().is_err());
    }

    #[test]
    fn keep_alives_fit_what_each_version_carries() {
        let s = Duration::from_secs;
        assert_eq!(MqttProtocol::V311.keep_alive(s(0)), s(0));
        assert_eq!(
            MqttProtocol::V311.keep_alive(Duration::from_millis(300)),
            s(1)
        );
        assert_eq!(MqttProtocol::V311.keep_alive(s(20)), s(20));
        assert_eq!(MqttProtocol::V5.keep_alive(s(0)), s(5));
        assert_eq!(MqttProtocol::V5.keep_alive(s(2)), s(5));
        assert_eq!(MqttProtocol::V5.keep_alive(s(30)), s(30));
    }

    #[tokio::test]
    async fn any_configured_keep_alive_opens_a_connection_attempt() {
        // rumqttc asserts on keep-alives its version cannot carry: none may reach it.
        for protocol in [MqttProtocol::V311, MqttProtocol::V5] {
            for secs in [0, 1, 2, 4, 5, 65_535] {
                let params = ConnectParams {
                    protocol,
                    host: "127.0.0.1".into(),
                    port: 9,
                    tls: None,
                    client_id: "keep-alive-test".into(),
                    credentials: None,
                    keep_alive: Duration::from_secs(secs),
                    connect_timeout: Duration::from_secs(1),
                    max_in_flight: 1,
                    last_will: None,
                    clean_session: true,
                };
                let (conn, _events) = Connection::open(&params);
                drop(conn);
            }
        }
    }
}
