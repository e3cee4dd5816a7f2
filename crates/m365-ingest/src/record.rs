//! What the ingest knows about one record once its message is decoded, whatever the encoding:
//! the client's readings (the same [`ScooterReadings`] and [`BatteryReadings`] the client
//! builds), the key that makes its insert idempotent, and what the encoding could say about the
//! position. `legacy` messages carry no record id, sequence number or time source; `compact`
//! carries no fix mode, quality or receiver time; those stay `None`.

use chrono::{DateTime, SecondsFormat, Utc};
use m365_pipeline::{BatteryReadings, Encoding, ScooterReadings, TimeSource};
use uuid::Uuid;

/// Namespace of the UUID v5 keys derived for `legacy` messages (a fixed, random UUID).
pub const LEGACY_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6d33_3635_2d6c_6567_a5c1_9b1e_f1d2_7e43);

/// Where a record's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The record id the client minted (`json`, `compact`).
    RecordId,
    /// Derived from the scooter id and the timestamp (`legacy`), see [`legacy_key`].
    Derived,
}

impl KeySource {
    /// Whether the key was derived.
    pub fn is_derived(self) -> bool {
        self == KeySource::Derived
    }
}

/// The key of a `legacy` message: a UUID v5 of the scooter id (taken from the topic) and the
/// timestamp at microsecond resolution. A redelivered message gets the same key; two samples of
/// one scooter never share a timestamp (the client samples at most every 100 ms and stamps
/// milliseconds).
pub fn legacy_key(scooter_id: &str, time: DateTime<Utc>) -> Uuid {
    let name = format!(
        "{scooter_id}\n{}",
        time.to_rfc3339_opts(SecondsFormat::Micros, true)
    );
    Uuid::new_v5(&LEGACY_KEY_NAMESPACE, name.as_bytes())
}

/// The key of a `legacy` ride event, which carries no record id: a UUID v5 of the scooter id
/// (from the topic), the event's name and its timestamp at microsecond resolution, so a
/// redelivered message gets the same key and two events of one moment get two.
pub fn legacy_event_key(scooter_id: &str, event: &str, time: DateTime<Utc>) -> Uuid {
    let name = format!(
        "{scooter_id}\n{event}\n{}",
        time.to_rfc3339_opts(SecondsFormat::Micros, true)
    );
    Uuid::new_v5(&LEGACY_KEY_NAMESPACE, name.as_bytes())
}

/// A position as the message described it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Position {
    /// Latitude, decimal degrees.
    pub lat_deg: f64,
    /// Longitude, decimal degrees.
    pub lon_deg: f64,
    /// Altitude above mean sea level, m.
    pub alt_msl_m: Option<f64>,
    /// Speed over ground, km/h.
    pub speed_kmh: Option<f64>,
    /// Course over ground, degrees.
    pub course_deg: Option<f64>,
    /// Satellites used.
    pub sats_used: Option<u8>,
    /// Dilutions of precision.
    pub hdop: Option<f64>,
    /// PDOP.
    pub pdop: Option<f64>,
    /// VDOP.
    pub vdop: Option<f64>,
    /// `2d` / `3d` (json only).
    pub mode: Option<String>,
    /// Fix quality (json only).
    pub quality: Option<String>,
    /// Receiver that produced the fix (json only).
    pub source: Option<String>,
    /// Receiver time of the fix (json only).
    pub fix_time: Option<DateTime<Utc>>,
    /// Age of the fix when the sample was taken, ms (json, compact).
    pub age_ms: Option<u64>,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestRecord {
    /// The idempotency key: the record id, or the derived key of a `legacy` message.
    pub record_id: Uuid,
    /// Where [`IngestRecord::record_id`] came from.
    pub key: KeySource,
    /// Scooter id (from the message, or from the topic for `legacy`).
    pub scooter_id: String,
    /// Per-scooter sequence number (not in `legacy`).
    pub seq: Option<u64>,
    /// Time of the sample.
    pub time: DateTime<Utc>,
    /// Clock of the time (not in `legacy`).
    pub ts_source: Option<TimeSource>,
    /// Encoding of the message it came in.
    pub encoding: Encoding,
    /// Controller readings.
    pub scooter: ScooterReadings,
    /// Battery readings.
    pub battery: BatteryReadings,
    /// Position, `None` without a usable fix.
    pub gps: Option<Position>,
}

/// The stored name of a time source.
pub fn time_source_name(t: TimeSource) -> &'static str {
    match t {
        TimeSource::System => "system",
        TimeSource::Gps => "gps",
        TimeSource::UntrustedSystem => "untrusted_system",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn legacy_keys_are_stable_and_distinct() {
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        let a = legacy_key("s1", t);
        assert_eq!(a, legacy_key("s1", t));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, legacy_key("s2", t));
        assert_ne!(a, legacy_key("s1", t + chrono::Duration::milliseconds(1)));
        let e = legacy_event_key("s1", "locked", t);
        assert_eq!(e, legacy_event_key("s1", "locked", t));
        assert_ne!(e, legacy_event_key("s1", "unlocked", t));
        assert_ne!(e, a);
    }
}
