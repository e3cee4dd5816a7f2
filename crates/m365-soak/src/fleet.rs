//! `m365-soak fleet`, the fleet load test: many simulated scooters sampled at a fixed rate by
//! several `m365 run` processes (several `[[scooter]]` entries each) against one mosquitto on
//! loopback. It measures what the fleet costs (CPU time and peak RSS per process, the broker's
//! and the simulators' share, the rate of telemetry the broker delivers) and checks that every
//! record arrived: per scooter, the sequence numbers received have no gap from 1 to the last one
//! the spool handed out. No faults: the chaos soak covers those. See `docs/soak.md`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::broker::Mosquitto;
use crate::resources::{self, Memory};
use crate::sim::Simulator;
use crate::subscriber::{self, Heard, TOPICS};

/// The most scooters one `m365-sim serve` takes (the range of its `--scooters`).
pub(crate) const SIM_MAX: u16 = 64;
/// How long a process may take to stop after SIGTERM (the packaged unit's `TimeoutStopSec`).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the last records may take to reach the subscriber after every process stopped.
const LAST_MESSAGES: Duration = Duration::from_secs(10);
/// How often conditions are checked while waiting.
const POLL: Duration = Duration::from_millis(200);

/// The fleet's size and pace.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FleetArgs {
    /// Simulated scooters in all.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    scooters: u16,
    /// Scooters per `m365 run` process (its `[[scooter]]` entries); the last one may have fewer.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=i64::from(SIM_MAX)))]
    per_process: u16,
    /// Scooters per `m365-sim serve`, i.e. per fake BlueZ (default: `--per-process`, one
    /// BlueZ per process as each gateway has its own adapter). More puts several processes on
    /// one BlueZ; a process's scooters are never split. At most 64, the simulator's limit.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=i64::from(SIM_MAX)))]
    per_sim: Option<u16>,
    /// `[mqtt] encoding` of every scooter: `json` (one record per message) or `compact`
    /// (batches of up to 5 s of records, `batch_window`'s default).
    #[arg(long, value_enum, default_value_t = Encoding::Json)]
    encoding: Encoding,
    /// Length of the measured phase, after the warm-up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The sampling interval of every scooter (`interval` and `parked_interval`, with
    /// `heartbeat = "0s"`: one record per interval, parked or not).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Longest wait for every scooter's first record (scan, connect, login) before measuring.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    warm_up: Duration,
    /// Seed of the first scooter's identity (scooter i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The `m365` binary (default: next to this program).
    #[arg(long)]
    pub(crate) m365: Option<PathBuf>,
    /// The `m365-sim` binary (default: next to this program).
    #[arg(long)]
    pub(crate) m365_sim: Option<PathBuf>,
    /// The `mosquitto` binary (default: /usr/sbin/mosquitto, else on PATH).
    #[arg(long, conflicts_with = "broker_port")]
    pub(crate) mosquitto: Option<PathBuf>,
    /// Use the broker already listening on 127.0.0.1:PORT (EMQX, VerneMQ, HiveMQ, a mosquitto
    /// of your own) instead of starting mosquitto; its CPU and memory are then not measured.
    /// Anonymous access, plain MQTT.
    #[arg(long)]
    pub(crate) broker_port: Option<u16>,
    /// Keep everything here (configurations, logs, spools); it must be empty or absent.
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
}

/// The encodings the subscriber can read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Encoding {
    /// One JSON record per message.
    Json,
    /// Deflated batches of records.
    Compact,
}

impl Encoding {
    fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Compact => "compact",
        }
    }
}

/// The binaries a run needs, found.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// `m365`.
    pub(crate) m365: PathBuf,
    /// `m365-sim`.
    pub(crate) m365_sim: PathBuf,
    /// `mosquitto`, unless the broker is not the test's own.
    pub(crate) mosquitto: Option<PathBuf>,
}

/// Which scooters each process serves and which simulator serves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Per process: its number of scooters. Process `p`'s scooters follow those of `p - 1`.
    pub(crate) processes: Vec<usize>,
    /// Per simulator: the processes whose scooters it serves, consecutive.
    pub(crate) sims: Vec<std::ops::Range<usize>>,
}

impl Layout {
    /// `scooters` in processes of `per_process`, spread evenly over as few simulators of at most
    /// `per_sim` scooters as hold them, a process never split between two.
    pub(crate) fn new(
        scooters: usize,
        per_process: usize,
        per_sim: usize,
    ) -> anyhow::Result<Layout> {
        if scooters == 0 || per_process == 0 {
            bail!("a fleet needs a scooter and a process");
        }
        if per_process > per_sim {
            bail!("--per-process {per_process} is more than one simulator serves ({per_sim})");
        }
        let count = scooters.div_ceil(per_process);
        let processes = (0..count)
            .map(|p| per_process.min(scooters - p * per_process))
            .collect();
        let sims = count.div_ceil(per_sim / per_process);
        Ok(Layout {
            processes,
            sims: (0..sims)
                .map(|k| k * count / sims..(k + 1) * count / sims)
                .collect(),
        })
    }

    /// The index of process `p`'s first scooter.
    pub(crate) fn first_scooter(&self, p: usize) -> usize {
        self.processes[..p].iter().sum()
    }

    /// The scooters of simulator `k`.
    pub(crate) fn sim_scooters(&self, k: usize) -> usize {
        self.processes[self.sims[k].clone()].iter().sum()
    }
}

/// Scooter `i`'s id in topics and records.
fn scooter_id(i: usize) -> String {
    format!("s{i:03}")
}

/// The sequence numbers one scooter's telemetry brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SeqTally {
    /// Every sequence number received.
    pub(crate) seqs: BTreeSet<u64>,
    /// Messages received (duplicates included).
    pub(crate) messages: u64,
    /// Messages whose sequence number had been received before.
    pub(crate) duplicates: u64,
}

impl SeqTally {
    /// Counts one message.
    pub(crate) fn observe(&mut self, seq: u64) {
        self.messages += 1;
        if !self.seqs.insert(seq) {
            self.duplicates += 1;
        }
    }

    /// The sequence numbers from 1 to `last` that never arrived.
    pub(crate) fn missing(&self, last: u64) -> Vec<u64> {
        (1..=last).filter(|s| !self.seqs.contains(s)).collect()
    }

    /// The highest sequence number received, 0 for none.
    pub(crate) fn last(&self) -> u64 {
        self.seqs.last().copied().unwrap_or(0)
    }
}

/// What the subscriber heard, per scooter.
#[derive(Debug, Default, Clone)]
struct Tally {
    scooters: HashMap<String, SeqTally>,
    /// Telemetry messages, every scooter.
    telemetry: u64,
    /// Records in them (as many with `json`).
    records: u64,
    /// Telemetry messages that could not be read (topic or payload).
    unreadable: u64,
    /// Connections of the subscriber (more than one: it reconnected).
    connections: u64,
}

/// A message on `m365/<id>/telemetry`: the scooter and the sequence numbers of its records
/// (one for `json`, a batch for `compact`), or `Some(None)` when the payload cannot be read;
/// `None` for other topics.
pub(crate) fn telemetry_seqs(
    topic: &str,
    payload: &[u8],
    encoding: Encoding,
) -> Option<Option<(String, Vec<u64>)>> {
    let mut parts = topic.split('/');
    let (Some("m365"), Some(id), Some("telemetry"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let seqs = match encoding {
        Encoding::Json => serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v["seq"].as_u64())
            .map(|s| vec![s]),
        Encoding::Compact => m365_pipeline::encoding::compact::decode(payload)
            .ok()
            .and_then(|batch| batch.column("seq"))
            .and_then(|column| {
                column
                    .into_iter()
                    .map(|v| v.filter(|s| *s >= 1.0).map(|s| s as u64))
                    .collect::<Option<Vec<u64>>>()
            })
            .filter(|seqs| !seqs.is_empty()),
    };
    Some(seqs.map(|s| (id.to_owned(), s)))
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// `martinete.toml` of one process: `scooters` as `(id, mac)`, tokens in the working directory
/// (the default `.mi-token-<id>`), spools `spool-<id>.sqlite` in `dir`.
pub(crate) fn process_config(
    index: usize,
    port: u16,
    interval: Duration,
    encoding: Encoding,
    dir: &Path,
    scooters: &[(String, String)],
) -> String {
    let ms = interval.as_millis();
    let mut text = format!(
        "# Written by m365-soak fleet for process {index}: every scooter sampled and published\n\
         # every {ms} ms, parked or not.\n\
         [telemetry]\n\
         interval = \"{ms}ms\"\n\
         parked_interval = \"{ms}ms\"\n\
         heartbeat = \"0s\"\n\n\
         [mqtt]\n\
         broker = \"tcp://127.0.0.1:{port}\"\n\
         encoding = \"{encoding}\"\n\
         reconnect_min = \"500ms\"\n\
         reconnect_max = \"5s\"\n\n\
         [spool]\n\
         path = {spool}\n\n\
         [log]\n\
         level = \"info\"\n",
        spool = toml_string(&dir.join("spool.sqlite").display().to_string()),
        encoding = encoding.name(),
    );
    for (id, mac) in scooters {
        text.push_str(&format!("\n[[scooter]]\nid = \"{id}\"\nmac = \"{mac}\"\n"));
    }
    text
}

/// One `m365 run` and its scooters.
struct Process {
    index: usize,
    dir: PathBuf,
    ids: Vec<String>,
    child: Child,
    pid: u32,
    /// How it ended, once it did.
    exit: Option<String>,
}

impl Process {
    fn log(&self) -> PathBuf {
        self.dir.join("m365.log")
    }

    fn spool(&self, id: &str) -> PathBuf {
        self.dir.join(format!("spool-{id}.sqlite"))
    }

    /// Notes an exit nobody asked for; `true` while it runs.
    fn alive(&mut self) -> bool {
        if self.exit.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exit = Some(status.to_string());
                false
            }
            Err(e) => {
                self.exit = Some(format!("cannot wait: {e}"));
                false
            }
        }
    }
}

/// CPU time of the processes measured, at one moment.
#[derive(Debug, Clone, Default)]
struct CpuSnapshot {
    processes: Vec<Duration>,
    mosquitto: Duration,
    sims: Duration,
    buses: Duration,
    soak: Duration,
    /// Records delivered per process so far (duplicates included).
    records: Vec<u64>,
    telemetry: u64,
    all_records: u64,
}

/// The simulators' own pids and their D-Bus daemons'.
#[derive(Debug, Clone, Default)]
struct Harness {
    sims: Vec<u32>,
    buses: Vec<u32>,
}

impl Harness {
    fn find(sims: &[Simulator]) -> Harness {
        let sims: Vec<u32> = sims.iter().filter_map(Simulator::pid).collect();
        let buses = sims
            .iter()
            .flat_map(|pid| resources::descendants(*pid))
            .filter(|(_, comm)| comm == "dbus-daemon")
            .map(|(pid, _)| pid)
            .collect();
        Harness { sims, buses }
    }
}

fn cpu_of(pid: u32) -> Duration {
    resources::stat(pid).map_or(Duration::ZERO, |s| s.cpu())
}

fn snapshot(
    processes: &[Process],
    mosquitto: Option<u32>,
    harness: &Harness,
    tally: &Tally,
) -> CpuSnapshot {
    CpuSnapshot {
        processes: processes.iter().map(|p| cpu_of(p.pid)).collect(),
        mosquitto: mosquitto.map_or(Duration::ZERO, cpu_of),
        sims: harness.sims.iter().map(|p| cpu_of(*p)).sum(),
        buses: harness.buses.iter().map(|p| cpu_of(*p)).sum(),
        soak: cpu_of(std::process::id()),
        records: processes
            .iter()
            .map(|p| {
                p.ids
                    .iter()
                    .filter_map(|id| tally.scooters.get(id))
                    .map(|t| t.messages)
                    .sum()
            })
            .collect(),
        telemetry: tally.telemetry,
        all_records: tally.records,
    }
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Nothing lost, every process well.
    pub(crate) passed: bool,
    /// The last line: `fleet: scooters=… processes=… records=… lost=… rate=…/s`.
    pub(crate) summary: String,
}

/// Runs the fleet and prints its report but the last line, which it returns.
pub(crate) async fn run(
    args: FleetArgs,
    bins: Binaries,
    work_dir: PathBuf,
) -> anyhow::Result<Outcome> {
    let per_sim = args.per_sim.unwrap_or(args.per_process);
    let layout = Layout::new(
        usize::from(args.scooters),
        usize::from(args.per_process),
        usize::from(per_sim),
    )?;
    let t0 = Instant::now();
    let n = usize::from(args.scooters);
    println!(
        "m365-soak fleet: scooters={n} processes={} per_process={} simulators={} encoding={} \
         interval={} duration={} work_dir={}",
        layout.processes.len(),
        args.per_process,
        layout.sims.len(),
        args.encoding.name(),
        humantime::format_duration(args.interval),
        humantime::format_duration(args.duration),
        work_dir.display()
    );

    // The broker and the subscriber.
    let mut mosquitto = match (&bins.mosquitto, args.broker_port) {
        (Some(binary), None) => {
            let mut m = Mosquitto::new(binary, &work_dir.join("broker"))?;
            m.start().await?;
            Some(m)
        }
        (_, Some(_)) => None,
        (None, None) => bail!("no broker: pass --broker-port or install mosquitto"),
    };
    let port = match (&mosquitto, args.broker_port) {
        (Some(m), _) => m.port(),
        (None, Some(port)) => port,
        (None, None) => bail!("no broker"),
    };
    // A name of its own: another run's session on a broker that outlives it never mixes in.
    let mut heard = subscriber::spawn(
        port,
        &format!("m365-soak-fleet-{}", std::process::id()),
        false,
    );
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
    .context("the subscriber could not subscribe")?;
    let tally = Arc::new(Mutex::new(Tally {
        connections: 1,
        ..Tally::default()
    }));
    let listener = tokio::spawn(listen(heard, tally.clone(), args.encoding));
    let lock = |t: &Arc<Mutex<Tally>>| t.lock().unwrap_or_else(|p| p.into_inner()).clone();

    // The scooters, paired by seeding both sides with a token.
    let sims = start_simulators(&args, &bins, &layout, &work_dir).await?;
    let harness = Harness::find(&sims);
    println!(
        "simulators: {} ({} scooters each at most), started and paired within {:.1}s",
        sims.len(),
        per_sim,
        t0.elapsed().as_secs_f64()
    );

    // The processes.
    let mut processes = Vec::with_capacity(layout.processes.len());
    for (p, &count) in layout.processes.iter().enumerate() {
        let k = layout
            .sims
            .iter()
            .position(|r| r.contains(&p))
            .context("a process without a simulator")?;
        let sim = &sims[k];
        let first_of_sim = layout.first_scooter(layout.sims[k].start);
        let first = layout.first_scooter(p);
        let scooters: Vec<(String, String)> = (first..first + count)
            .map(|i| (scooter_id(i), sim.scooters()[i - first_of_sim].clone()))
            .collect();
        let dir = gateway_dir(&work_dir, p);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("martinete.toml");
        std::fs::write(
            &config,
            process_config(p, port, args.interval, args.encoding, &dir, &scooters),
        )?;
        let log = std::fs::File::create(dir.join("m365.log"))?;
        let child = Command::new(&bins.m365)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(&dir)
            .env("DBUS_SYSTEM_BUS_ADDRESS", sim.bus())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("RUST_LOG")
            .env_remove("M365_CONFIG")
            .env_remove("M365_MQTT_PASSWORD")
            .env_remove("M365_MQTT_USERNAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bins.m365.display()))?;
        let pid = child.id().context("the process's pid")?;
        processes.push(Process {
            index: p,
            dir,
            ids: scooters.into_iter().map(|(id, _)| id).collect(),
            child,
            pid,
            exit: None,
        });
    }
    let ids: Vec<String> = processes.iter().flat_map(|p| p.ids.clone()).collect();

    // Warm-up: every scooter has published.
    let warm_start = Instant::now();
    let mut warm = false;
    while warm_start.elapsed() < args.warm_up {
        {
            let t = tally.lock().unwrap_or_else(|p| p.into_inner());
            if ids.iter().all(|id| t.scooters.contains_key(id)) {
                warm = true;
                break;
            }
        }
        if !processes.iter_mut().all(Process::alive) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let heard_from = lock(&tally).scooters.len();
    println!(
        "warm-up: {heard_from} of {n} scooters published within {:.1}s{}",
        warm_start.elapsed().as_secs_f64(),
        if warm {
            ""
        } else {
            " (not all: measuring anyway)"
        }
    );

    // The measured phase.
    let mosquitto_pid = mosquitto.as_ref().and_then(Mosquitto::pid);
    let before = snapshot(&processes, mosquitto_pid, &harness, &lock(&tally));
    let start = Instant::now();
    let mut per_second = Vec::new();
    let mut last = before.telemetry;
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    while start.elapsed() < args.duration {
        tick.tick().await;
        let now = tally.lock().unwrap_or_else(|p| p.into_inner()).telemetry;
        per_second.push(now - last);
        last = now;
        for p in &mut processes {
            // Said once, when first seen.
            if p.exit.is_none() && !p.alive() {
                println!(
                    "  process {} exited during the measurement: {}",
                    p.index,
                    p.exit.as_deref().unwrap_or("?")
                );
            }
        }
    }
    let window = start.elapsed();
    let after = snapshot(&processes, mosquitto_pid, &harness, &lock(&tally));
    let memory: Vec<Option<Memory>> = processes.iter().map(|p| resources::memory(p.pid)).collect();
    let broker_memory = mosquitto_pid.and_then(resources::memory);
    let sim_memory: u64 = harness
        .sims
        .iter()
        .filter_map(|p| resources::memory(*p))
        .map(|m| m.peak_kib)
        .sum();
    let bus_memory: u64 = harness
        .buses
        .iter()
        .filter_map(|p| resources::memory(*p))
        .map(|m| m.peak_kib)
        .sum();

    // Stop every process (SIGTERM: they commit, publish what they can and disconnect).
    let died: Vec<usize> = processes
        .iter()
        .filter(|p| p.exit.is_some())
        .map(|p| p.index)
        .collect();
    for p in &processes {
        if p.exit.is_none() {
            crate::process::signal(p.pid, Signal::SIGTERM);
        }
    }
    let stop_start = Instant::now();
    for p in &mut processes {
        if p.exit.is_some() {
            continue;
        }
        let left = STOP_TIMEOUT.saturating_sub(stop_start.elapsed());
        p.exit = Some(match tokio::time::timeout(left, p.child.wait()).await {
            Ok(Ok(status)) => status.to_string(),
            Ok(Err(e)) => format!("cannot wait: {e}"),
            Err(_) => {
                let _ = p.child.kill().await;
                format!("did not stop within {STOP_TIMEOUT:?} of SIGTERM, killed")
            }
        });
    }
    let stopped_in = stop_start.elapsed();

    // What the spools numbered, and what arrived.
    let mut ends: HashMap<String, (u64, usize)> = HashMap::new();
    for p in &processes {
        for id in &p.ids {
            let end = crate::client::read_spool(&p.spool(id), id)
                .with_context(|| format!("reading the spool of {id}"))?;
            ends.insert(
                id.clone(),
                (end.next_seq.saturating_sub(1), end.pending.len()),
            );
        }
    }
    let arrival = Instant::now();
    while arrival.elapsed() < LAST_MESSAGES {
        let all = {
            let t = tally.lock().unwrap_or_else(|p| p.into_inner());
            ids.iter().all(|id| {
                let last = ends.get(id).map_or(0, |e| e.0);
                t.scooters.get(id).map_or(0, SeqTally::last) >= last
            })
        };
        if all {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    listener.abort();
    let tally = lock(&tally);

    // Judge.
    let mut problems = Vec::new();
    let mut lost_total = 0u64;
    let mut left_total = 0u64;
    let mut records = 0u64;
    let mut duplicates = 0u64;
    let mut sampled = 0u64;
    for p in &processes {
        for id in &p.ids {
            let seen = tally.scooters.get(id).cloned().unwrap_or_default();
            let (numbered, left) = ends.get(id).copied().unwrap_or((0, 0));
            let last = numbered.max(seen.last());
            let missing = seen.missing(last);
            records += seen.seqs.len() as u64;
            duplicates += seen.duplicates;
            sampled += numbered;
            lost_total += missing.len() as u64;
            left_total += left as u64;
            if numbered == 0 {
                problems.push(format!("{id} (process {}): nothing sampled", p.index));
            }
            if !missing.is_empty() {
                problems.push(format!(
                    "{id} (process {}): {} lost: {}",
                    p.index,
                    missing.len(),
                    ranges(&missing)
                ));
            }
            if left > 0 {
                problems.push(format!(
                    "{id} (process {}): {left} records left in the spool after the stop",
                    p.index
                ));
            }
        }
    }
    for p in &processes {
        let exit = p.exit.as_deref().unwrap_or("?");
        if died.contains(&p.index) {
            problems.push(format!(
                "process {} exited before the stop ({exit}); last lines:\n{}",
                p.index,
                log_tail(&p.log(), 5)
            ));
        } else if exit != "exit status: 0" {
            problems.push(format!(
                "process {} ended {exit} after SIGTERM; last lines:\n{}",
                p.index,
                log_tail(&p.log(), 5)
            ));
        }
    }
    if !warm {
        problems.push(format!(
            "only {heard_from} of {n} scooters published within the warm-up ({})",
            humantime::format_duration(args.warm_up)
        ));
    }
    if tally.unreadable > 0 {
        problems.push(format!(
            "{} telemetry messages could not be read",
            tally.unreadable
        ));
    }

    // Report.
    let secs = window.as_secs_f64();
    let rate = (after.telemetry - before.telemetry) as f64 / secs;
    let record_rate = (after.all_records - before.all_records) as f64 / secs;
    println!();
    println!(
        "measured {secs:.1}s after the warm-up; CPU = utime + stime from /proc/<pid>/stat, \
         % of one core; RSS from /proc/<pid>/status"
    );
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>7} {:>7} {:>10} {:>9} {:>8} {:>7}",
        "process",
        "scooters",
        "records",
        "rec/s",
        "cpu s",
        "cpu %",
        "ms/record",
        "peak MiB",
        "rss MiB",
        "threads"
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut total_cpu = Duration::ZERO;
    let mut total_records = 0u64;
    let mut total_peak = 0u64;
    for (i, p) in processes.iter().enumerate() {
        let cpu = after.processes[i].saturating_sub(before.processes[i]);
        let recs = after.records[i] - before.records[i];
        total_cpu += cpu;
        total_records += recs;
        let m = memory[i].unwrap_or_default();
        total_peak += m.peak_kib;
        println!(
            "{:<16} {:>8} {:>8} {:>8.1} {:>7.2} {:>6.1}% {:>10.2} {:>9.1} {:>8.1} {:>7}",
            format!("m365 run #{}", p.index),
            p.ids.len(),
            recs,
            recs as f64 / secs,
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / secs * 100.0,
            per_record(cpu, recs),
            mib(m.peak_kib),
            mib(m.rss_kib),
            m.threads
        );
    }
    println!(
        "{:<16} {:>8} {:>8} {:>8.1} {:>7.2} {:>6.1}% {:>10.2} {:>9.1} {:>8} {:>7}",
        "all m365 run",
        n,
        total_records,
        total_records as f64 / secs,
        total_cpu.as_secs_f64(),
        total_cpu.as_secs_f64() / secs * 100.0,
        per_record(total_cpu, total_records),
        mib(total_peak),
        "",
        ""
    );
    let harness_row = |name: String, cpu: Duration, peak_kib: u64| {
        println!(
            "{:<16} {:>8} {:>8} {:>8} {:>7.2} {:>6.1}% {:>10.2} {:>9.1}",
            name,
            "",
            "",
            "",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / secs * 100.0,
            per_record(cpu, total_records),
            mib(peak_kib)
        );
    };
    if mosquitto_pid.is_some() {
        harness_row(
            "mosquitto".to_owned(),
            after.mosquitto.saturating_sub(before.mosquitto),
            broker_memory.map_or(0, |m| m.peak_kib),
        );
    } else {
        println!("{:<16} 127.0.0.1:{port}, not measured", "broker");
    }
    harness_row(
        format!("m365-sim ×{}", harness.sims.len()),
        after.sims.saturating_sub(before.sims),
        sim_memory,
    );
    harness_row(
        format!("dbus-daemon ×{}", harness.buses.len()),
        after.buses.saturating_sub(before.buses),
        bus_memory,
    );
    harness_row(
        "m365-soak".to_owned(),
        after.soak.saturating_sub(before.soak),
        resources::memory(std::process::id()).map_or(0, |m| m.peak_kib),
    );
    let mut sorted = per_second.clone();
    sorted.sort_unstable();
    let pick = |q: usize| sorted.get(q.min(sorted.len().saturating_sub(1))).copied();
    println!();
    println!(
        "broker delivered to the subscriber: {rate:.1} telemetry messages/s, {record_rate:.1} \
         records/s (expected {:.1}); messages per second min {} median {} max {}",
        n as f64 / args.interval.as_secs_f64(),
        pick(0).unwrap_or(0),
        pick(sorted.len() / 2).unwrap_or(0),
        pick(sorted.len()).unwrap_or(0)
    );
    let mut window_counts: Vec<u64> = ids
        .iter()
        .map(|id| tally.scooters.get(id).map_or(0, |t| t.messages))
        .collect();
    window_counts.sort_unstable();
    println!(
        "delivery: sampled={sampled} received={records} duplicates={duplicates} lost={lost_total} \
         left_in_spool={left_total}; stopped in {:.1}s; subscriber connections={}",
        stopped_in.as_secs_f64(),
        tally.connections
    );
    if problems.is_empty() {
        println!("problems: none");
    } else {
        println!("problems ({}):", problems.len());
        for p in &problems {
            println!("  - {p}");
        }
    }
    println!(
        "replay: m365-soak fleet --scooters {n} --per-process {} --per-sim {per_sim} \
         --encoding {} --duration {} --interval {} --seed {}{}",
        args.per_process,
        args.encoding.name(),
        humantime::format_duration(args.duration),
        humantime::format_duration(args.interval),
        args.seed,
        args.broker_port
            .map(|p| format!(" --broker-port {p}"))
            .unwrap_or_default()
    );
    println!("wall time: {:.1}s", t0.elapsed().as_secs_f64());

    // Tear down.
    for sim in sims {
        sim.stop().await;
    }
    if let Some(m) = mosquitto.as_mut() {
        let _ = m.stop().await;
    }

    let summary = format!(
        "fleet: scooters={n} processes={} records={records} lost={lost_total} rate={rate:.1}/s",
        processes.len()
    );
    Ok(Outcome {
        passed: problems.is_empty(),
        summary,
    })
}

fn per_record(cpu: Duration, records: u64) -> f64 {
    if records == 0 {
        0.0
    } else {
        cpu.as_secs_f64() * 1000.0 / records as f64
    }
}

fn gateway_dir(work_dir: &Path, p: usize) -> PathBuf {
    work_dir.join(format!("process-{p:02}"))
}

/// Starts the simulators with every scooter already paired: a first start tells the addresses,
/// then each scooter's state file and its process's token file get the same random token, and
/// the simulator starts again remembering it (as after `m365 register`, which the chaos soak
/// runs; pairing 100 scooters one by one would take minutes and measure nothing).
async fn start_simulators(
    args: &FleetArgs,
    bins: &Binaries,
    layout: &Layout,
    work_dir: &Path,
) -> anyhow::Result<Vec<Simulator>> {
    let mut sims = Vec::with_capacity(layout.sims.len());
    let mut seen = BTreeSet::new();
    for (k, range) in layout.sims.iter().enumerate() {
        let count = layout.sim_scooters(k);
        let first = layout.first_scooter(range.start);
        let dir = work_dir.join(format!("sim-{k}"));
        let seed = args.seed.wrapping_add(first as u64);
        let probe = Simulator::start(&bins.m365_sim, &dir, count, seed).await?;
        let macs = probe.scooters().to_vec();
        probe.stop().await;
        for (i, mac) in macs.iter().enumerate() {
            if !seen.insert(mac.clone()) {
                bail!("two simulated scooters share the address {mac}");
            }
            let global = first + i;
            let process = layout
                .processes
                .iter()
                .scan(0usize, |acc, c| {
                    *acc += c;
                    Some(*acc)
                })
                .position(|end| global < end)
                .context("a scooter without a process")?;
            let token: [u8; 12] = rand::random();
            let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
            let name = mac.replace(':', "").to_ascii_lowercase();
            write_private(
                &dir.join("state").join(format!("scooter-{name}.state")),
                format!("token={hex}\n").as_bytes(),
            )?;
            let gateway = gateway_dir(work_dir, process);
            write_private(
                &gateway.join(format!(".mi-token-{}", scooter_id(global))),
                &token,
            )?;
        }
        let sim = Simulator::start(&bins.m365_sim, &dir, count, seed).await?;
        if sim.scooters() != macs.as_slice() {
            bail!("m365-sim serve announced other scooters on its second start");
        }
        sims.push(sim);
    }
    Ok(sims)
}

/// Writes a file only its owner may read (it holds a token).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)?;
    Ok(())
}

/// Feeds the tally from the subscriber.
async fn listen(
    mut heard: mpsc::UnboundedReceiver<Heard>,
    tally: Arc<Mutex<Tally>>,
    encoding: Encoding,
) {
    while let Some(h) = heard.recv().await {
        let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
        match h {
            Heard::Message { topic, payload, .. } => {
                match telemetry_seqs(&topic, &payload, encoding) {
                    Some(Some((id, seqs))) => {
                        t.telemetry += 1;
                        t.records += seqs.len() as u64;
                        let scooter = t.scooters.entry(id).or_default();
                        for seq in seqs {
                            scooter.observe(seq);
                        }
                    }
                    Some(None) => t.unreadable += 1,
                    None => {}
                }
            }
            Heard::Connected { .. } => t.connections += 1,
            Heard::Subscribed => {}
        }
    }
}

/// `3-7, 12`: sequence numbers as ranges.
pub(crate) fn ranges(seqs: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seqs.len() {
        let mut j = i;
        while j + 1 < seqs.len() && seqs[j + 1] == seqs[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            seqs[i].to_string()
        } else {
            format!("{}-{}", seqs[i], seqs[j])
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// The last `n` lines of a log, indented.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_fill_as_few_simulators_as_hold_them_evenly() {
        let l = Layout::new(100, 10, 64).unwrap();
        assert_eq!(l.processes, vec![10; 10]);
        assert_eq!(l.sims, vec![0..5, 5..10]);
        assert_eq!((l.sim_scooters(0), l.sim_scooters(1)), (50, 50));
        assert_eq!(l.first_scooter(7), 70);

        let l = Layout::new(6, 3, 64).unwrap();
        assert_eq!(l.processes, vec![3, 3]);
        assert_eq!((l.sims.len(), l.sims[0].clone()), (1, 0..2));

        // The last process takes the rest; no simulator takes more than it may.
        let l = Layout::new(25, 7, 14).unwrap();
        assert_eq!(l.processes, vec![7, 7, 7, 4]);
        assert_eq!(l.sims, vec![0..2, 2..4]);
        assert!((0..l.sims.len()).all(|k| l.sim_scooters(k) <= 14));

        let l = Layout::new(100, 1, 64).unwrap();
        assert_eq!(l.sims.len(), 2);
        assert_eq!(l.sim_scooters(0) + l.sim_scooters(1), 100);

        assert!(Layout::new(10, 65, 64).is_err());
        assert!(Layout::new(0, 10, 64).is_err());
    }

    #[test]
    fn gaps_are_lost_records_and_repeats_are_duplicates() {
        let mut t = SeqTally::default();
        for seq in [1, 2, 2, 3, 5, 6, 6, 6, 8] {
            t.observe(seq);
        }
        assert_eq!((t.messages, t.duplicates, t.last()), (9, 3, 8));
        assert_eq!(t.missing(8), vec![4, 7]);
        // The spool numbered two more than arrived.
        assert_eq!(t.missing(10), vec![4, 7, 9, 10]);
        assert_eq!(ranges(&[4, 7, 9, 10, 11]), "4, 7, 9-11");
        assert_eq!(SeqTally::default().missing(0), Vec::<u64>::new());
    }

    #[test]
    fn telemetry_topics_give_the_scooter_and_the_sequence() {
        let json = Encoding::Json;
        let payload = br#"{"record_id":"x","scooter_id":"s007","seq":42}"#;
        assert_eq!(
            telemetry_seqs("m365/s007/telemetry", payload, json),
            Some(Some(("s007".to_owned(), vec![42])))
        );
        assert_eq!(
            telemetry_seqs("m365/s007/telemetry", b"\x01\x02", json),
            Some(None)
        );
        assert_eq!(
            telemetry_seqs("m365/s007/telemetry", payload, Encoding::Compact),
            Some(None)
        );
        let mut scooter = m365_pipeline::synthetic::SyntheticScooter::new(
            "s007",
            1,
            chrono::Utc::now(),
            Duration::from_secs(1),
        );
        let records: Vec<m365_pipeline::Record> = (7..10)
            .map(|seq| m365_pipeline::Record::from_sample(scooter.next_sample(), seq))
            .collect();
        let batch = m365_pipeline::encoding::compact::encode(&records).unwrap();
        assert_eq!(
            telemetry_seqs("m365/s007/telemetry", &batch, Encoding::Compact),
            Some(Some(("s007".to_owned(), vec![7, 8, 9])))
        );
        assert_eq!(telemetry_seqs("m365/s007/status", payload, json), None);
        assert_eq!(telemetry_seqs("m365/s007/telemetry/x", payload, json), None);
    }

    #[test]
    fn a_process_config_samples_at_a_fixed_rate_with_several_scooters() {
        let text = process_config(
            3,
            18830,
            Duration::from_secs(1),
            Encoding::Compact,
            Path::new("/tmp/fleet \"x\"/process-03"),
            &[
                ("s030".to_owned(), "AA:BB:CC:00:00:01".to_owned()),
                ("s031".to_owned(), "AA:BB:CC:00:00:02".to_owned()),
            ],
        );
        for line in [
            "interval = \"1000ms\"",
            "parked_interval = \"1000ms\"",
            "heartbeat = \"0s\"",
            "broker = \"tcp://127.0.0.1:18830\"",
            "encoding = \"compact\"",
            "path = \"/tmp/fleet \\\"x\\\"/process-03/spool.sqlite\"",
            "[[scooter]]\nid = \"s031\"\nmac = \"AA:BB:CC:00:00:02\"",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert_eq!(text.matches("[[scooter]]").count(), 2);
        assert_eq!(scooter_id(7), "s007");
    }
}
