//! `m365 demo`: the whole product on one machine with nothing to set up, simulated scooters,
//! an embedded broker and a live view of what arrives there. The demo itself lives in the
//! crate's `demo` module.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::demo::{self, DemoOptions};

/// Arguments of `m365 demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of simulated scooters.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub scooters: u16,
    /// Stop cleanly after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "S")]
    pub duration: Option<u64>,
    /// Seconds between two samples of each scooter.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub interval: f64,
    /// Show recovery live: a 2 s radio drop (the scooter is back the moment it is heard again,
    /// with a new login) and a broker outage of a few seconds (records wait in the spool,
    /// nothing is lost).
    #[arg(long)]
    pub faults: bool,
    /// Print one plain line per record even on a terminal.
    #[arg(long)]
    pub plain: bool,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    if !args.interval.is_finite() || !(0.2..=60.0).contains(&args.interval) {
        anyhow::bail!("--interval must be between 0.2 and 60 seconds");
    }
    let options = DemoOptions {
        scooters: args.scooters,
        duration: args.duration.map(Duration::from_secs),
        interval: Duration::from_secs_f64(args.interval),
        faults: args.faults,
        table: !args.plain && std::io::stdout().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(demo::run(options))?;
    Ok(if summary.lost == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::ExitStatus::Internal.code())
    })
}

/// Errors only: the terminal belongs to the live view. The embedded broker is silenced: it
/// reports every connection the staged outage cuts as an error.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| crate::logging::parse_filter(&v).ok())
        .unwrap_or_else(|| {
            tracing_subscriber::filter::Targets::new()
                .with_default(tracing::Level::ERROR)
                .with_target("rumqttd", tracing_subscriber::filter::LevelFilter::OFF)
        });
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}
