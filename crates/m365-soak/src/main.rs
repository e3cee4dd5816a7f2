//! `m365-soak`, the chaos soak of `m365`: several simulated scooters behind the fake BlueZ,
//! GPS receivers on ptys, a real mosquitto and the real `m365 run` processes (restarted the way
//! systemd restarts the packaged unit), under a seeded random schedule of faults, while a
//! checker subscribed to the broker verifies that nothing sampled is lost; the exit status is 1
//! on any violation. A test tool: it never ships. See `docs/soak.md`.
//!
//! - [`schedule`]: the seeded fault schedule (pure).
//! - [`checker`]: the delivery checks (pure).
//! - [`resources`]: RSS and descriptors from `/proc`, and the flatness check.
//! - [`broker`]: the soak's mosquitto; [`subscriber`]: the checker's MQTT session.
//! - [`sim`]: `m365-sim serve` and `ctl`; [`gps`]: the receivers; [`client`]: one supervised
//!   `m365 run` with its small disk and its clock.
//! - [`soak`]: the run itself, from start to summary.
//! - [`compare`]: `m365-soak compare`, `m365 run` against the earlier design ([`earlier`],
//!   the hidden `earlier-client`) on one simulated world, side by side.
//! - [`fleet`]: `m365-soak fleet`, the load test: many scooters at a fixed rate over several
//!   `m365 run` processes, measured and checked for lost records, without faults.
#![forbid(unsafe_code)]

mod broker;
mod checker;
mod client;
mod compare;
mod earlier;
mod fleet;
mod gps;
mod process;
mod resources;
mod schedule;
mod sim;
mod soak;
mod subscriber;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use schedule::{ScheduleConfig, generate};
use soak::SoakConfig;

/// Where Debian's libfaketime lives (the multi-threaded variant: `m365` runs several threads).
const FAKETIME_LIBS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];

/// Chaos soak of `m365 run`: simulated scooters through the fake BlueZ, GPS receivers on ptys,
/// a real mosquitto and the real client, under a seeded schedule of faults. The last line is a
/// summary with `lost=<n>`; the exit status is 1 on any violation.
#[derive(Debug, Parser)]
#[command(name = "m365-soak", version)]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    /// Length of the chaos phase (`90s`, `2h`); warm-up and drain come on top.
    #[arg(long, default_value = "90s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Seed of the fault schedule (default: a random one, printed); the same seed replays the
    /// same schedule.
    #[arg(long)]
    seed: Option<u64>,
    /// Number of simulated scooters, one `m365 run` each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    scooters: u16,
    /// Length of a broker outage.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Mean time between two faults of one scooter.
    #[arg(long, default_value = "8s", value_parser = humantime::parse_duration)]
    fault_every: Duration,
    /// Mean time between two broker restarts.
    #[arg(long, default_value = "45s", value_parser = humantime::parse_duration)]
    broker_every: Duration,
    /// Mean time between two broker outages (at least one when the run is long enough).
    #[arg(long, default_value = "20m", value_parser = humantime::parse_duration)]
    outage_every: Duration,
    /// The clients' sampling interval.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Pause before a client is restarted (systemd's `RestartSec`, 10 s in the packaged unit).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    restart_sec: Duration,
    /// Longest wait, after the chaos, for everything sampled to arrive.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,
    /// The `m365` binary (default: next to this program).
    #[arg(long)]
    m365: Option<PathBuf>,
    /// The `m365-sim` binary (default: next to this program).
    #[arg(long)]
    m365_sim: Option<PathBuf>,
    /// The `mosquitto` binary (default: /usr/sbin/mosquitto, else on PATH).
    #[arg(long)]
    mosquitto: Option<PathBuf>,
    /// libfaketime for clock jumps (default: Debian's); without it clock jumps are skipped.
    #[arg(long)]
    faketime: Option<PathBuf>,
    /// Keep everything here (logs, spools, broker) instead of a temporary folder.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Print the schedule for the seed and exit.
    #[arg(long)]
    print_schedule: bool,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// The fleet load test: many simulated scooters at a fixed rate, several per `m365 run`
    /// process, against one mosquitto; prints CPU and memory per process, the broker's delivered
    /// rate, and exits 1 when a record was lost.
    Fleet(fleet::FleetArgs),
    /// `m365 run` as shipped against the earlier design (sequential reads, a blocking AT poll
    /// for GPS, QoS 0, one `legacy` publish per sample, no spool) on one simulated world:
    /// prints the two side by side and exits 1 when a figure could not be measured or
    /// `m365 run` lost a record.
    Compare(compare::CompareArgs),
    /// (internal) The earlier design's client, played with m365's own crates.
    #[command(hide = true)]
    EarlierClient(earlier::EarlierArgs),
    /// (internal) One emulated GPS receiver, driven through standard input.
    #[command(hide = true)]
    GpsReceiver {
        #[arg(long)]
        symlink: PathBuf,
        #[arg(long)]
        index: usize,
    },
    /// (internal) Prints a spool's numbering and pending records, from inside its namespace.
    #[command(hide = true)]
    SpoolEnd {
        #[arg(long)]
        spool: PathBuf,
        #[arg(long)]
        scooter_id: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing_subscriber::filter::LevelFilter::WARN)
        });
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    if let Some(Mode::EarlierClient(args)) = cli.mode {
        return run_earlier(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("m365-soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.mode {
            Some(Mode::Fleet(args)) => run_fleet(args).await,
            Some(Mode::Compare(args)) => run_compare(args).await,
            Some(Mode::EarlierClient(_)) => Ok(false),
            Some(Mode::GpsReceiver { symlink, index }) => {
                gps::run_helper(symlink, index).await?;
                Ok(true)
            }
            Some(Mode::SpoolEnd { spool, scooter_id }) => {
                let end = client::read_spool(&spool, &scooter_id)
                    .with_context(|| format!("reading {}", spool.display()))?;
                println!("{}", client::format_spool_end(&end));
                Ok(true)
            }
            None => run(cli).await,
        }
    });
    // Helpers and children are gone by now; do not wait for stray blocking tasks.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("m365-soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the earlier client on one thread, as `m365 run` runs (plus the BLE worker thread):
/// exit status 1 when the scooter cannot be reached or anything else ends it.
fn run_earlier(args: earlier::EarlierArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("earlier-client: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(earlier::run(args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("earlier-client: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs `m365-soak compare`; `Ok(false)` when a figure is missing or `m365 run` lost a record.
async fn run_compare(mut args: compare::CompareArgs) -> anyhow::Result<bool> {
    let soak = std::env::current_exe().context("cannot find this program")?;
    let here = soak.parent().map(Path::to_path_buf).unwrap_or_default();
    let absolute = |p: &Path| std::fs::canonicalize(p).with_context(|| p.display().to_string());
    let bins = compare::Binaries {
        m365: absolute(&existing(
            args.m365.take().unwrap_or_else(|| here.join("m365")),
            "--m365",
        )?)?,
        m365_sim: absolute(&existing(
            args.m365_sim
                .take()
                .unwrap_or_else(|| here.join("m365-sim")),
            "--m365-sim",
        )?)?,
        mosquitto: match args.mosquitto.take() {
            Some(p) => absolute(&existing(p, "--mosquitto")?)?,
            None => find_mosquitto().context(
                "mosquitto is not installed (apt-get install mosquitto), or pass --mosquitto",
            )?,
        },
        soak: absolute(&soak)?,
    };
    if !on_path("dbus-daemon") {
        bail!("dbus-daemon is not installed");
    }
    let (work_dir, temp) = match args.work_dir.take() {
        Some(dir) => {
            if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                bail!("--work-dir {} is not empty", dir.display());
            }
            std::fs::create_dir_all(&dir)?;
            (absolute(&dir)?, None)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("m365-compare-").tempdir()?;
            (absolute(temp.path())?, Some(temp))
        }
    };
    let outcome = compare::run(args, bins, work_dir).await;
    let passed = outcome.as_ref().is_ok_and(|o| o.passed);
    if !passed && let Some(dir) = temp {
        // Keep the logs of a failed run.
        println!("logs kept in {}", dir.keep().display());
    }
    println!("{}", outcome?.summary);
    Ok(passed)
}

/// Runs the fleet load test; `Ok(false)` when a record was lost or a process failed.
async fn run_fleet(mut args: fleet::FleetArgs) -> anyhow::Result<bool> {
    let here = std::env::current_exe()
        .context("cannot find this program")?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let bins = fleet::Binaries {
        m365: existing(
            args.m365.take().unwrap_or_else(|| here.join("m365")),
            "--m365",
        )?,
        m365_sim: existing(
            args.m365_sim
                .take()
                .unwrap_or_else(|| here.join("m365-sim")),
            "--m365-sim",
        )?,
        mosquitto: match (args.mosquitto.take(), args.broker_port) {
            (_, Some(_)) => None,
            (Some(p), None) => Some(existing(p, "--mosquitto")?),
            (None, None) => Some(find_mosquitto().context(
                "mosquitto is not installed (apt-get install mosquitto), or pass --mosquitto \
                 or --broker-port",
            )?),
        },
    };
    if !on_path("dbus-daemon") {
        bail!("dbus-daemon is not installed");
    }
    let (work_dir, temp) = match args.work_dir.take() {
        Some(dir) => {
            if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                bail!("--work-dir {} is not empty", dir.display());
            }
            std::fs::create_dir_all(&dir)?;
            (dir, None)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("m365-fleet-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    // The processes run in folders of their own: absolute paths.
    let absolute = |p: &Path| std::fs::canonicalize(p).with_context(|| p.display().to_string());
    let bins = fleet::Binaries {
        m365: absolute(&bins.m365)?,
        m365_sim: absolute(&bins.m365_sim)?,
        mosquitto: bins.mosquitto.as_deref().map(absolute).transpose()?,
    };
    let work_dir = absolute(&work_dir)?;
    let outcome = fleet::run(args, bins, work_dir).await;
    let passed = outcome.as_ref().is_ok_and(|o| o.passed);
    if !passed && let Some(dir) = temp {
        // Keep the logs of a failed run.
        println!("logs kept in {}", dir.keep().display());
    }
    // The last line.
    println!("{}", outcome?.summary);
    Ok(passed)
}

/// Runs the soak; `Ok(false)` when it found a violation.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let seed = cli.seed.unwrap_or_else(rand::random);
    let mut schedule = ScheduleConfig::new(cli.duration, usize::from(cli.scooters));
    schedule.outage = cli.outage;
    schedule.scooter_every = cli.fault_every;
    schedule.broker_every = cli.broker_every;
    schedule.outage_every = cli.outage_every;
    let replay = format!(
        "m365-soak --seed {seed} --duration {} --scooters {} --outage {} --fault-every {} \
         --broker-every {} --outage-every {}",
        compact(cli.duration),
        cli.scooters,
        compact(cli.outage),
        compact(cli.fault_every),
        compact(cli.broker_every),
        compact(cli.outage_every),
    );
    if cli.print_schedule {
        for fault in generate(seed, &schedule) {
            println!("{fault}");
        }
        println!("replay: {replay}");
        return Ok(true);
    }
    let soak_exe = std::env::current_exe().context("cannot find this program")?;
    let here = soak_exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let m365 = existing(cli.m365.unwrap_or_else(|| here.join("m365")), "--m365")?;
    let m365_sim = existing(
        cli.m365_sim.unwrap_or_else(|| here.join("m365-sim")),
        "--m365-sim",
    )?;
    let mosquitto = match cli.mosquitto {
        Some(p) => existing(p, "--mosquitto")?,
        None => find_mosquitto().context(
            "mosquitto is not installed (apt-get install mosquitto), or pass --mosquitto",
        )?,
    };
    let faketime = match cli.faketime {
        Some(p) => Some(existing(p, "--faketime")?),
        None => FAKETIME_LIBS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    };
    for tool in ["unshare", "nsenter", "dbus-daemon"] {
        if !on_path(tool) {
            bail!("{tool} is not installed (util-linux, dbus-daemon)");
        }
    }
    let (work_dir, temp) = match cli.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            (dir, None)
        }
        None => {
            let temp = tempfile::Builder::new().prefix("m365-soak-").tempdir()?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let config = SoakConfig {
        seed,
        schedule,
        interval: cli.interval,
        restart_sec: cli.restart_sec,
        drain_timeout: cli.drain_timeout,
        max_bytes: 4 << 20,
        m365,
        m365_sim,
        soak: soak_exe,
        mosquitto,
        faketime,
        work_dir,
        replay,
    };
    let outcome = soak::run(config).await;
    let passed = outcome.as_ref().is_ok_and(|o| o.violations.is_empty());
    if !passed && let Some(dir) = temp {
        // Keep the logs of a failed run.
        println!("logs kept in {}", dir.keep().display());
    }
    let outcome = outcome?;
    // The last line.
    println!("{}", outcome.summary);
    Ok(passed)
}

/// `90s`, `1500ms`: one word, as `--duration` takes it back.
fn compact(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn existing(path: PathBuf, flag: &str) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{} not found: build the workspace (`cargo build`) or pass {flag}",
            path.display()
        )
    }
}

fn find_mosquitto() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/sbin/mosquitto");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}
