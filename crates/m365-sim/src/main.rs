//! `m365-sim`: runs simulated scooters behind a fake BlueZ for people and scripts.
//!
//! `m365-sim serve` starts a private D-Bus, the fake BlueZ on it, the simulated scooters and
//! (optionally) an emulated GPS device on a pty, then prints, one per line on stdout and before
//! anything else:
//!
//! ```text
//! DBUS_SYSTEM_BUS_ADDRESS=<address>
//! M365_SIM_GPS=<pty path, or --gps-symlink>    (only with --gps nmea|sim7600)
//! M365_SIM_SCOOTER=<MAC> <name> <model> <protocol>   (one per scooter)
//! READY
//! ```
//!
//! and runs until SIGINT or SIGTERM. Logs go to stderr (`RUST_LOG` filters them). While it
//! runs, `m365-sim ctl` drives it through the control interface on the same bus (see
//! `m365_sim::control`).
#![forbid(unsafe_code)]

mod ctl;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use m365_fakebluez::{FakeBluez, FakeConfig, LinkTiming, PrivateBus, SYSTEM_BUS_ENV};
use m365_gps::emulate::{
    EmulatorHandle, ModemModel, NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint, Sim7600ModemConfig,
};
use m365_sim::bluez::{DEFAULT_PHYSICS_TICK, ServedScooter};
use m365_sim::control::Simulator;
use m365_sim::link_timing;
use m365_sim::profile::{generation_slug, model_slug, parse_generation, parse_model};
use m365_sim::ride::GpsSample;
use m365_sim::{Generation, Model, Scooter, ScooterConfig};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Simulated Xiaomi scooters behind a fake BlueZ.
#[derive(Debug, Parser)]
#[command(name = "m365-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve simulated scooters on a private D-Bus until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Control a running `m365-sim serve`: faults, ride, counters.
    Ctl(ctl::CtlArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GpsKind {
    /// An NMEA receiver (RMC/VTG/GGA/GSA at 1 Hz) following the first scooter.
    Nmea,
    /// A SIM7600 modem's AT port reporting the first scooter's position.
    Sim7600,
    /// No GPS device.
    None,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Number of scooters (each gets its own serial, name and address).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    scooters: u16,
    /// Model: m365, lite, 1s, pro, pro2, pro3, essential.
    #[arg(long, default_value = "pro2", value_parser = parse_model)]
    model: Model,
    /// Protocol generation: miauth, xor or plain (default: the model's usual one).
    #[arg(long, value_parser = parse_generation)]
    protocol: Option<Generation>,
    /// Emulated GPS device.
    #[arg(long, value_enum, default_value_t = GpsKind::None)]
    gps: GpsKind,
    /// Keep a symlink at this path pointing at the GPS device, so clients keep one path across
    /// `m365-sim ctl gps unplug`/`replug` (each replug opens a new pty).
    #[arg(long)]
    gps_symlink: Option<PathBuf>,
    /// Directory where the scooters remember their pairing across restarts.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Press the power button automatically this many milliseconds after each beep.
    #[arg(long)]
    auto_press_ms: Option<u64>,
    /// BLE connection interval in milliseconds (7.5–100); without it the link is instant.
    #[arg(long)]
    conn_interval_ms: Option<f64>,
    /// Seed of the first scooter's identity; scooter i uses seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the session keys this long after a disconnect (e.g. `5s`), so a client's
    /// session-resume path can be exercised. Real scooters drop them at once: 0, the default.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    session_grace: Duration,
    /// Do not send the empty notification real scooters send after every UART frame whose
    /// length is a multiple of 20 bytes.
    #[arg(long)]
    no_empty_terminator: bool,
    /// How long a BlueZ `Connect()` waits for a scooter that cannot be reached before it
    /// fails (BlueZ: about 25 s).
    #[arg(long, value_parser = parse_duration, default_value = "25s")]
    connect_timeout: Duration,
    /// How long BlueZ keeps a scooter nobody hears (BlueZ's TemporaryTimeout: 30 s).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    temporary_timeout: Duration,
}

/// A duration such as `5s` or `500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("bad duration {text:?} ({e}); examples: 25s, 500ms"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Serve(args) => {
            // The fake BlueZ is driven from one thread, as its documentation asks.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(serve(args))
        }
        Command::Ctl(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(ctl::run(args))
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let link = match args.conn_interval_ms {
        Some(ms) => {
            if !ms.is_finite() {
                bail!("--conn-interval-ms must be a number of milliseconds");
            }
            let interval = Duration::from_secs_f64(ms.max(0.0) / 1000.0);
            link_timing::with_interval(interval)
                .with_context(|| format!("--conn-interval-ms {ms}"))?
        }
        None => LinkTiming::instant(),
    };
    let bus =
        PrivateBus::start().context("cannot start a private D-Bus (is dbus-daemon installed?)")?;
    let config = FakeConfig {
        link_timing: link,
        connect_timeout: args.connect_timeout,
        temporary_timeout: args.temporary_timeout,
        ..FakeConfig::default()
    };
    let fake = FakeBluez::start_with(bus.address(), config)
        .await
        .context("cannot start the fake BlueZ")?;

    let generation = args
        .protocol
        .unwrap_or_else(|| m365_sim::profile::default_generation(args.model));
    let mut served = Vec::new();
    let mut lines = vec![format!("{SYSTEM_BUS_ENV}={}", bus.address())];
    for i in 0..u64::from(args.scooters) {
        let mut config =
            ScooterConfig::new(args.model, args.seed.wrapping_add(i)).with_generation(generation);
        config.state_dir = args.state.clone();
        config.auto_press = args.auto_press_ms.map(Duration::from_millis);
        config.session_grace = args.session_grace;
        config.empty_terminator = !args.no_empty_terminator;
        // The fake paces the link; the scooter adds only the controllers' processing time.
        config.link = None;
        let scooter = Scooter::new(config).context("cannot restore the scooter's pairing")?;
        let profile = scooter.profile().clone();
        let s = ServedScooter::start(&fake, scooter, DEFAULT_PHYSICS_TICK)
            .context("cannot add the scooter to the fake BlueZ")?;
        lines.push(format!(
            "M365_SIM_SCOOTER={} {} {} {}",
            profile.address_string(),
            profile.name(),
            model_slug(profile.model),
            generation_slug(profile.generation)
        ));
        served.push(s);
    }

    let gps = match (args.gps, served.first()) {
        (GpsKind::None, _) | (_, None) => None,
        (kind, Some(first)) => Some(start_gps(kind, first.gps_feed(), args.gps_symlink.clone())?),
    };
    if let Some(handle) = &gps {
        let path = handle
            .path()
            .context("the emulated GPS device has no path")?;
        lines.insert(1, format!("M365_SIM_GPS={}", path.display()));
    }
    // Announced only once the control interface answers, so a script may use `ctl` at READY.
    let control = Simulator::new(served, gps)
        .serve(bus.address())
        .await
        .context("cannot publish the control interface")?;
    let shutdown = Shutdown::watch()?;
    lines.push("READY".to_owned());
    let mut out = std::io::stdout().lock();
    for line in &lines {
        writeln!(out, "{line}").context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    drop(out);

    shutdown.wait().await;
    tracing::info!("shutting down");
    // Dropping the connection releases the interface, and with it the scooters and the GPS.
    drop(control);
    drop(fake);
    drop(bus);
    Ok(())
}

/// An emulated GPS device reporting the positions `feed` gives, once a second.
fn start_gps(
    kind: GpsKind,
    mut feed: Box<dyn FnMut() -> GpsSample + Send>,
    symlink: Option<PathBuf>,
) -> anyhow::Result<EmulatorHandle> {
    // The receiver paces itself by the points' times: one point per second of UTC, starting
    // now, with the position the scooter has when the point is taken.
    let start = chrono::Utc::now();
    let mut second = 0i64;
    let mut point = move || {
        let g = feed();
        let time = start + chrono::TimeDelta::seconds(second);
        second += 1;
        RoutePoint {
            time,
            lat: g.position.at.lat,
            lon: g.position.at.lon,
            alt_m: 35.0,
            speed_mps: g.speed_kmh / 3.6,
            course_deg: g.position.course_deg,
        }
    };
    let handle = match kind {
        GpsKind::Nmea => {
            let points = std::iter::from_fn(move || Some(point()));
            let mut config =
                NmeaReceiverConfig::new(NmeaFeed::Route(Box::new(points)), Pace::RealTime);
            config.symlink = symlink;
            m365_gps::emulate::nmea_receiver::spawn(config)
        }
        GpsKind::Sim7600 => m365_gps::emulate::sim7600_modem::spawn(Sim7600ModemConfig {
            model: ModemModel::new(Box::new(move || Some(point()))),
            symlink,
        }),
        GpsKind::None => bail!("no GPS device requested"),
    };
    handle.context("cannot open a pty for the emulated GPS device")
}

/// SIGINT and SIGTERM, watched from before `READY` is printed: a script may signal the moment
/// it reads `READY`, and the default action would kill the process without cleaning up.
struct Shutdown {
    interrupt: Signal,
    terminate: Signal,
}

impl Shutdown {
    fn watch() -> anyhow::Result<Shutdown> {
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt()).context("cannot watch SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot watch SIGTERM")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
