//! The earlier client's JSON (`vehicle/1/realtime`), kept byte-compatible in key names, nesting
//! and JSON types so deployed servers keep ingesting it; the values carry the correct scales.
//!
//! What the reference server (an MQTT → PostgreSQL bridge) does with each key decides the types:
//! floats where the earlier client sent `f32`, integers where it sent integers — `uptime_sec`
//! stays a float (`636.0`) because that is what the earlier client produced.
//!
//! Differences from the earlier client, all towards what the server's columns document:
//! * `trip_distance_m` is metres (the earlier client sent the raw 10 m units);
//! * `battery_info.temperature_*` are °C (the earlier client sent the raw byte, °C + 20);
//! * `gpsinfo.gps_speed` is km/h (the earlier client forwarded the modem's knots);
//! * `speed_kmh` is the magnitude of the speed: the server rejects negative speeds, and the
//!   register is negative while the wheel turns backwards;
//! * a reading that failed is `null` instead of a made-up value.
//!
//! **No usable fix** (none yet, or older than `[gps] max_age`): by default `gpsinfo` is what the
//! earlier client sent, latitude, longitude, altitude and speed 0 ([`NoFix::Zeros`]). The
//! earlier server stores that row, its dashboards filter 0,0 out, and the speed and battery rows
//! of the same message are kept; with `gpsinfo: null` the reference bridge rolls back the whole
//! message and loses them. [`NoFix::Null`] sends `null` for servers that handle it. A fix without
//! altitude (2D) or speed sends 0 for the missing value in the zeros form, for the same reason
//! (the server's columns are `NOT NULL`).
//!
//! **Events** ([`LegacyEvent`]) are flat objects in the same style: `timestamp` as above, the
//! event's name in `event`, its fields beside it, and `latitude`/`longitude` when there was a
//! usable fix. They go to the events topic, which the earlier server does not read.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use crate::error::EncodeError;
use crate::event::EventKind;
use crate::record::Record;

/// The earlier client's top-level object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyTelemetry {
    /// RFC 3339 time of the sample.
    pub timestamp: String,
    /// Speed, km/h (float).
    pub speed_kmh: Option<f32>,
    /// Odometer, metres (integer).
    pub total_distance_m: Option<u32>,
    /// Trip distance, metres (integer).
    pub trip_distance_m: Option<u32>,
    /// Remaining range, km (float).
    pub trip_distance_left_km: Option<f32>,
    /// Seconds since power-on (float, as the earlier client sent it).
    pub uptime_sec: Option<f32>,
    /// Frame temperature, °C (float).
    pub frame_temp: Option<f32>,
    /// Battery block.
    pub battery_info: LegacyBattery,
    /// Position block: zeros or `null` without a usable fix ([`NoFix`]).
    pub gpsinfo: Option<LegacyGps>,
}

/// `battery_info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyBattery {
    /// Remaining charge, mAh (integer).
    pub capacity: Option<u32>,
    /// Charge level, % (integer).
    pub percent: Option<u8>,
    /// Current, A (float).
    pub current: Option<f32>,
    /// Voltage, V (float).
    pub voltage: Option<f32>,
    /// Sensor 1, °C (integer).
    pub temperature_1: Option<i16>,
    /// Sensor 2, °C (integer).
    pub temperature_2: Option<i16>,
}

/// `gpsinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyGps {
    /// Decimal degrees (float).
    pub latitude: f64,
    /// Decimal degrees (float).
    pub longitude: f64,
    /// Metres above mean sea level (float); 0 (zeros form) or `null` for a 2D fix.
    pub altitude: Option<f32>,
    /// Speed over ground, km/h (float).
    pub gps_speed: Option<f32>,
}

/// What `gpsinfo` says when a record has no usable fix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoFix {
    /// Latitude, longitude, altitude and speed 0, as the earlier client sent: the earlier
    /// server keeps the message.
    #[default]
    Zeros,
    /// `gpsinfo: null`.
    Null,
}

impl NoFix {
    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NoFix::Zeros => "zeros",
            NoFix::Null => "null",
        }
    }
}

/// Rounds to `decimals` and narrows to f32 so the JSON shows e.g. `36.76`, not `36.759998`.
fn f32_rounded(v: f64, decimals: i32) -> f32 {
    let p = 10f64.powi(decimals);
    ((v * p).round() / p) as f32
}

impl LegacyTelemetry {
    /// Maps a record onto the earlier client's layout; `no_fix` decides `gpsinfo` without a
    /// usable fix.
    pub fn from_record(r: &Record, no_fix: NoFix) -> Self {
        let s = &r.scooter;
        let b = &r.battery;
        LegacyTelemetry {
            timestamp: r.timestamp.to_rfc3339_opts(SecondsFormat::Millis, false),
            speed_kmh: s.speed_kmh.map(|v| f32_rounded(v.abs(), 3)),
            total_distance_m: s.odometer_m,
            trip_distance_m: s.trip_distance_m,
            trip_distance_left_km: s.range_km.map(|v| f32_rounded(v, 2)),
            uptime_sec: s.uptime_s.map(|v| v as f32),
            frame_temp: s.frame_temp_c.map(|v| f32_rounded(v, 1)),
            battery_info: LegacyBattery {
                capacity: b.remaining_mah,
                percent: b.percent,
                current: b.current_a.map(|v| f32_rounded(v, 2)),
                voltage: b.voltage_v.map(|v| f32_rounded(v, 2)),
                temperature_1: b.temp1_c,
                temperature_2: b.temp2_c,
            },
            gpsinfo: match (&r.gps, no_fix) {
                (Some(g), _) => {
                    let zero = || (no_fix == NoFix::Zeros).then_some(0.0);
                    Some(LegacyGps {
                        latitude: g.fix.lat,
                        longitude: g.fix.lon,
                        altitude: g.fix.alt_msl_m.map(|v| f32_rounded(v, 1)).or_else(zero),
                        gps_speed: g.fix.speed_kmh().map(|v| f32_rounded(v, 2)).or_else(zero),
                    })
                }
                (None, NoFix::Zeros) => Some(LegacyGps {
                    latitude: 0.0,
                    longitude: 0.0,
                    altitude: Some(0.0),
                    gps_speed: Some(0.0),
                }),
                (None, NoFix::Null) => None,
            },
        }
    }
}

/// A ride event in the earlier client's flat style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyEvent {
    /// RFC 3339 time of the event (same form as [`LegacyTelemetry::timestamp`]).
    pub timestamp: String,
    /// The event's name ([`EventKind::name`]).
    pub event: String,
    /// The event's fields, at the top level beside `timestamp` and `event`.
    #[serde(flatten)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Where it happened, decimal degrees; absent without a usable fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Where it happened, decimal degrees; absent without a usable fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

impl LegacyEvent {
    /// Maps an event record onto the flat layout; [`EncodeError::NotAnEvent`] for telemetry.
    pub fn from_record(r: &Record) -> Result<Self, EncodeError> {
        let kind = r.event.as_ref().ok_or(EncodeError::NotAnEvent)?;
        Ok(LegacyEvent {
            timestamp: r.timestamp.to_rfc3339_opts(SecondsFormat::Millis, false),
            event: kind.name().into(),
            data: super::json::event_data(kind)?,
            latitude: r.gps.as_ref().map(|g| g.fix.lat),
            longitude: r.gps.as_ref().map(|g| g.fix.lon),
        })
    }

    /// The event this message reports, read back from `event` and the fields beside it.
    pub fn kind(&self) -> Result<EventKind, serde_json::Error> {
        super::json::event_from_parts(&self.event, &self.data)
    }
}
