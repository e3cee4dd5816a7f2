//! The one position type every GPS source produces and the telemetry pipeline consumes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Dimension of a fix, as receivers and gpsd report it. `NoFix` never appears inside a [`Fix`]:
/// an epoch without a fix produces no `Fix` at all. It exists for epoch reports and displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FixMode {
    /// No position.
    NoFix,
    /// Latitude and longitude only.
    #[serde(rename = "2d")]
    TwoD,
    /// Latitude, longitude and altitude.
    #[serde(rename = "3d")]
    ThreeD,
}

/// How the position was computed (GGA quality indicator, RMC/GNS mode indicator, gpsd status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixQuality {
    /// Autonomous GNSS.
    Gps,
    /// Differential (SBAS, DGPS).
    Dgps,
    /// RTK with fixed integers.
    RtkFixed,
    /// RTK float.
    RtkFloat,
    /// Dead reckoning / estimated.
    Estimated,
    /// Precise positioning service.
    Pps,
    /// Not reported by the source.
    Unknown,
}

/// Where a fix came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FixSource {
    /// NMEA 0183 sentences from a serial receiver (or a replayed capture).
    Nmea,
    /// SIM7600 `AT+CGPSINFO` / `AT+CGNSSINFO`.
    Sim7600,
    /// gpsd's JSON protocol.
    Gpsd,
    /// Synthesised by the simulator.
    Simulated,
}

/// One position fix. Every field the receiver did not report is `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    /// UTC time of the fix, from the receiver (not the system clock).
    pub time: Option<DateTime<Utc>>,
    /// Decimal degrees, south negative.
    pub lat: f64,
    /// Decimal degrees, west negative.
    pub lon: f64,
    /// Altitude above mean sea level, metres, when the receiver reported it for this epoch.
    pub alt_msl_m: Option<f64>,
    /// Speed over ground, metres per second.
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees true.
    pub course_deg: Option<f64>,
    /// 2D or 3D (never [`FixMode::NoFix`]).
    pub mode: FixMode,
    /// How the position was computed.
    pub quality: FixQuality,
    /// Satellites used in the solution.
    pub sats_used: Option<u8>,
    /// Horizontal dilution of precision.
    pub hdop: Option<f64>,
    /// Position dilution of precision.
    pub pdop: Option<f64>,
    /// Vertical dilution of precision.
    pub vdop: Option<f64>,
    /// Which source produced it.
    pub source: FixSource,
}

impl Fix {
    /// Speed in km/h, for display.
    pub fn speed_kmh(&self) -> Option<f64> {
        self.speed_mps.map(|v| v * 3.6)
    }
}
