//! `[events]`: the thresholds of the ride events (trips, low battery, moved while locked).

use super::reader::Section;
use std::time::Duration;

pub(crate) const KEYS: &[&str] = &[
    "battery_low",
    "trip_start_speed",
    "trip_end_after",
    "moved_radius",
    "moved_speed",
];

/// The effective `[events]` settings; `docs/events.md` says what each event means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventsConfig {
    /// A charge at or below this percentage is low; 0 turns the event off.
    pub battery_low_percent: u8,
    /// Wheel speed that starts a trip, km/h.
    pub trip_start_kmh: f64,
    /// A trip ends after this long below the start speed.
    pub trip_end_after: Duration,
    /// A locked scooter whose position leaves this radius has moved, metres.
    pub moved_radius_m: f64,
    /// A locked scooter whose wheel turns faster than this has moved, km/h.
    pub moved_wheel_kmh: f64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            battery_low_percent: 15,
            trip_start_kmh: 3.0,
            trip_end_after: Duration::from_secs(60),
            moved_radius_m: 30.0,
            moved_wheel_kmh: 2.0,
        }
    }
}

pub(crate) fn read(section: &mut Section<'_, '_>) -> EventsConfig {
    let d = EventsConfig::default();
    EventsConfig {
        battery_low_percent: section
            .integer("battery_low", 0..=100)
            .and_then(|p| u8::try_from(p.value).ok())
            .unwrap_or(d.battery_low_percent),
        trip_start_kmh: section
            .number("trip_start_speed", 0.5..=50.0)
            .map_or(d.trip_start_kmh, |v| v.value),
        trip_end_after: section
            .duration(
                "trip_end_after",
                Duration::from_secs(1)..=Duration::from_secs(3600),
            )
            .map_or(d.trip_end_after, |v| v.value),
        moved_radius_m: section
            .number("moved_radius", 5.0..=10_000.0)
            .map_or(d.moved_radius_m, |v| v.value),
        moved_wheel_kmh: section
            .number("moved_speed", 0.5..=50.0)
            .map_or(d.moved_wheel_kmh, |v| v.value),
    }
}
