//! `[telemetry]`: how often scooters are sampled (fast while riding, slow while parked, a
//! heartbeat when nothing changes), and the id that names a single scooter in topics.
//!
//! The earlier client's `[mqtt] send_interval` (whole seconds) set the same interval; it is still
//! accepted, and `mod.rs` refuses a file that sets both. A `[[scooter]]` entry may override each
//! of the sampling keys for its scooter.

use super::reader::{Located, Refusal, Section};
use std::time::Duration;
use toml::de::DeValue;

pub(crate) const KEYS: &[&str] = &["interval", "scooter_id", "parked_interval", "heartbeat"];

/// Shortest accepted sampling interval: the radio link cannot do much better.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted sampling interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Default sampling interval, as in the earlier client's sample.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default interval while the scooter is parked and locked.
pub const DEFAULT_PARKED_INTERVAL: Duration = Duration::from_secs(30);
/// Default longest silence while parked and nothing changes.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(600);

/// The effective sampling settings (of `[telemetry]`, or of one `[[scooter]]` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Time between two samples while the scooter is ridden, unlocked or charging.
    pub interval: Duration,
    /// Time between two samples while it is parked and locked (never shorter than `interval`).
    pub parked_interval: Duration,
    /// While parked, a sample that shows nothing new is published only when this much time has
    /// passed since the last published one; zero publishes every sample.
    pub heartbeat: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            interval: DEFAULT_INTERVAL,
            parked_interval: DEFAULT_PARKED_INTERVAL,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl TelemetryConfig {
    /// Whether sampling adapts at all: `parked_interval = interval` and `heartbeat = "0s"` sample
    /// and publish at the fixed interval, as the earlier client did.
    pub fn is_adaptive(&self) -> bool {
        self.parked_interval != self.interval || !self.heartbeat.is_zero()
    }
}

pub(crate) fn read_interval(section: &mut Section<'_, '_>, key: &str) -> Option<Located<Duration>> {
    section.duration(key, MIN_INTERVAL..=MAX_INTERVAL)
}

/// Reads the sampling keys of `section`, with `base` for the ones not written; `interval` was
/// read by the caller (it has an earlier-format alias).
pub(crate) fn read_sampling(
    section: &mut Section<'_, '_>,
    interval: Option<Duration>,
    base: TelemetryConfig,
) -> TelemetryConfig {
    let interval = interval.unwrap_or(base.interval);
    let parked = section.duration(
        "parked_interval",
        MIN_INTERVAL..=Duration::from_secs(86_400),
    );
    let parked_interval = match parked {
        Some(p) if p.value < interval => {
            section.problem(
                "parked_interval",
                &p.span,
                format!(
                    "must not be shorter than interval ({})",
                    super::units::format_duration(interval)
                ),
            );
            interval
        }
        Some(p) => p.value,
        // An inherited parked interval follows a shorter or longer `interval`.
        None => base.parked_interval.max(interval),
    };
    let heartbeat = section
        .duration("heartbeat", Duration::ZERO..=Duration::from_secs(86_400))
        .map_or(base.heartbeat, |h| h.value);
    TelemetryConfig {
        interval,
        parked_interval,
        heartbeat,
    }
}

/// Reads a scooter id (`[telemetry] scooter_id`, `[[scooter]] id`).
pub(crate) fn read_scooter_id(section: &mut Section<'_, '_>, key: &str) -> Option<Located<String>> {
    section.value(key, |v| match v {
        DeValue::String(s) if s.is_empty() => Err(Refusal::Invalid("must not be empty".into())),
        DeValue::String(s) if s.contains(['/', '+', '#', '{', '}']) || s.chars().any(char::is_whitespace) => {
            Err(Refusal::Invalid(format!(
                "is used inside MQTT topics, so it cannot contain '/', '+', '#', braces or spaces, found {s:?}"
            )))
        }
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(Refusal::Expected("a string")),
    })
}
