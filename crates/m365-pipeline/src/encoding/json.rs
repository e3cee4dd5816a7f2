//! The documented JSON schema, version 1 (`"v": 1`): one record per message, units in the key
//! names, `null` for anything unknown, with the sequence number and record id for ordering and
//! deduplication. The field list is in `docs/telemetry-schema.md`; changing a key or a unit
//! means a new version.
//!
//! A ride event has its own message, schema `m365.event` version 1 ([`JsonEventV1`]): the same
//! identity, time and `gps` keys as telemetry, the event's name in `event` and its details in
//! `data`.

use chrono::{DateTime, SecondsFormat, Utc};
use m365_gps::{FixMode, FixQuality, FixSource};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::EncodeError;
use crate::event::EventKind;
use crate::record::{GpsReading, Record, TimeSource};

/// Schema name carried in every message.
pub const SCHEMA: &str = "m365.telemetry";

/// Version of this schema.
pub const VERSION: u32 = 1;

/// Schema name carried in every event message.
pub const EVENT_SCHEMA: &str = "m365.event";

/// Version of the event schema.
pub const EVENT_VERSION: u32 = 1;

/// A `json` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonV1 {
    /// Schema version, always 1.
    pub v: u32,
    /// Schema name, always `m365.telemetry`.
    pub schema: String,
    /// Unique record id (UUID v7) for deduplication.
    pub record_id: Uuid,
    /// Scooter id.
    pub scooter_id: String,
    /// Per-scooter sequence number.
    pub seq: u64,
    /// RFC 3339 UTC time of the sample.
    pub ts: String,
    /// Clock the time came from.
    pub ts_source: TimeSource,
    /// Speed, km/h (negative = backwards).
    pub speed_kmh: Option<f64>,
    /// Average speed, km/h.
    pub avg_speed_kmh: Option<f64>,
    /// Trip distance, m.
    pub trip_distance_m: Option<u32>,
    /// Trip riding time, s.
    pub trip_time_s: Option<u32>,
    /// Odometer, m.
    pub odometer_m: Option<u32>,
    /// Time since power-on, s.
    pub uptime_s: Option<u32>,
    /// Frame temperature, °C.
    pub frame_temp_c: Option<f64>,
    /// Remaining range, km.
    pub range_km: Option<f64>,
    /// Error code.
    pub error_code: Option<u16>,
    /// Warning code.
    pub warning_code: Option<u16>,
    /// Lock state.
    pub locked: Option<bool>,
    /// Battery block.
    pub battery: JsonBattery,
    /// Latest fix, `null` when none.
    pub gps: Option<JsonGps>,
}

/// `battery` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonBattery {
    /// Remaining charge, mAh.
    pub remaining_mah: Option<u32>,
    /// Charge, %.
    pub percent: Option<u8>,
    /// Voltage, V.
    pub voltage_v: Option<f64>,
    /// Current, A (negative while charging).
    pub current_a: Option<f64>,
    /// Power, W.
    pub power_w: Option<f64>,
    /// Sensor 1, °C.
    pub temp1_c: Option<i16>,
    /// Sensor 2, °C.
    pub temp2_c: Option<i16>,
    /// Cell voltages, V.
    pub cell_voltages_v: Option<Vec<f64>>,
}

/// `gps` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonGps {
    /// Latitude, decimal degrees.
    pub lat_deg: f64,
    /// Longitude, decimal degrees.
    pub lon_deg: f64,
    /// Altitude above mean sea level, m.
    pub alt_msl_m: Option<f64>,
    /// Speed over ground, km/h.
    pub speed_kmh: Option<f64>,
    /// Course over ground, degrees true.
    pub course_deg: Option<f64>,
    /// `2d` or `3d`.
    pub mode: FixMode,
    /// Fix quality.
    pub quality: FixQuality,
    /// Satellites used.
    pub sats_used: Option<u8>,
    /// HDOP.
    pub hdop: Option<f64>,
    /// PDOP.
    pub pdop: Option<f64>,
    /// VDOP.
    pub vdop: Option<f64>,
    /// Source of the fix.
    pub source: FixSource,
    /// Receiver time of the fix.
    pub fix_time: Option<DateTime<Utc>>,
    /// Age of the fix when the sample was taken, ms.
    pub age_ms: u64,
}

impl JsonV1 {
    /// Maps a record onto schema v1.
    pub fn from_record(r: &Record) -> Self {
        let s = &r.scooter;
        let b = &r.battery;
        JsonV1 {
            v: VERSION,
            schema: SCHEMA.into(),
            record_id: r.record_id,
            scooter_id: r.scooter_id.clone(),
            seq: r.seq,
            ts: r.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            ts_source: r.time_source,
            speed_kmh: s.speed_kmh,
            avg_speed_kmh: s.avg_speed_kmh,
            trip_distance_m: s.trip_distance_m,
            trip_time_s: s.trip_time_s,
            odometer_m: s.odometer_m,
            uptime_s: s.uptime_s,
            frame_temp_c: s.frame_temp_c,
            range_km: s.range_km,
            error_code: s.error_code,
            warning_code: s.warning_code,
            locked: s.locked,
            battery: JsonBattery {
                remaining_mah: b.remaining_mah,
                percent: b.percent,
                voltage_v: b.voltage_v,
                current_a: b.current_a,
                power_w: b.power_w(),
                temp1_c: b.temp1_c,
                temp2_c: b.temp2_c,
                cell_voltages_v: b.cell_voltages_v.clone(),
            },
            gps: r.gps.as_ref().map(JsonGps::from_reading),
        }
    }
}

impl JsonGps {
    /// The `gps` block of a reading.
    pub fn from_reading(g: &GpsReading) -> Self {
        JsonGps {
            lat_deg: g.fix.lat,
            lon_deg: g.fix.lon,
            alt_msl_m: g.fix.alt_msl_m,
            speed_kmh: g.fix.speed_kmh(),
            course_deg: g.fix.course_deg,
            mode: g.fix.mode,
            quality: g.fix.quality,
            sats_used: g.fix.sats_used,
            hdop: g.fix.hdop,
            pdop: g.fix.pdop,
            vdop: g.fix.vdop,
            source: g.fix.source,
            fix_time: g.fix.time,
            age_ms: g.age_ms,
        }
    }
}

/// A `json` event message (schema `m365.event`, version 1): one event per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonEventV1 {
    /// Schema version, always 1.
    pub v: u32,
    /// Schema name, always `m365.event`.
    pub schema: String,
    /// The event's name ([`EventKind::name`]), e.g. `trip_ended`.
    pub event: String,
    /// Unique record id (UUID v7) for deduplication.
    pub record_id: Uuid,
    /// Scooter id.
    pub scooter_id: String,
    /// Per-scooter sequence number of events (telemetry is numbered apart).
    pub seq: u64,
    /// RFC 3339 UTC time of the event.
    pub ts: String,
    /// Clock the time came from.
    pub ts_source: TimeSource,
    /// Where it happened, `null` without a usable fix.
    pub gps: Option<JsonGps>,
    /// The event's details (its fields, units in the names); `{}` for events without any.
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// An event's details as a JSON object, without the `type` tag its stored form carries.
pub(crate) fn event_data(
    kind: &EventKind,
) -> Result<serde_json::Map<String, serde_json::Value>, EncodeError> {
    match serde_json::to_value(kind)? {
        serde_json::Value::Object(mut fields) => {
            fields.remove("type");
            Ok(fields)
        }
        _ => Ok(serde_json::Map::new()),
    }
}

/// The event named `name` with the details `data`: what [`event_data`] took apart.
pub(crate) fn event_from_parts(
    name: &str,
    data: &serde_json::Map<String, serde_json::Value>,
) -> Result<EventKind, serde_json::Error> {
    let mut tagged = data.clone();
    tagged.insert("type".into(), serde_json::Value::String(name.to_owned()));
    serde_json::from_value(serde_json::Value::Object(tagged))
}

impl JsonEventV1 {
    /// Maps an event record onto the event schema; [`EncodeError::NotAnEvent`] for telemetry.
    pub fn from_record(r: &Record) -> Result<Self, EncodeError> {
        let kind = r.event.as_ref().ok_or(EncodeError::NotAnEvent)?;
        Ok(JsonEventV1 {
            v: EVENT_VERSION,
            schema: EVENT_SCHEMA.into(),
            event: kind.name().into(),
            record_id: r.record_id,
            scooter_id: r.scooter_id.clone(),
            seq: r.seq,
            ts: r.timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
            ts_source: r.time_source,
            gps: r.gps.as_ref().map(JsonGps::from_reading),
            data: event_data(kind)?,
        })
    }

    /// The event this message reports, read back from `event` and `data`.
    pub fn kind(&self) -> Result<EventKind, serde_json::Error> {
        event_from_parts(&self.event, &self.data)
    }
}
