//! What the pipeline needs to run: the spool's settings ([`SpoolConfig`]), the broker, its
//! credentials and TLS, the topics with their encodings ([`MqttConfig`]), and the sample
//! channel. Plain values: the `m365` binary parses and checks its configuration file (with
//! `file:line:column` errors) and builds these; [`MqttConfig::validate`] checks what a value
//! alone cannot say (bounds against each other), whoever built them.
//!
//! [`MqttConfig::connect_params`] and [`MqttConfig::credentials`] are the one way from these
//! settings to a broker connection: the publisher and the Home Assistant discovery client both
//! use them, so the URL, TLS and the password are handled in one place.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::encoding::{Encoding, NoFix};
use crate::error::ConfigError;
use crate::mqtt::credentials::credentials;
use crate::mqtt::{BrokerUrl, ConnectParams, MqttProtocol, PasswordSource, tls};
use crate::spool::{MAX_OUTPUTS, SpoolConfig};

/// One topic and how records are encoded on it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputConfig {
    /// Topic name. `{scooter_id}` is replaced by the scooter id.
    pub topic: String,
    /// Encoding of the payload.
    pub encoding: Encoding,
    /// Records per message; `None` means 1 for `legacy`/`json` and 50 for `compact`.
    pub batch: Option<usize>,
    /// How long a live record may wait for a batch to fill, milliseconds (default 5000). It
    /// trades latency against bytes per record: a longer wait fills larger `compact` messages,
    /// which cost fewer bytes per record on the wire (framing, PUBACK and the compressor's
    /// shared context spread over more records), while a record may arrive up to this much
    /// later; a full batch goes out at once. It matters only where a message carries several
    /// records (`batch` above 1); a backlog is always sent in full batches without waiting.
    pub linger_ms: Option<u64>,
    /// What `legacy` sends for a record without a usable fix (zeros by default).
    pub legacy_no_fix: NoFix,
}

impl OutputConfig {
    /// Records per message.
    pub fn batch_size(&self) -> usize {
        self.batch
            .unwrap_or(match self.encoding {
                Encoding::Compact => 50,
                Encoding::Legacy | Encoding::Json => 1,
            })
            .max(1)
    }

    /// Longest wait for a batch to fill.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms.unwrap_or(5000))
    }
}

/// Broker connection and publishing.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// `tcp://`, `mqtt://` (plain) or `mqtts://`, `ssl://`, `tls://` (TLS) URL, read by
    /// [`BrokerUrl`]; port defaults to 1883 / 8883.
    pub broker: String,
    /// Protocol version.
    pub protocol: MqttProtocol,
    /// Client id.
    pub client: String,
    /// User name, if the broker requires one.
    pub username: Option<String>,
    /// Password source.
    pub password: Option<PasswordSource>,
    /// PEM CA bundle to trust.
    pub ca_file: Option<PathBuf>,
    /// Also trust the operating system's root CAs (with or without `ca_file`).
    pub system_roots: bool,
    /// PEM client certificate chain (mutual TLS), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Keep-alive, seconds (0: off where the protocol version allows it, see
    /// [`MqttProtocol::keep_alive`]).
    pub keep_alive: u64,
    /// Shortest reconnect delay, seconds (fractions allowed).
    pub reconnect_min: f64,
    /// Longest reconnect delay, seconds.
    pub reconnect_max: f64,
    /// Connect timeout, seconds.
    pub connect_timeout: u64,
    /// Most unacknowledged publishes at once (the in-flight window).
    pub max_in_flight: u16,
    /// Slots of the window kept free for live records while a backlog drains.
    pub live_reserved: u16,
    /// The earlier client's single topic; used (with `legacy` encoding) when `outputs` is empty.
    pub topic: Option<String>,
    /// Topics and encodings.
    pub outputs: Vec<OutputConfig>,
    /// Retained `online`/`offline` topic (last will `offline`). `{scooter_id}` is replaced.
    pub availability_topic: Option<String>,
    /// Retained JSON status (counters, dropped records). `{scooter_id}` is replaced.
    pub status_topic: Option<String>,
    /// Status publish period, seconds.
    pub status_interval: u64,
    /// Ride events, one per message, in the first output's encoding. `{scooter_id}` is
    /// replaced. `None`: events are not published; they are acknowledged as soon as they are
    /// committed, so they never pile up in the spool. Outputs after the first never carry
    /// events.
    pub events_topic: Option<String>,
    /// On shutdown, how long to keep publishing and waiting for acknowledgements before the
    /// retained `offline` and the DISCONNECT, seconds (fractions allowed; 0 skips the flush).
    pub shutdown_grace: f64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: "tcp://127.0.0.1:1883".into(),
            protocol: MqttProtocol::V5,
            client: "m365".into(),
            username: None,
            password: None,
            ca_file: None,
            system_roots: true,
            client_cert: None,
            client_key: None,
            keep_alive: 20,
            reconnect_min: 1.0,
            reconnect_max: 30.0,
            connect_timeout: 10,
            max_in_flight: 32,
            live_reserved: 4,
            topic: None,
            outputs: Vec::new(),
            availability_topic: Some("m365/{scooter_id}/availability".into()),
            status_topic: Some("m365/{scooter_id}/status".into()),
            status_interval: 60,
            events_topic: None,
            shutdown_grace: 3.0,
        }
    }
}

impl MqttConfig {
    /// The outputs in effect: `outputs`, or the earlier single `topic` with `legacy` encoding,
    /// or `vehicle/1/realtime` with `legacy` when neither is set.
    pub fn effective_outputs(&self) -> Vec<OutputConfig> {
        if !self.outputs.is_empty() {
            return self.outputs.clone();
        }
        vec![OutputConfig {
            topic: self
                .topic
                .clone()
                .unwrap_or_else(|| "vehicle/1/realtime".into()),
            encoding: Encoding::Legacy,
            batch: None,
            linger_ms: None,
            legacy_no_fix: NoFix::default(),
        }]
    }

    /// Checks what the values cannot say alone: bounds against each other, the number of
    /// outputs, the certificate and key given together, the broker URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok = self.reconnect_min.is_finite()
            && self.reconnect_min > 0.0
            && self.reconnect_max.is_finite()
            && self.reconnect_max >= self.reconnect_min;
        if !ok {
            return Err(ConfigError::Reconnect {
                min: self.reconnect_min,
                max: self.reconnect_max,
            });
        }
        if !(self.shutdown_grace.is_finite() && (0.0..=3600.0).contains(&self.shutdown_grace)) {
            return Err(ConfigError::ShutdownGrace(self.shutdown_grace));
        }
        if self.max_in_flight == 0 || self.live_reserved >= self.max_in_flight {
            return Err(ConfigError::Window {
                max_in_flight: self.max_in_flight,
                live_reserved: self.live_reserved,
            });
        }
        let outputs = self.effective_outputs().len();
        if outputs > MAX_OUTPUTS {
            return Err(ConfigError::TooManyOutputs {
                got: outputs,
                max: MAX_OUTPUTS,
            });
        }
        self.client_auth()?;
        BrokerUrl::parse(&self.broker)?;
        Ok(())
    }

    /// The reconnect delays, shortest and longest (the back-off's bounds).
    pub fn reconnect_bounds(&self) -> (Duration, Duration) {
        let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO);
        let min = seconds(self.reconnect_min);
        (min, seconds(self.reconnect_max).max(min))
    }

    /// Connection parameters for one client of this broker: host and port from the URL, TLS
    /// (CA file, system roots, client certificate) when the URL asks for it, the protocol
    /// version, keep-alive and connect timeout. Credentials are left out: they are read at each
    /// attempt with [`MqttConfig::credentials`], so a rotated password is picked up.
    ///
    /// Each client has its own `client_id` (a broker closes an older connection with the same
    /// id), `max_in_flight` window and `last_will`. The session is clean; a subscriber that
    /// wants the broker to keep its session sets [`ConnectParams::clean_session`] to `false`.
    pub fn connect_params(
        &self,
        client_id: String,
        max_in_flight: u16,
        last_will: Option<(String, Vec<u8>)>,
    ) -> Result<ConnectParams, ConfigError> {
        let url = BrokerUrl::parse(&self.broker)?;
        let client_auth = self.client_auth()?;
        let tls = if url.tls {
            Some(tls::client_config(
                self.ca_file.as_deref(),
                self.system_roots,
                client_auth,
            )?)
        } else {
            None
        };
        Ok(ConnectParams {
            protocol: self.protocol,
            host: url.host,
            port: url.port,
            tls,
            client_id,
            credentials: None,
            keep_alive: Duration::from_secs(self.keep_alive),
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            max_in_flight,
            last_will,
            clean_session: true,
        })
    }

    /// The user name and password to connect with, the password read from its source now.
    pub fn credentials(&self) -> Result<Option<(String, String)>, ConfigError> {
        credentials(self.username.as_deref(), self.password.as_ref())
    }

    /// The client certificate and its key, which come together or not at all.
    fn client_auth(&self) -> Result<Option<(&Path, &Path)>, ConfigError> {
        match (self.client_cert.as_deref(), self.client_key.as_deref()) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => Err(ConfigError::ClientAuth),
        }
    }
}

/// Everything the pipeline needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineConfig {
    /// Spool settings.
    pub spool: SpoolConfig,
    /// MQTT settings.
    pub mqtt: MqttConfig,
    /// Capacity of the channel from the sampler; a full channel drops the new sample and counts it.
    pub channel_capacity: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            spool: SpoolConfig::default(),
            mqtt: MqttConfig::default(),
            channel_capacity: 256,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_single_topic_becomes_a_legacy_output() {
        let cfg = MqttConfig {
            broker: "tcp://example.invalid:1883".into(),
            client: "martinete".into(),
            topic: Some("vehicle/1/realtime".into()),
            ..Default::default()
        };
        let outs = cfg.effective_outputs();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].topic, "vehicle/1/realtime");
        assert_eq!(outs[0].encoding, Encoding::Legacy);
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_window_reconnect_outputs_and_client_auth_are_rejected() {
        let cfg = MqttConfig {
            reconnect_min: 5.0,
            reconnect_max: 1.0,
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Reconnect { .. })));
        let cfg = MqttConfig {
            max_in_flight: 4,
            live_reserved: 4,
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Window { .. })));
        for grace in [-1.0, f64::NAN, 1e9] {
            let cfg = MqttConfig {
                shutdown_grace: grace,
                ..Default::default()
            };
            assert!(
                matches!(cfg.validate(), Err(ConfigError::ShutdownGrace(_))),
                "{grace}"
            );
        }
        let output = OutputConfig {
            topic: "t".into(),
            encoding: Encoding::Json,
            batch: None,
            linger_ms: None,
            legacy_no_fix: NoFix::default(),
        };
        let cfg = MqttConfig {
            outputs: vec![output; MAX_OUTPUTS + 1],
            ..Default::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::TooManyOutputs { got, max: MAX_OUTPUTS }) if got == MAX_OUTPUTS + 1
        ));
        let cfg = MqttConfig {
            client_cert: Some("cert.pem".into()),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::ClientAuth)));
        assert!(matches!(
            cfg.connect_params("c".into(), 1, None),
            Err(ConfigError::ClientAuth)
        ));
        let cfg = MqttConfig {
            broker: "ws://h".into(),
            ..Default::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::BrokerUrl { .. })));
    }

    #[test]
    fn connect_params_carry_the_broker_and_each_clients_own_settings() {
        let cfg = MqttConfig {
            broker: "mqtt://[::1]:1999".into(),
            protocol: MqttProtocol::V311,
            keep_alive: 0,
            connect_timeout: 0,
            ..Default::default()
        };
        let will = Some(("a/availability".to_owned(), b"offline".to_vec()));
        let p = cfg.connect_params("one".into(), 7, will.clone()).unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 1999));
        assert!(p.tls.is_none());
        assert_eq!((p.client_id.as_str(), p.max_in_flight), ("one", 7));
        assert_eq!(p.last_will, will);
        assert_eq!(p.keep_alive, Duration::ZERO);
        assert_eq!(p.connect_timeout, Duration::from_secs(1));
        assert_eq!(p.protocol, MqttProtocol::V311);
        assert!(p.credentials.is_none());
    }

    #[test]
    fn a_tls_broker_gets_its_tls_configuration_from_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let cfg = MqttConfig {
            broker: "tls://localhost".into(),
            ca_file: Some(ca),
            system_roots: false,
            ..Default::default()
        };
        let p = cfg.connect_params("c".into(), 1, None).unwrap();
        assert!(p.tls.is_some());
        assert_eq!(p.port, 8883);
        let unreadable = MqttConfig {
            ca_file: Some(dir.path().join("missing.pem")),
            ..cfg
        };
        assert!(matches!(
            unreadable.connect_params("c".into(), 1, None),
            Err(ConfigError::File { .. })
        ));
    }

    #[test]
    fn credentials_are_read_at_each_call() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "first\n").unwrap();
        let cfg = MqttConfig {
            username: Some("u".into()),
            password: Some(PasswordSource::File(file.clone())),
            ..Default::default()
        };
        assert_eq!(
            cfg.credentials().unwrap(),
            Some(("u".to_owned(), "first".to_owned()))
        );
        std::fs::write(&file, "rotated\n").unwrap();
        assert_eq!(
            cfg.credentials().unwrap(),
            Some(("u".to_owned(), "rotated".to_owned()))
        );
        assert_eq!(MqttConfig::default().credentials().unwrap(), None);
    }

    #[test]
    fn reconnect_bounds_never_invert_or_panic() {
        let cfg = MqttConfig {
            reconnect_min: 2.0,
            reconnect_max: 0.5,
            ..Default::default()
        };
        assert_eq!(
            cfg.reconnect_bounds(),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        let cfg = MqttConfig {
            reconnect_min: f64::NAN,
            reconnect_max: -1.0,
            ..Default::default()
        };
        assert_eq!(cfg.reconnect_bounds(), (Duration::ZERO, Duration::ZERO));
    }
}
