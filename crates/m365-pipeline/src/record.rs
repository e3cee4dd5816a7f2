//! The telemetry record: one sample of scooter readings plus the latest GPS fix, stamped with a
//! trustworthy time, the scooter id, a per-scooter sequence number and a unique record id.
//!
//! A [`Sample`] is what the sampler fills (every reading optional, because any BLE read may
//! fail). The spool turns it into a [`Record`] when it commits it: only the spool knows the next
//! sequence number, and the record id is minted at that moment so it is stored with the record and
//! every resend carries the same id.
//!
//! A sample may instead carry a ride event ([`EventKind`]): it then has empty readings, at most
//! the GPS reading of where it happened, and its own per-scooter sequence, so telemetry
//! sequence numbers stay gap-free.

use chrono::{DateTime, TimeZone, Utc};
use m365_gps::Fix;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::EventKind;

/// Readings from the scooter's controller (ESC). Units are in the names; every field is `None`
/// when its read failed or the model does not report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScooterReadings {
    /// Current speed, km/h. Negative while the wheel turns backwards (the register is signed).
    pub speed_kmh: Option<f64>,
    /// Average speed since power-on, km/h.
    pub avg_speed_kmh: Option<f64>,
    /// Distance since power-on, metres (the register counts 10 m units; already scaled).
    pub trip_distance_m: Option<u32>,
    /// Time actually ridden since power-on, seconds.
    pub trip_time_s: Option<u32>,
    /// Odometer (total distance), metres.
    pub odometer_m: Option<u32>,
    /// Time since the scooter was switched on, seconds.
    pub uptime_s: Option<u32>,
    /// Frame / controller temperature, °C.
    pub frame_temp_c: Option<f64>,
    /// Remaining range estimated by the scooter, km.
    pub range_km: Option<f64>,
    /// Error code (0 = none).
    pub error_code: Option<u16>,
    /// Warning code (0 = none).
    pub warning_code: Option<u16>,
    /// Whether the scooter is locked.
    pub locked: Option<bool>,
}

/// Readings from the battery management system (BMS). Units are in the names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatteryReadings {
    /// Remaining charge, mAh.
    pub remaining_mah: Option<u32>,
    /// Charge level, percent.
    pub percent: Option<u8>,
    /// Pack voltage, volts.
    pub voltage_v: Option<f64>,
    /// Pack current, amperes; negative while charging.
    pub current_a: Option<f64>,
    /// Power, watts. When the sampler leaves it empty, [`BatteryReadings::power_w`] derives it.
    pub power_w: Option<f64>,
    /// Temperature sensor 1, °C (the BMS byte minus 20, already applied).
    pub temp1_c: Option<i16>,
    /// Temperature sensor 2, °C.
    pub temp2_c: Option<i16>,
    /// Cell voltages, volts, cell 1 first. `None` when not read this sample.
    pub cell_voltages_v: Option<Vec<f64>>,
}

impl BatteryReadings {
    /// Power in watts: the measured value, or voltage × current when both are known.
    pub fn power_w(&self) -> Option<f64> {
        self.power_w.or(match (self.voltage_v, self.current_a) {
            (Some(v), Some(a)) => Some(v * a),
            _ => None,
        })
    }
}

/// The latest GPS fix attached to a sample, with how old it was when the sample was taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpsReading {
    /// The fix as the GPS source produced it.
    pub fix: Fix,
    /// Milliseconds between the fix and the sample.
    pub age_ms: u64,
}

/// What the sampler produces: readings taken at one moment, before the spool numbers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Stable scooter identity (e.g. its BLE address or serial number).
    pub scooter_id: String,
    /// System clock (UTC) when the sample was taken. See [`Record::timestamp`] for when it is
    /// replaced by GPS time.
    pub system_time: DateTime<Utc>,
    /// Controller readings.
    pub scooter: ScooterReadings,
    /// Battery readings.
    pub battery: BatteryReadings,
    /// Latest fix, `None` when there has been no fix.
    pub gps: Option<GpsReading>,
    /// The ride event this sample reports, `None` for telemetry. An event sample has empty
    /// readings and optionally the GPS reading of where it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventKind>,
}

impl Sample {
    /// A sample reporting `kind` for `scooter_id`, taken at `system_time` (the same timestamp
    /// rule as telemetry applies), with the GPS reading of where it happened when there is one.
    pub fn event(
        scooter_id: impl Into<String>,
        system_time: DateTime<Utc>,
        kind: EventKind,
        gps: Option<GpsReading>,
    ) -> Self {
        Sample {
            scooter_id: scooter_id.into(),
            system_time,
            scooter: ScooterReadings::default(),
            battery: BatteryReadings::default(),
            gps,
            event: Some(kind),
        }
    }
}

/// The key of the spool's per-scooter numbering: telemetry and events are numbered apart, so a
/// telemetry sequence has no gaps where events were committed.
pub(crate) fn seq_key(scooter_id: &str, is_event: bool) -> std::borrow::Cow<'_, str> {
    if is_event {
        std::borrow::Cow::Owned(format!("{scooter_id}#events"))
    } else {
        std::borrow::Cow::Borrowed(scooter_id)
    }
}

/// Which clock the record's timestamp came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// The system clock, judged trustworthy.
    System,
    /// The GPS fix time plus the fix age: the system clock was not trustworthy.
    Gps,
    /// The system clock although it is not trustworthy, because no GPS time was available.
    UntrustedSystem,
}

/// The earliest system time considered trustworthy: 2020-01-01T00:00:00Z.
///
/// A Raspberry Pi has no real-time clock: until NTP (or the modem) sets it, it boots at the
/// last saved time or at 1970. Any time before this bound cannot be a real measurement date for
/// this software, so it is treated as "clock not set".
pub(crate) fn trusted_clock_floor() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The timestamp rule: the system time when it is at or after [`trusted_clock_floor`];
/// otherwise the GPS fix time plus the fix age, when the fix carries a time; otherwise the
/// (untrusted) system time, flagged as such so consumers can tell.
pub(crate) fn choose_timestamp(
    system_time: DateTime<Utc>,
    gps: Option<&GpsReading>,
) -> (DateTime<Utc>, TimeSource) {
    if system_time >= trusted_clock_floor() {
        return (system_time, TimeSource::System);
    }
    let gps_time = gps.and_then(|g| {
        let t = g.fix.time?;
        let age = chrono::Duration::milliseconds(i64::try_from(g.age_ms).ok()?);
        t.checked_add_signed(age)
    });
    match gps_time {
        Some(t) => (t, TimeSource::Gps),
        None => (system_time, TimeSource::UntrustedSystem),
    }
}

/// One committed telemetry record: what is spooled, published and deduplicated downstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique id for downstream deduplication: a UUID v7 minted when the record is committed.
    ///
    /// Why UUID v7 rather than scooter-id + seq: the sequence lives in the spool, and a spool
    /// that is lost (SD card swapped, corrupt file moved aside) restarts it at 1, so
    /// scooter+seq could repeat; 74 random bits cannot. The 48-bit time prefix keeps ids sortable
    /// and index-friendly in databases. The id is stored with the record, so every resend of the
    /// same record carries the same id.
    pub record_id: Uuid,
    /// Scooter identity.
    pub scooter_id: String,
    /// Per-scooter sequence number, strictly increasing across restarts (kept in the spool).
    /// Events are numbered in a sequence of their own (see [`Record::event`]).
    pub seq: u64,
    /// UTC time of the sample: the system time when the clock is set (2020 or later), otherwise
    /// the GPS fix time plus the fix age when the fix has a time, otherwise the untrusted system
    /// time.
    pub timestamp: DateTime<Utc>,
    /// Which clock [`Record::timestamp`] came from.
    pub time_source: TimeSource,
    /// Controller readings.
    pub scooter: ScooterReadings,
    /// Battery readings.
    pub battery: BatteryReadings,
    /// Latest fix and its age, `None` when there has been no fix.
    pub gps: Option<GpsReading>,
    /// The ride event this record reports, `None` for telemetry. Rows written before events
    /// existed decode with `None`. An event record is published on its own, on the events
    /// topic, and its `seq` counts events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventKind>,
}

impl Record {
    /// Whether this record reports an event rather than telemetry.
    pub fn is_event(&self) -> bool {
        self.event.is_some()
    }

    /// Builds the record for `sample` with the sequence number the spool assigned. The record
    /// id is a UUID v7 whose time part is the chosen timestamp and whose other 74 bits are random.
    pub fn from_sample(sample: Sample, seq: u64) -> Self {
        let (timestamp, time_source) = choose_timestamp(sample.system_time, sample.gps.as_ref());
        let secs = u64::try_from(timestamp.timestamp()).unwrap_or(0);
        let ts =
            uuid::Timestamp::from_unix(uuid::NoContext, secs, timestamp.timestamp_subsec_nanos());
        Record {
            record_id: Uuid::new_v7(ts),
            scooter_id: sample.scooter_id,
            seq,
            timestamp,
            time_source,
            scooter: sample.scooter,
            battery: sample.battery,
            gps: sample.gps,
            event: sample.event,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_gps::{FixMode, FixQuality, FixSource};

    fn fix_at(time: Option<DateTime<Utc>>) -> GpsReading {
        GpsReading {
            fix: Fix {
                time,
                lat: 43.3,
                lon: -8.4,
                alt_msl_m: Some(10.0),
                speed_mps: Some(5.0),
                course_deg: None,
                mode: FixMode::ThreeD,
                quality: FixQuality::Gps,
                sats_used: Some(7),
                hdop: Some(0.9),
                pdop: None,
                vdop: None,
                source: FixSource::Simulated,
            },
            age_ms: 1500,
        }
    }

    #[test]
    fn trusted_system_clock_wins() {
        let now = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        let gps = fix_at(Some(Utc.with_ymd_and_hms(2025, 6, 1, 11, 0, 0).unwrap()));
        assert_eq!(choose_timestamp(now, Some(&gps)), (now, TimeSource::System));
    }

    #[test]
    fn unset_clock_uses_gps_time_plus_age() {
        let boot = Utc.with_ymd_and_hms(1970, 1, 1, 0, 5, 0).unwrap();
        let fix_time = Utc.with_ymd_and_hms(2025, 6, 1, 11, 0, 0).unwrap();
        let gps = fix_at(Some(fix_time));
        let (t, src) = choose_timestamp(boot, Some(&gps));
        assert_eq!(src, TimeSource::Gps);
        assert_eq!(t, fix_time + chrono::Duration::milliseconds(1500));
    }

    #[test]
    fn unset_clock_without_gps_time_is_flagged() {
        let boot = Utc.with_ymd_and_hms(2019, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(
            choose_timestamp(boot, Some(&fix_at(None))),
            (boot, TimeSource::UntrustedSystem)
        );
        assert_eq!(
            choose_timestamp(boot, None),
            (boot, TimeSource::UntrustedSystem)
        );
    }

    #[test]
    fn record_ids_are_unique_and_version_7() {
        let sample = Sample {
            scooter_id: "s1".into(),
            system_time: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            scooter: ScooterReadings::default(),
            battery: BatteryReadings::default(),
            gps: None,
            event: None,
        };
        let a = Record::from_sample(sample.clone(), 1);
        let b = Record::from_sample(sample, 1);
        assert_ne!(a.record_id, b.record_id);
        assert_eq!(a.record_id.get_version_num(), 7);
    }

    #[test]
    fn rows_without_an_event_still_decode_and_telemetry_writes_none() {
        let sample = Sample {
            scooter_id: "s1".into(),
            system_time: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            scooter: ScooterReadings::default(),
            battery: BatteryReadings::default(),
            gps: None,
            event: None,
        };
        let record = Record::from_sample(sample, 3);
        let mut body = serde_json::to_value(&record).unwrap();
        assert!(body.get("event").is_none(), "telemetry rows are unchanged");
        // What an earlier version stored: no `event` key at all.
        body.as_object_mut().unwrap().remove("event");
        let back: Record = serde_json::from_value(body).unwrap();
        assert_eq!(back, record);
        assert!(!back.is_event());
    }

    #[test]
    fn event_samples_carry_the_event_and_empty_readings_into_the_record() {
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        let kind = EventKind::BatteryLow {
            percent: 14,
            threshold: 15,
        };
        let sample = Sample::event("s1", t, kind.clone(), Some(fix_at(None)));
        assert_eq!(sample.scooter, ScooterReadings::default());
        assert_eq!(sample.battery, BatteryReadings::default());
        let record = Record::from_sample(sample, 1);
        assert_eq!(record.event, Some(kind));
        assert!(record.is_event());
        assert_eq!(record.gps, Some(fix_at(None)));
        let stored = serde_json::to_vec(&record).unwrap();
        assert_eq!(serde_json::from_slice::<Record>(&stored).unwrap(), record);
        assert_eq!(seq_key("s1", true), "s1#events");
        assert_eq!(seq_key("s1", false), "s1");
    }

    #[test]
    fn power_is_derived_when_not_measured() {
        let b = BatteryReadings {
            voltage_v: Some(40.0),
            current_a: Some(-2.5),
            ..Default::default()
        };
        assert_eq!(b.power_w(), Some(-100.0));
        assert_eq!(BatteryReadings::default().power_w(), None);
    }
}
