//! Adaptive sampling: fast while the scooter is ridden, unlocked or charging; slow while it is
//! parked and locked, publishing then only what changed and a heartbeat. A parked scooter at a
//! fixed 1 s interval sends 86,400 nearly identical records a day over a metered 4G link; this
//! sends a few hundred (docs/benchmarks.md, "Mobile data per day"; rules in docs/events.md).
//!
//! Pure: no I/O, no clock of its own. The sampling loop calls [`Adaptive::after_sample`] after
//! every sample, submits it when told to publish, and waits `next_interval` for the next one.

use std::time::{Duration, Instant};

use m365_pipeline::Sample;

use super::ride_events::{ChargeDetector, STANDING_KMH, distance_m, sample_position};

/// A parked scooter whose usable GPS position moved further than this from the last published
/// one is published, metres.
pub const POSITION_CHANGE_M: f64 = 30.0;
/// A temperature (frame or either battery sensor) this far from the last published one is
/// published, °C.
pub const TEMPERATURE_CHANGE_C: f64 = 2.0;

/// The intervals of adaptive sampling (`[telemetry]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaptiveConfig {
    /// Time between samples while ridden, unlocked or charging (`interval`).
    pub fast: Duration,
    /// Time between samples while parked and locked (`parked_interval`).
    pub parked: Duration,
    /// While parked, a sample that shows nothing new is published only when this much time has
    /// passed since the last published sample (`heartbeat`); zero publishes every sample.
    pub heartbeat: Duration,
}

impl AdaptiveConfig {
    /// Default interval while parked: a Pi on 4G.
    pub const DEFAULT_PARKED: Duration = Duration::from_secs(30);
    /// Default longest silence while parked.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(600);

    /// The defaults around the configured fast interval: parked every 30 s (never faster than
    /// `fast`), a heartbeat every 10 minutes.
    pub fn new(fast: Duration) -> Self {
        AdaptiveConfig {
            fast,
            parked: Self::DEFAULT_PARKED.max(fast),
            heartbeat: Self::DEFAULT_HEARTBEAT,
        }
    }

    /// No adaptation: every sample is published, every `interval`.
    pub fn fixed(interval: Duration) -> Self {
        AdaptiveConfig {
            fast: interval,
            parked: interval,
            heartbeat: Duration::ZERO,
        }
    }

    /// Whether anything adapts: `parked == fast` keeps the interval, `heartbeat == 0` publishes
    /// every sample; both together sample and publish at the fixed interval.
    pub fn is_adaptive(&self) -> bool {
        self.parked != self.fast || !self.heartbeat.is_zero()
    }
}

/// What to do with a sample, and when to take the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Hand the sample to the pipeline.
    pub publish: bool,
    /// Time until the next sample.
    pub next_interval: Duration,
}

/// What a published sample showed, to tell a parked sample with news from one without. A
/// reading missing in a sample keeps the value last published.
#[derive(Debug, Clone, Default, PartialEq)]
struct Published {
    locked: Option<bool>,
    percent: Option<u8>,
    charging: bool,
    error_code: Option<u16>,
    warning_code: Option<u16>,
    odometer_m: Option<u32>,
    position: Option<(f64, f64)>,
    frame_temp_c: Option<f64>,
    battery_temp1_c: Option<f64>,
    battery_temp2_c: Option<f64>,
}

impl Published {
    fn of(sample: &Sample, charging: bool) -> Published {
        let s = &sample.scooter;
        let b = &sample.battery;
        Published {
            locked: s.locked,
            percent: b.percent,
            charging,
            error_code: s.error_code,
            warning_code: s.warning_code,
            odometer_m: s.odometer_m,
            position: sample_position(sample),
            frame_temp_c: s.frame_temp_c.filter(|t| t.is_finite()),
            battery_temp1_c: b.temp1_c.map(f64::from),
            battery_temp2_c: b.temp2_c.map(f64::from),
        }
    }

    /// Whether `now` shows something this (last published) state did not.
    fn differs(&self, now: &Published) -> bool {
        fn changed<T: PartialEq>(before: Option<T>, now: Option<T>) -> bool {
            now.is_some() && now != before
        }
        fn warmer(before: Option<f64>, now: Option<f64>) -> bool {
            match (before, now) {
                (Some(b), Some(n)) => (n - b).abs() >= TEMPERATURE_CHANGE_C,
                (None, Some(_)) => true,
                (_, None) => false,
            }
        }
        let moved = match (self.position, now.position) {
            (Some(b), Some(n)) => distance_m(b, n) > POSITION_CHANGE_M,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        changed(self.locked, now.locked)
            || changed(self.percent, now.percent)
            || self.charging != now.charging
            || changed(self.error_code, now.error_code)
            || changed(self.warning_code, now.warning_code)
            || changed(self.odometer_m, now.odometer_m)
            || moved
            || warmer(self.frame_temp_c, now.frame_temp_c)
            || warmer(self.battery_temp1_c, now.battery_temp1_c)
            || warmer(self.battery_temp2_c, now.battery_temp2_c)
    }

    /// This state updated with what `now` read.
    fn merge(&mut self, now: Published) {
        fn keep<T>(slot: &mut Option<T>, now: Option<T>) {
            if now.is_some() {
                *slot = now;
            }
        }
        keep(&mut self.locked, now.locked);
        keep(&mut self.percent, now.percent);
        self.charging = now.charging;
        keep(&mut self.error_code, now.error_code);
        keep(&mut self.warning_code, now.warning_code);
        keep(&mut self.odometer_m, now.odometer_m);
        keep(&mut self.position, now.position);
        keep(&mut self.frame_temp_c, now.frame_temp_c);
        keep(&mut self.battery_temp1_c, now.battery_temp1_c);
        keep(&mut self.battery_temp2_c, now.battery_temp2_c);
    }
}

/// The adaptive sampling machine.
#[derive(Debug, Clone)]
pub struct Adaptive {
    config: AdaptiveConfig,
    charge: ChargeDetector,
    locked: Option<bool>,
    parked: bool,
    published: Option<Published>,
    last_publish: Option<Instant>,
}

impl Adaptive {
    /// A machine with `config`, before any sample (the first sample is always published).
    pub fn new(config: AdaptiveConfig) -> Self {
        Adaptive {
            config,
            charge: ChargeDetector::default(),
            locked: None,
            parked: false,
            published: None,
            last_publish: None,
        }
    }

    /// The intervals in use.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// Whether the last sample showed the scooter parked (locked, standing, not charging).
    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// Decides about a sample taken at `now`; `has_event` says whether it raised a ride event.
    ///
    /// Moving (|speed| ≥ 1 km/h), unlocked (or never read as locked; a trip only runs while
    /// unlocked) or charging: publish, next sample after `fast`. Parked and locked: next sample
    /// after `parked`, and publish only the first parked sample, a sample with an event, one
    /// with a change worth telling since the last published sample, or one taken when
    /// `heartbeat` has passed since it (half a parked interval early rather than a whole one
    /// late). A failed lock read keeps the state last read.
    ///
    /// A sample that itself reports an event ([`Sample::event`]) carries no readings: it is
    /// published and changes nothing.
    pub fn after_sample(&mut self, now: Instant, sample: &Sample, has_event: bool) -> Decision {
        if sample.event.is_some() {
            return Decision {
                publish: true,
                next_interval: self.interval(),
            };
        }
        let moving = sample
            .scooter
            .speed_kmh
            .is_some_and(|v| v.abs() >= STANDING_KMH);
        self.charge.update(sample.battery.current_a, !moving);
        let charging = self.charge.charging();
        // A lock read that failed keeps the state last read; never read counts as unlocked.
        self.locked = sample.scooter.locked.or(self.locked);
        let locked = self.locked == Some(true);
        let was_parked = self.parked;
        self.parked = locked && !moving && !charging;
        let state = Published::of(sample, charging);
        let publish = if self.parked {
            // The first parked sample shows the scooter at rest: always news.
            let news = !was_parked || self.published.as_ref().is_none_or(|p| p.differs(&state));
            let heartbeat_due = self.last_publish.is_none_or(|t| {
                now.saturating_duration_since(t) + self.config.parked / 2 >= self.config.heartbeat
            });
            has_event || news || heartbeat_due || self.config.heartbeat.is_zero()
        } else {
            true
        };
        if publish {
            match &mut self.published {
                Some(p) => p.merge(state),
                None => self.published = Some(state),
            }
            self.last_publish = Some(now);
        }
        Decision {
            publish,
            next_interval: self.interval(),
        }
    }

    fn interval(&self) -> Duration {
        if self.parked {
            self.config.parked
        } else {
            self.config.fast
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_gps::chrono::{TimeZone, Utc};
    use m365_gps::{Fix, FixMode, FixQuality, FixSource};
    use m365_pipeline::{BatteryReadings, GpsReading, ScooterReadings};

    const FAST: Duration = Duration::from_secs(1);
    const PARKED: Duration = Duration::from_secs(30);

    fn gps(north_m: f64, hdop: f64) -> GpsReading {
        GpsReading {
            fix: Fix {
                time: None,
                lat: 43.3623 + north_m / 111_195.0,
                lon: -8.4115,
                alt_msl_m: None,
                speed_mps: None,
                course_deg: None,
                mode: FixMode::ThreeD,
                quality: FixQuality::Gps,
                sats_used: Some(9),
                hdop: Some(hdop),
                pdop: None,
                vdop: None,
                source: FixSource::Simulated,
            },
            age_ms: 300,
        }
    }

    fn parked() -> Sample {
        Sample {
            scooter_id: "s1".into(),
            system_time: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            scooter: ScooterReadings {
                speed_kmh: Some(0.0),
                odometer_m: Some(1_000_000),
                frame_temp_c: Some(22.0),
                error_code: Some(0),
                warning_code: Some(9),
                locked: Some(true),
                ..ScooterReadings::default()
            },
            battery: BatteryReadings {
                percent: Some(80),
                voltage_v: Some(40.0),
                current_a: Some(0.0),
                temp1_c: Some(21),
                temp2_c: Some(21),
                ..BatteryReadings::default()
            },
            gps: Some(gps(0.0, 0.9)),
            event: None,
        }
    }

    /// A machine that already published one parked sample at `t0`.
    fn settled(t0: Instant) -> Adaptive {
        let mut a = Adaptive::new(AdaptiveConfig::new(FAST));
        let first = a.after_sample(t0, &parked(), false);
        assert_eq!(
            first,
            Decision {
                publish: true,
                next_interval: PARKED
            },
            "the first sample is published"
        );
        a
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    const QUIET: Decision = Decision {
        publish: false,
        next_interval: PARKED,
    };
    const TOLD: Decision = Decision {
        publish: true,
        next_interval: PARKED,
    };
    const FAST_ALL: Decision = Decision {
        publish: true,
        next_interval: FAST,
    };

    #[test]
    fn defaults_follow_the_fast_interval() {
        let c = AdaptiveConfig::new(Duration::from_secs(5));
        assert_eq!(c.parked, Duration::from_secs(30));
        assert_eq!(c.heartbeat, Duration::from_secs(600));
        assert!(c.is_adaptive());
        assert_eq!(
            AdaptiveConfig::new(Duration::from_secs(60)).parked,
            Duration::from_secs(60),
            "never faster parked than riding"
        );
        assert!(!AdaptiveConfig::fixed(FAST).is_adaptive());
    }

    #[test]
    fn a_parked_scooter_without_news_waits_for_the_heartbeat() {
        let t0 = Instant::now();
        let mut a = settled(t0);
        assert!(a.is_parked());
        // Voltage noise, GPS jitter inside 30 m, a 1.5 °C drift, a poor far-away fix: nothing.
        for k in 1..20u64 {
            let mut s = parked();
            s.battery.voltage_v = Some(40.0 + (k % 3) as f64 * 0.02);
            s.scooter.frame_temp_c = Some(22.0 + (k % 4) as f64 * 0.5);
            s.gps = Some(if k == 7 {
                gps(500.0, 9.0)
            } else {
                gps((k % 5) as f64 * 4.0, 1.1)
            });
            assert_eq!(
                a.after_sample(at(t0, 30 * k), &s, false),
                QUIET,
                "sample {k}"
            );
        }
        // 600 s after the last published sample: the heartbeat.
        assert_eq!(a.after_sample(at(t0, 600), &parked(), false), TOLD);
        assert_eq!(a.after_sample(at(t0, 630), &parked(), false), QUIET);
        // Half an interval early counts (sample timing jitters).
        assert_eq!(a.after_sample(at(t0, 1185), &parked(), false), TOLD);
    }

    #[test]
    fn a_parked_scooter_publishes_each_meaningful_change() {
        let t0 = Instant::now();
        type Change = fn(&mut Sample);
        let changes: [(&str, Change); 9] = [
            ("percent", |s| s.battery.percent = Some(79)),
            ("error", |s| s.scooter.error_code = Some(21)),
            ("warning", |s| s.scooter.warning_code = Some(12)),
            ("odometer", |s| s.scooter.odometer_m = Some(1_000_010)),
            ("position", |s| s.gps = Some(gps(45.0, 1.0))),
            ("frame temperature", |s| s.scooter.frame_temp_c = Some(24.0)),
            ("battery temperature 1", |s| s.battery.temp1_c = Some(19)),
            ("battery temperature 2", |s| s.battery.temp2_c = Some(23)),
            ("first fix", |s| s.gps = Some(gps(0.0, 1.0))),
        ];
        for (what, change) in changes {
            let mut a = Adaptive::new(AdaptiveConfig::new(FAST));
            let mut first = parked();
            if what == "first fix" {
                first.gps = None;
            }
            a.after_sample(t0, &first, false);
            assert_eq!(a.after_sample(at(t0, 30), &first, false), QUIET, "{what}");
            let mut s = first.clone();
            change(&mut s);
            assert_eq!(a.after_sample(at(t0, 60), &s, false), TOLD, "{what}");
            // Compared with the last published sample: the same again is no news.
            assert_eq!(a.after_sample(at(t0, 90), &s, false), QUIET, "{what}");
        }
    }

    #[test]
    fn a_sample_with_an_event_is_always_published() {
        let t0 = Instant::now();
        let mut a = settled(t0);
        assert_eq!(a.after_sample(at(t0, 30), &parked(), true), TOLD);
        assert_eq!(a.after_sample(at(t0, 60), &parked(), false), QUIET);
    }

    #[test]
    fn an_event_sample_is_published_and_changes_nothing() {
        let t0 = Instant::now();
        let mut a = settled(t0);
        let event = Sample::event(
            "s1",
            parked().system_time,
            m365_pipeline::EventKind::Locked,
            None,
        );
        assert_eq!(a.after_sample(at(t0, 10), &event, true), TOLD);
        assert!(a.is_parked());
        assert_eq!(a.after_sample(at(t0, 30), &parked(), false), QUIET);
    }

    #[test]
    fn missing_readings_are_no_news() {
        let t0 = Instant::now();
        let mut a = settled(t0);
        let mut gaps = parked();
        gaps.scooter = ScooterReadings {
            locked: Some(true),
            ..ScooterReadings::default()
        };
        gaps.battery = BatteryReadings::default();
        gaps.gps = None;
        assert_eq!(a.after_sample(at(t0, 30), &gaps, false), QUIET);
        // The readings back as they were: still nothing new.
        assert_eq!(a.after_sample(at(t0, 60), &parked(), false), QUIET);
    }

    #[test]
    fn unlocking_switches_to_fast_at_once_and_back_when_locked() {
        let t0 = Instant::now();
        let mut a = settled(t0);
        let mut unlocked = parked();
        unlocked.scooter.locked = Some(false);
        unlocked.scooter.warning_code = Some(0);
        // The sample that shows the change is published, the next interval is already fast.
        assert_eq!(a.after_sample(at(t0, 30), &unlocked, false), FAST_ALL);
        assert!(!a.is_parked());
        // Unlocked and standing: still every sample, fast.
        for k in 31..40 {
            assert_eq!(a.after_sample(at(t0, k), &unlocked, false), FAST_ALL);
        }
        // Locked again: that sample is published (the lock changed), then parked.
        assert_eq!(a.after_sample(at(t0, 40), &parked(), false), TOLD);
        assert_eq!(a.after_sample(at(t0, 70), &parked(), false), QUIET);
        // A lock read that failed keeps the last state read.
        let mut unknown = parked();
        unknown.scooter.locked = None;
        assert_eq!(a.after_sample(at(t0, 100), &unknown, false), QUIET);
        // A lock state never read counts as unlocked: fast.
        let mut fresh = Adaptive::new(AdaptiveConfig::new(FAST));
        assert_eq!(fresh.after_sample(t0, &unknown, false), FAST_ALL);
        assert_eq!(fresh.after_sample(at(t0, 1), &unknown, false), FAST_ALL);
    }

    #[test]
    fn moving_while_locked_is_fast() {
        let t0 = Instant::now();
        let mut a = settled(t0);
        let mut pushed = parked();
        pushed.scooter.speed_kmh = Some(-1.2);
        assert_eq!(a.after_sample(at(t0, 30), &pushed, false), FAST_ALL);
        pushed.scooter.speed_kmh = Some(0.8);
        assert_eq!(
            a.after_sample(at(t0, 31), &pushed, false),
            TOLD,
            "below 1 km/h"
        );
    }

    #[test]
    fn charging_is_fast_with_hysteresis() {
        let t0 = Instant::now();
        let mut a = settled(t0);
        let with = |amps: f64| {
            let mut s = parked();
            s.battery.current_a = Some(amps);
            s
        };
        assert_eq!(a.after_sample(at(t0, 30), &with(-0.1), false), QUIET);
        assert_eq!(a.after_sample(at(t0, 60), &with(-2.0), false), FAST_ALL);
        assert_eq!(a.after_sample(at(t0, 61), &with(-0.1), false), FAST_ALL);
        assert_eq!(a.after_sample(at(t0, 62), &with(0.0), false), FAST_ALL);
        // Two readings above -0.05 A end the charge; that sample is news (charging changed).
        assert_eq!(a.after_sample(at(t0, 63), &with(0.0), false), TOLD);
        assert_eq!(a.after_sample(at(t0, 93), &with(0.0), false), QUIET);
    }

    #[test]
    fn parked_equal_to_fast_and_no_heartbeat_turn_adaptation_off() {
        let t0 = Instant::now();
        let mut a = Adaptive::new(AdaptiveConfig::fixed(FAST));
        for k in 0..100 {
            assert_eq!(a.after_sample(at(t0, k), &parked(), false), FAST_ALL);
        }
        // A zero heartbeat alone publishes every sample, at the parked interval.
        let mut a = Adaptive::new(AdaptiveConfig {
            heartbeat: Duration::ZERO,
            ..AdaptiveConfig::new(FAST)
        });
        for k in 0..10 {
            assert_eq!(a.after_sample(at(t0, 30 * k), &parked(), false), TOLD);
        }
        // `parked == fast` alone keeps the interval but publishes only news and heartbeats.
        let mut a = Adaptive::new(AdaptiveConfig {
            parked: FAST,
            ..AdaptiveConfig::new(FAST)
        });
        a.after_sample(t0, &parked(), false);
        assert_eq!(
            a.after_sample(at(t0, 1), &parked(), false),
            Decision {
                publish: false,
                next_interval: FAST
            }
        );
    }
}
