//! `[telemetry]`: how often the scooter is sampled, and the id that names it in topics.
//!
//! The earlier client's `[mqtt] send_interval` (whole seconds) set the same interval; it is still
//! accepted, and `mod.rs` refuses a file that sets both.

use super::reader::{Refusal, Section};
use std::time::Duration;
use toml::de::DeValue;

pub(crate) const KEYS: &[&str] = &["interval", "scooter_id"];

/// Shortest accepted sampling interval: the radio link cannot do much better.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest accepted sampling interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Default sampling interval, as in the earlier client's sample.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The effective `[telemetry]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Time between two samples.
    pub interval: Duration,
    /// Names the scooter in topics (`{id}`) and records: by default the MAC as 12 hex digits, or
    /// `scooter` when no MAC is configured.
    pub scooter_id: String,
}

pub(crate) fn read_interval(
    section: &mut Section<'_, '_>,
    key: &str,
) -> Option<super::reader::Located<Duration>> {
    section.duration(key, MIN_INTERVAL..=MAX_INTERVAL)
}

pub(crate) fn read_scooter_id(section: &mut Section<'_, '_>) -> Option<String> {
    section
        .value("scooter_id", |v| match v {
            DeValue::String(s) if s.is_empty() => Err(Refusal::Invalid("must not be empty".into())),
            DeValue::String(s) if s.contains(['/', '+', '#']) || s.chars().any(char::is_whitespace) => {
                Err(Refusal::Invalid(format!(
                    "is used inside MQTT topics, so it cannot contain '/', '+', '#' or spaces, found {s:?}"
                )))
            }
            DeValue::String(s) => Ok(s.to_string()),
            _ => Err(Refusal::Expected("a string")),
        })
        .map(|s| s.value)
}
