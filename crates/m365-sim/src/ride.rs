//! A deterministic ride: the physical state behind every register the scooter reports.
//!
//! There is no clock here. The owner calls [`Ride::step`] with an explicit `dt`, and the ride
//! evolves speed, distances, times, the battery ([`Pack`]) and temperatures, following either a
//! repeating plan (idle → accelerate → cruise → brake → park) or a scripted speed trace. The
//! rider's settings (lock, cruise, KERS, light flags, speed mode) live here too, because they
//! change what the ride does: a locked scooter does not move, and pushing it raises the alarm.

use std::time::Duration;

use crate::battery::{AMBIENT_C, Pack};
use crate::profile::{Model, Profile, speed_limits};
use crate::route::{LatLon, Route, RoutePosition};

/// Longest integration step; longer `dt`s are split so results do not depend on how a caller
/// slices time (beyond floating-point rounding).
const MAX_STEP: Duration = Duration::from_millis(100);
/// Rider plus scooter, kg.
const MASS_KG: f64 = 95.0;
/// Rolling resistance coefficient.
const CRR: f64 = 0.012;
/// Drag area, m².
const CDA_M2: f64 = 0.55;
/// Air density, kg/m³.
const RHO: f64 = 1.2;
/// Drivetrain efficiency (battery to wheel).
const EFFICIENCY: f64 = 0.8;
/// Standby draw of the electronics while powered on, W.
const STANDBY_W: f64 = 2.5;
/// Consumption used for the remaining-range estimate, Wh/km.
const WH_PER_KM: f64 = 10.0;
/// Below this speed (m/s) the wheel counts as standing still.
const MOVING_MPS: f64 = 0.05;
/// Thermal time constant of the controller, seconds.
const ESC_TAU_S: f64 = 300.0;

/// Where the default route lies: a park loop in central Berlin.
pub const DEFAULT_CENTRE: LatLon = LatLon {
    lat: 52.5145,
    lon: 13.3501,
};

/// Flag bits of ESC 0xB2 (protocol.md §6.6).
pub mod status {
    /// The scooter is locked.
    pub const LOCKED: u16 = 0x0002;
    /// Someone moved the locked scooter ("phone vibrates").
    pub const ALARM: u16 = 0x0004;
}

/// One repetition of the standard ride.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoopPlan {
    /// Standing, powered on, before setting off (s).
    pub idle_s: f64,
    /// Acceleration (m/s²).
    pub accel_mps2: f64,
    /// Cruising speed (km/h), limited by the speed mode.
    pub cruise_kmh: f64,
    /// Time at cruising speed (s).
    pub cruise_s: f64,
    /// Deceleration while braking (m/s², positive).
    pub brake_mps2: f64,
    /// Parked after stopping (s) before the loop starts again.
    pub park_s: f64,
}

impl Default for LoopPlan {
    fn default() -> Self {
        LoopPlan {
            idle_s: 5.0,
            accel_mps2: 1.5,
            cruise_kmh: 20.0,
            cruise_s: 60.0,
            brake_mps2: 2.5,
            park_s: 20.0,
        }
    }
}

/// What the rider does.
#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    /// Stands still, powered on.
    Parked,
    /// Repeats a [`LoopPlan`] forever.
    Loop(LoopPlan),
    /// Follows `(seconds, km/h)` points with linear interpolation; after the last point the
    /// scooter holds that speed. Points must be in increasing time order.
    Trace(Vec<(f64, f64)>),
}

/// Where a ride stands in its loop plan (or what a trace is doing at the moment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RidePhase {
    /// Standing before a ride.
    Idle,
    /// Speeding up.
    Accelerate,
    /// Holding speed.
    Cruise,
    /// Slowing down.
    Brake,
    /// Standing after a ride.
    Park,
}

/// What GPS emulation needs at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsSample {
    /// Position and course on the route.
    pub position: RoutePosition,
    /// Ground speed, km/h.
    pub speed_kmh: f64,
}

/// The physical state of one simulated scooter.
#[derive(Debug, Clone)]
pub struct Ride {
    model: Model,
    script: Script,
    phase: RidePhase,
    phase_s: f64,
    script_s: f64,
    speed_mps: f64,
    trip_m: f64,
    odometer_m: f64,
    route_m: f64,
    // Times are exact durations, so whole seconds read as whole seconds however time is sliced.
    power_on: Duration,
    riding: Duration,
    total_power_on: Duration,
    total_riding: Duration,
    esc_temp_c: f64,
    motor_power_w: f64,
    powered: bool,
    locked: bool,
    alarm: bool,
    cruise: bool,
    kers: u16,
    light_flags: u16,
    speed_mode: u16,
    error: u16,
    warning: u16,
    pack: Pack,
    route: Route,
}

impl Ride {
    /// A ride for `profile` following `script`, with a reproducible history (odometer, charge,
    /// cycle counts) derived from `seed`.
    pub fn new(profile: &Profile, script: Script, seed: u64) -> Ride {
        // A tiny deterministic mixer: the history needs variety between scooters, not quality.
        let mix = |k: u64| -> f64 {
            let mut x = seed.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            x ^= x >> 33;
            x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
            x ^= x >> 33;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let imbalance: Vec<f64> = (0..8).map(|k| mix(10 + k) * 2.0 - 1.0).collect();
        let cycles = 5 + (mix(2) * 40.0) as u16;
        let charges = cycles * 2 + (mix(3) * 10.0) as u16;
        let pack = Pack::new(
            profile.battery,
            0.70 + mix(1) * 0.25,
            charges,
            cycles,
            &imbalance,
        );
        let odometer_m = 200_000.0 + (mix(4) * 2_000_000.0).floor();
        Ride {
            model: profile.model,
            script,
            phase: RidePhase::Idle,
            phase_s: 0.0,
            script_s: 0.0,
            speed_mps: 0.0,
            trip_m: 0.0,
            odometer_m,
            route_m: 0.0,
            power_on: Duration::ZERO,
            riding: Duration::ZERO,
            total_power_on: Duration::from_secs((odometer_m / 4.0) as u64),
            total_riding: Duration::from_secs((odometer_m / 5.0) as u64),
            esc_temp_c: AMBIENT_C + 5.0,
            motor_power_w: 0.0,
            powered: true,
            locked: false,
            alarm: false,
            cruise: false,
            kers: 1,
            light_flags: 0,
            speed_mode: 0,
            error: 0,
            warning: 0,
            pack,
            route: Route::park_loop(DEFAULT_CENTRE),
        }
    }

    /// Replace the route the ride follows (distance already covered carries over).
    pub fn set_route(&mut self, route: Route) {
        self.route = route;
    }

    /// Replace the script; it starts from its beginning.
    pub fn set_script(&mut self, script: Script) {
        self.script = script;
        self.script_s = 0.0;
        self.phase = RidePhase::Idle;
        self.phase_s = 0.0;
    }

    /// Advance the ride by `dt`.
    pub fn step(&mut self, dt: Duration) {
        let mut left = dt;
        while !left.is_zero() {
            let h = left.min(MAX_STEP);
            self.substep(h);
            left -= h;
        }
    }

    fn substep(&mut self, dt: Duration) {
        let h = dt.as_secs_f64();
        let before = self.speed_mps;
        let wanted = self.scripted_speed(h);
        let limit = self.speed_limit_kmh() / 3.6;
        let mut v = wanted.clamp(0.0, limit);
        if !self.powered {
            v = 0.0;
        } else if self.locked {
            // The motor holds a locked scooter; moving it anyway is what the alarm is for.
            if wanted > MOVING_MPS {
                self.alarm = true;
            }
            v = 0.0;
        }
        self.speed_mps = v;
        let accel = (v - before) / h;
        // Trapezoidal distance over the step.
        let dist = (v + before) / 2.0 * h;
        self.trip_m += dist;
        self.odometer_m += dist;
        self.route_m += dist;
        if self.powered {
            self.power_on += dt;
            self.total_power_on += dt;
            if v > MOVING_MPS {
                self.riding += dt;
                self.total_riding += dt;
            }
        }
        let wheel_w =
            MASS_KG * accel * v + CRR * MASS_KG * 9.81 * v + 0.5 * RHO * CDA_M2 * v.powi(3);
        let motor_w = if wheel_w >= 0.0 {
            wheel_w / EFFICIENCY
        } else {
            // KERS returns a share of the braking power: weak, medium, strong.
            let share = [0.15, 0.3, 0.45];
            wheel_w * share.get(usize::from(self.kers)).copied().unwrap_or(0.3)
        };
        self.motor_power_w = motor_w;
        let draw = if self.powered {
            motor_w + STANDBY_W
        } else {
            0.0
        };
        self.pack.step(h, draw);
        let target = AMBIENT_C + 5.0 + 0.6 * self.pack.current_a().abs();
        self.esc_temp_c += (target - self.esc_temp_c) * (h / ESC_TAU_S).min(1.0);
    }

    /// The speed (m/s) the script asks for after `h` more seconds.
    fn scripted_speed(&mut self, h: f64) -> f64 {
        self.script_s += h;
        self.phase_s += h;
        match &self.script {
            Script::Parked => {
                self.phase = RidePhase::Park;
                0.0
            }
            Script::Trace(points) => {
                let kmh = interpolate(points, self.script_s);
                let v = kmh.max(0.0) / 3.6;
                self.phase = if v <= MOVING_MPS {
                    RidePhase::Park
                } else if v > self.speed_mps + 1e-9 {
                    RidePhase::Accelerate
                } else if v + 1e-9 < self.speed_mps {
                    RidePhase::Brake
                } else {
                    RidePhase::Cruise
                };
                v
            }
            Script::Loop(plan) => {
                let plan = *plan;
                let cruise = (plan.cruise_kmh / 3.6).min(self.speed_limit_kmh() / 3.6);
                match self.phase {
                    RidePhase::Idle => {
                        if self.phase_s >= plan.idle_s {
                            self.enter(RidePhase::Accelerate);
                        }
                        0.0
                    }
                    RidePhase::Accelerate => {
                        let v = (self.speed_mps + plan.accel_mps2 * h).min(cruise);
                        if v >= cruise || self.locked {
                            self.enter(RidePhase::Cruise);
                        }
                        v
                    }
                    RidePhase::Cruise => {
                        if self.phase_s >= plan.cruise_s {
                            self.enter(RidePhase::Brake);
                        }
                        cruise
                    }
                    RidePhase::Brake => {
                        let v = (self.speed_mps - plan.brake_mps2 * h).max(0.0);
                        if v <= 0.0 {
                            self.enter(RidePhase::Park);
                        }
                        v
                    }
                    RidePhase::Park => {
                        if self.phase_s >= plan.park_s {
                            self.enter(RidePhase::Idle);
                        }
                        0.0
                    }
                }
            }
        }
    }

    fn enter(&mut self, phase: RidePhase) {
        self.phase = phase;
        self.phase_s = 0.0;
    }

    /// Highest speed the current speed mode allows, km/h. On the m365 0x75 is an ECO on/off
    /// flag; on newer models 0 normal, 1 ECO, 2 sport (§6.5).
    pub fn speed_limit_kmh(&self) -> f64 {
        let (eco, normal, sport) = speed_limits(self.model);
        match self.speed_mode {
            0 => normal,
            1 => eco,
            _ if self.model == Model::M365 => normal,
            _ => sport,
        }
    }

    // ----- settings and commands -----

    /// Lock (ESC 0x70): the motor holds the wheel.
    pub fn lock(&mut self) {
        self.locked = true;
    }

    /// Unlock (ESC 0x71); clears the alarm.
    pub fn unlock(&mut self) {
        self.locked = false;
        self.alarm = false;
    }

    /// Someone pushes the scooter: a locked scooter stays put and raises the alarm.
    pub fn push(&mut self) {
        if self.locked {
            self.alarm = true;
        }
    }

    /// Power off (ESC 0x79): everything stops; the session counters restart at power-on.
    pub fn power_off(&mut self) {
        self.powered = false;
        self.speed_mps = 0.0;
    }

    /// Power on (the button): a new power-on session starts.
    pub fn power_on(&mut self) {
        if !self.powered {
            self.powered = true;
            self.reset_session();
        }
    }

    /// Reboot the ESC (0x78): the session counters restart; settings are kept.
    pub fn reboot(&mut self) {
        self.speed_mps = 0.0;
        self.reset_session();
    }

    fn reset_session(&mut self) {
        self.trip_m = 0.0;
        self.power_on = Duration::ZERO;
        self.riding = Duration::ZERO;
        self.set_script(self.script.clone());
    }

    /// Cruise control (ESC 0x7C).
    pub fn set_cruise(&mut self, on: bool) {
        self.cruise = on;
    }

    /// KERS level 0–2 (ESC 0x7B); stored as written.
    pub fn set_kers(&mut self, level: u16) {
        self.kers = level;
    }

    /// Light/unit flags (ESC 0x7D), stored unchanged.
    pub fn set_light_flags(&mut self, flags: u16) {
        self.light_flags = flags;
    }

    /// Speed mode (ESC 0x75).
    pub fn set_speed_mode(&mut self, mode: u16) {
        self.speed_mode = mode;
    }

    /// Connect or disconnect a charger.
    pub fn set_charging(&mut self, on: bool) {
        self.pack.set_charging(on);
    }

    /// Raise an ESC error code (0 clears it; §6.9).
    pub fn set_error(&mut self, code: u16) {
        self.error = code;
    }

    /// Raise an ESC warning code (0 clears it; §6.9).
    pub fn set_warning(&mut self, code: u16) {
        self.warning = code;
    }

    // ----- observations -----

    /// Current loop phase.
    pub fn phase(&self) -> RidePhase {
        self.phase
    }

    /// Speed, km/h.
    pub fn speed_kmh(&self) -> f64 {
        self.speed_mps * 3.6
    }

    /// Distance of this power-on session, metres.
    pub fn trip_m(&self) -> f64 {
        self.trip_m
    }

    /// Odometer, metres.
    pub fn odometer_m(&self) -> f64 {
        self.odometer_m
    }

    /// Seconds since power-on.
    pub fn power_on_s(&self) -> f64 {
        self.power_on.as_secs_f64()
    }

    /// Seconds ridden (wheel turning) since power-on.
    pub fn riding_s(&self) -> f64 {
        self.riding.as_secs_f64()
    }

    /// Lifetime power-on seconds.
    pub fn total_power_on_s(&self) -> f64 {
        self.total_power_on.as_secs_f64()
    }

    /// Lifetime riding seconds.
    pub fn total_riding_s(&self) -> f64 {
        self.total_riding.as_secs_f64()
    }

    /// Average speed of this session's riding time, km/h.
    pub fn average_kmh(&self) -> f64 {
        let riding = self.riding.as_secs_f64();
        if riding > 0.0 {
            self.trip_m / riding * 3.6
        } else {
            0.0
        }
    }

    /// Controller temperature, °C.
    pub fn esc_temp_c(&self) -> f64 {
        self.esc_temp_c
    }

    /// Motor phase current, A: the battery current scaled by the ratio of pack voltage to the
    /// average phase voltage (which grows with speed).
    pub fn phase_current_a(&self) -> f64 {
        let v = self.speed_mps.max(1.0);
        self.pack.current_a() * (25.0 / 3.6) / v
    }

    /// Remaining range estimate, km.
    pub fn range_km(&self) -> f64 {
        let battery = self.pack.battery();
        let wh = f64::from(self.pack.remaining_mah()) * f64::from(battery.nominal_mv) / 1e6;
        wh / WH_PER_KM
    }

    /// Whether the scooter is powered on.
    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Whether it is locked.
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Whether the alarm flag is set.
    pub fn alarm(&self) -> bool {
        self.alarm
    }

    /// Cruise control.
    pub fn cruise(&self) -> bool {
        self.cruise
    }

    /// KERS level as stored.
    pub fn kers(&self) -> u16 {
        self.kers
    }

    /// Light/unit flags as stored.
    pub fn light_flags(&self) -> u16 {
        self.light_flags
    }

    /// Speed mode as stored.
    pub fn speed_mode(&self) -> u16 {
        self.speed_mode
    }

    /// ESC error code.
    pub fn error(&self) -> u16 {
        self.error
    }

    /// ESC warning code: an explicit warning wins; otherwise a locked scooter reports 9
    /// ("vehicle in lock mode", §6.9).
    pub fn warning(&self) -> u16 {
        if self.warning == 0 && self.locked {
            9
        } else {
            self.warning
        }
    }

    /// ESC 0xB2 flags.
    pub fn status_flags(&self) -> u16 {
        let mut flags = 0;
        if self.locked {
            flags |= status::LOCKED;
        }
        if self.alarm {
            flags |= status::ALARM;
        }
        flags
    }

    /// The battery.
    pub fn pack(&self) -> &Pack {
        &self.pack
    }

    /// Where the scooter is on its route, for GPS emulation.
    pub fn gps(&self) -> GpsSample {
        GpsSample {
            position: self.route.position(self.route_m),
            speed_kmh: self.speed_kmh(),
        }
    }
}

/// Linear interpolation of `(t, value)` points at `t`; holds the end values outside the range.
fn interpolate(points: &[(f64, f64)], t: f64) -> f64 {
    let Some(&(t0, v0)) = points.first() else {
        return 0.0;
    };
    if t <= t0 {
        return v0;
    }
    for pair in points.windows(2) {
        if let [(ta, va), (tb, vb)] = pair
            && t <= *tb
        {
            let span = tb - ta;
            return if span > 0.0 {
                va + (vb - va) * (t - ta) / span
            } else {
                *vb
            };
        }
    }
    points.last().map(|p| p.1).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Generation;

    fn ride(script: Script) -> Ride {
        Ride::new(&Profile::new(Model::Pro2, Generation::MiAuth, 5), script, 5)
    }

    #[test]
    fn loop_goes_through_all_phases() {
        let mut r = ride(Script::Loop(LoopPlan::default()));
        let mut seen = vec![r.phase()];
        for _ in 0..1200 {
            r.step(Duration::from_millis(100));
            if seen.last() != Some(&r.phase()) {
                seen.push(r.phase());
            }
        }
        assert_eq!(
            &seen[..6],
            &[
                RidePhase::Idle,
                RidePhase::Accelerate,
                RidePhase::Cruise,
                RidePhase::Brake,
                RidePhase::Park,
                RidePhase::Idle
            ]
        );
    }

    #[test]
    fn trip_distance_is_the_integral_of_speed() {
        let mut r = ride(Script::Trace(vec![(0.0, 0.0), (10.0, 18.0), (70.0, 18.0)]));
        let start_odo = r.odometer_m();
        r.step(Duration::from_secs(70));
        // 10 s ramp to 5 m/s (25 m) + 60 s at 5 m/s (300 m).
        assert!((r.trip_m() - 325.0).abs() < 0.5, "{}", r.trip_m());
        assert!((r.odometer_m() - start_odo - r.trip_m()).abs() < 1e-6);
        assert!((r.riding_s() - 70.0).abs() < 0.2);
        assert!((r.average_kmh() - 325.0 / 70.0 * 3.6).abs() < 0.2);
    }

    #[test]
    fn riding_time_counts_only_while_moving() {
        let mut r = ride(Script::Trace(vec![
            (0.0, 0.0),
            (20.0, 0.0),
            (20.1, 10.0),
            (30.0, 10.0),
            (30.1, 0.0),
        ]));
        r.step(Duration::from_secs(60));
        assert!((r.power_on_s() - 60.0).abs() < 1e-6);
        assert!((r.riding_s() - 10.0).abs() < 0.3, "{}", r.riding_s());
    }

    #[test]
    fn locked_scooter_does_not_move_and_pushing_raises_alarm() {
        let mut r = ride(Script::Trace(vec![(0.0, 15.0)]));
        r.lock();
        r.step(Duration::from_secs(5));
        assert_eq!(r.speed_kmh(), 0.0);
        assert_eq!(r.trip_m(), 0.0);
        assert!(r.alarm());
        assert_eq!(r.status_flags(), status::LOCKED | status::ALARM);
        assert_eq!(r.warning(), 9);
        r.unlock();
        assert_eq!(r.status_flags(), 0);
        r.step(Duration::from_secs(1));
        assert!(r.speed_kmh() > 14.0);

        let mut parked = ride(Script::Parked);
        parked.lock();
        parked.step(Duration::from_secs(1));
        assert!(!parked.alarm());
        parked.push();
        assert!(parked.alarm());
    }

    #[test]
    fn speed_mode_caps_speed() {
        let mut r = ride(Script::Trace(vec![(0.0, 30.0)]));
        r.set_speed_mode(1);
        r.step(Duration::from_secs(1));
        assert!((r.speed_kmh() - 15.0).abs() < 1e-9);
        r.set_speed_mode(0);
        r.step(Duration::from_secs(1));
        assert!((r.speed_kmh() - 20.0).abs() < 1e-9);
        r.set_speed_mode(2);
        r.step(Duration::from_secs(1));
        assert!((r.speed_kmh() - 25.0).abs() < 1e-9);
    }

    #[test]
    fn riding_drains_battery_and_heats_controller() {
        let mut r = ride(Script::Trace(vec![(0.0, 20.0)]));
        let mah = r.pack().remaining_mah();
        let t = r.esc_temp_c();
        r.step(Duration::from_secs(600));
        assert!(r.pack().remaining_mah() < mah);
        assert!(r.pack().current_a() > 0.0);
        assert!(r.esc_temp_c() > t);
        assert!(r.range_km() > 0.0);
    }

    #[test]
    fn power_off_and_reboot_restart_session_counters() {
        let mut r = ride(Script::Trace(vec![(0.0, 10.0)]));
        r.step(Duration::from_secs(10));
        let odo = r.odometer_m();
        r.reboot();
        assert_eq!(r.trip_m(), 0.0);
        assert_eq!(r.power_on_s(), 0.0);
        r.power_off();
        r.step(Duration::from_secs(10));
        assert_eq!(r.power_on_s(), 0.0);
        assert!((r.odometer_m() - odo).abs() < 1e-9);
        r.power_on();
        r.step(Duration::from_secs(1));
        assert!((r.power_on_s() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn gps_follows_distance_and_reports_speed() {
        let mut r = ride(Script::Trace(vec![(0.0, 18.0)]));
        let a = r.gps();
        r.step(Duration::from_secs(10));
        let b = r.gps();
        let moved = crate::route::distance_m(a.position.at, b.position.at);
        assert!(
            (moved - r.trip_m()).abs() < 1.0,
            "{moved} vs {}",
            r.trip_m()
        );
        assert!((b.speed_kmh - 18.0).abs() < 1e-9);
    }

    #[test]
    fn step_size_does_not_change_the_outcome() {
        let script = Script::Loop(LoopPlan::default());
        let mut coarse = ride(script.clone());
        let mut fine = ride(script);
        coarse.step(Duration::from_secs(50));
        for _ in 0..500 {
            fine.step(Duration::from_millis(100));
        }
        assert!((coarse.trip_m() - fine.trip_m()).abs() < 1e-6);
    }
}
