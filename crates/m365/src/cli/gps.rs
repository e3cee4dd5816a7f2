//! `m365 gps`: prints fixes from a receiver, a SIM7600 modem, gpsd or a capture file, one line per
//! epoch, so an installer can check the GPS before the daemon relies on it.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use m365_gps::capture::{self, CaptureKind};
use m365_gps::chrono::SecondsFormat;
use m365_gps::sim7600::InfoCommand;
use m365_gps::source::{self, GpsHandle, SourceConfig};
use m365_gps::{Fix, FixMode};
use serde_json::json;

use crate::exit::{ExitStatus, ResultExt};

/// The kind of device on `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// A receiver streaming NMEA 0183 (USB or UART).
    Nmea,
    /// A SIM7600 modem's AT port (polled with AT+CGPSINFO).
    Sim7600,
}

/// Arguments of `m365 gps`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("source").required(true).args(["device", "gpsd", "replay"])
))]
pub struct GpsArgs {
    /// Serial device of the receiver or modem, e.g. /dev/ttyACM0 or /dev/ttyUSB2.
    #[arg(long, value_name = "PATH")]
    pub device: Option<PathBuf>,
    /// Baud rate of --device (default 9600 for NMEA, 115200 for the SIM7600).
    #[arg(long, value_name = "N", requires = "device")]
    pub baud: Option<u32>,
    /// What is on --device.
    #[arg(long, value_enum, default_value_t = DeviceKind::Nmea, requires = "device")]
    pub kind: DeviceKind,
    /// Poll the SIM7600 with AT+CGNSSINFO (satellites and DOPs) instead of AT+CGPSINFO.
    #[arg(long, requires = "device")]
    pub cgnssinfo: bool,
    /// Read from gpsd at HOST:PORT (usually 127.0.0.1:2947).
    #[arg(long, value_name = "HOST:PORT")]
    pub gpsd: Option<String>,
    /// Decode a capture file (NMEA, or a SIM7600 AT transcript) as fast as possible.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Print JSON Lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many epochs (live sources; default: until interrupted).
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

/// Runs `m365 gps`.
pub fn run(args: GpsArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &args.replay {
        return replay(file, args.json);
    }
    init_logging();
    let config = live_config(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(live(config, args.json, args.count))
}

fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| crate::logging::parse_filter(&v).ok())
        // The command prints source problems itself; library warnings would repeat them.
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::ERROR)
        });
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

fn live_config(args: &GpsArgs) -> anyhow::Result<SourceConfig> {
    if let Some(path) = &args.device {
        if !path.exists() {
            let missing = anyhow!(
                "device {} does not exist (is the receiver plugged in?)",
                path.display()
            );
            return Err(missing).exit_with(ExitStatus::GpsDeviceMissing)?;
        }
        return Ok(match args.kind {
            DeviceKind::Nmea => SourceConfig::Nmea {
                path: path.clone(),
                baud: args.baud.unwrap_or(source::DEFAULT_NMEA_BAUD),
            },
            DeviceKind::Sim7600 => SourceConfig::Sim7600 {
                path: path.clone(),
                baud: args.baud.unwrap_or(source::DEFAULT_SIM7600_BAUD),
                command: if args.cgnssinfo {
                    InfoCommand::Cgnssinfo
                } else {
                    InfoCommand::Cgpsinfo
                },
                interval: source::DEFAULT_POLL_INTERVAL,
            },
        });
    }
    if let Some(addr) = &args.gpsd {
        return Ok(SourceConfig::Gpsd {
            addr: resolve(addr).exit_with(ExitStatus::Usage)?,
        });
    }
    bail!("give one of --device, --gpsd or --replay")
}

fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("--gpsd {addr:?} is not HOST:PORT"))?
        .next()
        .with_context(|| format!("--gpsd {addr:?} resolves to no address"))
}

fn replay(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file)
        .with_context(|| format!("cannot read capture {}", file.display()))
        .exit_with(ExitStatus::Usage)?;
    let decoded = capture::decode(&bytes);
    if decoded.epochs.is_empty() {
        bail!(
            "{}: no NMEA epochs or SIM7600 position replies found",
            file.display()
        );
    }
    let mut out = std::io::stdout().lock();
    for fix in &decoded.epochs {
        writeln!(out, "{}", render(fix.as_ref(), json))?;
    }
    let kind = match decoded.kind {
        CaptureKind::Nmea => "NMEA",
        CaptureKind::Sim7600At => "SIM7600 AT",
    };
    let fixes = decoded.epochs.iter().filter(|f| f.is_some()).count();
    eprintln!(
        "{}: {kind} capture, {} epochs, {fixes} with a fix, {} rejected",
        file.display(),
        decoded.epochs.len(),
        decoded.rejected
    );
    Ok(ExitCode::SUCCESS)
}

async fn live(config: SourceConfig, json: bool, count: Option<u64>) -> anyhow::Result<ExitCode> {
    let handle = GpsHandle::spawn(config);
    let mut state_rx = handle.subscribe();
    let mut epochs = handle.epochs();
    let mut printed: u64 = 0;
    let mut was_connected = false;
    let mut ever_connected = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            epoch = epochs.recv() => match epoch {
                Ok(epoch) => {
                    ever_connected = true;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", render(epoch.fix.as_ref(), json))?;
                    out.flush()?;
                    printed = printed.saturating_add(1);
                    if count.is_some_and(|n| printed >= n) {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    eprintln!("(output too slow: {n} epochs skipped)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    bail!("the GPS source stopped");
                }
            },
            changed = state_rx.changed() => {
                if changed.is_err() {
                    bail!("the GPS source stopped");
                }
                let state = state_rx.borrow_and_update().clone();
                ever_connected |= state.connected || state.epochs > 0;
                if !ever_connected && state.failures > 0 {
                    // The very first open failed (permissions, not a serial port, gpsd gone):
                    // a setup problem to report, not an outage to wait out.
                    let error = state.last_error.as_deref().unwrap_or("the GPS source failed");
                    return Err(anyhow!("{error}"))
                        .exit_with(ExitStatus::GpsDeviceMissing)
                        .map_err(Into::into);
                }
                if was_connected && !state.connected {
                    eprintln!(
                        "GPS source lost ({}); retrying",
                        state.last_error.as_deref().unwrap_or("unknown error")
                    );
                }
                was_connected = state.connected;
            }
            _ = &mut ctrl_c => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn mode_text(mode: FixMode) -> &'static str {
    match mode {
        FixMode::NoFix => "no fix",
        FixMode::TwoD => "2d",
        FixMode::ThreeD => "3d",
    }
}

/// One output line for an epoch.
fn render(fix: Option<&Fix>, json: bool) -> String {
    match (fix, json) {
        (None, true) => json!({"fix": false, "mode": "no fix"}).to_string(),
        (None, false) => "no fix".to_owned(),
        (Some(f), true) => json!({
            "fix": true,
            "time": f.time.map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
            "lat": f.lat,
            "lon": f.lon,
            "alt": f.alt_msl_m,
            "speed_mps": f.speed_mps,
            "course": f.course_deg,
            "mode": mode_text(f.mode),
            "quality": f.quality,
            "sats": f.sats_used,
            "hdop": f.hdop,
            "source": f.source,
        })
        .to_string(),
        (Some(f), false) => {
            let opt = |v: Option<f64>, unit: &str, prec: usize| {
                v.map_or_else(|| "-".to_owned(), |x| format!("{x:.prec$}{unit}"))
            };
            format!(
                "{}  {:.7} {:.7}  alt {}  {}  course {}  {}  sats {}  hdop {}",
                f.time.map_or_else(
                    || "-".to_owned(),
                    |t| t.to_rfc3339_opts(SecondsFormat::Millis, true)
                ),
                f.lat,
                f.lon,
                opt(f.alt_msl_m, " m", 1),
                opt(f.speed_mps, " m/s", 2),
                opt(f.course_deg, "°", 1),
                mode_text(f.mode),
                f.sats_used
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                opt(f.hdop, "", 1),
            )
        }
    }
}
