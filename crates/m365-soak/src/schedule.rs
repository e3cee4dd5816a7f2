//! The seeded fault schedule: which fault hits which scooter (or the broker) when, and for how
//! long. Pure: the same seed and settings always give the same schedule, so a failing run can be
//! replayed with `--seed`.
//!
//! Rules the generator keeps:
//! - every fault ends before the chaos phase does, so the run ends healed;
//! - one link fault (drop, power cycle, out of range) at a time per scooter;
//! - broker faults never overlap each other;
//! - no SIGKILL of a client while its disk is full: records that cannot be committed wait in
//!   memory (documented), so a kill then loses them by design, and their sequence numbers are
//!   given again by the next run, which no checker can see from outside;
//! - the first faults of a run go through every kind once (in a seeded order), so even a short
//!   run covers them all; after that kinds are drawn by weight.

use std::fmt;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;

/// Who a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    /// The MQTT broker (every scooter at once).
    Broker,
    /// One scooter and its `m365 run` process (index from 0).
    Scooter(usize),
}

/// Where a clock jump sends the client's system clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClockJump {
    /// Forward or back by this many seconds (NTP correcting a drifted clock).
    Offset(i64),
    /// Back to before 2020, as a Pi without a real-time clock boots: an untrusted clock.
    Untrusted,
}

impl fmt::Display for ClockJump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockJump::Offset(s) => write!(f, "{s:+}s"),
            ClockJump::Untrusted => f.write_str("to-2019"),
        }
    }
}

/// One kind of fault, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// The BLE link drops; reconnects fail for this long.
    BleDrop(Duration),
    /// The scooter is switched off for this long: the session is gone, a new login follows.
    PowerCycle(Duration),
    /// Out of range for longer than the reconnect window: the client exits (75) and restarts.
    OutOfRange(Duration),
    /// This share (percent) of notifications is corrupted, for this long.
    Corrupt(u8, Duration),
    /// This share (percent) of notifications is preceded by an extra empty one, for this long.
    ExtraEmpty(u8, Duration),
    /// SIGKILL of the client; the supervisor restarts it.
    Kill,
    /// The spool's file system is filled up, for this long.
    DiskFull(Duration),
    /// The GPS receiver is unplugged, for this long.
    GpsUnplug(Duration),
    /// The client's system clock jumps, for this long, then comes back.
    Clock(ClockJump, Duration),
    /// The broker stops (cleanly, saving its sessions) and starts again at once.
    BrokerRestart,
    /// The broker is down for this long.
    BrokerOutage(Duration),
}

/// The names of every kind, in a fixed order (also the summary's column order).
pub(crate) const KINDS: [&str; 11] = [
    "ble-drop",
    "power-cycle",
    "out-of-range",
    "corrupt",
    "extra-empty",
    "kill",
    "disk-full",
    "gps-unplug",
    "clock-jump",
    "broker-restart",
    "broker-outage",
];

impl FaultKind {
    /// Its name, one of [`KINDS`].
    pub(crate) fn name(&self) -> &'static str {
        match self {
            FaultKind::BleDrop(_) => KINDS[0],
            FaultKind::PowerCycle(_) => KINDS[1],
            FaultKind::OutOfRange(_) => KINDS[2],
            FaultKind::Corrupt(..) => KINDS[3],
            FaultKind::ExtraEmpty(..) => KINDS[4],
            FaultKind::Kill => KINDS[5],
            FaultKind::DiskFull(_) => KINDS[6],
            FaultKind::GpsUnplug(_) => KINDS[7],
            FaultKind::Clock(..) => KINDS[8],
            FaultKind::BrokerRestart => KINDS[9],
            FaultKind::BrokerOutage(_) => KINDS[10],
        }
    }

    /// How long it lasts (zero for instant ones).
    pub(crate) fn length(&self) -> Duration {
        match *self {
            FaultKind::BleDrop(d)
            | FaultKind::PowerCycle(d)
            | FaultKind::OutOfRange(d)
            | FaultKind::Corrupt(_, d)
            | FaultKind::ExtraEmpty(_, d)
            | FaultKind::DiskFull(d)
            | FaultKind::GpsUnplug(d)
            | FaultKind::Clock(_, d)
            | FaultKind::BrokerOutage(d) => d,
            FaultKind::Kill | FaultKind::BrokerRestart => Duration::ZERO,
        }
    }

    fn is_link(&self) -> bool {
        matches!(
            self,
            FaultKind::BleDrop(_) | FaultKind::PowerCycle(_) | FaultKind::OutOfRange(_)
        )
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| format!("{:.1}s", d.as_secs_f64());
        match *self {
            FaultKind::Corrupt(p, d) | FaultKind::ExtraEmpty(p, d) => {
                write!(f, "{} {p}% for {}", self.name(), ms(d))
            }
            FaultKind::Clock(jump, d) => write!(f, "{} {jump} for {}", self.name(), ms(d)),
            FaultKind::Kill | FaultKind::BrokerRestart => f.write_str(self.name()),
            _ => write!(f, "{} for {}", self.name(), ms(self.length())),
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fault {
    /// When, from the start of the chaos phase.
    pub(crate) at: Duration,
    /// Who.
    pub(crate) target: Target,
    /// What.
    pub(crate) kind: FaultKind,
}

impl Fault {
    /// When it is over.
    pub(crate) fn end(&self) -> Duration {
        self.at + self.kind.length()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.as_secs_f64();
        match self.target {
            Target::Broker => write!(f, "t=+{at:.1}s broker {}", self.kind),
            Target::Scooter(i) => write!(f, "t=+{at:.1}s scooter={i} {}", self.kind),
        }
    }
}

/// What the schedule is made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleConfig {
    /// Length of the chaos phase.
    pub(crate) duration: Duration,
    /// Number of scooters.
    pub(crate) scooters: usize,
    /// The clients' `[scooter] reconnect_window`: out-of-range faults last longer.
    pub(crate) reconnect_window: Duration,
    /// Length of a broker outage.
    pub(crate) outage: Duration,
    /// Mean time between two faults of one scooter.
    pub(crate) scooter_every: Duration,
    /// Mean time between two broker restarts.
    pub(crate) broker_every: Duration,
    /// Mean time between two broker outages (at least one when the run is long enough).
    pub(crate) outage_every: Duration,
}

impl ScheduleConfig {
    /// Defaults for `duration` and `scooters`: a fault per scooter every 8 s on average, a
    /// broker restart every 45 s, a 60 s outage every 20 minutes, a 5 s reconnect window.
    pub(crate) fn new(duration: Duration, scooters: usize) -> Self {
        ScheduleConfig {
            duration,
            scooters,
            reconnect_window: Duration::from_secs(5),
            outage: Duration::from_secs(60),
            scooter_every: Duration::from_secs(8),
            broker_every: Duration::from_secs(45),
            outage_every: Duration::from_secs(20 * 60),
        }
    }
}

/// No fault starts in the first seconds (every client has connected and published once).
const QUIET_START: Duration = Duration::from_secs(3);
/// Time kept free around broker faults.
const BROKER_GAP: Duration = Duration::from_secs(5);

/// The scooter-side kinds, by weight (drops and kills are the common case).
const SCOOTER_KINDS: [(&str, u32); 9] = [
    ("ble-drop", 5),
    ("power-cycle", 2),
    ("out-of-range", 1),
    ("corrupt", 2),
    ("extra-empty", 2),
    ("kill", 3),
    ("disk-full", 2),
    ("gps-unplug", 2),
    ("clock-jump", 2),
];

/// The schedule for `seed`, sorted by time (then target).
pub(crate) fn generate(seed: u64, config: &ScheduleConfig) -> Vec<Fault> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut faults = broker_faults(&mut rng, config);
    // Kinds not yet used anywhere go first, in a seeded order.
    let mut unused: Vec<&str> = SCOOTER_KINDS.iter().map(|(k, _)| *k).collect();
    shuffle(&mut rng, &mut unused);
    let mut clocks: Vec<Duration> = (0..config.scooters)
        .map(|_| QUIET_START + exp_gap(&mut rng, config.scooter_every) / 2)
        .collect();
    let mut plans: Vec<Plan> = (0..config.scooters).map(|_| Plan::default()).collect();
    // Scooters take turns, earliest clock first, so the first kinds spread over all of them.
    while let Some(i) = (0..config.scooters)
        .filter(|&i| clocks[i] < config.duration)
        .min_by_key(|&i| (clocks[i], i))
    {
        let at = clocks[i];
        clocks[i] = at + exp_gap(&mut rng, config.scooter_every);
        let name = match unused.first() {
            Some(k) => *k,
            None => weighted(&mut rng),
        };
        let kind = draw(&mut rng, name, config);
        let fault = Fault {
            at,
            target: Target::Scooter(i),
            kind,
        };
        if fault.end() >= config.duration || !plans[i].allows(&fault) {
            continue;
        }
        unused.retain(|k| *k != name);
        plans[i].add(&fault);
        faults.push(fault);
    }
    faults.sort_by_key(|f| (f.at, f.target));
    faults
}

/// What one scooter already has planned.
#[derive(Debug, Default)]
struct Plan {
    link_busy_until: Duration,
    disk_full: Vec<(Duration, Duration)>,
    /// When each kind with a length is over (one window of a kind at a time).
    busy_until: std::collections::HashMap<&'static str, Duration>,
}

impl Plan {
    fn allows(&self, fault: &Fault) -> bool {
        if self
            .busy_until
            .get(fault.kind.name())
            .is_some_and(|&until| fault.at < until)
        {
            return false;
        }
        match fault.kind {
            k if k.is_link() => fault.at >= self.link_busy_until,
            FaultKind::Kill => !self
                .disk_full
                .iter()
                .any(|&(s, e)| fault.at + Duration::from_secs(1) >= s && fault.at <= e),
            _ => true,
        }
    }

    fn add(&mut self, fault: &Fault) {
        if !fault.kind.length().is_zero() {
            self.busy_until
                .insert(fault.kind.name(), fault.end() + Duration::from_secs(1));
        }
        if fault.kind.is_link() {
            // The client needs a moment after the link is back before the next link fault.
            self.link_busy_until = fault.end() + Duration::from_secs(2);
        }
        if let FaultKind::DiskFull(_) = fault.kind {
            // The spool commits what waited in memory a moment after the disk is freed.
            self.disk_full
                .push((fault.at, fault.end() + Duration::from_secs(2)));
        }
    }
}

fn broker_faults(rng: &mut ChaCha8Rng, config: &ScheduleConfig) -> Vec<Fault> {
    let mut faults = Vec::new();
    let end = config.duration;
    // Outages: at least one when it fits, then one per `outage_every` on average.
    let room = QUIET_START + BROKER_GAP + config.outage + BROKER_GAP;
    if end > room {
        let count = (end.as_secs_f64() / config.outage_every.as_secs_f64()).round() as usize;
        let count = count.max(1);
        let slot = end / count as u32;
        for n in 0..count {
            let from = (slot * n as u32).max(QUIET_START);
            let to = (slot * (n as u32 + 1)).min(end);
            if to <= from + config.outage + BROKER_GAP {
                continue;
            }
            let latest = to - config.outage - BROKER_GAP;
            let at = uniform(rng, from, latest);
            faults.push(Fault {
                at,
                target: Target::Broker,
                kind: FaultKind::BrokerOutage(config.outage),
            });
        }
    }
    // Restarts in between, kept clear of the outages and of each other.
    let mut at = QUIET_START + exp_gap(rng, config.broker_every) / 2;
    while at + BROKER_GAP < end {
        let clear = faults
            .iter()
            .all(|f| at + BROKER_GAP < f.at || at > f.end() + BROKER_GAP);
        if clear {
            faults.push(Fault {
                at,
                target: Target::Broker,
                kind: FaultKind::BrokerRestart,
            });
            at += BROKER_GAP;
        }
        at += exp_gap(rng, config.broker_every);
    }
    // At least one restart when there is room for it anywhere.
    if !faults.iter().any(|f| f.kind == FaultKind::BrokerRestart) && end > QUIET_START + BROKER_GAP
    {
        let span = (end - BROKER_GAP - QUIET_START).as_secs().max(1);
        let first = rng.gen_range(0..span);
        let clear = |at: Duration| {
            faults
                .iter()
                .all(|f| at + BROKER_GAP < f.at || at > f.end() + BROKER_GAP)
        };
        if let Some(at) = (0..span)
            .map(|n| QUIET_START + Duration::from_secs((first + n) % span))
            .find(|&at| clear(at))
        {
            faults.push(Fault {
                at,
                target: Target::Broker,
                kind: FaultKind::BrokerRestart,
            });
        }
    }
    faults
}

fn draw(rng: &mut ChaCha8Rng, name: &str, config: &ScheduleConfig) -> FaultKind {
    let ms = |rng: &mut ChaCha8Rng, lo: u64, hi: u64| Duration::from_millis(rng.gen_range(lo..=hi));
    match name {
        "ble-drop" => FaultKind::BleDrop(ms(rng, 200, 4_000)),
        "power-cycle" => FaultKind::PowerCycle(ms(rng, 1_000, 5_000)),
        "out-of-range" => {
            let window = config.reconnect_window.as_millis() as u64;
            FaultKind::OutOfRange(ms(rng, window + 3_000, window + 12_000))
        }
        "corrupt" => FaultKind::Corrupt(rng.gen_range(2..=20), ms(rng, 2_000, 15_000)),
        "extra-empty" => FaultKind::ExtraEmpty(rng.gen_range(10..=60), ms(rng, 2_000, 15_000)),
        "kill" => FaultKind::Kill,
        "disk-full" => FaultKind::DiskFull(ms(rng, 3_000, 20_000)),
        "gps-unplug" => FaultKind::GpsUnplug(ms(rng, 2_000, 20_000)),
        _ => {
            let jump = match rng.gen_range(0..3) {
                0 => ClockJump::Offset(3_600),
                1 => ClockJump::Offset(-3_600),
                _ => ClockJump::Untrusted,
            };
            FaultKind::Clock(jump, ms(rng, 3_000, 20_000))
        }
    }
}

fn weighted(rng: &mut ChaCha8Rng) -> &'static str {
    let total: u32 = SCOOTER_KINDS.iter().map(|(_, w)| w).sum();
    let mut pick = rng.gen_range(0..total);
    for (name, weight) in SCOOTER_KINDS {
        if pick < weight {
            return name;
        }
        pick -= weight;
    }
    SCOOTER_KINDS[0].0
}

/// An exponentially distributed gap with this mean, at least 0.5 s and at most 5 means.
fn exp_gap(rng: &mut ChaCha8Rng, mean: Duration) -> Duration {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let secs = (-u.ln() * mean.as_secs_f64()).clamp(0.5, 5.0 * mean.as_secs_f64().max(0.5));
    Duration::from_millis((secs * 1000.0) as u64)
}

fn uniform(rng: &mut ChaCha8Rng, from: Duration, to: Duration) -> Duration {
    if to <= from {
        return from;
    }
    Duration::from_millis(rng.gen_range(from.as_millis() as u64..=to.as_millis() as u64))
}

fn shuffle<T>(rng: &mut ChaCha8Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = rng.gen_range(0..=i);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long() -> ScheduleConfig {
        ScheduleConfig::new(Duration::from_secs(3 * 3600), 3)
    }

    #[test]
    fn a_seed_gives_the_same_schedule_and_another_seed_another() {
        let config = ScheduleConfig::new(Duration::from_secs(600), 3);
        let a = generate(7, &config);
        assert_eq!(a, generate(7, &config));
        assert_ne!(a, generate(8, &config));
        // The rendering (what a replay prints) is the same too.
        let text = |s: &[Fault]| s.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        assert_eq!(text(&a), text(&generate(7, &config)));
    }

    #[test]
    fn a_long_schedule_has_every_kind_on_every_scooter() {
        let schedule = generate(11, &long());
        for kind in KINDS {
            assert!(
                schedule.iter().any(|f| f.kind.name() == kind),
                "{kind} missing"
            );
        }
        for i in 0..3 {
            for (kind, _) in SCOOTER_KINDS {
                assert!(
                    schedule
                        .iter()
                        .any(|f| f.target == Target::Scooter(i) && f.kind.name() == kind),
                    "{kind} missing on scooter {i}"
                );
            }
        }
    }

    #[test]
    fn a_short_run_still_covers_every_kind() {
        let config = ScheduleConfig::new(Duration::from_secs(120), 3);
        for seed in 0..20 {
            let schedule = generate(seed, &config);
            let missing: Vec<&str> = KINDS
                .iter()
                .copied()
                .filter(|k| !schedule.iter().any(|f| f.kind.name() == *k))
                .collect();
            assert!(missing.is_empty(), "seed {seed}: {missing:?}");
        }
    }

    #[test]
    fn the_rules_hold() {
        for seed in 0..10 {
            let config = long();
            let schedule = generate(seed, &config);
            assert!(schedule.windows(2).all(|w| w[0].at <= w[1].at), "sorted");
            for f in &schedule {
                assert!(f.end() < config.duration, "{f} ends in time");
                assert!(f.at >= QUIET_START, "{f}");
                match f.kind {
                    FaultKind::BleDrop(d) => {
                        assert!((200..=4_000).contains(&(d.as_millis() as u64)), "{f}")
                    }
                    FaultKind::OutOfRange(d) => assert!(d > config.reconnect_window, "{f}"),
                    _ => {}
                }
            }
            let broker: Vec<&Fault> = schedule
                .iter()
                .filter(|f| f.target == Target::Broker)
                .collect();
            for w in broker.windows(2) {
                assert!(w[0].end() < w[1].at, "{} overlaps {}", w[0], w[1]);
            }
            for i in 0..config.scooters {
                let mine: Vec<&Fault> = schedule
                    .iter()
                    .filter(|f| f.target == Target::Scooter(i))
                    .collect();
                let links: Vec<&&Fault> = mine.iter().filter(|f| f.kind.is_link()).collect();
                for w in links.windows(2) {
                    assert!(w[0].end() <= w[1].at, "{} overlaps {}", w[0], w[1]);
                }
                for kind in KINDS {
                    let same: Vec<&&Fault> =
                        mine.iter().filter(|f| f.kind.name() == kind).collect();
                    for w in same.windows(2) {
                        assert!(w[0].end() < w[1].at, "{} overlaps {}", w[0], w[1]);
                    }
                }
                for kill in mine.iter().filter(|f| f.kind == FaultKind::Kill) {
                    for full in mine
                        .iter()
                        .filter(|f| matches!(f.kind, FaultKind::DiskFull(_)))
                    {
                        assert!(
                            kill.at < full.at || kill.at > full.end(),
                            "{kill} inside {full}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_run_too_short_for_an_outage_gets_none() {
        let config = ScheduleConfig::new(Duration::from_secs(30), 1);
        let schedule = generate(3, &config);
        assert!(
            !schedule
                .iter()
                .any(|f| matches!(f.kind, FaultKind::BrokerOutage(_)))
        );
        assert!(schedule.iter().all(|f| f.end() < config.duration));
    }
}
