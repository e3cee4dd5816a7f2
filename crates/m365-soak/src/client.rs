//! One scooter's client: the real `m365 run` process, supervised the way systemd supervises the
//! packaged unit, with its spool on a small file system of its own.
//!
//! - **Restarts** as `packaging/systemd/m365.service` says: after every exit (`Restart=always`)
//!   except the codes a person must act on (`RestartPreventExitStatus=64 77 78 79 80`), after
//!   `RestartSec` (shorter here). An exit with one of those codes, an internal error (70), a
//!   crash (killed by a signal the soak did not send) or an exit 0 nobody asked for is a
//!   violation.
//! - **Watchdog**: `WATCHDOG_USEC` and `NOTIFY_SOCKET` as systemd sets them; a client that
//!   stops pinging for longer than the period is killed and counted, as systemd would.
//! - **Small disk**: the spool lives on a 16 MiB tmpfs mounted in a mount namespace of its own
//!   (`unshare -rm`), held by a sleeping process; every run of the client enters it
//!   (`nsenter`), so the spool outlives kills. The soak reaches the file system through
//!   `/proc/<holder>/root` to fill it up (disk full) and to read the spool.
//! - **Clock**: with libfaketime preloaded, the client's system clock (not its monotonic clock)
//!   follows a file the soak rewrites: `+0`, an offset, or a date before 2020.
//! - **Resources**: RSS and open descriptors from `/proc` every 2 s, once the run said
//!   `READY=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use tokio::io::AsyncBufReadExt as _;
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::checker::SpoolEnd;
use crate::resources::{self, Usage};
use crate::schedule::ClockJump;

/// Exit codes systemd does not restart (`RestartPreventExitStatus=` of the packaged unit).
pub(crate) const RESTART_PREVENT: [i32; 5] = [64, 77, 78, 79, 80];
/// Exit codes that are the normal answer to a fault: scooter not found (69), spool unusable
/// (73, disk full at start), GPS device missing (74, unplugged at start), scooter lost (75).
pub(crate) const EXPECTED_EXITS: [i32; 4] = [69, 73, 74, 75];
/// `WatchdogSec` given to the client (it pings at half of it).
const WATCHDOG: Duration = Duration::from_secs(10);
/// How long a stopping client may take (`TimeoutStopSec` of the unit).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How often resources are read.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Size of each client's spool file system.
pub(crate) const DISK_SIZE: &str = "16m";

/// Everything one client needs.
#[derive(Debug, Clone)]
pub(crate) struct ClientSetup {
    /// Index of the scooter, from 0.
    pub(crate) index: usize,
    /// The scooter's address.
    pub(crate) mac: String,
    /// Its id in topics and records (the address as 12 lower-case hex digits).
    pub(crate) scooter_id: String,
    /// This client's folder.
    pub(crate) dir: PathBuf,
    /// The `m365` binary.
    pub(crate) m365: PathBuf,
    /// The fake BlueZ's bus.
    pub(crate) bus: String,
    /// The broker's port.
    pub(crate) broker_port: u16,
    /// The GPS receiver's stable path.
    pub(crate) gps: PathBuf,
    /// libfaketime, when installed.
    pub(crate) faketime: Option<PathBuf>,
    /// `[telemetry] interval`.
    pub(crate) interval: Duration,
    /// `[scooter] reconnect_window`.
    pub(crate) reconnect_window: Duration,
    /// `[spool] max_bytes`.
    pub(crate) max_bytes: u64,
    /// Pause before a restart (`RestartSec`).
    pub(crate) restart_sec: Duration,
}

impl ClientSetup {
    fn config_path(&self) -> PathBuf {
        self.dir.join("martinete.toml")
    }

    fn token_path(&self) -> PathBuf {
        self.dir.join(".mi-token")
    }

    fn clock_file(&self) -> PathBuf {
        self.dir.join("faketime")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("m365.log")
    }

    /// Where the spool's file system is mounted (inside the holder's namespace).
    pub(crate) fn mount(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// Writes `martinete.toml` and the clock file.
    pub(crate) fn write_files(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.mount())?;
        let config = format!(
            r#"# Written by m365-soak for scooter {index}.
[scooter]
mac = "{mac}"
token_file_path = "{token}"
scan_timeout = "10s"
reconnect_window = "{window}ms"

[telemetry]
interval = "{interval}ms"

[gps]
source = "serial"
kind = "nmea"
device = "{gps}"
max_age = "3s"

[mqtt]
broker = "tcp://127.0.0.1:{port}"
encoding = "json"
reconnect_min = "500ms"
reconnect_max = "5s"

[spool]
path = "{spool}"
max_bytes = {max_bytes}
sync = "always"

[log]
level = "info"
"#,
            index = self.index,
            mac = self.mac,
            token = self.token_path().display(),
            window = self.reconnect_window.as_millis(),
            interval = self.interval.as_millis(),
            gps = self.gps.display(),
            port = self.broker_port,
            spool = self.mount().join("spool.sqlite").display(),
            max_bytes = self.max_bytes,
        );
        std::fs::write(self.config_path(), config)?;
        std::fs::write(self.clock_file(), "+0\n")?;
        Ok(())
    }

    /// Pairs with the scooter (`m365 register`, the simulator presses the button).
    pub(crate) async fn register(&self) -> anyhow::Result<()> {
        let mut last = String::new();
        for _ in 0..3 {
            let out = Command::new(&self.m365)
                .arg("register")
                .arg(&self.mac)
                .arg("--force")
                .arg("--token-file")
                .arg(self.token_path())
                .current_dir(&self.dir)
                .env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(Duration::from_secs(90), out)
                .await
                .context("m365 register did not finish")??;
            if out.status.success() {
                return Ok(());
            }
            last = format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        bail!("m365 register {} failed: {last}", self.mac)
    }

    /// Sets the client's system clock: back to true time, or jumped.
    pub(crate) fn set_clock(&self, jump: Option<ClockJump>) -> anyhow::Result<()> {
        let text = match jump {
            None => "+0".to_owned(),
            Some(ClockJump::Offset(s)) => format!("{s:+}"),
            Some(ClockJump::Untrusted) => "@2019-06-01 12:00:00".to_owned(),
        };
        std::fs::write(self.clock_file(), format!("{text}\n"))?;
        Ok(())
    }
}

/// The spool's small file system, held by a sleeping process in a mount namespace of its own.
#[derive(Debug)]
pub(crate) struct SmallDisk {
    holder: Child,
    pid: u32,
    mount: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of [`DISK_SIZE`] on `mount` in a new user and mount namespace.
    pub(crate) async fn start(mount: &Path) -> anyhow::Result<SmallDisk> {
        let mut holder = Command::new("unshare")
            .args(["-rm", "sh", "-c"])
            .arg(
                r#"mount -t tmpfs -o "size=$2" none "$1" && echo mounted && exec sleep 2147483647"#,
            )
            .arg("sh")
            .arg(mount)
            .arg(DISK_SIZE)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run unshare (util-linux)")?;
        let stdout = holder.stdout.take().context("holder's output")?;
        let line = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::io::BufReader::new(stdout).lines().next_line(),
        )
        .await
        .context("the small file system was not mounted in time")??;
        if line.as_deref() != Some("mounted") {
            let out = holder.wait_with_output().await?;
            bail!(
                "cannot mount a small file system in a namespace of its own (unshare -rm): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let pid = holder.id().context("the holder's pid")?;
        Ok(SmallDisk {
            holder,
            pid,
            mount: mount.to_path_buf(),
        })
    }

    /// `name` on the small file system, as the soak reaches it.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        let inside = self.mount.join(name);
        let relative = inside.strip_prefix("/").unwrap_or(&inside);
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(relative)
    }

    /// The holder's pid (clients enter its namespaces).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Fills the file system with a file of zeros; returns its size.
    pub(crate) async fn fill(&self) -> anyhow::Result<u64> {
        let path = self.path("filler");
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(&path)?;
            let chunk = vec![0u8; 64 * 1024];
            let mut written = 0u64;
            loop {
                match file.write(&chunk) {
                    Ok(0) => return Ok(written),
                    Ok(n) => written += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return Ok(written),
                    Err(e) => return Err(anyhow::Error::from(e).context("filling the disk")),
                }
            }
        })
        .await?
    }

    /// Removes the filler.
    pub(crate) fn free(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.path("filler")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The spool's numbering and pending records for `scooter_id`; `None` when unreadable.
    ///
    /// Read by `soak` (this program) inside the holder's mount namespace: SQLite resolves the
    /// symbolic links of a path, and `/proc/<pid>/root` would lead it back to this namespace.
    pub(crate) async fn spool_end(&self, soak: &Path, scooter_id: &str) -> Option<SpoolEnd> {
        let run = Command::new("nsenter")
            .arg("-t")
            .arg(self.pid.to_string())
            .args(["-U", "-m", "--preserve-credentials", "--"])
            .arg(soak)
            .arg("spool-end")
            .arg("--spool")
            .arg(self.mount.join("spool.sqlite"))
            .arg("--scooter-id")
            .arg(scooter_id)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot run the spool reader");
                return None;
            }
            Err(_) => {
                tracing::warn!("the spool reader did not finish");
                return None;
            }
        };
        if !out.status.success() {
            tracing::warn!(
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "cannot read the spool"
            );
            return None;
        }
        parse_spool_end(&String::from_utf8_lossy(&out.stdout))
    }

    /// Unmounts (the namespace goes with its holder).
    pub(crate) async fn stop(mut self) {
        let _ = self.holder.kill().await;
    }
}

/// What a supervisor is told.
#[derive(Debug)]
pub(crate) enum Order {
    /// SIGKILL the client now (nothing happens if it is not running).
    Kill,
    /// Stop it cleanly (SIGTERM) and stop supervising; the answer comes once it exited.
    Stop(oneshot::Sender<()>),
}

/// What a supervisor reports as it happens.
#[derive(Debug, Clone)]
pub(crate) enum ClientEvent {
    /// A run of the client started.
    Started {
        /// Scooter index.
        index: usize,
        /// When.
        at: Instant,
    },
    /// A run ended.
    Exited {
        /// Scooter index.
        index: usize,
        /// How, in words (`75`, `SIGKILL`, …).
        how: String,
        /// Whether it will be restarted.
        restart: bool,
    },
}

/// What a supervisor counted over the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientStats {
    /// Runs started.
    pub(crate) starts: u64,
    /// Exits by code or signal name.
    pub(crate) exits: BTreeMap<String, u64>,
    /// Kills the schedule asked for while the client was not running (between restarts).
    pub(crate) kills_skipped: u64,
    /// Resource readings.
    pub(crate) usage: Vec<Usage>,
    /// Largest on-disk size of the spool (file, WAL and shared memory), bytes.
    pub(crate) max_footprint: u64,
    /// Broken rules, in words.
    pub(crate) violations: Vec<String>,
    /// The `stopped …` line of the last clean stop.
    pub(crate) stop_line: Option<String>,
}

/// A running supervisor.
#[derive(Debug)]
pub(crate) struct Supervisor {
    orders: mpsc::UnboundedSender<Order>,
    /// What it counted (read at the end).
    pub(crate) stats: Arc<Mutex<ClientStats>>,
}

impl Supervisor {
    /// Starts supervising the client of `setup` on `disk`; `epoch` is the chaos phase's start.
    pub(crate) fn start(
        setup: ClientSetup,
        disk_pid: u32,
        disk_spool: PathBuf,
        epoch: Instant,
        events: mpsc::UnboundedSender<ClientEvent>,
    ) -> anyhow::Result<Supervisor> {
        let notify_path = setup.dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)
            .with_context(|| format!("cannot bind {}", notify_path.display()))?;
        let (orders, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(ClientStats::default()));
        let run = Run {
            setup,
            disk_pid,
            disk_spool,
            notify,
            notify_path,
            epoch,
            events,
            stats: stats.clone(),
        };
        tokio::spawn(run.supervise(rx));
        Ok(Supervisor { orders, stats })
    }

    /// SIGKILL the client now.
    pub(crate) fn kill(&self) {
        let _ = self.orders.send(Order::Kill);
    }

    /// Stops the client cleanly and returns once it has exited.
    pub(crate) async fn stop(&self) {
        let (tx, rx) = oneshot::channel();
        if self.orders.send(Order::Stop(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, ClientStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of what it counted.
    pub(crate) fn snapshot(&self) -> ClientStats {
        self.stats().clone()
    }
}

/// The supervisor task's state.
struct Run {
    setup: ClientSetup,
    disk_pid: u32,
    disk_spool: PathBuf,
    notify: UnixDatagram,
    notify_path: PathBuf,
    epoch: Instant,
    events: mpsc::UnboundedSender<ClientEvent>,
    stats: Arc<Mutex<ClientStats>>,
}

/// How one run of the client ended.
enum Ending {
    /// It exited; restart unless stopping.
    Exited(std::process::ExitStatus),
    /// Stop was ordered and it has exited.
    Stopped(Option<oneshot::Sender<()>>),
}

impl Run {
    fn stats(&self) -> std::sync::MutexGuard<'_, ClientStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn violation(&self, what: String) {
        tracing::warn!(scooter = self.setup.index, "{what}");
        self.stats().violations.push(what);
    }

    fn spawn(&self, start: u64) -> anyhow::Result<Child> {
        let s = &self.setup;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s.log_path())?;
        writeln!(
            log,
            "---- m365-soak: run {start} at +{:.1}s ----",
            self.epoch.elapsed().as_secs_f64()
        )?;
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.disk_pid.to_string())
            .args(["-U", "-m", "--preserve-credentials"])
            .arg(format!("--wd={}", s.dir.display()))
            .arg("--")
            .arg(&s.m365)
            .arg("run")
            .arg("--config")
            .arg(s.config_path())
            .env("DBUS_SYSTEM_BUS_ADDRESS", &s.bus)
            .env("NOTIFY_SOCKET", &self.notify_path)
            .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
            .env_remove("WATCHDOG_PID")
            .env_remove("RUST_LOG")
            .env_remove("M365_CONFIG")
            .env_remove("M365_MQTT_PASSWORD")
            .env_remove("M365_MQTT_USERNAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if let Some(lib) = &s.faketime {
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", s.clock_file())
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        cmd.spawn().context("cannot start nsenter … m365 run")
    }

    async fn supervise(self, mut orders: mpsc::UnboundedReceiver<Order>) {
        let mut buf = vec![0u8; 4096];
        loop {
            let start = {
                let mut stats = self.stats();
                stats.starts += 1;
                stats.starts
            };
            let mut child = match self.spawn(start) {
                Ok(c) => c,
                Err(e) => {
                    self.violation(format!("cannot start the client: {e:#}"));
                    return self.idle(orders).await;
                }
            };
            let _ = self.events.send(ClientEvent::Started {
                index: self.setup.index,
                at: Instant::now(),
            });
            let pid = child.id().unwrap_or(0);
            let mut killed_by_us = false;
            let mut ready = false;
            let mut last_ping = Instant::now();
            let mut stopping: Option<(Instant, Option<oneshot::Sender<()>>)> = None;
            let mut tick = tokio::time::interval_at(Instant::now() + SAMPLE_EVERY, SAMPLE_EVERY);
            let ending = loop {
                let stop_deadline = stopping.as_ref().map(|(at, _)| *at + STOP_TIMEOUT);
                tokio::select! {
                    status = child.wait() => {
                        let status = match status {
                            Ok(s) => s,
                            Err(e) => {
                                self.violation(format!("cannot wait for the client: {e}"));
                                return self.idle(orders).await;
                            }
                        };
                        match stopping.take() {
                            Some((_, reply)) => {
                                self.record_exit(&status, killed_by_us, true);
                                break Ending::Stopped(reply);
                            }
                            None => break Ending::Exited(status),
                        }
                    }
                    order = orders.recv(), if stopping.is_none() => match order {
                        Some(Order::Kill) => {
                            killed_by_us = true;
                            let _ = child.start_kill();
                        }
                        Some(Order::Stop(reply)) => {
                            crate::process::signal(pid, Signal::SIGTERM);
                            stopping = Some((Instant::now(), Some(reply)));
                        }
                        None => {
                            crate::process::signal(pid, Signal::SIGTERM);
                            stopping = Some((Instant::now(), None));
                        }
                    },
                    received = self.notify.recv(&mut buf) => {
                        if let Ok(n) = received {
                            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                                match line {
                                    "READY=1" => ready = true,
                                    "WATCHDOG=1" => last_ping = Instant::now(),
                                    _ => {}
                                }
                            }
                        }
                    }
                    () = sleep_until(stop_deadline) => {
                        self.violation(format!("the client did not stop within {STOP_TIMEOUT:?} of SIGTERM"));
                        killed_by_us = true;
                        let _ = child.start_kill();
                        // The next round sees the exit; the deadline is not armed again.
                        if let Some((at, _)) = stopping.as_mut() {
                            *at = Instant::now() + Duration::from_secs(3600);
                        }
                    }
                    _ = tick.tick() => {
                        let at = self.epoch.elapsed();
                        let footprint = resources::spool_footprint(&self.disk_spool);
                        // Only a client that said READY=1: before it, the reading may be
                        // `nsenter` itself, or a run that is about to exit at start (73, 74).
                        let usage = if ready { resources::read(pid, at) } else { None };
                        {
                            let mut stats = self.stats();
                            stats.max_footprint = stats.max_footprint.max(footprint);
                            if let Some(u) = usage {
                                stats.usage.push(u);
                            }
                        }
                        if ready && stopping.is_none() && last_ping.elapsed() > WATCHDOG {
                            self.violation(format!(
                                "watchdog: no WATCHDOG=1 for {:.1}s (systemd would abort it)",
                                last_ping.elapsed().as_secs_f64()
                            ));
                            killed_by_us = true;
                            let _ = child.start_kill();
                            last_ping = Instant::now();
                        }
                    }
                }
            };
            let status = match ending {
                Ending::Stopped(reply) => {
                    self.stats().stop_line = last_stop_line(&self.setup.log_path());
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    return;
                }
                Ending::Exited(status) => status,
            };
            let restart = self.record_exit(&status, killed_by_us, false);
            if !restart {
                return self.idle(orders).await;
            }
            // RestartSec: orders still count (a kill now finds nothing to kill).
            let pause = tokio::time::sleep(self.setup.restart_sec);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    () = &mut pause => break,
                    order = orders.recv() => match order {
                        Some(Order::Kill) => self.stats().kills_skipped += 1,
                        Some(Order::Stop(reply)) => {
                            let _ = reply.send(());
                            return;
                        }
                        None => return,
                    }
                }
            }
        }
    }

    /// Counts an exit and says whether systemd would restart the client.
    fn record_exit(
        &self,
        status: &std::process::ExitStatus,
        killed_by_us: bool,
        stopping: bool,
    ) -> bool {
        use std::os::unix::process::ExitStatusExt as _;
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => code.to_string(),
            (None, Some(sig)) => Signal::try_from(sig)
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|_| format!("signal {sig}")),
            (None, None) => "unknown".to_owned(),
        };
        *self.stats().exits.entry(how.clone()).or_default() += 1;
        let tail = || log_tail(&self.setup.log_path(), 4);
        let restart = match (status.code(), status.signal()) {
            (Some(0), _) if stopping => false,
            (Some(code), _) if RESTART_PREVENT.contains(&code) => {
                self.violation(format!(
                    "exited {code}, which systemd does not restart; last lines:\n{}",
                    tail()
                ));
                false
            }
            (Some(code), _) if EXPECTED_EXITS.contains(&code) => true,
            (Some(code), _) => {
                self.violation(format!("unexpected exit {code}; last lines:\n{}", tail()));
                true
            }
            (None, Some(sig)) if sig == Signal::SIGKILL as i32 && killed_by_us => true,
            (None, _) => {
                self.violation(format!("crashed ({how}); last lines:\n{}", tail()));
                true
            }
        };
        if !stopping {
            tracing::info!(
                scooter = self.setup.index,
                exit = %how,
                restart,
                "client exited"
            );
        }
        let _ = self.events.send(ClientEvent::Exited {
            index: self.setup.index,
            how,
            restart: restart && !stopping,
        });
        restart && !stopping
    }

    /// No client runs any more: wait for the stop order only.
    async fn idle(&self, mut orders: mpsc::UnboundedReceiver<Order>) {
        while let Some(order) = orders.recv().await {
            match order {
                Order::Kill => self.stats().kills_skipped += 1,
                Order::Stop(reply) => {
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }
}

/// Reads the numbering of `scooter_id` and its records still in the spool at `path` (a missing
/// file: nothing sampled).
pub(crate) fn read_spool(path: &Path, scooter_id: &str) -> rusqlite::Result<SpoolEnd> {
    if !path.exists() {
        return Ok(SpoolEnd {
            next_seq: 1,
            pending: BTreeSet::new(),
        });
    }
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let next_seq: i64 = conn
        .query_row(
            "SELECT next_seq FROM seqs WHERE scooter_id = ?1",
            [scooter_id],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(1),
            e => Err(e),
        })?;
    let mut stmt = conn.prepare("SELECT seq FROM records WHERE scooter_id = ?1")?;
    let pending = stmt
        .query_map([scooter_id], |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(SpoolEnd {
        next_seq: u64::try_from(next_seq).unwrap_or(1),
        pending: pending
            .into_iter()
            .filter_map(|s| u64::try_from(s).ok())
            .collect(),
    })
}

/// `next_seq=N pending=1,2,3`: what the `spool-end` helper prints.
pub(crate) fn format_spool_end(end: &SpoolEnd) -> String {
    let pending: Vec<String> = end.pending.iter().map(u64::to_string).collect();
    format!("next_seq={} pending={}", end.next_seq, pending.join(","))
}

/// The inverse of [`format_spool_end`].
pub(crate) fn parse_spool_end(text: &str) -> Option<SpoolEnd> {
    let line = text.lines().find(|l| l.starts_with("next_seq="))?;
    let mut words = line.split_whitespace();
    let next_seq = words.next()?.strip_prefix("next_seq=")?.parse().ok()?;
    let pending = words.next()?.strip_prefix("pending=")?;
    let pending = pending
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<BTreeSet<u64>, _>>()
        .ok()?;
    Some(SpoolEnd { next_seq, pending })
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The last `n` lines of a log.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The last `stopped sampled=… acknowledged=… backlog=…` line of a log.
fn last_stop_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find_map(|l| l.find("stopped sampled=").map(|i| l[i..].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spool_reader_output_round_trips() {
        let end = SpoolEnd {
            next_seq: 42,
            pending: [40, 41].into(),
        };
        assert_eq!(parse_spool_end(&format_spool_end(&end)), Some(end));
        let empty = SpoolEnd {
            next_seq: 1,
            pending: BTreeSet::new(),
        };
        assert_eq!(parse_spool_end(&format_spool_end(&empty)), Some(empty));
        assert_eq!(parse_spool_end("garbage"), None);
    }

    #[test]
    fn a_missing_spool_sampled_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let end = read_spool(&dir.path().join("none.sqlite"), "x").unwrap();
        assert_eq!(end.next_seq, 1);
        assert!(end.pending.is_empty());
    }

    #[test]
    fn exits_are_sorted_into_restart_or_not_as_the_unit_says() {
        // The packaged unit's list, verbatim.
        let unit = include_str!("../../../packaging/systemd/m365.service");
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix("RestartPreventExitStatus="))
            .expect("the unit names the codes it does not restart");
        let codes: Vec<i32> = line
            .split_whitespace()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(codes, RESTART_PREVENT);
        assert!(EXPECTED_EXITS.iter().all(|c| !RESTART_PREVENT.contains(c)));
    }
}
