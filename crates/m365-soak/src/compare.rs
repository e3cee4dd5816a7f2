//! `m365-soak compare`: `m365 run` as shipped against the earlier design (played by
//! `m365-soak earlier-client`, see [`crate::earlier`]) on one simulated world: one `m365-sim
//! serve` Pro 2 (Mi-auth, paired for both), a private mosquitto, a counting TCP proxy between
//! each client and the broker, and a subscriber. Each client runs in turn through the same
//! phases: a steady phase (records per minute, CPU per record, peak RSS, time to the first
//! record), bytes on the wire per record per encoding, a broker outage, a 3 s BLE drop, full
//! samples per second at several connection intervals next to the link limit, and the shipped
//! client's drain of an hour of spooled records. It prints the tables of docs/benchmarks.md
//! ("End to end") and fails when a figure could not be measured or `m365 run` lost a record.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use m365_sim::link_timing::{self, FULL_SAMPLE, Pattern};
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::broker::Mosquitto;
use crate::earlier::{Counts, parse_sampled};
use crate::resources;
use crate::sim::Simulator;
use crate::subscriber::{self, Heard, TOPICS};

/// How often conditions are checked while waiting.
const POLL: Duration = Duration::from_millis(100);
/// The smallest `[telemetry] interval` the configuration accepts.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// `batch_window`'s default: a `compact` phase lasts this much longer, so whole batches count.
const BATCH_WINDOW: Duration = Duration::from_secs(5);
/// How long one client may take to publish its first record (scan, connect, login, GPS).
const FIRST_RECORD: Duration = Duration::from_secs(60);
/// Reads of a sample of `m365 run` (`read_cells = true`) and of the earlier client.
const SHIPPED_READS: usize = 5;
const EARLIER_READS: usize = 4;

/// Options of `m365-soak compare`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CompareArgs {
    /// Length of the steady phase (records per minute, CPU per record, peak RSS).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    steady: Duration,
    /// Time after the first record before the steady phase is measured.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    warm_up: Duration,
    /// Length of each bytes-per-record phase (`compact` gets its batch window on top).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    bytes: Duration,
    /// Length of the broker outage.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Length of the BLE drop.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    ble_drop: Duration,
    /// Longest wait for delivery to settle after a fault.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Length of each samples-per-second phase.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    rate: Duration,
    /// Connection intervals of the samples-per-second phases, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "15,30,50")]
    conn_intervals: Vec<u64>,
    /// Records in the spool before the drain phase (an hour at 1 Hz); 0 skips the phase.
    #[arg(long, default_value_t = 3600)]
    backlog: u64,
    /// Sampling interval of both clients outside the samples-per-second phases.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Pause before the earlier client is started again after it exited (systemd's
    /// `RestartSec`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    restart_sec: Duration,
    /// The `m365` binary (default: next to this program).
    #[arg(long)]
    pub(crate) m365: Option<PathBuf>,
    /// The `m365-sim` binary (default: next to this program).
    #[arg(long)]
    pub(crate) m365_sim: Option<PathBuf>,
    /// The `mosquitto` binary (default: /usr/sbin/mosquitto, else on PATH).
    #[arg(long)]
    pub(crate) mosquitto: Option<PathBuf>,
    /// Keep everything here (configurations, logs, spools) instead of a temporary folder.
    #[arg(long)]
    pub(crate) work_dir: Option<PathBuf>,
}

/// The binaries a run needs, found.
#[derive(Debug, Clone)]
pub(crate) struct Binaries {
    /// `m365`.
    pub(crate) m365: PathBuf,
    /// `m365-sim`.
    pub(crate) m365_sim: PathBuf,
    /// `mosquitto`.
    pub(crate) mosquitto: PathBuf,
    /// This program (for `earlier-client`).
    pub(crate) soak: PathBuf,
}

/// How a run ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// Every figure measured and nothing lost by `m365 run`.
    pub(crate) passed: bool,
    /// The last line.
    pub(crate) summary: String,
}

// ---------------------------------------------------------------------------------------------
// The counting proxy.

/// A TCP relay between a client and the broker that counts the bytes both ways.
#[derive(Debug)]
pub(crate) struct Proxy {
    port: u16,
    bytes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a loopback port and relays every connection to `upstream` on loopback; a
    /// connection the broker refuses (it is down) is closed at once.
    pub(crate) async fn start(upstream: u16) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let bytes = Arc::new(AtomicU64::new(0));
        let counter = bytes.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream, counter.clone()));
            }
        });
        Ok(Proxy { port, bytes, task })
    }

    /// The port clients connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Bytes relayed so far, both ways, every connection.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: u16, bytes: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, bytes.clone()),
        pump(server_read, client_write, bytes)
    );
}

/// Copies one direction until its end, counting; then ends the other side's writing.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    bytes: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        bytes.fetch_add(n as u64, Ordering::Relaxed);
        if to
            .write_all(buf.get(..n).unwrap_or_default())
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = to.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// What the subscriber heard.

/// One telemetry message.
#[derive(Debug, Clone)]
struct Msg {
    at: Instant,
    /// When it arrived, Unix milliseconds.
    wall_ms: i64,
    /// Sequence numbers (`json`, `compact`); empty for `legacy`.
    seqs: Vec<u64>,
    /// The sample time of a `json` record, Unix milliseconds.
    ts_ms: Option<i64>,
}

impl Msg {
    fn records(&self) -> u64 {
        self.seqs.len().max(1) as u64
    }
}

type Tally = Arc<Mutex<Vec<Msg>>>;

fn snapshot(tally: &Tally) -> Vec<Msg> {
    tally.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Every sequence number heard from index `from` on.
fn seqs_since(tally: &Tally, from: usize) -> BTreeSet<u64> {
    snapshot(tally)
        .get(from..)
        .unwrap_or_default()
        .iter()
        .flat_map(|m| m.seqs.clone())
        .collect()
}

fn heard(tally: &Tally) -> usize {
    tally.lock().unwrap_or_else(|p| p.into_inner()).len()
}

/// Sequence numbers and the sample time of a telemetry payload, whatever its encoding.
pub(crate) fn read_payload(payload: &[u8]) -> (Vec<u64>, Option<i64>) {
    if payload.first() == Some(&b'{') {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) else {
            return (Vec::new(), None);
        };
        let seqs = v["seq"].as_u64().into_iter().collect();
        let ts = v["ts"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis());
        return (seqs, ts);
    }
    let seqs = m365_pipeline::encoding::compact::decode(payload)
        .ok()
        .and_then(|batch| batch.column("seq"))
        .map(|column| {
            column
                .into_iter()
                .flatten()
                .filter(|s| *s >= 1.0)
                .map(|s| s as u64)
                .collect()
        })
        .unwrap_or_default();
    (seqs, None)
}

async fn listen(mut heard: mpsc::UnboundedReceiver<Heard>, topic: String, tally: Tally) {
    while let Some(h) = heard.recv().await {
        if let Heard::Message {
            topic: t,
            payload,
            at,
        } = h
            && t == topic
        {
            let (seqs, ts_ms) = read_payload(&payload);
            let msg = Msg {
                at,
                wall_ms: chrono::Utc::now().timestamp_millis(),
                seqs,
                ts_ms,
            };
            tally.lock().unwrap_or_else(|p| p.into_inner()).push(msg);
        }
    }
}

/// Waits until `done` holds or `limit` passed; whether it held.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// On-CPU time of all of a process's threads, nanoseconds (`/proc/<pid>/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The clients.

/// Which client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Shipped,
    Earlier,
}

/// A running client of either kind.
#[derive(Debug)]
enum Running {
    Shipped {
        child: Box<Child>,
        pid: u32,
        spool: PathBuf,
        log: PathBuf,
    },
    Earlier(EarlierRun),
}

/// The earlier client under its supervisor (restarted after `restart_sec`, as systemd would).
#[derive(Debug)]
struct EarlierRun {
    state: Arc<Mutex<EarlierState>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default, Clone)]
struct EarlierState {
    pid: Option<u32>,
    /// Sample times, Unix milliseconds, every run.
    samples: Vec<i64>,
    finals: Vec<Counts>,
    exits: Vec<String>,
    starts: u32,
}

impl Running {
    fn pid(&self) -> Option<u32> {
        match self {
            Running::Shipped { pid, .. } => Some(*pid),
            Running::Earlier(e) => e.state.lock().unwrap_or_else(|p| p.into_inner()).pid,
        }
    }

    /// Records sampled so far (the earlier client's own count; `None` for `m365 run`, whose
    /// spool tells at the end).
    fn sampled(&self) -> Option<Vec<i64>> {
        match self {
            Running::Shipped { .. } => None,
            Running::Earlier(e) => Some(
                e.state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .samples
                    .clone(),
            ),
        }
    }

    /// SIGTERM and wait; how it ended, and for `m365 run` the spool's last sequence number.
    async fn stop(self) -> (String, Option<u64>) {
        match self {
            Running::Shipped {
                mut child,
                pid,
                spool,
                log,
            } => {
                crate::process::signal(pid, Signal::SIGTERM);
                let exit = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                    Ok(Ok(status)) => status.to_string(),
                    Ok(Err(e)) => format!("cannot wait: {e}"),
                    Err(_) => {
                        let _ = child.kill().await;
                        format!("did not stop in 30 s (log {})", log.display())
                    }
                };
                let id = spool_scooter(&spool);
                let last = crate::client::read_spool(&spool, &id)
                    .ok()
                    .map(|end| end.next_seq.saturating_sub(1));
                (exit, last)
            }
            Running::Earlier(e) => {
                let _ = e.stop.send(true);
                if let Some(pid) = e.state.lock().unwrap_or_else(|p| p.into_inner()).pid {
                    crate::process::signal(pid, Signal::SIGTERM);
                }
                let _ = tokio::time::timeout(Duration::from_secs(30), e.task).await;
                let state = e.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (
                    format!("{} run(s), exits: {}", state.starts, state.exits.join(", ")),
                    None,
                )
            }
        }
    }
}

/// The scooter id a spool of this harness belongs to (its file is `spool-<id>-<phase>.sqlite`).
fn spool_scooter(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("spool-"))
        .and_then(|s| s.split('-').next())
        .unwrap_or_default()
        .to_owned()
}

/// The world both clients see.
struct World {
    bins: Binaries,
    dir: PathBuf,
    mosquitto: Mosquitto,
    proxy: Proxy,
    tally: Tally,
    mac: String,
    id: String,
    token: PathBuf,
    restart_sec: Duration,
}

impl World {
    fn topic(&self) -> String {
        format!("m365/{}/telemetry", self.id)
    }

    /// The simulator with the GPS device a client uses, at a connection interval.
    async fn simulator(&self, which: Which, conn_ms: u64) -> anyhow::Result<Simulator> {
        let gps = match which {
            Which::Shipped => "nmea",
            Which::Earlier => "sim7600",
        };
        let extra: Vec<String> = [
            "--model",
            "pro2",
            "--gps",
            gps,
            "--conn-interval-ms",
            &conn_ms.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let sim =
            Simulator::start_with(&self.bins.m365_sim, &self.dir.join("sim"), 1, 1, &extra).await?;
        if sim.scooters() != [self.mac.clone()] {
            bail!("m365-sim serve announced another scooter");
        }
        Ok(sim)
    }

    /// Starts `m365 run` with `encoding`, a fresh spool named after `phase` (or the given one).
    async fn shipped(
        &self,
        sim: &Simulator,
        phase: &str,
        encoding: &str,
        interval: Duration,
    ) -> anyhow::Result<Running> {
        let dir = self.dir.join(format!("m365-{phase}"));
        std::fs::create_dir_all(&dir)?;
        let spool = dir.join(format!("spool-{}-{phase}.sqlite", self.id));
        self.shipped_with_spool(sim, phase, encoding, interval, spool)
            .await
    }

    async fn shipped_with_spool(
        &self,
        sim: &Simulator,
        phase: &str,
        encoding: &str,
        interval: Duration,
        spool: PathBuf,
    ) -> anyhow::Result<Running> {
        let dir = self.dir.join(format!("m365-{phase}"));
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("martinete.toml");
        let gps = sim.gps().context("the simulator has no GPS device")?;
        std::fs::write(
            &config,
            shipped_config(
                &self.mac,
                &self.token,
                gps,
                self.proxy.port(),
                encoding,
                interval,
                &spool,
            ),
        )?;
        let log = dir.join("m365.log");
        let child = Command::new(&self.bins.m365)
            .arg("--config")
            .arg(&config)
            .arg("run")
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
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bins.m365.display()))?;
        let pid = child.id().context("m365's pid")?;
        Ok(Running::Shipped {
            child: Box::new(child),
            pid,
            spool,
            log,
        })
    }

    /// Starts the earlier client under its supervisor.
    fn earlier(&self, sim: &Simulator, phase: &str, interval: Duration) -> anyhow::Result<Running> {
        let dir = self.dir.join(format!("earlier-{phase}"));
        std::fs::create_dir_all(&dir)?;
        let gps = sim.gps().context("the simulator has no GPS device")?;
        let mut command = Command::new(&self.bins.soak);
        command
            .arg("earlier-client")
            .arg("--mac")
            .arg(&self.mac)
            .arg("--token")
            .arg(&self.token)
            .arg("--gps")
            .arg(gps)
            .arg("--broker")
            .arg(format!("127.0.0.1:{}", self.proxy.port()))
            .arg("--topic")
            .arg(self.topic())
            .arg("--scooter-id")
            .arg(&self.id)
            .arg("--interval")
            .arg(format!("{}ms", interval.as_millis()))
            .current_dir(&dir)
            .env("DBUS_SYSTEM_BUS_ADDRESS", sim.bus())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let log = dir.join("earlier.log");
        let state = Arc::new(Mutex::new(EarlierState::default()));
        let (stop, mut stopped) = watch::channel(false);
        let restart_sec = self.restart_sec;
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let stderr = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log);
                if let Ok(file) = stderr {
                    command.stderr(file);
                }
                let mut child = match command.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        shared
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .exits
                            .push(format!("cannot start: {e}"));
                        return;
                    }
                };
                {
                    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                    s.pid = child.id();
                    s.starts += 1;
                }
                if let Some(out) = child.stdout.take() {
                    let mut lines = BufReader::new(out).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some((_, ms)) = parse_sampled(&line) {
                            s.samples.push(ms);
                        } else if let Some(c) = Counts::parse(&line) {
                            s.finals.push(c);
                        }
                    }
                }
                let status = child.wait().await;
                shared.lock().unwrap_or_else(|p| p.into_inner()).pid = None;
                shared
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .exits
                    .push(match status {
                        Ok(s) => s.code().map_or_else(|| s.to_string(), |c| c.to_string()),
                        Err(e) => format!("cannot wait: {e}"),
                    });
                if *stopped.borrow() {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(restart_sec) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Ok(Running::Earlier(EarlierRun { state, stop, task }))
    }

    /// Waits for the first record heard after index `from`; the time since `started`.
    async fn first_record(&self, from: usize, started: Instant) -> Option<Duration> {
        let tally = self.tally.clone();
        let ok = wait_until(FIRST_RECORD, || heard(&tally) > from).await;
        ok.then(|| snapshot(&self.tally).get(from).map(|m| m.at - started))
            .flatten()
    }
}

/// `martinete.toml` of `m365 run` here: footprint.sh's (an NMEA receiver, the defaults
/// otherwise), with the encoding and interval of the phase, one record per sample.
pub(crate) fn shipped_config(
    mac: &str,
    token: &Path,
    gps: &str,
    port: u16,
    encoding: &str,
    interval: Duration,
    spool: &Path,
) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let ms = interval.as_millis();
    format!(
        "# Written by m365-soak compare.\n\
         [scooter]\nmac = \"{mac}\"\ntoken_file_path = {token}\n\n\
         [telemetry]\ninterval = \"{ms}ms\"\nparked_interval = \"{ms}ms\"\nheartbeat = \"0s\"\n\n\
         [gps]\nsource = \"serial\"\nkind = \"nmea\"\ndevice = {gps}\n\n\
         [mqtt]\nbroker = \"tcp://127.0.0.1:{port}\"\nencoding = \"{encoding}\"\n\n\
         [spool]\npath = {spool}\n\n\
         [log]\nlevel = \"info\"\n",
        token = quote(&token.display().to_string()),
        gps = quote(gps),
        spool = quote(&spool.display().to_string()),
    )
}

/// The link limit in full samples per second for `reads` of [`FULL_SAMPLE`] issued in
/// `pattern` at a connection interval of `conn_ms` (Mi-auth, the simulator's processing delay);
/// `None` outside the model's range.
pub(crate) fn link_limit(conn_ms: u64, pattern: Pattern, reads: usize) -> Option<f64> {
    let timing = link_timing::with_interval(Duration::from_millis(conn_ms)).ok()?;
    Some(link_timing::link_limit(
        &timing,
        &m365_sim::scooter::Processing::default(),
        m365_sim::Generation::MiAuth,
        FULL_SAMPLE.get(..reads)?,
        pattern,
        200,
    ))
}

/// A table with a header row, columns padded to their widest cell, the first left-aligned and
/// the others right-aligned.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let w = widths.get(c).copied().unwrap_or(0);
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Bytes per record, or `None` without records.
pub(crate) fn per_record(bytes: u64, records: u64) -> Option<f64> {
    (records > 0).then(|| bytes as f64 / records as f64)
}

// ---------------------------------------------------------------------------------------------
// The phases.

/// What the steady phase measured.
#[derive(Debug, Clone, Default)]
struct Steady {
    first: Option<Duration>,
    per_minute: Option<f64>,
    cpu_ms: Option<f64>,
    peak_kib: Option<u64>,
    bytes: Option<f64>,
}

/// Measures a client for `length` from now: records, CPU, bytes; peak RSS at the end.
async fn measure(
    world: &World,
    client: &Running,
    length: Duration,
) -> (u64, f64, Option<f64>, Option<u64>, Option<f64>) {
    let from = heard(&world.tally);
    let pid = client.pid();
    let cpu0 = pid.map(cpu_ns);
    let bytes0 = world.proxy.bytes();
    let start = Instant::now();
    tokio::time::sleep(length).await;
    let secs = start.elapsed().as_secs_f64();
    let bytes = world.proxy.bytes() - bytes0;
    let records: u64 = snapshot(&world.tally)
        .get(from..)
        .unwrap_or_default()
        .iter()
        .map(Msg::records)
        .sum();
    let same = client.pid() == pid;
    let cpu = match (pid, cpu0) {
        (Some(p), Some(c0)) if same && records > 0 => {
            Some(cpu_ns(p).saturating_sub(c0) as f64 / 1e6 / records as f64)
        }
        _ => None,
    };
    let peak = pid.and_then(resources::memory).map(|m| m.peak_kib);
    (records, secs, cpu, peak, per_record(bytes, records))
}

/// What a fault cost.
#[derive(Debug, Clone, Default)]
struct Fault {
    lost: Option<u64>,
    /// Link back → next record sampled after it delivered (BLE drop only).
    back: Option<Duration>,
}

/// Stops the broker for `length` and starts it again; waits for delivery to settle. Returns
/// the time it came back (Unix ms) and whether delivery settled.
async fn outage(
    world: &mut World,
    client: &Running,
    length: Duration,
    settle: Duration,
) -> anyhow::Result<(i64, bool)> {
    world.mosquitto.stop().await?;
    tokio::time::sleep(length).await;
    world.mosquitto.start().await?;
    let back = now_ms();
    let tally = world.tally.clone();
    let settled = match client {
        Running::Shipped { .. } => {
            wait_until(settle, || {
                let msgs = snapshot(&tally);
                let seqs: BTreeSet<u64> = msgs.iter().flat_map(|m| m.seqs.clone()).collect();
                let last = seqs.last().copied().unwrap_or(0);
                msgs.iter().any(|m| m.ts_ms.is_some_and(|t| t >= back)) && seqs.len() as u64 == last
            })
            .await
        }
        Running::Earlier(_) => {
            let from = heard(&tally);
            wait_until(settle, || heard(&tally) > from).await
        }
    };
    Ok((back, settled))
}

/// Drops the BLE link for `length`; returns the return time (Unix ms) and the time from it to
/// the first record sampled after it being delivered.
async fn ble_drop(
    world: &World,
    sim: &Simulator,
    client: &Running,
    length: Duration,
    settle: Duration,
) -> anyhow::Result<(i64, Option<Duration>)> {
    let dropped = now_ms();
    sim.ctl(&[
        "drop-link",
        &world.mac,
        &format!("{}ms", length.as_millis()),
    ])
    .await?;
    let back = dropped + i64::try_from(length.as_millis()).unwrap_or(i64::MAX);
    let tally = world.tally.clone();
    let mut arrived = None;
    let ok = wait_until(settle, || {
        let msgs = snapshot(&tally);
        arrived = match client.sampled() {
            None => msgs
                .iter()
                .find(|m| m.ts_ms.is_some_and(|t| t >= back))
                .map(|m| m.wall_ms),
            Some(samples) => samples
                .iter()
                .find(|&&t| t >= back)
                .and_then(|&t| msgs.iter().find(|m| m.wall_ms >= t).map(|m| m.wall_ms)),
        };
        arrived.is_some()
    })
    .await;
    let delay = arrived
        .filter(|_| ok)
        .map(|a| Duration::from_millis(u64::try_from(a - back).unwrap_or(0)));
    Ok((back, delay))
}

/// Runs the comparison and prints its tables but the last line, which it returns.
pub(crate) async fn run(
    args: CompareArgs,
    bins: Binaries,
    work_dir: PathBuf,
) -> anyhow::Result<Outcome> {
    let t0 = Instant::now();
    println!(
        "m365-soak compare: steady={} warm_up={} bytes={} outage={} ble_drop={} rate={} \
         conn_intervals={:?} backlog={} interval={} work_dir={}",
        humantime::format_duration(args.steady),
        humantime::format_duration(args.warm_up),
        humantime::format_duration(args.bytes),
        humantime::format_duration(args.outage),
        humantime::format_duration(args.ble_drop),
        humantime::format_duration(args.rate),
        args.conn_intervals,
        args.backlog,
        humantime::format_duration(args.interval),
        work_dir.display()
    );
    for ms in &args.conn_intervals {
        if link_limit(*ms, Pattern::Pipelined, SHIPPED_READS).is_none() {
            bail!("--conn-intervals: {ms} ms is outside 7.5–100 ms");
        }
    }

    // The broker, the proxy, the subscriber.
    let mut mosquitto = Mosquitto::new(&bins.mosquitto, &work_dir.join("broker"))?;
    mosquitto.start().await?;
    let proxy = Proxy::start(mosquitto.port()).await?;
    let mut sub = subscriber::spawn(
        mosquitto.port(),
        &format!("m365-soak-compare-{}", std::process::id()),
        true,
    );
    let mut subscribed = 0;
    tokio::time::timeout(Duration::from_secs(20), async {
        while subscribed < TOPICS.len() {
            match sub.recv().await {
                Some(Heard::Subscribed) => subscribed += 1,
                Some(_) => {}
                None => break,
            }
        }
    })
    .await
    .context("the subscriber could not subscribe")?;

    // The scooter, paired for both clients (a probe tells its address, then both sides get the
    // same token, as after `m365 register`).
    let sim_dir = work_dir.join("sim");
    let probe = Simulator::start(&bins.m365_sim, &sim_dir, 1, 1).await?;
    let mac = probe.scooters().first().cloned().context("no scooter")?;
    probe.stop().await;
    let token_bytes: [u8; 12] = rand::random();
    let hex: String = token_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let name = mac.replace(':', "").to_ascii_lowercase();
    crate::fleet::write_private(
        &sim_dir.join("state").join(format!("scooter-{name}.state")),
        format!("token={hex}\n").as_bytes(),
    )?;
    let token = work_dir.join(".mi-token");
    crate::fleet::write_private(&token, &token_bytes)?;
    let tally: Tally = Arc::new(Mutex::new(Vec::new()));
    let mut world = World {
        bins,
        dir: work_dir.clone(),
        mosquitto,
        proxy,
        tally: tally.clone(),
        mac,
        id: name,
        token,
        restart_sec: args.restart_sec,
    };
    let listener = tokio::spawn(listen(sub, world.topic(), tally.clone()));
    println!("scooter {} (id {}), paired", world.mac, world.id);

    let mut problems: Vec<String> = Vec::new();
    let mut shipped = Steady::default();
    let mut earlier = Steady::default();
    let mut bytes_rows: Vec<(String, &str, Option<f64>, u64)> = Vec::new();
    let mut shipped_outage = Fault::default();
    let mut shipped_ble = Fault::default();
    let mut earlier_outage = Fault::default();
    let mut earlier_ble = Fault::default();

    // ---- m365 run, 30 ms: legacy steady phase, json faults, compact bytes.
    let sim = world.simulator(Which::Shipped, 30).await?;
    {
        let from = heard(&world.tally);
        let started = Instant::now();
        let client = world
            .shipped(&sim, "legacy", "legacy", args.interval)
            .await?;
        shipped.first = world.first_record(from, started).await;
        if shipped.first.is_some() {
            tokio::time::sleep(args.warm_up).await;
            let (records, secs, cpu, peak, bytes) = measure(&world, &client, args.steady).await;
            shipped.per_minute = Some(records as f64 / secs * 60.0);
            shipped.cpu_ms = cpu;
            shipped.peak_kib = peak;
            shipped.bytes = bytes;
            bytes_rows.push(("legacy".into(), "m365 run", bytes, records));
        } else {
            problems.push("m365 run (legacy) published nothing".into());
        }
        let (exit, _) = client.stop().await;
        println!("m365 run, legacy steady phase: stopped ({exit})");
    }
    {
        let from = heard(&world.tally);
        let client = world.shipped(&sim, "json", "json", args.interval).await?;
        if world.first_record(from, Instant::now()).await.is_some() {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (records, _, _, _, bytes) = measure(&world, &client, args.bytes).await;
            bytes_rows.push(("json".into(), "m365 run", bytes, records));
            println!(
                "m365 run, json: broker outage of {}",
                humantime::format_duration(args.outage)
            );
            let (_, settled) = outage(&mut world, &client, args.outage, args.settle).await?;
            if !settled {
                problems.push("m365 run: delivery did not settle after the outage".into());
            }
            let boundary = snapshot(&world.tally)
                .iter()
                .flat_map(|m| m.seqs.clone())
                .max()
                .unwrap_or(0);
            println!(
                "m365 run, json: BLE drop of {}",
                humantime::format_duration(args.ble_drop)
            );
            let (_, back) = ble_drop(&world, &sim, &client, args.ble_drop, args.settle).await?;
            shipped_ble.back = back;
            // One more record after the return, so the drop's records are all numbered.
            tokio::time::sleep(args.interval * 2).await;
            let (exit, last) = client.stop().await;
            println!("m365 run, json: stopped ({exit})");
            if let Some(last) = last {
                let tally = world.tally.clone();
                let seen = |t: &Tally| -> BTreeSet<u64> {
                    snapshot(t)
                        .get(from..)
                        .unwrap_or_default()
                        .iter()
                        .flat_map(|m| m.seqs.clone())
                        .collect()
                };
                wait_until(Duration::from_secs(10), || {
                    let s = seen(&tally);
                    (1..=last).all(|q| s.contains(&q))
                })
                .await;
                let s = seen(&tally);
                let missing: Vec<u64> = (1..=last).filter(|q| !s.contains(q)).collect();
                shipped_outage.lost =
                    Some(missing.iter().filter(|&&q| q <= boundary).count() as u64);
                shipped_ble.lost = Some(missing.iter().filter(|&&q| q > boundary).count() as u64);
                if !missing.is_empty() {
                    problems.push(format!(
                        "m365 run lost {} records: {}",
                        missing.len(),
                        crate::fleet::ranges(&missing)
                    ));
                }
            } else {
                problems.push("m365 run: the json spool could not be read".into());
            }
        } else {
            problems.push("m365 run (json) published nothing".into());
            let _ = client.stop().await;
        }
    }
    {
        let from = heard(&world.tally);
        let client = world
            .shipped(&sim, "compact", "compact", args.interval)
            .await?;
        if world.first_record(from, Instant::now()).await.is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (records, _, _, _, bytes) =
                measure(&world, &client, args.bytes + BATCH_WINDOW).await;
            bytes_rows.push(("compact".into(), "m365 run", bytes, records));
        } else {
            problems.push("m365 run (compact) published nothing".into());
        }
        let (exit, _) = client.stop().await;
        println!("m365 run, compact: stopped ({exit})");
    }
    sim.stop().await;

    // ---- The earlier client, 30 ms: steady phase, outage, BLE drop.
    let sim = world.simulator(Which::Earlier, 30).await?;
    {
        let from = heard(&world.tally);
        let started = Instant::now();
        let client = world.earlier(&sim, "steady", args.interval)?;
        earlier.first = world.first_record(from, started).await;
        if earlier.first.is_some() {
            tokio::time::sleep(args.warm_up).await;
            let (records, secs, cpu, peak, bytes) = measure(&world, &client, args.steady).await;
            earlier.per_minute = Some(records as f64 / secs * 60.0);
            earlier.cpu_ms = cpu;
            earlier.peak_kib = peak;
            earlier.bytes = bytes;
            bytes_rows.push(("legacy".into(), "earlier", bytes, records));

            println!(
                "earlier client: broker outage of {}",
                humantime::format_duration(args.outage)
            );
            let sampled0 = client.sampled().map_or(0, |s| s.len());
            let heard0 = heard(&world.tally);
            let (_, settled) = outage(&mut world, &client, args.outage, args.settle).await?;
            tokio::time::sleep(args.interval).await;
            let sampled = client.sampled().map_or(0, |s| s.len()) - sampled0;
            let delivered = heard(&world.tally) - heard0;
            earlier_outage.lost = settled.then(|| sampled.saturating_sub(delivered) as u64);

            println!(
                "earlier client: BLE drop of {}",
                humantime::format_duration(args.ble_drop)
            );
            let sampled0 = client.sampled().map_or(0, |s| s.len());
            let heard0 = heard(&world.tally);
            let (_, back) = ble_drop(&world, &sim, &client, args.ble_drop, args.settle).await?;
            earlier_ble.back = back;
            tokio::time::sleep(args.interval).await;
            let sampled = client.sampled().map_or(0, |s| s.len()) - sampled0;
            let delivered = heard(&world.tally) - heard0;
            earlier_ble.lost = back.map(|_| sampled.saturating_sub(delivered) as u64);
        } else {
            problems.push("the earlier client published nothing".into());
        }
        let (exit, _) = client.stop().await;
        println!("earlier client: stopped ({exit})");
    }
    sim.stop().await;

    // ---- Full samples per second at each connection interval.
    let mut rates: Vec<(u64, Option<f64>, Option<f64>)> = Vec::new();
    for &ms in &args.conn_intervals {
        let mut pair = (ms, None, None);
        for which in [Which::Shipped, Which::Earlier] {
            let sim = world.simulator(which, ms).await?;
            let from = heard(&world.tally);
            let phase = format!("rate-{ms}ms");
            let client = match which {
                Which::Shipped => world.shipped(&sim, &phase, "json", MIN_INTERVAL).await?,
                Which::Earlier => world.earlier(&sim, &phase, MIN_INTERVAL)?,
            };
            let rate = if world.first_record(from, Instant::now()).await.is_some() {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let s0 = client.sampled().map_or(0, |s| s.len());
                let (records, secs, _, _, _) = measure(&world, &client, args.rate).await;
                let samples = match client.sampled() {
                    Some(s) => (s.len() - s0) as u64,
                    None => records,
                };
                Some(samples as f64 / secs)
            } else {
                None
            };
            let _ = client.stop().await;
            sim.stop().await;
            match which {
                Which::Shipped => pair.1 = rate,
                Which::Earlier => pair.2 = rate,
            }
        }
        println!(
            "{ms} ms: m365 run {} samples/s, earlier {} samples/s",
            fmt(pair.1, 2),
            fmt(pair.2, 2)
        );
        rates.push(pair);
    }

    // ---- The backlog drain of m365 run.
    let mut drain: Option<(f64, f64, usize, Option<i64>)> = None;
    if args.backlog > 0 {
        let sim = world.simulator(Which::Shipped, 30).await?;
        let dir = world.dir.join("m365-drain");
        std::fs::create_dir_all(&dir)?;
        let spool = dir.join(format!("spool-{}-drain.sqlite", world.id));
        fill_spool(&spool, &world.id, &world.topic(), args.backlog)?;
        let from = heard(&world.tally);
        let client = world
            .shipped_with_spool(&sim, "drain", "json", args.interval, spool)
            .await?;
        let backlog = args.backlog;
        let tally = world.tally.clone();
        let limit = Duration::from_secs(60) + Duration::from_millis(backlog * 10);
        let done = wait_until(limit, || {
            let seqs: BTreeSet<u64> = snapshot(&tally)
                .get(from..)
                .unwrap_or_default()
                .iter()
                .flat_map(|m| m.seqs.clone())
                .filter(|&s| s <= backlog)
                .collect();
            seqs.len() as u64 == backlog
        })
        .await;
        // The backlog may be gone before the first live sample (scan, connect, login): wait
        // for one live record so its delay can be told.
        if done {
            wait_until(args.settle, || {
                seqs_since(&tally, from)
                    .last()
                    .is_some_and(|&s| s > backlog)
            })
            .await;
        }
        let msgs: Vec<Msg> = snapshot(&world.tally)
            .get(from..)
            .unwrap_or_default()
            .to_vec();
        let first = msgs.iter().find(|m| m.seqs.iter().any(|&s| s <= backlog));
        let last = msgs.iter().rfind(|m| m.seqs.iter().any(|&s| s <= backlog));
        if let (true, Some(first), Some(last)) = (done, first, last) {
            let secs = (last.at - first.at).as_secs_f64().max(1e-3);
            // Live records delivered while the backlog drained; when the drain was quicker
            // than a sample, the first live record.
            let is_live = |m: &&Msg| m.seqs.iter().any(|&s| s > backlog);
            let during: Vec<i64> = msgs
                .iter()
                .filter(is_live)
                .filter(|m| m.at <= last.at)
                .filter_map(|m| m.ts_ms.map(|t| m.wall_ms - t))
                .collect();
            let worst = during.iter().max().copied().or_else(|| {
                msgs.iter()
                    .find(is_live)
                    .and_then(|m| m.ts_ms.map(|t| m.wall_ms - t))
            });
            drain = Some((backlog as f64 / secs, secs, during.len(), worst));
        } else {
            problems.push(format!(
                "m365 run did not drain its backlog of {backlog} within {}",
                humantime::format_duration(limit)
            ));
        }
        tokio::time::sleep(args.interval).await;
        let (exit, last_seq) = client.stop().await;
        println!("m365 run, drain: stopped ({exit})");
        if let Some(last_seq) = last_seq {
            let tally = world.tally.clone();
            wait_until(Duration::from_secs(10), || {
                let s = seqs_since(&tally, from);
                (1..=last_seq).all(|q| s.contains(&q))
            })
            .await;
            let s = seqs_since(&world.tally, from);
            let missing: Vec<u64> = (1..=last_seq).filter(|q| !s.contains(q)).collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "m365 run lost {} records in the drain phase: {}",
                    missing.len(),
                    crate::fleet::ranges(&missing)
                ));
            }
        }
        sim.stop().await;
    }
    listener.abort();
    let _ = world.mosquitto.stop().await;

    // ---- Report.
    let mib = |k: Option<u64>| k.map(|k| format!("{:.1}", k as f64 / 1024.0));
    let secs = |d: Option<Duration>| d.map(|d| format!("{:.2}", d.as_secs_f64()));
    let or_dash = |s: Option<String>| s.unwrap_or_else(|| "—".into());
    let mut side = vec![vec![
        "figure".to_owned(),
        "m365 run".into(),
        "earlier".into(),
    ]];
    let mut row = |name: String, a: Option<String>, b: Option<String>| {
        side.push(vec![name, or_dash(a), or_dash(b)]);
    };
    row(
        "records delivered per minute".into(),
        shipped.per_minute.map(|v| format!("{v:.1}")),
        earlier.per_minute.map(|v| format!("{v:.1}")),
    );
    row(
        "start to first record delivered, s".into(),
        secs(shipped.first),
        secs(earlier.first),
    );
    row(
        "CPU per record, ms".into(),
        shipped.cpu_ms.map(|v| format!("{v:.2}")),
        earlier.cpu_ms.map(|v| format!("{v:.2}")),
    );
    row(
        "peak RSS, MiB".into(),
        mib(shipped.peak_kib),
        mib(earlier.peak_kib),
    );
    row(
        "bytes on the wire per record (legacy)".into(),
        shipped.bytes.map(|v| format!("{v:.0}")),
        earlier.bytes.map(|v| format!("{v:.0}")),
    );
    row(
        format!(
            "records lost, {} broker outage",
            humantime::format_duration(args.outage)
        ),
        shipped_outage.lost.map(|v| v.to_string()),
        earlier_outage.lost.map(|v| v.to_string()),
    );
    row(
        format!(
            "records lost, {} BLE drop",
            humantime::format_duration(args.ble_drop)
        ),
        shipped_ble.lost.map(|v| v.to_string()),
        earlier_ble.lost.map(|v| v.to_string()),
    );
    row(
        "link back to next record delivered, s".into(),
        secs(shipped_ble.back),
        secs(earlier_ble.back),
    );
    if args.backlog > 0 {
        row(
            format!("backlog of {} records drained", args.backlog),
            drain.map(|(r, secs, _, _)| format!("{r:.0} records/s, {secs:.2} s")),
            Some(format!("none: {} lost", args.backlog)),
        );
        row(
            "live records during the drain; worst (or first) delay".into(),
            drain.map(|(_, _, n, worst)| match worst {
                Some(ms) => format!("{n}, {:.2} s", ms as f64 / 1000.0),
                None => format!("{n}, —"),
            }),
            Some("—".into()),
        );
    }
    println!();
    print!("{}", table(&side));

    let mut enc = vec![vec![
        "encoding".to_owned(),
        "client".into(),
        "records".into(),
        "bytes/record".into(),
    ]];
    for (e, who, b, n) in &bytes_rows {
        enc.push(vec![
            e.clone(),
            (*who).into(),
            n.to_string(),
            or_dash(b.map(|v| format!("{v:.0}"))),
        ]);
    }
    println!();
    print!("{}", table(&enc));

    let mut rt = vec![vec![
        "conn interval".to_owned(),
        "m365 run".into(),
        "limit (5 pipelined)".into(),
        "earlier".into(),
        "limit (4 sequential)".into(),
    ]];
    for (ms, a, b) in &rates {
        rt.push(vec![
            format!("{ms} ms"),
            fmt(*a, 2),
            fmt(link_limit(*ms, Pattern::Pipelined, SHIPPED_READS), 2),
            fmt(*b, 2),
            fmt(link_limit(*ms, Pattern::Sequential, EARLIER_READS), 2),
        ]);
    }
    println!();
    println!(
        "full samples/s at `interval = \"100ms\"` (the smallest accepted; the earlier client \
         sleeps 100 ms after each sample)"
    );
    print!("{}", table(&rt));

    // Every figure must be there.
    let missing_figures = [
        ("m365 run records per minute", shipped.per_minute.is_some()),
        ("earlier records per minute", earlier.per_minute.is_some()),
        ("m365 run CPU per record", shipped.cpu_ms.is_some()),
        ("earlier CPU per record", earlier.cpu_ms.is_some()),
        ("m365 run peak RSS", shipped.peak_kib.is_some()),
        ("earlier peak RSS", earlier.peak_kib.is_some()),
        (
            "m365 run loss across the outage",
            shipped_outage.lost.is_some(),
        ),
        (
            "earlier loss across the outage",
            earlier_outage.lost.is_some(),
        ),
        ("m365 run link-back delay", shipped_ble.back.is_some()),
        ("earlier link-back delay", earlier_ble.back.is_some()),
        ("bytes per record", bytes_rows.iter().all(|r| r.2.is_some())),
        (
            "samples per second",
            rates.iter().all(|r| r.1.is_some() && r.2.is_some()),
        ),
        ("backlog drain", args.backlog == 0 || drain.is_some()),
    ];
    for (what, ok) in missing_figures {
        if !ok {
            problems.push(format!("not measured: {what}"));
        }
    }
    println!();
    if problems.is_empty() {
        println!("problems: none");
    } else {
        println!("problems ({}):", problems.len());
        for p in &problems {
            println!("  - {p}");
        }
    }
    println!("wall time: {:.1}s", t0.elapsed().as_secs_f64());
    let rate_pairs: Vec<String> = rates
        .iter()
        .map(|(ms, a, b)| format!("{ms}ms:{}/{}", fmt(*a, 2), fmt(*b, 2)))
        .collect();
    let summary = format!(
        "compare: shipped_lost={} earlier_lost={} shipped_per_min={} earlier_per_min={} \
         samples_per_s={} result={}",
        fmt_u(
            shipped_outage
                .lost
                .zip(shipped_ble.lost)
                .map(|(a, b)| a + b)
        ),
        fmt_u(
            earlier_outage
                .lost
                .zip(earlier_ble.lost)
                .map(|(a, b)| a + b)
        ),
        fmt(shipped.per_minute, 1),
        fmt(earlier.per_minute, 1),
        rate_pairs.join(","),
        if problems.is_empty() { "pass" } else { "fail" }
    );
    Ok(Outcome {
        passed: problems.is_empty(),
        summary,
    })
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"))
}

fn fmt_u(v: Option<u64>) -> String {
    v.map_or_else(|| "—".into(), |v| v.to_string())
}

/// Fills a fresh spool with `records` synthetic records of `id`, one a second up to now, as
/// `m365 run` would have spooled them during an hour offline (numbered 1…`records`, so the
/// client continues with the next number).
fn fill_spool(path: &Path, id: &str, topic: &str, records: u64) -> anyhow::Result<()> {
    use m365_pipeline::{Spool, SpoolConfig, SyncPolicy};
    let cfg = SpoolConfig {
        path: path.to_path_buf(),
        sync: SyncPolicy::Normal,
        commit_every: 500,
        ..SpoolConfig::default()
    };
    // The output as the daemon names it: topic and encoding.
    let (mut spool, _) = Spool::open(&cfg, &[format!("{topic}|Json")])?;
    let secs = i64::try_from(records).unwrap_or(i64::MAX);
    let start = chrono::Utc::now() - chrono::Duration::seconds(secs);
    let mut scooter =
        m365_pipeline::synthetic::SyntheticScooter::new(id, 1, start, Duration::from_secs(1));
    for _ in 0..records {
        spool.append(scooter.next_sample(), std::time::Instant::now())?;
    }
    spool.flush()?;
    let stats = spool.stats();
    if stats.records < records {
        bail!("the spool holds {} records, not {records}", stats.records);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_limit_is_the_models() {
        // docs/benchmarks.md, "BLE sampling".
        let close = |v: Option<f64>, want: f64| v.is_some_and(|v| (v - want).abs() < 0.01);
        assert!(close(link_limit(30, Pattern::Pipelined, 5), 8.33));
        assert!(close(link_limit(30, Pattern::Sequential, 4), 4.17));
        assert!(close(link_limit(15, Pattern::Pipelined, 5), 13.33));
        assert!(close(link_limit(50, Pattern::Sequential, 4), 2.50));
        assert_eq!(link_limit(5, Pattern::Pipelined, 5), None);
        assert_eq!(link_limit(30, Pattern::Pipelined, 6), None);
    }

    #[test]
    fn tables_line_up() {
        let t = table(&[
            vec!["figure".into(), "a".into(), "bb".into()],
            vec!["records per minute".into(), "60.0".into(), "—".into()],
        ]);
        assert_eq!(
            t,
            "figure                 a  bb\nrecords per minute  60.0   —\n"
        );
        assert_eq!(per_record(430, 0), None);
        assert_eq!(per_record(860, 2), Some(430.0));
    }

    #[test]
    fn payloads_give_their_numbers() {
        let (seqs, ts) =
            read_payload(br#"{"seq":42,"ts":"2025-06-01T12:00:00.5Z","speed_kmh":3.0}"#);
        assert_eq!(seqs, vec![42]);
        assert_eq!(ts, Some(1_748_779_200_500));
        assert_eq!(read_payload(br#"{"speed":3}"#), (Vec::new(), None));
        assert_eq!(read_payload(b"\x00\x01"), (Vec::new(), None));
        let mut scooter = m365_pipeline::synthetic::SyntheticScooter::new(
            "s",
            1,
            chrono::Utc::now(),
            Duration::from_secs(1),
        );
        let records: Vec<m365_pipeline::Record> = (3..6)
            .map(|q| m365_pipeline::Record::from_sample(scooter.next_sample(), q))
            .collect();
        let batch = m365_pipeline::encoding::compact::encode(&records).unwrap_or_default();
        assert_eq!(read_payload(&batch).0, vec![3, 4, 5]);
        assert_eq!(
            spool_scooter(Path::new("/x/spool-abc123-json.sqlite")),
            "abc123"
        );
    }

    #[tokio::test]
    async fn the_proxy_counts_both_ways() {
        // An echo server as the broker.
        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = Proxy::start(port).await.unwrap();
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))
            .await
            .unwrap();
        c.write_all(&[7u8; 1000]).await.unwrap();
        let mut back = [0u8; 1000];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(back, [7u8; 1000]);
        drop(c);
        let ok = wait_until(Duration::from_secs(5), || proxy.bytes() == 2000).await;
        assert!(ok, "{} bytes", proxy.bytes());
        // With the broker gone, a connection is closed at once and counts nothing.
        let proxy = Proxy::start(1).await.unwrap();
        let mut c = TcpStream::connect((Ipv4Addr::LOCALHOST, proxy.port()))
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(c.read(&mut buf).await.unwrap_or(0), 0);
        assert_eq!(proxy.bytes(), 0);
    }
}
