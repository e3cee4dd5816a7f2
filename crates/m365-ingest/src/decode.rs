//! One MQTT message in, records or an event out, or the reason it cannot be stored (which sends
//! it to the dead-letter table). The encoding of a telemetry message is told apart per message,
//! so one topic may carry any of the three: the MQTT 5 content type `application/zlib` or a
//! zlib header means `compact`; JSON with `"schema": "m365.telemetry"` is `json`; other JSON is
//! `legacy`. Ride events on the events topics are told apart the same way (`"schema":
//! "m365.event"` for `json`, the deflated `json` event for `compact`, a flat object with
//! `event` and `timestamp` for `legacy`). The decoders are `m365-pipeline`'s own types.

use chrono::{DateTime, TimeZone, Utc};
use m365_pipeline::encoding::compact::{self, CompactBatch};
use m365_pipeline::encoding::json::{self as json_enc, JsonEventV1, JsonGps, JsonV1};
use m365_pipeline::encoding::legacy::{LegacyEvent, LegacyTelemetry};
use m365_pipeline::{BatteryReadings, Encoding, ScooterReadings, TimeSource};
use serde::Deserialize;
use uuid::Uuid;

use crate::record::{IngestRecord, KeySource, Position, legacy_event_key, legacy_key};
use crate::topic::{TopicKind, TopicMatch};

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// One or more records.
    Records(Vec<IngestRecord>),
    /// An availability or status message.
    Event(Event),
    /// A ride event (boxed: larger than the other variants).
    RideEvent(Box<RideEvent>),
}

/// A ride event as the message described it, whatever its encoding. `legacy` carries no record
/// id, sequence number, time source or scooter id (taken from the topic); those are derived or
/// `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct RideEvent {
    /// The idempotency key: the record id, or the derived key of a `legacy` event
    /// ([`legacy_event_key`]).
    pub record_id: Uuid,
    /// Where [`RideEvent::record_id`] came from.
    pub key: KeySource,
    /// Scooter id.
    pub scooter_id: String,
    /// The event's name, e.g. `trip_ended`.
    pub event: String,
    /// Per-scooter sequence number of events (not in `legacy`).
    pub seq: Option<u64>,
    /// Time of the event.
    pub time: DateTime<Utc>,
    /// Clock of the time (not in `legacy`).
    pub ts_source: Option<TimeSource>,
    /// Encoding of the message it came in.
    pub encoding: Encoding,
    /// The event's fields.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Where it happened, `None` without a usable fix.
    pub gps: Option<Position>,
}

/// Longest event name accepted.
const MAX_EVENT_NAME: usize = 64;

/// An availability or status message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The scooter.
    pub scooter_id: String,
    /// Availability or status.
    pub kind: TopicKind,
    /// `online` / `offline` for availability.
    pub value: Option<String>,
    /// The time the message states (`ts` of a status message).
    pub time: Option<DateTime<Utc>>,
    /// The JSON of a status message.
    pub detail: Option<serde_json::Value>,
}

/// Why a message cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

fn reject<T>(why: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection(why.into()))
}

/// Content type of `compact` messages.
pub const ZLIB_CONTENT_TYPE: &str = "application/zlib";

/// Decodes one message received on a topic classified as `topic`.
pub fn decode(
    topic: &TopicMatch,
    content_type: Option<&str>,
    payload: &[u8],
) -> Result<Decoded, Rejection> {
    match topic.kind {
        TopicKind::Telemetry => decode_telemetry(&topic.scooter_id, content_type, payload)
            .map(Decoded::Records)
            .and_then(|d| match &d {
                Decoded::Records(r) if r.is_empty() => reject("no record in the message"),
                _ => Ok(d),
            }),
        TopicKind::Availability => {
            let text = std::str::from_utf8(payload)
                .map_err(|_| Rejection("availability: not UTF-8 text".into()))?
                .trim();
            if text.is_empty() || text.len() > 64 {
                return reject(format!(
                    "availability: expected a short word such as online/offline, got {} bytes",
                    text.len()
                ));
            }
            Ok(Decoded::Event(Event {
                scooter_id: topic.scooter_id.clone(),
                kind: TopicKind::Availability,
                value: Some(text.to_owned()),
                time: None,
                detail: None,
            }))
        }
        TopicKind::Status => {
            let v: serde_json::Value = serde_json::from_slice(payload)
                .map_err(|e| Rejection(format!("status: not JSON ({e})")))?;
            let time = match v.get("ts") {
                Some(serde_json::Value::String(s)) => Some(parse_time(s)?),
                None | Some(serde_json::Value::Null) => None,
                Some(_) => return reject("status: `ts` is not a string"),
            };
            if !v.is_object() {
                return reject("status: not a JSON object");
            }
            Ok(Decoded::Event(Event {
                scooter_id: topic.scooter_id.clone(),
                kind: TopicKind::Status,
                value: None,
                time,
                detail: Some(v),
            }))
        }
        TopicKind::RideEvent => decode_ride_event(&topic.scooter_id, content_type, payload)
            .map(|e| Decoded::RideEvent(Box::new(e))),
    }
}

/// Decodes a ride event in any of the three encodings.
fn decode_ride_event(
    topic_scooter: &str,
    content_type: Option<&str>,
    payload: &[u8],
) -> Result<RideEvent, Rejection> {
    if content_type == Some(ZLIB_CONTENT_TYPE) || payload.first() == Some(&0x78) {
        let m =
            compact::decode_event(payload).map_err(|e| Rejection(format!("compact event: {e}")))?;
        return from_json_event(m, Encoding::Compact);
    }
    #[derive(Deserialize)]
    struct Probe {
        schema: Option<String>,
    }
    match serde_json::from_slice::<Probe>(payload) {
        Ok(Probe { schema: Some(s) }) if s == json_enc::EVENT_SCHEMA => {
            let m: JsonEventV1 = serde_json::from_slice(payload)
                .map_err(|e| Rejection(format!("json event: {e}")))?;
            from_json_event(m, Encoding::Json)
        }
        Ok(Probe { schema: Some(s) }) => reject(format!("events: unknown schema {s:?}")),
        Ok(Probe { schema: None }) => {
            let m: LegacyEvent = serde_json::from_slice(payload)
                .map_err(|e| Rejection(format!("legacy event: {e}")))?;
            from_legacy_event(topic_scooter, m)
        }
        Err(e) => reject(format!("neither JSON nor a zlib stream ({e})")),
    }
}

fn check_event_name(name: &str) -> Result<(), Rejection> {
    let ok = !name.is_empty()
        && name.len() <= MAX_EVENT_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        reject(format!("event: {name:?} is not an event name"))
    }
}

fn from_json_event(m: JsonEventV1, encoding: Encoding) -> Result<RideEvent, Rejection> {
    if m.v != json_enc::EVENT_VERSION {
        return reject(format!("event: unsupported version {}", m.v));
    }
    if m.scooter_id.is_empty() {
        return reject("event: empty scooter_id");
    }
    check_event_name(&m.event)?;
    Ok(RideEvent {
        record_id: m.record_id,
        key: KeySource::RecordId,
        time: parse_time(&m.ts)?,
        scooter_id: m.scooter_id,
        event: m.event,
        seq: Some(m.seq),
        ts_source: Some(m.ts_source),
        encoding,
        data: m.data,
        gps: m.gps.map(position),
    })
}

fn from_legacy_event(topic_scooter: &str, m: LegacyEvent) -> Result<RideEvent, Rejection> {
    check_event_name(&m.event)?;
    let time = parse_time(&m.timestamp)?;
    let gps = match (finite(m.latitude), finite(m.longitude)) {
        (Some(lat_deg), Some(lon_deg)) if !(lat_deg == 0.0 && lon_deg == 0.0) => Some(Position {
            lat_deg,
            lon_deg,
            ..Position::default()
        }),
        _ => None,
    };
    Ok(RideEvent {
        record_id: legacy_event_key(topic_scooter, &m.event, time),
        key: KeySource::Derived,
        scooter_id: topic_scooter.to_owned(),
        event: m.event,
        seq: None,
        time,
        ts_source: None,
        encoding: Encoding::Legacy,
        data: m.data,
        gps,
    })
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, Rejection> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Rejection(format!("time {s:?} is not RFC 3339 ({e})")))
}

/// Which encoding a telemetry payload is in.
pub fn sniff(content_type: Option<&str>, payload: &[u8]) -> Result<Encoding, Rejection> {
    if content_type == Some(ZLIB_CONTENT_TYPE) || payload.first() == Some(&0x78) {
        return Ok(Encoding::Compact);
    }
    #[derive(Deserialize)]
    struct Probe {
        schema: Option<String>,
    }
    match serde_json::from_slice::<Probe>(payload) {
        Ok(Probe { schema: Some(s) }) if s == json_enc::SCHEMA => Ok(Encoding::Json),
        Ok(Probe { schema: Some(s) }) => reject(format!("unknown schema {s:?}")),
        Ok(Probe { schema: None }) => Ok(Encoding::Legacy),
        Err(e) => reject(format!("neither JSON nor a zlib stream ({e})")),
    }
}

fn decode_telemetry(
    topic_scooter: &str,
    content_type: Option<&str>,
    payload: &[u8],
) -> Result<Vec<IngestRecord>, Rejection> {
    match sniff(content_type, payload)? {
        Encoding::Legacy => {
            let m: LegacyTelemetry =
                serde_json::from_slice(payload).map_err(|e| Rejection(format!("legacy: {e}")))?;
            from_legacy(topic_scooter, m).map(|r| vec![r])
        }
        Encoding::Json => {
            let m: JsonV1 =
                serde_json::from_slice(payload).map_err(|e| Rejection(format!("json: {e}")))?;
            from_json(m).map(|r| vec![r])
        }
        Encoding::Compact => {
            let b = compact::decode(payload).map_err(|e| Rejection(format!("compact: {e}")))?;
            from_compact(&b)
        }
    }
}

/// A number that fits the target integer type, rounded; `None` otherwise.
fn int<T: TryFrom<i64>>(v: Option<f64>) -> Option<T> {
    let v = v?;
    if !v.is_finite() || v.abs() > 9.0e15 {
        return None;
    }
    T::try_from(v.round() as i64).ok()
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn from_legacy(topic_scooter: &str, m: LegacyTelemetry) -> Result<IngestRecord, Rejection> {
    let time = parse_time(&m.timestamp)?;
    let b = &m.battery_info;
    // No usable fix: the zeros form (0, 0) or `null`.
    let gps = m
        .gpsinfo
        .as_ref()
        .filter(|g| !(g.latitude == 0.0 && g.longitude == 0.0))
        .map(|g| Position {
            lat_deg: g.latitude,
            lon_deg: g.longitude,
            alt_msl_m: finite(g.altitude.map(f64::from)),
            speed_kmh: finite(g.gps_speed.map(f64::from)),
            ..Position::default()
        });
    Ok(IngestRecord {
        record_id: legacy_key(topic_scooter, time),
        key: KeySource::Derived,
        scooter_id: topic_scooter.to_owned(),
        seq: None,
        time,
        ts_source: None,
        encoding: Encoding::Legacy,
        scooter: ScooterReadings {
            speed_kmh: finite(m.speed_kmh.map(f64::from)),
            trip_distance_m: m.trip_distance_m,
            odometer_m: m.total_distance_m,
            uptime_s: int(m.uptime_sec.map(f64::from)),
            frame_temp_c: finite(m.frame_temp.map(f64::from)),
            range_km: finite(m.trip_distance_left_km.map(f64::from)),
            ..ScooterReadings::default()
        },
        battery: BatteryReadings {
            remaining_mah: b.capacity,
            percent: b.percent,
            voltage_v: finite(b.voltage.map(f64::from)),
            current_a: finite(b.current.map(f64::from)),
            power_w: None,
            temp1_c: b.temperature_1,
            temp2_c: b.temperature_2,
            cell_voltages_v: None,
        },
        gps,
    })
}

fn enum_name<T: serde::Serialize>(v: &T) -> Option<String> {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
}

fn from_json(m: JsonV1) -> Result<IngestRecord, Rejection> {
    if m.v != json_enc::VERSION {
        return reject(format!("json: unsupported version {}", m.v));
    }
    if m.scooter_id.is_empty() {
        return reject("json: empty scooter_id");
    }
    let time = parse_time(&m.ts)?;
    let b = m.battery;
    Ok(IngestRecord {
        record_id: m.record_id,
        key: KeySource::RecordId,
        scooter_id: m.scooter_id,
        seq: Some(m.seq),
        time,
        ts_source: Some(m.ts_source),
        encoding: Encoding::Json,
        scooter: ScooterReadings {
            speed_kmh: finite(m.speed_kmh),
            avg_speed_kmh: finite(m.avg_speed_kmh),
            trip_distance_m: m.trip_distance_m,
            trip_time_s: m.trip_time_s,
            odometer_m: m.odometer_m,
            uptime_s: m.uptime_s,
            frame_temp_c: finite(m.frame_temp_c),
            range_km: finite(m.range_km),
            error_code: m.error_code,
            warning_code: m.warning_code,
            locked: m.locked,
        },
        battery: BatteryReadings {
            remaining_mah: b.remaining_mah,
            percent: b.percent,
            voltage_v: finite(b.voltage_v),
            current_a: finite(b.current_a),
            power_w: finite(b.power_w),
            temp1_c: b.temp1_c,
            temp2_c: b.temp2_c,
            cell_voltages_v: b.cell_voltages_v,
        },
        gps: m.gps.map(position),
    })
}

/// The position of a `json` `gps` block.
fn position(g: JsonGps) -> Position {
    Position {
        lat_deg: g.lat_deg,
        lon_deg: g.lon_deg,
        alt_msl_m: finite(g.alt_msl_m),
        speed_kmh: finite(g.speed_kmh),
        course_deg: finite(g.course_deg),
        sats_used: g.sats_used,
        hdop: finite(g.hdop),
        pdop: finite(g.pdop),
        vdop: finite(g.vdop),
        mode: enum_name(&g.mode),
        quality: enum_name(&g.quality),
        source: enum_name(&g.source),
        fix_time: g.fix_time,
        age_ms: Some(g.age_ms),
    }
}

fn from_compact(b: &CompactBatch) -> Result<Vec<IngestRecord>, Rejection> {
    if b.schema != compact::SCHEMA {
        return reject(format!("compact: unknown schema {:?}", b.schema));
    }
    if b.v != compact::VERSION {
        return reject(format!("compact: unsupported version {}", b.v));
    }
    let n = b.n;
    if n > compact::MAX_RECORDS {
        return reject(format!(
            "compact: {n} records, more than {}",
            compact::MAX_RECORDS
        ));
    }
    if b.record_ids.len() != n
        || b.cols.len() != b.fields.len()
        || b.cols.iter().any(|c| c.len() != n)
    {
        return reject("compact: the header's record count does not match the columns");
    }
    if !b.cell_voltages_mv.is_empty() && b.cell_voltages_mv.len() != n {
        return reject("compact: cell_voltages_mv does not have one entry per record");
    }
    if b.scooter_id.is_empty() {
        return reject("compact: empty scooter_id");
    }
    let col = |name: &str| b.column(name).unwrap_or_else(|| vec![None; n]);
    let ts = col("ts_ms");
    let seq = col("seq");
    let ts_source = col("ts_source");
    let [
        speed,
        avg_speed,
        trip_m,
        trip_s,
        odo,
        uptime,
        frame,
        range,
        err,
        warn,
        locked,
    ] = [
        "speed_kmh",
        "avg_speed_kmh",
        "trip_distance_m",
        "trip_time_s",
        "odometer_m",
        "uptime_s",
        "frame_temp_c",
        "range_km",
        "error_code",
        "warning_code",
        "locked",
    ]
    .map(col);
    let [mah, pct, volt, amp, watt, t1, t2] = [
        "battery_remaining_mah",
        "battery_percent",
        "battery_voltage_v",
        "battery_current_a",
        "battery_power_w",
        "battery_temp1_c",
        "battery_temp2_c",
    ]
    .map(col);
    let [lat, lon, alt, gspeed, course, sats, hdop, age] = [
        "gps_lat_deg",
        "gps_lon_deg",
        "gps_alt_msl_m",
        "gps_speed_kmh",
        "gps_course_deg",
        "gps_sats_used",
        "gps_hdop",
        "gps_age_ms",
    ]
    .map(col);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Some(ms) = int::<i64>(ts[i]) else {
            return reject(format!("compact: record {i} has no ts_ms"));
        };
        let Some(time) = Utc.timestamp_millis_opt(ms).single() else {
            return reject(format!("compact: record {i}: ts_ms {ms} is out of range"));
        };
        let gps = match (finite(lat[i]), finite(lon[i])) {
            (Some(lat_deg), Some(lon_deg)) => Some(Position {
                lat_deg,
                lon_deg,
                alt_msl_m: finite(alt[i]),
                speed_kmh: finite(gspeed[i]),
                course_deg: finite(course[i]),
                sats_used: int(sats[i]),
                hdop: finite(hdop[i]),
                age_ms: int(age[i]),
                ..Position::default()
            }),
            _ => None,
        };
        out.push(IngestRecord {
            record_id: b.record_ids[i],
            key: KeySource::RecordId,
            scooter_id: b.scooter_id.clone(),
            seq: int(seq[i]),
            time,
            ts_source: match int::<i64>(ts_source[i]) {
                Some(0) => Some(TimeSource::System),
                Some(1) => Some(TimeSource::Gps),
                Some(2) => Some(TimeSource::UntrustedSystem),
                _ => None,
            },
            encoding: Encoding::Compact,
            scooter: ScooterReadings {
                speed_kmh: finite(speed[i]),
                avg_speed_kmh: finite(avg_speed[i]),
                trip_distance_m: int(trip_m[i]),
                trip_time_s: int(trip_s[i]),
                odometer_m: int(odo[i]),
                uptime_s: int(uptime[i]),
                frame_temp_c: finite(frame[i]),
                range_km: finite(range[i]),
                error_code: int(err[i]),
                warning_code: int(warn[i]),
                locked: int::<i64>(locked[i]).map(|v| v != 0),
            },
            battery: BatteryReadings {
                remaining_mah: int(mah[i]),
                percent: int(pct[i]),
                voltage_v: finite(volt[i]),
                current_a: finite(amp[i]),
                power_w: finite(watt[i]),
                temp1_c: int(t1[i]),
                temp2_c: int(t2[i]),
                cell_voltages_v: b
                    .cell_voltages_mv
                    .get(i)
                    .cloned()
                    .flatten()
                    .map(|cells| cells.iter().map(|mv| *mv as f64 / 1000.0).collect()),
            },
            gps,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use m365_pipeline::synthetic::SyntheticScooter;
    use m365_pipeline::{Record, Sample};

    fn records(n: usize) -> Vec<Record> {
        let mut s = SyntheticScooter::new(
            "s1",
            7,
            Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            std::time::Duration::from_millis(250),
        );
        (0..n)
            .map(|i| {
                let sample: Sample = s.next_sample();
                Record::from_sample(sample, i as u64 + 1)
            })
            .collect()
    }

    fn telemetry(id: &str) -> TopicMatch {
        TopicMatch {
            kind: TopicKind::Telemetry,
            scooter_id: id.into(),
        }
    }

    fn one(d: Decoded) -> IngestRecord {
        match d {
            Decoded::Records(mut r) if r.len() == 1 => r.remove(0),
            other => panic!("expected one record, got {other:?}"),
        }
    }

    #[test]
    fn json_round_trips_every_field() {
        for r in records(120) {
            let payload = Encoding::Json.encode(std::slice::from_ref(&r)).unwrap();
            let got =
                one(decode(&telemetry("ignored"), Some("application/json"), &payload).unwrap());
            assert_eq!(got.record_id, r.record_id);
            assert_eq!(got.key, KeySource::RecordId);
            assert_eq!(got.scooter_id, "s1");
            assert_eq!(got.seq, Some(r.seq));
            assert_eq!(got.time, r.timestamp);
            assert_eq!(got.scooter, r.scooter);
            let mut battery = r.battery.clone();
            battery.power_w = r.battery.power_w();
            assert_eq!(got.battery, battery);
            assert_eq!(got.gps.is_some(), r.gps.is_some());
            if let (Some(g), Some(want)) = (&got.gps, &r.gps) {
                // serde_json's default float parser may differ in the last bit.
                assert!((g.lat_deg - want.fix.lat).abs() < 1e-12);
                assert_eq!(g.age_ms, Some(want.age_ms));
                assert_eq!(g.mode.as_deref(), Some("3d"));
            }
        }
    }

    #[test]
    fn compact_round_trips_within_its_scales() {
        let rs = records(100);
        let payload = Encoding::Compact.encode(&rs).unwrap();
        let got = match decode(&telemetry("x"), None, &payload).unwrap() {
            Decoded::Records(r) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(got.len(), rs.len());
        for (g, r) in got.iter().zip(&rs) {
            assert_eq!(g.record_id, r.record_id);
            assert_eq!(g.seq, Some(r.seq));
            assert_eq!(g.time, r.timestamp);
            assert_eq!(g.encoding, Encoding::Compact);
            assert_eq!(g.scooter.odometer_m, r.scooter.odometer_m);
            let close = |a: Option<f64>, b: Option<f64>, eps: f64| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= eps,
                (None, None) => true,
                _ => false,
            };
            assert!(close(g.scooter.speed_kmh, r.scooter.speed_kmh, 0.006));
            assert!(close(g.battery.voltage_v, r.battery.voltage_v, 0.006));
            assert_eq!(g.gps.is_some(), r.gps.is_some());
            if let (Some(gp), Some(rp)) = (&g.gps, &r.gps) {
                assert!((gp.lat_deg - rp.fix.lat).abs() < 1e-6);
                assert_eq!(gp.age_ms, Some(rp.age_ms));
            }
        }
        // The one-pass column decoder agrees with the per-value accessor.
        let b = compact::decode(&payload).unwrap();
        for f in &b.fields {
            let col = b.column(&f.name).unwrap();
            for (i, v) in col.iter().enumerate() {
                assert_eq!(*v, b.value(&f.name, i), "{} at {i}", f.name);
            }
        }
    }

    #[test]
    fn legacy_is_keyed_by_topic_scooter_and_time() {
        let rs = records(100);
        let no_fix = rs
            .iter()
            .find(|r| r.gps.is_none())
            .expect("a record without fix");
        let with_fix = rs.iter().find(|r| r.gps.is_some()).unwrap();
        for r in [no_fix, with_fix] {
            let payload = Encoding::Legacy.encode(std::slice::from_ref(r)).unwrap();
            let a = one(decode(&telemetry("scooter-a"), None, &payload).unwrap());
            let b = one(decode(&telemetry("scooter-a"), None, &payload).unwrap());
            assert_eq!(a.record_id, b.record_id);
            assert_eq!(a.key, KeySource::Derived);
            assert_eq!(a.scooter_id, "scooter-a");
            assert_eq!(a.time, r.timestamp);
            assert_eq!(a.seq, None);
            assert_eq!(a.gps.is_some(), r.gps.is_some(), "0,0 means no fix");
            assert_eq!(a.scooter.trip_distance_m, r.scooter.trip_distance_m);
            assert_eq!(a.battery.temp1_c, r.battery.temp1_c);
            let other = one(decode(&telemetry("scooter-b"), None, &payload).unwrap());
            assert_ne!(other.record_id, a.record_id);
        }
    }

    #[test]
    fn malformed_messages_are_rejected_with_a_reason() {
        let t = telemetry("s");
        for (payload, want) in [
            (&b"not json"[..], "neither JSON"),
            (b"{\"schema\":\"other\"}", "unknown schema"),
            (b"{\"timestamp\":\"yesterday\",\"battery_info\":{}}", "RFC 3339"),
            (b"{\"timestamp\":\"2025-06-01T12:00:00Z\",\"battery_info\":null}", "legacy"),
            (b"\x78\x9c garbage", "compact"),
            (
                b"{\"schema\":\"m365.telemetry\",\"v\":2,\"record_id\":\"0197a6a2-0000-7000-8000-000000000000\"}",
                "json",
            ),
        ] {
            let e = decode(&t, None, payload).unwrap_err();
            assert!(e.0.contains(want), "{:?}: {e}", String::from_utf8_lossy(payload));
        }
        let status = TopicMatch {
            kind: TopicKind::Status,
            scooter_id: "s".into(),
        };
        assert!(decode(&status, None, b"[1,2]").is_err());
        assert!(decode(&status, None, b"{\"ts\":5}").is_err());
    }

    #[test]
    fn events_carry_scooter_value_and_time() {
        let av = TopicMatch {
            kind: TopicKind::Availability,
            scooter_id: "s9".into(),
        };
        match decode(&av, None, b"online").unwrap() {
            Decoded::Event(e) => {
                assert_eq!(e.scooter_id, "s9");
                assert_eq!(e.value.as_deref(), Some("online"));
            }
            other => panic!("{other:?}"),
        }
        let st = TopicMatch {
            kind: TopicKind::Status,
            scooter_id: "s9".into(),
        };
        match decode(
            &st,
            None,
            br#"{"v":1,"ts":"2025-06-01T12:00:00.000Z","sampled":3}"#,
        )
        .unwrap()
        {
            Decoded::Event(e) => {
                assert_eq!(
                    e.time,
                    Some(Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap())
                );
                assert_eq!(e.detail.unwrap()["sampled"], 3);
            }
            other => panic!("{other:?}"),
        }
    }

    fn ride(id: &str) -> TopicMatch {
        TopicMatch {
            kind: TopicKind::RideEvent,
            scooter_id: id.into(),
        }
    }

    #[test]
    fn ride_events_decode_in_all_three_encodings() {
        let fix = records(1).remove(0).gps.unwrap();
        let kind = m365_pipeline::EventKind::BatteryLow {
            percent: 14,
            threshold: 15,
        };
        let t = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
        let r = Record::from_sample(Sample::event("s1", t, kind, Some(fix.clone())), 4);
        for encoding in [Encoding::Json, Encoding::Compact, Encoding::Legacy] {
            let payload = encoding.encode_event(&r).unwrap();
            let content_type = Some(encoding.content_type());
            let got = match decode(&ride("topic-id"), content_type, &payload).unwrap() {
                Decoded::RideEvent(e) => e,
                other => panic!("{other:?}"),
            };
            assert_eq!(got.event, "battery_low", "{encoding:?}");
            assert_eq!(got.time, r.timestamp, "{encoding:?}");
            assert_eq!(got.data["percent"], 14, "{encoding:?}");
            assert_eq!(got.data["threshold"], 15, "{encoding:?}");
            assert_eq!(got.encoding, encoding);
            let g = got.gps.unwrap();
            assert!((g.lat_deg - fix.fix.lat).abs() < 1e-12, "{encoding:?}");
            if encoding == Encoding::Legacy {
                assert_eq!(got.key, KeySource::Derived);
                assert_eq!(got.scooter_id, "topic-id");
                assert_eq!(got.seq, None);
                assert_eq!(
                    got.record_id,
                    legacy_event_key("topic-id", "battery_low", t)
                );
            } else {
                assert_eq!(got.key, KeySource::RecordId);
                assert_eq!(got.record_id, r.record_id);
                assert_eq!(got.scooter_id, "s1");
                assert_eq!(got.seq, Some(4));
            }
        }
        // Without a fix, no position.
        let bare = Record::from_sample(
            Sample::event("s1", t, m365_pipeline::EventKind::Locked, None),
            5,
        );
        let payload = Encoding::Legacy.encode_event(&bare).unwrap();
        match decode(&ride("s1"), None, &payload).unwrap() {
            Decoded::RideEvent(e) => {
                assert!(e.gps.is_none());
                assert!(e.data.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_ride_events_are_rejected() {
        for (payload, why) in [
            (&b"{\"schema\":\"m365.telemetry\"}"[..], "unknown schema"),
            (
                b"{\"timestamp\":\"2025-06-01T12:00:00Z\",\"event\":\"\"}",
                "not an event name",
            ),
            (
                b"{\"timestamp\":\"yesterday\",\"event\":\"locked\"}",
                "RFC 3339",
            ),
            (b"{\"event\":\"locked\"}", "legacy event"),
            (b"\x78\x9c garbage", "compact event"),
            (b"\x00", "neither JSON"),
        ] {
            let e = decode(&ride("s1"), None, payload).unwrap_err();
            assert!(e.0.contains(why), "{e} should mention {why}");
        }
    }
}
