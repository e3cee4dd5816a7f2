//! Ride events: what a person or a fleet wants told rather than read off raw samples (a trip
//! ended, the battery is low, the scooter moved while locked). The daemon detects them from
//! successive samples; they travel through the spool like records, so none is lost, and are
//! published one per message on the events topic in the first output's encoding.

use serde::{Deserialize, Serialize};

/// Why a locked scooter is believed to be moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveEvidence {
    /// The GPS position left the radius around where the scooter was locked.
    Gps,
    /// The wheel turned (the controller reports a speed).
    Wheel,
}

/// One event. Serialised with its name in `"type"` and its details beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The scooter started moving (unlocked, wheel speed above the start threshold).
    TripStarted {
        /// Odometer at the start, metres.
        odometer_m: Option<u32>,
        /// Battery at the start, percent.
        battery_percent: Option<u8>,
    },
    /// The scooter stood still long enough for the trip to count as ended.
    TripEnded {
        /// Distance of the trip, metres (odometer difference).
        distance_m: u32,
        /// From the first to the last moving sample, seconds.
        duration_s: u32,
        /// Energy drawn from the battery, watt-hours (integrated power), when power was read.
        energy_wh: Option<f64>,
        /// Battery percent used.
        battery_used_percent: Option<u8>,
        /// Average speed over the trip, km/h (distance / duration).
        avg_speed_kmh: f64,
        /// Highest speed sampled, km/h.
        top_speed_kmh: f64,
    },
    /// The charge fell to or below the configured threshold.
    BatteryLow {
        /// Charge, percent.
        percent: u8,
        /// The threshold that was crossed, percent.
        threshold: u8,
    },
    /// Current started flowing into the battery.
    ChargingStarted {
        /// Charge, percent.
        percent: Option<u8>,
    },
    /// Current stopped flowing into the battery.
    ChargingStopped {
        /// Charge, percent.
        percent: Option<u8>,
    },
    /// The controller reports an error code (or a different one).
    ErrorRaised {
        /// The code.
        code: u16,
        /// What it means, in words.
        text: String,
    },
    /// The error code went back to zero.
    ErrorCleared {
        /// The code that was cleared.
        code: u16,
        /// What it meant.
        text: String,
    },
    /// The controller reports a warning code (or a different one).
    WarningRaised {
        /// The code.
        code: u16,
        /// What it means, in words.
        text: String,
    },
    /// The warning code went back to zero.
    WarningCleared {
        /// The code that was cleared.
        code: u16,
        /// What it meant.
        text: String,
    },
    /// The scooter was locked.
    Locked,
    /// The scooter was unlocked.
    Unlocked,
    /// The scooter moved while locked: the thing a stolen-scooter alarm is about.
    MovedWhileLocked {
        /// What showed it.
        evidence: MoveEvidence,
        /// Distance from where it was locked, metres (GPS evidence).
        distance_m: Option<f64>,
        /// Wheel speed, km/h (wheel evidence).
        speed_kmh: Option<f64>,
    },
    /// The scooter stopped answering (the link dropped and did not come back at once).
    ConnectionLost,
    /// The scooter answers again.
    ConnectionRestored {
        /// How long it was unreachable, seconds.
        offline_s: u64,
    },
}

impl EventKind {
    /// The event's name, as in the `"type"` field.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::TripStarted { .. } => "trip_started",
            EventKind::TripEnded { .. } => "trip_ended",
            EventKind::BatteryLow { .. } => "battery_low",
            EventKind::ChargingStarted { .. } => "charging_started",
            EventKind::ChargingStopped { .. } => "charging_stopped",
            EventKind::ErrorRaised { .. } => "error_raised",
            EventKind::ErrorCleared { .. } => "error_cleared",
            EventKind::WarningRaised { .. } => "warning_raised",
            EventKind::WarningCleared { .. } => "warning_cleared",
            EventKind::Locked => "locked",
            EventKind::Unlocked => "unlocked",
            EventKind::MovedWhileLocked { .. } => "moved_while_locked",
            EventKind::ConnectionLost => "connection_lost",
            EventKind::ConnectionRestored { .. } => "connection_restored",
        }
    }

    /// Every event name, for documentation and Home Assistant triggers.
    pub const NAMES: &'static [&'static str] = &[
        "trip_started",
        "trip_ended",
        "battery_low",
        "charging_started",
        "charging_stopped",
        "error_raised",
        "error_cleared",
        "warning_raised",
        "warning_cleared",
        "locked",
        "unlocked",
        "moved_while_locked",
        "connection_lost",
        "connection_restored",
    ];
}
