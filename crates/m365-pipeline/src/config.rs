//! Configuration of the pipeline: sampling interval, spool bounds and sync policy, MQTT broker
//! and the topics with their encodings. Plain serde types, so the `m365` binary can embed them in
//! its TOML file; key names follow the earlier client's `[mqtt]` table where one existed
//! (`broker`, `client`, `topic`, `keep_alive`, `reconnect_min`, `reconnect_max`, `send_interval`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::encoding::Encoding;
use crate::error::ConfigError;
use crate::secret::Secret;

/// The shortest sampling interval accepted: 0.1 s (10 Hz is about what one BLE link sustains
/// for a full register round).
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// How often a sample is taken. Accepts fractional seconds down to 0.1 s, and integers (the
/// earlier client's `send_interval = 5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "f64")]
pub struct SampleInterval(Duration);

impl SampleInterval {
    /// Validates `secs` (finite, ≥ 0.1 s, at most one day).
    pub fn from_secs_f64(secs: f64) -> Result<Self, ConfigError> {
        if !secs.is_finite() || secs < MIN_SAMPLE_INTERVAL.as_secs_f64() - 1e-9 || secs > 86_400.0 {
            return Err(ConfigError::SampleInterval(secs));
        }
        // Round to whole milliseconds so 0.1 stays exactly 100 ms.
        let ms = (secs * 1000.0).round() as u64;
        Ok(SampleInterval(Duration::from_millis(ms)))
    }

    /// The interval as a duration.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// Resolves the configured interval: `sample_interval` (seconds, fractional) wins over the
    /// earlier integer `send_interval`; 1 s when neither is set.
    pub fn resolve(
        sample_interval: Option<f64>,
        send_interval: Option<u64>,
    ) -> Result<Self, ConfigError> {
        match (sample_interval, send_interval) {
            (Some(s), _) => Self::from_secs_f64(s),
            (None, Some(s)) => Self::from_secs_f64(s as f64),
            (None, None) => Ok(SampleInterval(Duration::from_secs(1))),
        }
    }
}

impl From<SampleInterval> for f64 {
    fn from(v: SampleInterval) -> f64 {
        v.0.as_secs_f64()
    }
}

impl<'de> Deserialize<'de> for SampleInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // serde_json and toml both hand integers to an f64 visitor.
        let secs = f64::deserialize(d)?;
        SampleInterval::from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// When the spool forces its writes to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncPolicy {
    /// One transaction per record with `synchronous=FULL`: when `append` returns, the record
    /// survives a power cut. Costs one fsync of the WAL per record.
    Always,
    /// Records are buffered and committed together every `commit_every` records or
    /// `commit_interval_ms`, whichever comes first, with `synchronous=NORMAL`. A power cut loses
    /// the records not yet committed, and may also roll back transactions committed since the
    /// last WAL checkpoint (SQLite fsyncs the WAL only at checkpoints in this mode).
    #[default]
    Normal,
}

/// Spool location, bounds and durability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolConfig {
    /// Path of the SQLite file.
    pub path: PathBuf,
    /// Most records kept; the oldest are dropped beyond it.
    pub max_records: u64,
    /// Most payload bytes kept (sum of stored record sizes); the oldest are dropped beyond it.
    pub max_bytes: u64,
    /// Records older than this many seconds are dropped; `None` keeps them regardless of age.
    pub max_age_s: Option<u64>,
    /// Sync policy (see [`SyncPolicy`]).
    pub sync: SyncPolicy,
    /// `normal` policy: commit after this many buffered records.
    pub commit_every: usize,
    /// `normal` policy: commit buffered records at least this often, milliseconds.
    pub commit_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            path: PathBuf::from("m365-spool.sqlite"),
            max_records: 500_000,
            max_bytes: 256 * 1024 * 1024,
            max_age_s: Some(30 * 24 * 3600),
            sync: SyncPolicy::Normal,
            commit_every: 50,
            commit_interval_ms: 1000,
        }
    }
}

/// MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MqttProtocol {
    /// MQTT 3.1.1.
    #[serde(rename = "3.1.1", alias = "v4", alias = "4")]
    V311,
    /// MQTT 5.
    #[default]
    #[serde(rename = "5", alias = "v5")]
    V5,
}

/// One topic and how records are encoded on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Topic name. `{scooter_id}` is replaced by the scooter id.
    pub topic: String,
    /// Encoding of the payload.
    pub encoding: Encoding,
    /// Records per message; `None` means 1 for `legacy`/`json` and 50 for `compact`.
    #[serde(default)]
    pub batch: Option<usize>,
    /// How long a live record may wait for a batch to fill, milliseconds (default 5000).
    #[serde(default)]
    pub linger_ms: Option<u64>,
    /// What `legacy` sends for a record without a usable fix (zeros by default).
    #[serde(default)]
    pub legacy_no_fix: crate::encoding::NoFix,
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

/// Where the password comes from. It is never logged: a value is a [`Secret`], a file or an
/// environment variable is read at each connection attempt (so a rotated secret is picked up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordSource {
    /// First line of this file.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This value, given directly (for example from a configuration file that holds it).
    Value(Secret),
}

/// Broker connection and publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `tcp://`, `mqtt://` (plain) or `ssl://`, `mqtts://` (TLS) URL; port defaults to 1883 / 8883.
    pub broker: String,
    /// Protocol version.
    pub protocol: MqttProtocol,
    /// Client id.
    #[serde(alias = "client_id")]
    pub client: String,
    /// User name, if the broker requires one.
    pub username: Option<String>,
    /// Password source.
    pub password: Option<PasswordSource>,
    /// PEM CA bundle to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Keep-alive, seconds.
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
            legacy_no_fix: Default::default(),
        }]
    }

    /// Checks values that serde cannot.
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
        let outputs = self.effective_outputs();
        if outputs.len() > crate::spool::MAX_OUTPUTS {
            return Err(ConfigError::TooManyOutputs(outputs.len()));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(ConfigError::ClientAuth);
        }
        crate::mqtt::BrokerUrl::parse(&self.broker)?;
        Ok(())
    }
}

/// Everything the pipeline needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    fn interval_accepts_fractions_and_integers() {
        assert_eq!(
            SampleInterval::from_secs_f64(0.1).unwrap().duration(),
            Duration::from_millis(100)
        );
        let v: SampleInterval = serde_json::from_str("5").unwrap();
        assert_eq!(v.duration(), Duration::from_secs(5));
        let v: SampleInterval = serde_json::from_str("0.25").unwrap();
        assert_eq!(v.duration(), Duration::from_millis(250));
        assert!(SampleInterval::from_secs_f64(0.05).is_err());
        assert!(SampleInterval::from_secs_f64(f64::NAN).is_err());
        assert!(serde_json::from_str::<SampleInterval>("0").is_err());
    }

    #[test]
    fn resolve_prefers_fractional_interval() {
        assert_eq!(
            SampleInterval::resolve(Some(0.5), Some(5))
                .unwrap()
                .duration(),
            Duration::from_millis(500)
        );
        assert_eq!(
            SampleInterval::resolve(None, Some(5)).unwrap().duration(),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn earlier_single_topic_becomes_a_legacy_output() {
        let cfg: MqttConfig = serde_json::from_value(serde_json::json!({
            "broker": "tcp://example.invalid:1883",
            "client": "martinete",
            "topic": "vehicle/1/realtime",
            "keep_alive": 20,
            "reconnect_min": 1,
            "reconnect_max": 30
        }))
        .unwrap();
        let outs = cfg.effective_outputs();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].topic, "vehicle/1/realtime");
        assert_eq!(outs[0].encoding, Encoding::Legacy);
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_window_and_reconnect_are_rejected() {
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
    }
}
