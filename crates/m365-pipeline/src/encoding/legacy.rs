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
//! * a reading that failed is `null` instead of a made-up value;
//! * no fix: the earlier client sent `0,0` ("Null Island") as if it were a real position. Here
//!   `gpsinfo` carries the latest fix the sampler had (its age is in the `json` encoding); only
//!   before the first fix since start is `gpsinfo` `null`. The reference bridge then rejects that
//!   one message (it cannot build a point) and keeps running; no false position is stored.

use chrono::SecondsFormat;
use serde::Serialize;

use crate::record::Record;

/// The earlier client's top-level object.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Position block, `null` before the first fix.
    pub gpsinfo: Option<LegacyGps>,
}

/// `battery_info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LegacyGps {
    /// Decimal degrees (float).
    pub latitude: f64,
    /// Decimal degrees (float).
    pub longitude: f64,
    /// Metres above mean sea level (float); `null` for a 2D fix.
    pub altitude: Option<f32>,
    /// Speed over ground, km/h (float).
    pub gps_speed: Option<f32>,
}

/// Rounds to `decimals` and narrows to f32 so the JSON shows e.g. `36.76`, not `36.759998`.
fn f32_rounded(v: f64, decimals: i32) -> f32 {
    let p = 10f64.powi(decimals);
    ((v * p).round() / p) as f32
}

impl LegacyTelemetry {
    /// Maps a record onto the earlier client's layout.
    pub fn from_record(r: &Record) -> Self {
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
            gpsinfo: r.gps.as_ref().map(|g| LegacyGps {
                latitude: g.fix.lat,
                longitude: g.fix.lon,
                altitude: g.fix.alt_msl_m.map(|v| f32_rounded(v, 1)),
                gps_speed: g.fix.speed_kmh().map(|v| f32_rounded(v, 2)),
            }),
        }
    }
}
