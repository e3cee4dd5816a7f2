//! Ride events detected from successive samples: a pure state machine (no I/O, no clock of its
//! own) that the sampling loop feeds with every sample and every link loss, and that answers
//! with the [`EventKind`]s to publish. docs/events.md describes every event, its thresholds and
//! its hysteresis.
//!
//! Time is a monotonic [`Instant`] passed in by the caller: the system clock of a Raspberry Pi
//! may jump (NTP, the modem setting it), and a jump must neither end a trip nor stretch one.
//!
//! Rules shared by every event:
//! - a reading that is missing (`None`) never produces an event, and never counts as a change;
//! - state transitions (locked/unlocked, charging started/stopped) are measured against a
//!   baseline that the first reading establishes silently;
//! - conditions someone must act on (an error or warning code, a low battery) are reported when
//!   first seen, even in the first sample.

use std::time::{Duration, Instant};

use m365_gps::{Fix, FixMode};
use m365_pipeline::{EventKind, MoveEvidence, Sample};

/// Points above the low-battery threshold the charge must reach before the next low-battery
/// event can fire.
pub const BATTERY_LOW_REARM_POINTS: u8 = 5;
/// Battery current below which charging starts, amperes (the current is negative while
/// charging).
pub const CHARGING_START_A: f64 = -0.2;
/// Battery current above which a charge counts as stopped, amperes, when it stays there for
/// [`CHARGING_STOP_SAMPLES`] samples in a row.
pub const CHARGING_STOP_A: f64 = -0.05;
/// Samples in a row above [`CHARGING_STOP_A`] that stop a charge.
pub const CHARGING_STOP_SAMPLES: u8 = 2;
/// Wheel speed below which the scooter counts as standing, km/h: charging can only start then
/// (regenerative braking also drives the current negative).
pub const STANDING_KMH: f64 = 1.0;
/// Fixes with a larger horizontal dilution of precision are not trusted for positions.
pub const MAX_HDOP: f64 = 5.0;

/// Thresholds of the event detector (`[events]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct EventConfig {
    /// A charge at or below this percentage is low (`battery_low`); 0 turns the event off.
    pub battery_low_percent: u8,
    /// Wheel speed that starts a trip, km/h (`trip_start_speed`). A trip also counts as moving
    /// while the speed stays at or above it.
    pub trip_start_kmh: f64,
    /// A trip ends after this long below the start speed (`trip_end_after`); the same stillness
    /// re-arms the moved-while-locked alarm after it fired.
    pub trip_end_after: Duration,
    /// A locked scooter whose GPS position leaves this radius around where it was locked has
    /// moved, metres (`moved_radius`). Only fixes with a 2D or 3D solution and an HDOP of at most
    /// [`MAX_HDOP`] count.
    pub moved_radius_m: f64,
    /// A locked scooter whose wheel turns faster than this has moved, km/h (`moved_speed`).
    pub moved_wheel_kmh: f64,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            battery_low_percent: 15,
            trip_start_kmh: 3.0,
            trip_end_after: Duration::from_secs(60),
            moved_radius_m: 30.0,
            moved_wheel_kmh: 2.0,
        }
    }
}

/// What an error code means (protocol.md §6.9), `"unknown error N"` for an undocumented one.
pub fn error_text(code: u16) -> String {
    let text = match code {
        0 => "no error",
        10 => "dashboard communication abnormal",
        11 => "motor phase A current abnormal",
        12 => "motor phase B current abnormal",
        13 => "motor phase C current abnormal",
        14 => "accelerator hall sensor abnormal",
        15 => "brake hall sensor abnormal",
        18 => "motor hall sensor abnormal",
        21 => "BMS communication error",
        22 => "BMS password wrong",
        23 => "BMS serial abnormal",
        24 => "system voltage abnormal",
        26 => "flash save error",
        27 => "controller password wrong",
        28 => "MOS high bridge abnormal",
        29 => "MOS low bridge abnormal",
        31 => "program jumping error",
        35 => "scooter serial wrong",
        39 => "battery temperature sensor abnormal",
        40 => "controller temperature sensor abnormal",
        other => return format!("unknown error {other}"),
    };
    text.to_owned()
}

/// What a warning code means (protocol.md §6.9), `"unknown warning N"` for an undocumented one.
pub fn warning_text(code: u16) -> String {
    let text = match code {
        0 => "no warning",
        LOCK_WARNING => "vehicle in lock mode",
        12 => "battery overcharged, regenerative braking less effective",
        other => return format!("unknown warning {other}"),
    };
    text.to_owned()
}

/// Warning 9, "vehicle in lock mode": the lock state seen through the warning register. The
/// locked/unlocked events already say it, so it raises no warning event of its own.
const LOCK_WARNING: u16 = 9;

/// Whether a fix is good enough to measure a displacement: a 2D or 3D solution, finite
/// coordinates, and an HDOP of at most [`MAX_HDOP`] (a fix without an HDOP is accepted).
pub(crate) fn usable_position(fix: &Fix) -> Option<(f64, f64)> {
    let solved = matches!(fix.mode, FixMode::TwoD | FixMode::ThreeD);
    let precise = fix.hdop.is_none_or(|h| h <= MAX_HDOP);
    (solved && precise && fix.lat.is_finite() && fix.lon.is_finite()).then_some((fix.lat, fix.lon))
}

/// The usable position of a sample, if any.
pub(crate) fn sample_position(sample: &Sample) -> Option<(f64, f64)> {
    sample.gps.as_ref().and_then(|g| usable_position(&g.fix))
}

/// Great-circle distance between two positions (latitude, longitude in degrees), metres.
///
/// The trigonometry is the `libm` crate's: these are the daemon's only calls into a maths
/// library, and the standard library's would link the system's `libm.so` (0.3 MB resident).
pub(crate) fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    use libm::{asin, cos, sin};
    const EARTH_RADIUS_M: f64 = 6_371_008.8;
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.1 - a.1).to_radians();
    let h = sin(dlat / 2.0).powi(2) + cos(lat1) * cos(lat2) * sin(dlon / 2.0).powi(2);
    2.0 * EARTH_RADIUS_M * asin(h.sqrt().min(1.0))
}

/// Charging detection with hysteresis on the battery current, shared with adaptive sampling so
/// both agree on when the scooter charges.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChargeDetector {
    /// `None` until the first current reading set the baseline.
    charging: Option<bool>,
    /// Readings in a row above [`CHARGING_STOP_A`] while charging.
    above_stop: u8,
}

impl ChargeDetector {
    /// Whether the battery is charging, as far as known.
    pub(crate) fn charging(&self) -> bool {
        self.charging == Some(true)
    }

    /// Feeds one current reading. `may_start` is false while the scooter moves (regenerative
    /// braking). Returns the new state when it changed; the baseline is set silently.
    pub(crate) fn update(&mut self, current_a: Option<f64>, may_start: bool) -> Option<bool> {
        let current = current_a.filter(|c| c.is_finite())?;
        let starts = may_start && current < CHARGING_START_A;
        match self.charging {
            None => {
                self.charging = Some(starts);
                self.above_stop = 0;
                None
            }
            Some(false) if starts => {
                self.charging = Some(true);
                self.above_stop = 0;
                Some(true)
            }
            Some(false) => None,
            Some(true) if current > CHARGING_STOP_A => {
                self.above_stop = self.above_stop.saturating_add(1);
                if self.above_stop >= CHARGING_STOP_SAMPLES {
                    self.charging = Some(false);
                    self.above_stop = 0;
                    Some(false)
                } else {
                    None
                }
            }
            Some(true) => {
                self.above_stop = 0;
                None
            }
        }
    }
}

/// A trip in progress.
#[derive(Debug, Clone)]
struct Trip {
    start_odometer_m: Option<u32>,
    last_odometer_m: Option<u32>,
    start_percent: Option<u8>,
    last_percent: Option<u8>,
    first_moving: Instant,
    last_moving: Instant,
    top_speed_kmh: f64,
    /// Whether the latest speed reading was below the start speed.
    standing: bool,
    /// Energy integrated so far, watt-hours, and its value at the last moving sample.
    energy_wh: f64,
    energy_at_last_moving_wh: f64,
    power_seen: bool,
    last_power: Option<(Instant, f64)>,
    /// Distance integrated from the wheel speed, metres: used when no odometer was read.
    wheel_m: f64,
    wheel_at_last_moving_m: f64,
    last_speed: Option<(Instant, f64)>,
}

impl Trip {
    fn start(now: Instant, sample: &Sample, speed_kmh: f64) -> Trip {
        let mut trip = Trip {
            start_odometer_m: sample.scooter.odometer_m,
            last_odometer_m: sample.scooter.odometer_m,
            start_percent: sample.battery.percent,
            last_percent: sample.battery.percent,
            first_moving: now,
            last_moving: now,
            top_speed_kmh: speed_kmh,
            standing: false,
            energy_wh: 0.0,
            energy_at_last_moving_wh: 0.0,
            power_seen: false,
            last_power: None,
            wheel_m: 0.0,
            wheel_at_last_moving_m: 0.0,
            last_speed: Some((now, speed_kmh)),
        };
        trip.integrate_power(now, sample, Duration::MAX);
        trip
    }

    /// Adds a sample taken during the trip. Power and wheel speed are integrated with the
    /// trapezoid rule, except across gaps longer than `trip_end_after` (the link was down: what
    /// happened meanwhile is unknown). Regenerative braking (negative power) counts against the
    /// energy drawn.
    fn add(&mut self, now: Instant, sample: &Sample, speed_kmh: Option<f64>, config: &EventConfig) {
        if let Some(odo) = sample.scooter.odometer_m {
            self.start_odometer_m.get_or_insert(odo);
            self.last_odometer_m = Some(odo);
        }
        if let Some(p) = sample.battery.percent {
            self.start_percent.get_or_insert(p);
            self.last_percent = Some(p);
        }
        self.integrate_power(now, sample, config.trip_end_after);
        if let Some(v) = speed_kmh {
            if let Some((t0, v0)) = self.last_speed {
                let dt = now.saturating_duration_since(t0);
                if dt <= config.trip_end_after {
                    self.wheel_m += (v0 + v) / 2.0 / 3.6 * dt.as_secs_f64();
                }
            }
            self.last_speed = Some((now, v));
            self.standing = v < config.trip_start_kmh;
            if !self.standing {
                self.last_moving = now;
                self.top_speed_kmh = self.top_speed_kmh.max(v);
                self.energy_at_last_moving_wh = self.energy_wh;
                self.wheel_at_last_moving_m = self.wheel_m;
            }
        }
    }

    fn integrate_power(&mut self, now: Instant, sample: &Sample, max_gap: Duration) {
        let Some(power) = sample.battery.power_w().filter(|p| p.is_finite()) else {
            return;
        };
        self.power_seen = true;
        if let Some((t0, p0)) = self.last_power {
            let dt = now.saturating_duration_since(t0);
            if dt <= max_gap {
                self.energy_wh += (p0 + power) / 2.0 * dt.as_secs_f64() / 3600.0;
            }
        }
        self.last_power = Some((now, power));
    }

    /// The trip-ended event: distance by odometer (by integrated wheel speed when no odometer
    /// was read), duration and energy from the first to the last moving sample.
    fn ended(&self) -> EventKind {
        let distance_m = match (self.start_odometer_m, self.last_odometer_m) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => self.wheel_at_last_moving_m.max(0.0).round() as u32,
        };
        let duration = self
            .last_moving
            .saturating_duration_since(self.first_moving);
        let hours = duration.as_secs_f64() / 3600.0;
        let avg_speed_kmh = if hours > 0.0 {
            round2(f64::from(distance_m) / 1000.0 / hours)
        } else {
            0.0
        };
        EventKind::TripEnded {
            distance_m,
            duration_s: duration.as_secs_f64().round() as u32,
            energy_wh: self
                .power_seen
                .then(|| round2(self.energy_at_last_moving_wh)),
            battery_used_percent: match (self.start_percent, self.last_percent) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            },
            avg_speed_kmh,
            top_speed_kmh: round2(self.top_speed_kmh),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Watches a locked scooter for movement.
#[derive(Debug, Clone)]
struct LockWatch {
    /// Where it was locked (or came to rest again): the first usable fix when none was known.
    anchor: Option<(f64, f64)>,
    /// Whether the next movement raises the alarm.
    armed: bool,
    /// After the alarm: since when it stands still, and where.
    still_since: Option<Instant>,
    still_at: Option<(f64, f64)>,
}

impl LockWatch {
    fn new(position: Option<(f64, f64)>) -> LockWatch {
        LockWatch {
            anchor: position,
            armed: true,
            still_since: None,
            still_at: None,
        }
    }

    fn check(
        &mut self,
        now: Instant,
        speed_kmh: Option<f64>,
        position: Option<(f64, f64)>,
        config: &EventConfig,
    ) -> Option<EventKind> {
        let wheel = speed_kmh.filter(|v| *v > config.moved_wheel_kmh);
        if self.armed {
            if self.anchor.is_none() {
                self.anchor = position;
            }
            let distance_m = self.anchor.zip(position).map(|(a, p)| distance_m(a, p));
            let evidence = if wheel.is_some() {
                MoveEvidence::Wheel
            } else if distance_m.is_some_and(|d| d > config.moved_radius_m) {
                MoveEvidence::Gps
            } else {
                return None;
            };
            self.armed = false;
            self.still_since = None;
            self.still_at = position;
            return Some(EventKind::MovedWhileLocked {
                evidence,
                distance_m: distance_m.map(round2),
                speed_kmh: speed_kmh.map(round2),
            });
        }
        // After the alarm: re-armed once it stood still for `trip_end_after`, around where it
        // came to rest.
        let drifted = self
            .still_at
            .zip(position)
            .is_some_and(|(a, p)| distance_m(a, p) > config.moved_radius_m);
        if wheel.is_some() || drifted {
            self.still_since = None;
            self.still_at = position.or(self.still_at);
            return None;
        }
        if speed_kmh.is_none() && position.is_none() {
            // Nothing read: no evidence either way.
            return None;
        }
        if self.still_at.is_none() {
            self.still_at = position;
        }
        let since = *self.still_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= config.trip_end_after {
            *self = LockWatch::new(self.still_at.or(position));
        }
        None
    }
}

/// A code register (error or warning) and the events its changes raise.
#[derive(Debug, Clone, Copy, Default)]
struct CodeWatch {
    last: Option<u16>,
}

/// What a code register did.
enum CodeChange {
    Raised(u16),
    Cleared(u16),
}

impl CodeWatch {
    fn update(&mut self, code: Option<u16>) -> Option<CodeChange> {
        let code = code?;
        let before = self.last.replace(code);
        match before {
            Some(b) if b == code => None,
            _ if code != 0 => Some(CodeChange::Raised(code)),
            Some(b) => Some(CodeChange::Cleared(b)),
            None => None,
        }
    }
}

/// The event detector: feed it every sample ([`RideEvents::observe`]) and every link loss and
/// recovery, publish what it returns.
#[derive(Debug, Clone)]
pub struct RideEvents {
    config: EventConfig,
    /// `None` until the first lock reading.
    locked: Option<bool>,
    lock_watch: Option<LockWatch>,
    trip: Option<Trip>,
    charge: ChargeDetector,
    low_armed: bool,
    errors: CodeWatch,
    warnings: CodeWatch,
    last_sample: Option<Instant>,
    /// When the link was reported lost, while it is.
    lost_at: Option<Instant>,
}

impl RideEvents {
    /// A detector with `config`, before any sample.
    pub fn new(config: EventConfig) -> Self {
        RideEvents {
            config,
            locked: None,
            lock_watch: None,
            trip: None,
            charge: ChargeDetector::default(),
            low_armed: true,
            errors: CodeWatch::default(),
            warnings: CodeWatch::default(),
            last_sample: None,
            lost_at: None,
        }
    }

    /// The thresholds in use.
    pub fn config(&self) -> &EventConfig {
        &self.config
    }

    /// Whether a trip is in progress (started and not yet ended).
    pub fn trip_in_progress(&self) -> bool {
        self.trip.is_some()
    }

    /// Whether the battery is charging, as far as the readings tell.
    pub fn charging(&self) -> bool {
        self.charge.charging()
    }

    /// The events one sample, taken at `now`, shows. A sample after [`RideEvents::link_lost`]
    /// first restores the link (as [`RideEvents::link_restored`] would). A sample that itself
    /// reports an event ([`Sample::event`]) carries no readings and is ignored.
    pub fn observe(&mut self, now: Instant, sample: &Sample) -> Vec<EventKind> {
        if sample.event.is_some() {
            return Vec::new();
        }
        let mut events = self.link_restored(now);
        let config = &self.config;
        let speed = sample
            .scooter
            .speed_kmh
            .filter(|v| v.is_finite())
            .map(f64::abs);
        let position = sample_position(sample);
        let lock_reading = sample.scooter.locked;

        // The trip: count this sample in, then decide whether it ended.
        if let Some(trip) = &mut self.trip {
            trip.add(now, sample, speed, config);
            let locked = lock_reading == Some(true);
            let stood_long = trip.standing
                && now.saturating_duration_since(trip.last_moving) >= config.trip_end_after;
            if locked || stood_long {
                events.push(trip.ended());
                self.trip = None;
            }
        }

        // Lock state: the first reading is the baseline. A sample that does not change it
        // (its lock reading may be missing) is checked for movement while locked.
        match (self.locked, lock_reading) {
            (None, Some(locked)) => {
                self.locked = Some(locked);
                self.lock_watch = locked.then(|| LockWatch::new(position));
            }
            (Some(before), Some(locked)) if before != locked => {
                self.locked = Some(locked);
                if locked {
                    events.push(EventKind::Locked);
                    self.lock_watch = Some(LockWatch::new(position));
                } else {
                    events.push(EventKind::Unlocked);
                    self.lock_watch = None;
                }
            }
            _ => {
                if let Some(watch) = &mut self.lock_watch
                    && let Some(event) = watch.check(now, speed, position, config)
                {
                    events.push(event);
                }
            }
        }

        // A trip starts when an unlocked (or not known to be locked) scooter moves.
        if self.trip.is_none()
            && self.locked != Some(true)
            && let Some(v) = speed.filter(|v| *v >= config.trip_start_kmh)
        {
            self.trip = Some(Trip::start(now, sample, v));
            events.push(EventKind::TripStarted {
                odometer_m: sample.scooter.odometer_m,
                battery_percent: sample.battery.percent,
            });
        }

        // Charging: never while moving or during a trip (regenerative braking).
        let standing = speed.is_none_or(|v| v < STANDING_KMH) && self.trip.is_none();
        let percent = sample.battery.percent;
        match self.charge.update(sample.battery.current_a, standing) {
            Some(true) => events.push(EventKind::ChargingStarted { percent }),
            Some(false) => events.push(EventKind::ChargingStopped { percent }),
            None => {}
        }

        // Low battery: once per crossing; re-armed 5 points above the threshold.
        let threshold = config.battery_low_percent;
        if threshold > 0
            && let Some(p) = percent
        {
            if self.low_armed && p <= threshold && !self.charge.charging() {
                self.low_armed = false;
                events.push(EventKind::BatteryLow {
                    percent: p,
                    threshold,
                });
            } else if !self.low_armed && p >= threshold.saturating_add(BATTERY_LOW_REARM_POINTS) {
                self.low_armed = true;
            }
        }

        match self.errors.update(sample.scooter.error_code) {
            Some(CodeChange::Raised(code)) => events.push(EventKind::ErrorRaised {
                code,
                text: error_text(code),
            }),
            Some(CodeChange::Cleared(code)) => events.push(EventKind::ErrorCleared {
                code,
                text: error_text(code),
            }),
            None => {}
        }
        let warning = sample
            .scooter
            .warning_code
            .map(|w| if w == LOCK_WARNING { 0 } else { w });
        match self.warnings.update(warning) {
            Some(CodeChange::Raised(code)) => events.push(EventKind::WarningRaised {
                code,
                text: warning_text(code),
            }),
            Some(CodeChange::Cleared(code)) => events.push(EventKind::WarningCleared {
                code,
                text: warning_text(code),
            }),
            None => {}
        }

        self.last_sample = Some(now);
        events
    }

    /// The link to the scooter dropped and did not come back at once. Returns
    /// [`EventKind::ConnectionLost`] once per outage (nothing when already lost), preceded by
    /// [`EventKind::TripEnded`] when a trip was open and the last speed read showed the scooter
    /// standing: a rider who stops and switches the scooter off ends the trip that way.
    pub fn link_lost(&mut self, now: Instant) -> Vec<EventKind> {
        if self.lost_at.is_some() {
            return Vec::new();
        }
        self.lost_at = Some(now);
        let mut events = Vec::new();
        if let Some(trip) = self.trip.take_if(|t| t.standing) {
            events.push(trip.ended());
        }
        events.push(EventKind::ConnectionLost);
        events
    }

    /// The scooter answers again. Returns [`EventKind::ConnectionRestored`] with the time since
    /// the last sample before the outage (since the loss when there was none), or nothing when
    /// the link was not lost. A trip whose last moving sample is older than `trip_end_after`
    /// ends first.
    pub fn link_restored(&mut self, now: Instant) -> Vec<EventKind> {
        let Some(lost_at) = self.lost_at.take() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        let end_after = self.config.trip_end_after;
        if let Some(trip) = self
            .trip
            .take_if(|t| now.saturating_duration_since(t.last_moving) >= end_after)
        {
            events.push(trip.ended());
        }
        let since = self
            .last_sample
            .filter(|t| *t <= lost_at)
            .unwrap_or(lost_at);
        events.push(EventKind::ConnectionRestored {
            offline_s: now.saturating_duration_since(since).as_secs(),
        });
        // It answers now: the next outage counts from here at the earliest.
        self.last_sample = Some(now);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_gps::chrono::{TimeZone, Utc};
    use m365_gps::{FixQuality, FixSource};
    use m365_pipeline::{BatteryReadings, GpsReading, ScooterReadings};

    const LAT: f64 = 43.3623;
    const LON: f64 = -8.4115;

    /// A parked, locked scooter with every reading present and nothing unusual.
    fn parked() -> Sample {
        Sample {
            scooter_id: "s1".into(),
            system_time: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            scooter: ScooterReadings {
                speed_kmh: Some(0.0),
                odometer_m: Some(1_000_000),
                frame_temp_c: Some(22.0),
                error_code: Some(0),
                warning_code: Some(0),
                locked: Some(true),
                ..ScooterReadings::default()
            },
            battery: BatteryReadings {
                percent: Some(80),
                voltage_v: Some(40.0),
                current_a: Some(0.0),
                ..BatteryReadings::default()
            },
            gps: Some(at(LAT, LON)),
            event: None,
        }
    }

    fn at(lat: f64, lon: f64) -> GpsReading {
        GpsReading {
            fix: Fix {
                time: None,
                lat,
                lon,
                alt_msl_m: None,
                speed_mps: None,
                course_deg: None,
                mode: FixMode::ThreeD,
                quality: FixQuality::Gps,
                sats_used: Some(9),
                hdop: Some(0.9),
                pdop: None,
                vdop: None,
                source: FixSource::Simulated,
            },
            age_ms: 200,
        }
    }

    /// A position `metres` north of the reference.
    fn north(metres: f64) -> GpsReading {
        at(LAT + metres / 111_195.0, LON)
    }

    fn riding(speed: f64) -> Sample {
        let mut s = parked();
        s.scooter.locked = Some(false);
        s.scooter.speed_kmh = Some(speed);
        s.battery.current_a = Some(5.0);
        s
    }

    fn unlocked() -> Sample {
        let mut s = parked();
        s.scooter.locked = Some(false);
        s
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn names(events: &[EventKind]) -> Vec<&'static str> {
        events.iter().map(EventKind::name).collect()
    }

    #[test]
    fn the_first_sample_is_a_silent_baseline() {
        let t0 = Instant::now();
        for first in [parked(), unlocked()] {
            let mut ev = RideEvents::new(EventConfig::default());
            assert!(ev.observe(t0, &first).is_empty(), "{first:?}");
            assert!(ev.observe(secs(t0, 1), &first).is_empty());
        }
        // Charging when the daemon starts is no "charging started" either.
        let mut charging = parked();
        charging.battery.current_a = Some(-1.5);
        let mut ev = RideEvents::new(EventConfig::default());
        assert!(ev.observe(t0, &charging).is_empty());
        assert!(ev.charging());
    }

    #[test]
    fn missing_readings_produce_no_event() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &parked());
        let empty = Sample {
            scooter: ScooterReadings::default(),
            battery: BatteryReadings::default(),
            gps: None,
            ..parked()
        };
        for s in 1..200 {
            assert!(ev.observe(secs(t0, s), &empty).is_empty());
        }
        // The state is kept across the gap: the same readings again are no change either.
        assert!(ev.observe(secs(t0, 200), &parked()).is_empty());
        // A detector that never had a reading stays silent too.
        let mut fresh = RideEvents::new(EventConfig::default());
        assert!(fresh.observe(t0, &empty).is_empty());
        // So does a sample that reports an event (it has no readings), even after a loss.
        ev.link_lost(secs(t0, 300));
        let event = Sample::event("s1", empty.system_time, EventKind::Locked, None);
        assert!(ev.observe(secs(t0, 301), &event).is_empty());
        assert_eq!(
            names(&ev.observe(secs(t0, 302), &parked())),
            ["connection_restored"]
        );
    }

    #[test]
    fn locking_and_unlocking_are_reported() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &parked());
        assert_eq!(
            ev.observe(secs(t0, 1), &unlocked()),
            vec![EventKind::Unlocked]
        );
        assert!(ev.observe(secs(t0, 2), &unlocked()).is_empty());
        assert_eq!(ev.observe(secs(t0, 3), &parked()), vec![EventKind::Locked]);
    }

    #[test]
    fn a_trip_starts_and_ends_with_its_figures() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &unlocked());
        // Walking pace is no trip.
        assert!(ev.observe(secs(t0, 1), &riding(2.5)).is_empty());
        let mut start = riding(18.0);
        start.scooter.odometer_m = Some(1_000_050);
        start.battery.percent = Some(80);
        start.battery.power_w = Some(360.0);
        assert_eq!(
            ev.observe(secs(t0, 10), &start),
            vec![EventKind::TripStarted {
                odometer_m: Some(1_000_050),
                battery_percent: Some(80),
            }]
        );
        // Five minutes at 24 km/h, a sample every 10 s: 2 km, 3 points, 360 W throughout.
        for t in (20..=310u64).step_by(10) {
            let mut ride = riding(24.0);
            ride.scooter.odometer_m = Some(1_000_050 + (t as u32 - 10) * 20 / 3);
            ride.battery.percent = Some(80 - ((t - 10) / 100) as u8);
            ride.battery.power_w = Some(360.0);
            assert!(ev.observe(secs(t0, t), &ride).is_empty(), "{t}");
        }
        // Standing: 59 s after the last moving sample the trip is still open, 60 s ends it.
        let mut stop = unlocked();
        stop.scooter.odometer_m = Some(1_002_050);
        stop.battery.percent = Some(77);
        stop.battery.power_w = Some(0.0);
        assert!(ev.observe(secs(t0, 369), &stop).is_empty());
        assert!(ev.trip_in_progress());
        let ended = ev.observe(secs(t0, 370), &stop);
        assert_eq!(
            ended,
            vec![EventKind::TripEnded {
                distance_m: 2000,
                duration_s: 300,
                // 360 W for the 300 s from the first to the last moving sample.
                energy_wh: Some(30.0),
                battery_used_percent: Some(3),
                avg_speed_kmh: 24.0,
                top_speed_kmh: 24.0,
            }]
        );
        assert!(!ev.trip_in_progress());
        assert!(ev.observe(secs(t0, 371), &stop).is_empty());
    }

    #[test]
    fn a_trip_needs_speed_readings_to_end_and_locking_ends_it() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &unlocked());
        assert_eq!(
            names(&ev.observe(secs(t0, 1), &riding(15.0))),
            ["trip_started"]
        );
        let mut no_speed = riding(15.0);
        no_speed.scooter.speed_kmh = None;
        // Five minutes without a speed reading: nothing ends.
        assert!(ev.observe(secs(t0, 301), &no_speed).is_empty());
        assert!(ev.trip_in_progress());
        // Locked at once after stopping: the trip ends before the lock.
        assert_eq!(
            names(&ev.observe(secs(t0, 310), &parked())),
            ["trip_ended", "locked"]
        );
    }

    #[test]
    fn a_locked_scooter_does_not_start_a_trip() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig {
            moved_wheel_kmh: 50.0,
            ..EventConfig::default()
        });
        ev.observe(t0, &parked());
        let mut pushed = parked();
        pushed.scooter.speed_kmh = Some(10.0);
        assert!(ev.observe(secs(t0, 1), &pushed).is_empty());
        assert!(!ev.trip_in_progress());
    }

    #[test]
    fn the_trip_distance_falls_back_to_the_wheel_speed() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &unlocked());
        let mut ride = riding(18.0);
        ride.scooter.odometer_m = None;
        ride.battery = BatteryReadings::default();
        for s in 1..=101 {
            ev.observe(secs(t0, s), &ride);
        }
        let mut stop = ride.clone();
        stop.scooter.speed_kmh = Some(0.0);
        let events = ev.observe(secs(t0, 161), &stop);
        // 18 km/h for 100 s = 500 m; no power, no percent read.
        let [
            EventKind::TripEnded {
                distance_m,
                duration_s,
                energy_wh,
                battery_used_percent,
                avg_speed_kmh,
                ..
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert_eq!((*distance_m, *duration_s), (500, 100));
        assert_eq!((*energy_wh, *battery_used_percent), (None, None));
        assert!((avg_speed_kmh - 18.0).abs() < 1e-9);
    }

    #[test]
    fn battery_low_fires_once_per_crossing_with_hysteresis() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        let with = |p: u8| {
            let mut s = parked();
            s.battery.percent = Some(p);
            s
        };
        ev.observe(t0, &with(17));
        assert!(ev.observe(secs(t0, 1), &with(16)).is_empty());
        assert_eq!(
            ev.observe(secs(t0, 2), &with(15)),
            vec![EventKind::BatteryLow {
                percent: 15,
                threshold: 15
            }]
        );
        // Bouncing around the threshold: no repeat.
        for (i, p) in [14, 16, 15, 19, 14, 13].into_iter().enumerate() {
            assert!(
                ev.observe(secs(t0, 3 + i as u64), &with(p)).is_empty(),
                "{p}"
            );
        }
        // Up to 20 (threshold + 5) re-arms; the next crossing fires again.
        assert!(ev.observe(secs(t0, 20), &with(20)).is_empty());
        assert!(ev.observe(secs(t0, 21), &with(16)).is_empty());
        assert_eq!(names(&ev.observe(secs(t0, 22), &with(15))), ["battery_low"]);
    }

    #[test]
    fn battery_low_is_told_at_start_but_not_while_charging() {
        let t0 = Instant::now();
        let mut low = parked();
        low.battery.percent = Some(9);
        let mut ev = RideEvents::new(EventConfig::default());
        assert_eq!(names(&ev.observe(t0, &low)), ["battery_low"]);

        let mut charging = low.clone();
        charging.battery.current_a = Some(-2.0);
        let mut ev = RideEvents::new(EventConfig::default());
        assert!(ev.observe(t0, &charging).is_empty());
        // Unplugged while still low (two readings above the stop current end the charge): now
        // it is worth telling.
        let mut unplugged = low.clone();
        unplugged.battery.current_a = Some(0.0);
        assert!(ev.observe(secs(t0, 1), &unplugged).is_empty());
        assert_eq!(
            names(&ev.observe(secs(t0, 2), &unplugged)),
            ["charging_stopped", "battery_low"]
        );

        let mut off = RideEvents::new(EventConfig {
            battery_low_percent: 0,
            ..EventConfig::default()
        });
        let mut empty = parked();
        empty.battery.percent = Some(0);
        assert!(off.observe(t0, &empty).is_empty(), "0 turns the event off");
    }

    #[test]
    fn charging_has_hysteresis_on_the_current() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        let with = |a: f64| {
            let mut s = parked();
            s.battery.current_a = Some(a);
            s
        };
        ev.observe(t0, &with(0.0));
        assert!(
            ev.observe(secs(t0, 1), &with(-0.15)).is_empty(),
            "above -0.2 A"
        );
        assert_eq!(
            ev.observe(secs(t0, 2), &with(-1.8)),
            vec![EventKind::ChargingStarted { percent: Some(80) }]
        );
        // Tapering current at the end of a charge stays a charge.
        assert!(ev.observe(secs(t0, 3), &with(-0.1)).is_empty());
        assert!(
            ev.observe(secs(t0, 4), &with(-0.04)).is_empty(),
            "one sample above"
        );
        assert!(
            ev.observe(secs(t0, 5), &with(-0.06)).is_empty(),
            "resets the count"
        );
        assert!(ev.observe(secs(t0, 6), &with(-0.01)).is_empty());
        let mut missing = with(0.0);
        missing.battery.current_a = None;
        assert!(ev.observe(secs(t0, 7), &missing).is_empty());
        assert_eq!(
            ev.observe(secs(t0, 8), &with(0.0)),
            vec![EventKind::ChargingStopped { percent: Some(80) }]
        );
        assert!(!ev.charging());
    }

    #[test]
    fn regenerative_braking_is_not_charging() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &unlocked());
        ev.observe(secs(t0, 1), &riding(20.0));
        let mut braking = riding(8.0);
        braking.battery.current_a = Some(-4.0);
        assert!(ev.observe(secs(t0, 2), &braking).is_empty());
        // Even at a standstill, while the trip is open.
        braking.scooter.speed_kmh = Some(0.0);
        assert!(ev.observe(secs(t0, 3), &braking).is_empty());
        assert!(!ev.charging());
    }

    #[test]
    fn errors_are_raised_changed_and_cleared_with_their_text() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        let with = |code: Option<u16>| {
            let mut s = parked();
            s.scooter.error_code = code;
            s
        };
        ev.observe(t0, &with(Some(0)));
        assert_eq!(
            ev.observe(secs(t0, 1), &with(Some(21))),
            vec![EventKind::ErrorRaised {
                code: 21,
                text: "BMS communication error".into()
            }]
        );
        assert!(ev.observe(secs(t0, 2), &with(Some(21))).is_empty());
        assert!(ev.observe(secs(t0, 3), &with(None)).is_empty());
        assert_eq!(
            ev.observe(secs(t0, 4), &with(Some(77))),
            vec![EventKind::ErrorRaised {
                code: 77,
                text: "unknown error 77".into()
            }]
        );
        assert_eq!(
            ev.observe(secs(t0, 5), &with(Some(0))),
            vec![EventKind::ErrorCleared {
                code: 77,
                text: "unknown error 77".into()
            }]
        );
        // An error present in the first sample is told.
        let mut fresh = RideEvents::new(EventConfig::default());
        assert_eq!(names(&fresh.observe(t0, &with(Some(14)))), ["error_raised"]);
    }

    #[test]
    fn warnings_are_reported_but_the_lock_warning_is_the_lock_event() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        let with = |locked: bool, code: u16| {
            let mut s = parked();
            s.scooter.locked = Some(locked);
            s.scooter.warning_code = Some(code);
            s
        };
        ev.observe(t0, &with(false, 0));
        assert_eq!(
            ev.observe(secs(t0, 1), &with(true, 9)),
            vec![EventKind::Locked]
        );
        assert_eq!(
            ev.observe(secs(t0, 2), &with(true, 12)),
            vec![EventKind::WarningRaised {
                code: 12,
                text: "battery overcharged, regenerative braking less effective".into()
            }]
        );
        assert_eq!(
            ev.observe(secs(t0, 3), &with(true, 9)),
            vec![EventKind::WarningCleared {
                code: 12,
                text: "battery overcharged, regenerative braking less effective".into()
            }]
        );
        assert_eq!(
            ev.observe(secs(t0, 4), &with(false, 0)),
            vec![EventKind::Unlocked]
        );
        assert_eq!(warning_text(3), "unknown warning 3");
        assert_eq!(error_text(40), "controller temperature sensor abnormal");
    }

    #[test]
    fn moving_a_locked_scooter_by_gps_raises_one_alarm() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &parked());
        let moved = |m: f64| {
            let mut s = parked();
            s.gps = Some(north(m));
            s
        };
        // GPS noise inside the radius.
        assert!(ev.observe(secs(t0, 1), &moved(12.0)).is_empty());
        // A poor fix far away does not count.
        let mut poor = moved(200.0);
        if let Some(g) = &mut poor.gps {
            g.fix.hdop = Some(8.0);
        }
        assert!(ev.observe(secs(t0, 2), &poor).is_empty());
        // The lock read failed in this sample: the scooter is still known to be locked.
        let mut far = moved(45.0);
        far.scooter.locked = None;
        let events = ev.observe(secs(t0, 3), &far);
        let [
            EventKind::MovedWhileLocked {
                evidence: MoveEvidence::Gps,
                distance_m: Some(d),
                speed_kmh: Some(0.0),
            },
        ] = events.as_slice()
        else {
            panic!("{events:?}");
        };
        assert!((d - 45.0).abs() < 0.5, "{d}");
        // Being carried further (the lock read failing now and then): no repeat.
        for s in 4..30 {
            let mut carried = moved(45.0 + 10.0 * s as f64);
            if s % 3 == 0 {
                carried.scooter.locked = None;
            }
            assert!(ev.observe(secs(t0, s), &carried).is_empty());
        }
    }

    #[test]
    fn moving_a_locked_scooter_by_wheel_and_the_re_arming() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        let mut still = parked();
        still.gps = None;
        ev.observe(t0, &still);
        let mut pushed = still.clone();
        pushed.scooter.speed_kmh = Some(-4.0);
        assert_eq!(
            ev.observe(secs(t0, 1), &pushed),
            vec![EventKind::MovedWhileLocked {
                evidence: MoveEvidence::Wheel,
                distance_m: None,
                speed_kmh: Some(4.0),
            }]
        );
        assert!(ev.observe(secs(t0, 2), &pushed).is_empty());
        // Standing still for `trip_end_after` (from 3 s to 63 s) re-arms it.
        for s in 3..=63 {
            assert!(ev.observe(secs(t0, s), &still).is_empty());
        }
        assert_eq!(
            names(&ev.observe(secs(t0, 64), &pushed)),
            ["moved_while_locked"]
        );
        // 1.5 km/h is below the wheel threshold (2 km/h): nothing.
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &still);
        let mut nudged = still.clone();
        nudged.scooter.speed_kmh = Some(1.5);
        assert!(ev.observe(secs(t0, 1), &nudged).is_empty());
    }

    #[test]
    fn unlocking_and_locking_again_sets_a_new_anchor() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &parked());
        let mut away = unlocked();
        away.gps = Some(north(500.0));
        assert_eq!(names(&ev.observe(secs(t0, 1), &away)), ["unlocked"]);
        let mut locked_away = parked();
        locked_away.gps = Some(north(500.0));
        assert_eq!(names(&ev.observe(secs(t0, 2), &locked_away)), ["locked"]);
        // Locked 500 m from the first spot: no alarm there.
        assert!(ev.observe(secs(t0, 3), &locked_away).is_empty());
        // Locked without a fix: the first usable fix becomes the anchor.
        let mut ev = RideEvents::new(EventConfig::default());
        let mut blind = parked();
        blind.gps = None;
        ev.observe(t0, &blind);
        assert!(ev.observe(secs(t0, 1), &locked_away).is_empty());
        assert!(ev.observe(secs(t0, 2), &locked_away).is_empty());
        let mut back = parked();
        back.gps = Some(north(0.0));
        assert_eq!(
            names(&ev.observe(secs(t0, 3), &back)),
            ["moved_while_locked"]
        );
    }

    #[test]
    fn connection_lost_once_and_restored_with_the_offline_time() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        assert!(ev.link_restored(t0).is_empty(), "not lost");
        ev.observe(t0, &parked());
        assert_eq!(ev.link_lost(secs(t0, 5)), vec![EventKind::ConnectionLost]);
        assert!(ev.link_lost(secs(t0, 6)).is_empty());
        assert!(ev.link_lost(secs(t0, 30)).is_empty());
        assert_eq!(
            ev.link_restored(secs(t0, 90)),
            vec![EventKind::ConnectionRestored { offline_s: 90 }]
        );
        assert!(ev.link_restored(secs(t0, 91)).is_empty());
        // A sample after a loss restores the link itself.
        ev.link_lost(secs(t0, 100));
        assert_eq!(
            ev.observe(secs(t0, 112), &parked()),
            vec![EventKind::ConnectionRestored { offline_s: 22 }]
        );
    }

    #[test]
    fn switching_the_scooter_off_after_stopping_ends_the_trip() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &unlocked());
        ev.observe(secs(t0, 1), &riding(20.0));
        ev.observe(secs(t0, 2), &unlocked());
        assert_eq!(
            names(&ev.link_lost(secs(t0, 5))),
            ["trip_ended", "connection_lost"]
        );
        // A link lost while riding keeps the trip; back within a minute it goes on.
        let mut ev = RideEvents::new(EventConfig::default());
        ev.observe(t0, &unlocked());
        ev.observe(secs(t0, 1), &riding(20.0));
        assert_eq!(names(&ev.link_lost(secs(t0, 3))), ["connection_lost"]);
        assert_eq!(
            names(&ev.observe(secs(t0, 20), &riding(20.0))),
            ["connection_restored"]
        );
        assert!(ev.trip_in_progress());
        // Gone for longer than `trip_end_after` after the last moving sample: the trip ended.
        ev.link_lost(secs(t0, 21));
        assert_eq!(
            names(&ev.link_restored(secs(t0, 200))),
            ["trip_ended", "connection_restored"]
        );
    }

    #[test]
    fn distances_on_the_sphere() {
        let d = distance_m((LAT, LON), (LAT + 1.0 / 111.195, LON));
        assert!((d - 1000.0).abs() < 1.0, "{d}");
        assert_eq!(distance_m((LAT, LON), (LAT, LON)), 0.0);
        let mut fix = at(LAT, LON).fix;
        assert!(usable_position(&fix).is_some());
        fix.mode = FixMode::NoFix;
        assert!(usable_position(&fix).is_none());
        fix.mode = FixMode::TwoD;
        fix.hdop = None;
        assert!(usable_position(&fix).is_some(), "no HDOP reported");
        fix.hdop = Some(5.1);
        assert!(usable_position(&fix).is_none());
    }

    /// A commute: unlock, ride with a stop at a traffic light (the battery crossing 15 % on the
    /// way), stand, lock; then someone pushes the locked scooter; the owner comes back, unlocks
    /// and plugs the charger in.
    #[test]
    fn a_scripted_ride() {
        let t0 = Instant::now();
        let mut ev = RideEvents::new(EventConfig::default());
        let mut seen: Vec<(u64, EventKind)> = Vec::new();
        let mut run = |t: u64, s: &Sample, ev: &mut RideEvents| {
            seen.extend(ev.observe(secs(t0, t), s).into_iter().map(|e| (t, e)));
        };
        let mut s = parked();
        s.battery.percent = Some(20);
        run(0, &s, &mut ev);
        s.scooter.locked = Some(false);
        run(10, &s, &mut ev);
        // 20 minutes: accelerating, cruising at 20–25.9 km/h, a 41 s red light at minute 10,
        // standing from 1311 s on.
        let mut odometer = 1_000_000.0_f64;
        let mut top = 0.0_f64;
        for t in 11..=1440u64 {
            let speed = match t {
                11..=20 => (t - 10) as f64 * 2.0,
                600..=640 | 1311.. => 0.0,
                _ => 20.0 + (t % 60) as f64 / 10.0,
            };
            top = top.max(speed);
            odometer += speed / 3.6;
            s.scooter.speed_kmh = Some(speed);
            s.scooter.odometer_m = Some(odometer as u32);
            // One point per 1.3 km.
            s.battery.percent = Some(20 - ((odometer - 1_000_000.0) / 1300.0) as u8);
            s.battery.current_a = Some(if speed > 0.0 { 6.0 } else { 0.3 });
            s.battery.voltage_v = Some(39.0);
            s.gps = Some(north((odometer - 1_000_000.0) / 10.0));
            run(t, &s, &mut ev);
        }
        s.scooter.locked = Some(true);
        s.scooter.warning_code = Some(9);
        run(1450, &s, &mut ev);
        s.scooter.speed_kmh = Some(5.0);
        run(2000, &s, &mut ev);
        s.scooter.speed_kmh = Some(0.0);
        run(2001, &s, &mut ev);
        s.scooter.locked = Some(false);
        s.scooter.warning_code = Some(0);
        run(3000, &s, &mut ev);
        s.battery.current_a = Some(-2.0);
        run(3001, &s, &mut ev);

        let timeline: Vec<(u64, &str)> = seen.iter().map(|(t, e)| (*t, e.name())).collect();
        assert_eq!(
            timeline,
            [
                (10, "unlocked"),
                (12, "trip_started"),
                (1074, "battery_low"),
                (1370, "trip_ended"),
                (1450, "locked"),
                (2000, "moved_while_locked"),
                (3000, "unlocked"),
                (3001, "charging_started"),
            ]
        );
        let Some((
            _,
            EventKind::TripEnded {
                distance_m,
                duration_s,
                energy_wh: Some(energy_wh),
                battery_used_percent,
                avg_speed_kmh,
                top_speed_kmh,
            },
        )) = seen.iter().find(|(_, e)| e.name() == "trip_ended")
        else {
            panic!("{seen:?}");
        };
        let ridden = (odometer - 1_000_000.0) as u32;
        assert!(distance_m.abs_diff(ridden) <= 1, "{distance_m} vs {ridden}");
        assert_eq!(*duration_s, 1310 - 12);
        // 234 W moving, 11.7 W at the red light, from 12 s to 1310 s:
        // (1257 s × 234 W + 41 s × 11.7 W) / 3600 = 81.84 Wh.
        assert!((energy_wh - 81.84).abs() < 0.005, "{energy_wh}");
        // 20 % at the start, a point per 1.3 km.
        assert_eq!(*battery_used_percent, Some((ridden / 1300) as u8));
        let expected_avg = f64::from(*distance_m) / 1000.0 / (1298.0 / 3600.0);
        assert!((avg_speed_kmh - expected_avg).abs() < 0.01);
        assert_eq!(*top_speed_kmh, top);
    }
}
