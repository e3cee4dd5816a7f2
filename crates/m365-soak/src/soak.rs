//! One soak run, from the first process to the summary line: start the broker, the checker's
//! subscriber, the simulator, a GPS receiver, a small disk and a supervised `m365 run` per
//! scooter; play the schedule; heal; let every client drain its spool; stop them cleanly; judge.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::broker::Mosquitto;
use crate::checker::{Checker, Delivery, Limits, Observation, SpoolEnd, Verdict};
use crate::client::{ClientEvent, ClientSetup, ClientStats, SmallDisk, Supervisor};
use crate::gps::Receiver;
use crate::resources::{FD_SLACK, RSS_SLACK_KIB, trends};
use crate::schedule::{Fault, FaultKind, KINDS, ScheduleConfig, Target};
use crate::sim::Simulator;
use crate::subscriber::{self, Heard, TOPICS};

/// Everything a run needs.
#[derive(Debug, Clone)]
pub(crate) struct SoakConfig {
    /// The seed of the schedule.
    pub(crate) seed: u64,
    /// The schedule's settings (duration, scooters, rates).
    pub(crate) schedule: ScheduleConfig,
    /// The clients' sampling interval.
    pub(crate) interval: Duration,
    /// `RestartSec`.
    pub(crate) restart_sec: Duration,
    /// Longest wait for the clients to deliver their backlog after the chaos.
    pub(crate) drain_timeout: Duration,
    /// `[spool] max_bytes` of the clients.
    pub(crate) max_bytes: u64,
    /// The `m365` binary.
    pub(crate) m365: PathBuf,
    /// The `m365-sim` binary.
    pub(crate) m365_sim: PathBuf,
    /// This program (it runs the GPS helpers).
    pub(crate) soak: PathBuf,
    /// The `mosquitto` binary.
    pub(crate) mosquitto: PathBuf,
    /// libfaketime, or `None` (clock jumps are then skipped, and said so).
    pub(crate) faketime: Option<PathBuf>,
    /// Where everything is kept.
    pub(crate) work_dir: PathBuf,
    /// The command line that replays this run.
    pub(crate) replay: String,
}

/// How long the clients get to publish their first record.
const WARM_UP: Duration = Duration::from_secs(60);
/// A duplicate is explained by a disruption at most this long before it.
const DUP_WINDOW: Duration = Duration::from_secs(30);
/// How often conditions are checked while waiting.
const POLL: Duration = Duration::from_millis(200);

/// The simulator's counters the report shows, with their labels.
const SIM_COUNTERS: [(&str, &str); 6] = [
    ("logins", "logins"),
    ("bluez_link_drops", "link drops"),
    ("bluez_connect_timeouts", "connect timeouts"),
    ("notifications_corrupted", "corrupted notifications"),
    ("empty_notifications", "empty notifications"),
    ("rejected_frames", "rejected frames"),
];

/// What a run found.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Every broken rule.
    pub(crate) violations: Vec<String>,
    /// The summary line (`… lost=<n> … result=pass`), printed last by the caller.
    pub(crate) summary: String,
}

/// The state shared by the tasks of a run.
struct Shared {
    t0: Instant,
    checker: Mutex<Checker>,
    /// When the chaos phase began (times printed are from there).
    chaos_start: Mutex<Option<Instant>>,
}

impl Shared {
    fn at(&self, when: Instant) -> Duration {
        when.saturating_duration_since(self.t0)
    }

    fn checker(&self) -> std::sync::MutexGuard<'_, Checker> {
        self.checker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `t=+12.3s` from the start of the chaos phase (`warm-up` before it).
    fn chaos_time(&self) -> String {
        match *self.chaos_start.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(start) => format!("t=+{:.1}s", start.elapsed().as_secs_f64()),
            None => "warm-up".to_owned(),
        }
    }
}

/// One scooter's parts.
struct Scooter {
    setup: ClientSetup,
    disk: SmallDisk,
    gps: tokio::sync::Mutex<Receiver>,
    supervisor: Supervisor,
}

/// Runs the soak and prints its report; returns the summary line for the caller to print last.
pub(crate) async fn run(config: SoakConfig) -> anyhow::Result<Outcome> {
    let schedule = crate::schedule::generate(config.seed, &config.schedule);
    let n = config.schedule.scooters;
    println!(
        "m365-soak: seed={} duration={}s scooters={n} faults={} work_dir={}",
        config.seed,
        config.schedule.duration.as_secs(),
        schedule.len(),
        config.work_dir.display()
    );
    if config.faketime.is_none() {
        println!(
            "note: libfaketime not found: clock jumps are skipped (apt-get install libfaketime)"
        );
    }

    // The broker and the checker's session.
    let mut mosquitto = Mosquitto::new(&config.mosquitto, &config.work_dir.join("broker"))?;
    mosquitto.start().await?;
    let port = mosquitto.port();
    let broker = Arc::new(tokio::sync::Mutex::new(mosquitto));
    let mut heard = subscriber::spawn(port, "m365-soak-checker", true);
    let mut subscribed = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while subscribed < TOPICS.len() {
            match heard.recv().await {
                Some(Heard::Subscribed) => subscribed += 1,
                Some(_) => {}
                None => break,
            }
        }
    })
    .await
    .context("the checker could not subscribe")?;

    // The scooters.
    let sim = Arc::new(
        Simulator::start(
            &config.m365_sim,
            &config.work_dir.join("sim"),
            n,
            config.seed,
        )
        .await?,
    );
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        checker: Mutex::new(Checker::new()),
        chaos_start: Mutex::new(None),
    });
    let (events_tx, events) = mpsc::unbounded_channel();
    let mut scooters = Vec::with_capacity(n);
    for (index, mac) in sim.scooters().iter().enumerate() {
        let dir = config.work_dir.join(format!("scooter-{index}"));
        std::fs::create_dir_all(&dir)?;
        let gps = Receiver::start(&config.soak, &dir.join("gps"), index).await?;
        let setup = ClientSetup {
            index,
            mac: mac.clone(),
            scooter_id: mac.replace(':', "").to_ascii_lowercase(),
            dir: dir.clone(),
            m365: config.m365.clone(),
            bus: sim.bus().to_owned(),
            broker_port: port,
            gps: gps.path().to_path_buf(),
            faketime: config.faketime.clone(),
            interval: config.interval,
            reconnect_window: config.schedule.reconnect_window,
            max_bytes: config.max_bytes,
            restart_sec: config.restart_sec,
        };
        setup.write_files()?;
        let disk = SmallDisk::start(&setup.mount()).await?;
        setup
            .register()
            .await
            .with_context(|| format!("pairing scooter {index}"))?;
        let supervisor = Supervisor::start(
            setup.clone(),
            disk.pid(),
            disk.path("spool.sqlite"),
            shared.t0,
            events_tx.clone(),
        )?;
        println!(
            "scooter {index}: {mac} id={} gps={} spool on a {} tmpfs",
            setup.scooter_id,
            setup.gps.display(),
            crate::client::DISK_SIZE
        );
        scooters.push(Arc::new(Scooter {
            setup,
            disk,
            gps: tokio::sync::Mutex::new(gps),
            supervisor,
        }));
    }
    drop(events_tx);
    let ids: Vec<String> = scooters
        .iter()
        .map(|s| s.setup.scooter_id.clone())
        .collect();
    let monitor = tokio::spawn(monitor(shared.clone(), heard, events, ids.clone()));

    // Warm-up: every client has published a record.
    let warm = wait_for(WARM_UP, || {
        let c = shared.checker();
        ids.iter().all(|id| c.delivered_below(id, 2))
    })
    .await;
    if !warm {
        println!("warning: not every client published within {WARM_UP:?}; going on");
    }

    // Chaos.
    let chaos_start = Instant::now();
    *shared.chaos_start.lock().unwrap_or_else(|p| p.into_inner()) = Some(chaos_start);
    println!(
        "chaos: {} faults over {}s",
        schedule.len(),
        config.schedule.duration.as_secs()
    );
    let injection_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let applied = Arc::new(Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let mut tasks = Vec::new();
    for fault in schedule.clone() {
        let ctx = FaultContext {
            sim: sim.clone(),
            broker: broker.clone(),
            scooters: scooters.clone(),
            shared: shared.clone(),
            errors: injection_errors.clone(),
            applied: applied.clone(),
            faketime: config.faketime.is_some(),
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(chaos_start + fault.at).await;
            ctx.play(fault).await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    // The chaos phase lasts its duration even when the last fault ends early.
    tokio::time::sleep_until(chaos_start + config.schedule.duration).await;
    let chaos_end = shared.at(Instant::now());
    println!(
        "chaos over after {:.1}s; healing and draining",
        chaos_start.elapsed().as_secs_f64()
    );

    // Heal (every fault reverted itself; this is the belt to those braces), then drain.
    {
        let mut b = broker.lock().await;
        if let Err(e) = b.start().await {
            injection_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(format!("broker restart at the end: {e:#}"));
        }
    }
    for s in &scooters {
        let _ = sim.ctl(&["clear-faults", &s.setup.mac]).await;
        let _ = s.disk.free();
        let _ = s.setup.set_clock(None);
    }
    let mut targets = Vec::with_capacity(n);
    for s in &scooters {
        let end = s.disk.spool_end(&config.soak, &s.setup.scooter_id).await;
        targets.push(end.map_or(1, |e| e.next_seq));
    }
    let drained = wait_for(config.drain_timeout, || {
        let c = shared.checker();
        ids.iter()
            .zip(&targets)
            .all(|(id, &next)| c.delivered_below(id, next))
    })
    .await;
    if !drained {
        println!(
            "drain: not everything sampled before the end arrived within {}",
            humantime::format_duration(config.drain_timeout)
        );
    }

    // Stop every client cleanly, read the spools, let the last messages arrive.
    futures_join(scooters.iter().map(|s| s.supervisor.stop())).await;
    let mut ends: Vec<Option<SpoolEnd>> = Vec::with_capacity(n);
    for s in &scooters {
        ends.push(s.disk.spool_end(&config.soak, &s.setup.scooter_id).await);
    }
    wait_for(Duration::from_secs(10), || {
        let c = shared.checker();
        ids.iter()
            .zip(&ends)
            .all(|(id, end)| end.as_ref().is_none_or(|e| c.undelivered(id, e) == 0))
    })
    .await;
    monitor.abort();

    // Judge.
    let limits = Limits {
        dup_window: DUP_WINDOW,
        max_bytes: config.max_bytes,
    };
    let mut violations: Vec<String> = injection_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|e| format!("soak: fault injection failed: {e}"))
        .collect();
    let mut rows = Vec::new();
    for (s, end) in scooters.iter().zip(&ends) {
        let verdict = shared
            .checker()
            .verdict(&s.setup.scooter_id, end.as_ref(), limits);
        let stats = s.supervisor.snapshot();
        let mut mine: Vec<String> = verdict.violations.clone();
        mine.extend(stats.violations.iter().cloned());
        let trend = trends(&stats.usage, chaos_end);
        if let Some((rss, fds)) = trend {
            if !rss.flat(RSS_SLACK_KIB) {
                mine.push(format!(
                    "RSS grew: last quarter median {} KiB > first quarter median {} KiB + {} KiB",
                    rss.last, rss.first, RSS_SLACK_KIB
                ));
            }
            if !fds.flat(FD_SLACK) {
                mine.push(format!(
                    "open descriptors grew: last quarter median {} > first quarter median {} + {}",
                    fds.last, fds.first, FD_SLACK
                ));
            }
        }
        violations.extend(
            mine.iter()
                .map(|v| format!("scooter {} ({}): {v}", s.setup.index, s.setup.scooter_id)),
        );
        rows.push((s.setup.index, s.setup.scooter_id.clone(), verdict, stats));
    }
    let applied = applied.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // What the scooters saw: the faults reached them.
    let mut scooter_side = Vec::with_capacity(n);
    for s in &scooters {
        let line = match sim.counters(&s.setup.mac).await {
            Ok(c) => SIM_COUNTERS
                .iter()
                .map(|(key, _)| c[*key].as_u64().unwrap_or(0).to_string())
                .collect::<Vec<_>>()
                .join(" / "),
            Err(e) => format!("unavailable: {e:#}"),
        };
        scooter_side.push(format!("  scooter {}: {line}", s.setup.index));
    }
    report(
        &config,
        &schedule,
        &rows,
        &applied,
        chaos_end,
        &scooter_side,
        &violations,
    );

    // Tear down.
    let lost: u64 = rows.iter().map(|r| r.2.lost.len() as u64).sum();
    for s in scooters {
        if let Ok(s) = Arc::try_unwrap(s) {
            s.gps.into_inner().stop().await;
            s.disk.stop().await;
        }
    }
    if let Ok(sim) = Arc::try_unwrap(sim) {
        sim.stop().await;
    }
    let _ = broker.lock().await.stop().await;

    let sampled: u64 = rows.iter().map(|r| r.2.sampled).sum();
    let delivered: u64 = rows.iter().map(|r| r.2.delivered).sum();
    let duplicates: u64 = rows.iter().map(|r| r.2.duplicates).sum();
    let faults: u64 = applied.values().sum();
    let summary = format!(
        "summary seed={} duration={}s scooters={n} faults={faults} sampled={sampled} \
         delivered={delivered} duplicates={duplicates} lost={lost} violations={} result={}",
        config.seed,
        config.schedule.duration.as_secs(),
        violations.len(),
        if violations.is_empty() {
            "pass"
        } else {
            "FAIL"
        }
    );
    Ok(Outcome {
        violations,
        summary,
    })
}

/// Waits until `done` holds or `limit` passes; returns whether it held.
async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Runs the futures at once and waits for all.
async fn futures_join<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(f);
    }
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = set.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Feeds the checker: what the subscriber heard, and the clients' starts.
async fn monitor(
    shared: Arc<Shared>,
    mut heard: mpsc::UnboundedReceiver<Heard>,
    mut events: mpsc::UnboundedReceiver<ClientEvent>,
    ids: Vec<String>,
) {
    loop {
        tokio::select! {
            h = heard.recv() => match h {
                Some(Heard::Message { topic, payload, at }) => {
                    let at = shared.at(at);
                    if let Some((id, observation)) = parse(&topic, &payload, at) {
                        shared.checker().observe(&id, observation);
                    }
                }
                Some(Heard::Connected { session_present, at }) => {
                    let at = shared.at(at);
                    // Its own reconnection may bring redeliveries: a disruption for everyone.
                    shared.checker().disruption(None, at);
                    if !session_present {
                        tracing::warn!("checker: the broker did not keep the session");
                    }
                }
                Some(Heard::Subscribed) => {}
                None => return,
            },
            e = events.recv() => match e {
                Some(ClientEvent::Started { index, at }) => {
                    let at = shared.at(at);
                    if let Some(id) = ids.get(index) {
                        shared.checker().disruption(Some(id), at);
                    }
                }
                Some(ClientEvent::Exited { index, how, restart }) => {
                    println!(
                        "  {} scooter={index} client exited {how}{}",
                        shared.chaos_time(),
                        if restart { ", restarting" } else { "" }
                    );
                }
                None => {}
            }
        }
    }
}

/// A message of the checker's topics, as an observation of one scooter.
fn parse(topic: &str, payload: &[u8], at: Duration) -> Option<(String, Observation)> {
    let mut parts = topic.split('/');
    let (Some("m365"), Some(id), Some(kind), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let observation = match kind {
        "telemetry" => {
            let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
            Observation::Record(Delivery {
                seq: v["seq"].as_u64()?,
                record_id: v["record_id"].as_str()?.to_owned(),
                at,
                ts: v["ts"]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc)),
                ts_source: v["ts_source"].as_str().unwrap_or("").to_owned(),
            })
        }
        "availability" if payload == b"online" => Observation::Online(at),
        "status" => {
            let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
            Observation::Status {
                spool_bytes: v["spool_bytes"].as_u64().unwrap_or(0),
                dropped_spool: v["dropped_spool"].as_u64().unwrap_or(0),
            }
        }
        _ => return None,
    };
    Some((id.to_owned(), observation))
}

/// What a fault task needs.
struct FaultContext {
    sim: Arc<Simulator>,
    broker: Arc<tokio::sync::Mutex<Mosquitto>>,
    scooters: Vec<Arc<Scooter>>,
    shared: Arc<Shared>,
    errors: Arc<Mutex<Vec<String>>>,
    applied: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    faketime: bool,
}

impl FaultContext {
    async fn play(&self, fault: Fault) {
        println!("  {fault}");
        match self.apply(&fault).await {
            Ok(true) => {
                *self
                    .applied
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(fault.kind.name())
                    .or_default() += 1;
            }
            Ok(false) => {}
            Err(e) => {
                println!("  {fault}: FAILED: {e:#}");
                self.errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{fault}: {e:#}"));
            }
        }
    }

    /// Applies and (after its length) reverts `fault`; `false` when it was skipped.
    async fn apply(&self, fault: &Fault) -> anyhow::Result<bool> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let scooter = match fault.target {
            Target::Broker => {
                let mut broker = self.broker.lock().await;
                match fault.kind {
                    FaultKind::BrokerRestart => {
                        broker.stop().await?;
                        broker.start().await?;
                    }
                    FaultKind::BrokerOutage(d) => {
                        broker.stop().await?;
                        tokio::time::sleep(d).await;
                        broker.start().await?;
                    }
                    other => bail!("{other} is no broker fault"),
                }
                self.shared
                    .checker()
                    .disruption(None, self.shared.at(Instant::now()));
                return Ok(true);
            }
            Target::Scooter(i) => self
                .scooters
                .get(i)
                .with_context(|| format!("no scooter {i}"))?,
        };
        let mac = scooter.setup.mac.as_str();
        match fault.kind {
            FaultKind::BleDrop(d) => self.sim.ctl(&["drop-link", mac, &ms(d)]).await?,
            FaultKind::PowerCycle(d) => self.sim.ctl(&["power-cycle", mac, &ms(d)]).await?,
            FaultKind::OutOfRange(d) => self.sim.ctl(&["out-of-range", mac, &ms(d)]).await?,
            FaultKind::Corrupt(p, d) | FaultKind::ExtraEmpty(p, d) => {
                let command = if matches!(fault.kind, FaultKind::Corrupt(..)) {
                    "corrupt"
                } else {
                    "extra-empty"
                };
                self.sim.ctl(&[command, mac, &p.to_string()]).await?;
                tokio::time::sleep(d).await;
                self.sim.ctl(&[command, mac, "0"]).await?;
            }
            FaultKind::Kill => scooter.supervisor.kill(),
            FaultKind::DiskFull(d) => {
                let filled = scooter.disk.fill().await;
                tokio::time::sleep(d).await;
                scooter.disk.free()?;
                filled?;
            }
            FaultKind::GpsUnplug(d) => {
                let mut gps = scooter.gps.lock().await;
                gps.unplug().await?;
                tokio::time::sleep(d).await;
                gps.replug().await?;
            }
            FaultKind::Clock(jump, d) => {
                if !self.faketime {
                    return Ok(false);
                }
                scooter.setup.set_clock(Some(jump))?;
                tokio::time::sleep(d).await;
                scooter.setup.set_clock(None)?;
            }
            other => bail!("{other} is no scooter fault"),
        }
        Ok(true)
    }
}

/// Prints the per-scooter table, the faults applied and the violations.
fn report(
    config: &SoakConfig,
    schedule: &[Fault],
    rows: &[(usize, String, Verdict, ClientStats)],
    applied: &BTreeMap<&'static str, u64>,
    chaos_end: Duration,
    scooter_side: &[String],
    violations: &[String],
) {
    println!();
    println!(
        "{:<8} {:<13} {:>7} {:>9} {:>5} {:>5} {:>5} {:>6} {:>15} {:>9} {:>9}  {:<28} exits",
        "scooter",
        "id",
        "sampled",
        "delivered",
        "lost",
        "dup",
        "conns",
        "starts",
        "rss MiB 1st/4th",
        "fds",
        "spool KiB",
        "ts sources (system/gps/untr)"
    );
    for (index, id, v, stats) in rows {
        let (rss, fds) = match trends(&stats.usage, chaos_end) {
            Some((rss, fds)) => (
                format!(
                    "{:.1}/{:.1}",
                    rss.first as f64 / 1024.0,
                    rss.last as f64 / 1024.0
                ),
                format!("{}/{}", fds.first, fds.last),
            ),
            None => ("n/a".to_owned(), "n/a".to_owned()),
        };
        let source = |k: &str| v.ts_sources.get(k).copied().unwrap_or(0);
        let exits: Vec<String> = stats
            .exits
            .iter()
            .map(|(how, count)| format!("{how}x{count}"))
            .collect();
        println!(
            "{:<8} {:<13} {:>7} {:>9} {:>5} {:>5} {:>5} {:>6} {:>15} {:>9} {:>9}  {:<28} {}",
            index,
            id,
            v.sampled,
            v.delivered,
            v.lost.len(),
            v.duplicates,
            v.connections,
            stats.starts,
            rss,
            fds,
            stats.max_footprint / 1024,
            format!(
                "{}/{}/{}",
                source("system"),
                source("gps"),
                source("untrusted_system")
            ),
            exits.join(" ")
        );
    }
    println!();
    let planned = |k: &str| schedule.iter().filter(|f| f.kind.name() == k).count();
    let line: Vec<String> = KINDS
        .iter()
        .map(|k| {
            format!(
                "{k}={}/{}",
                applied.get(k).copied().unwrap_or(0),
                planned(k)
            )
        })
        .collect();
    println!("faults applied/planned: {}", line.join(" "));
    println!(
        "scooter side ({}):",
        SIM_COUNTERS
            .iter()
            .map(|(_, label)| *label)
            .collect::<Vec<_>>()
            .join(" / ")
    );
    for l in scooter_side {
        println!("{l}");
    }
    println!(
        "limits: duplicates within {DUP_WINDOW:?} of a disruption; median RSS +{} MiB and \
         descriptors +{FD_SLACK} from the first to the last quarter; spool_bytes <= {} bytes",
        RSS_SLACK_KIB / 1024,
        config.max_bytes
    );
    if violations.is_empty() {
        println!("violations: none");
    } else {
        println!("violations ({}):", violations.len());
        for v in violations {
            println!("  - {v}");
        }
    }
    println!("replay: {}", config.replay);
}
