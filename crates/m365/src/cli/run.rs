//! `m365 run` (also what a bare `m365` does): loads the configuration, sets up logging and
//! runs the daemon until SIGINT/SIGTERM or a failure that decides the exit status.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config;
use crate::daemon;
use crate::exit::{ExitStatus, ResultExt as _};
use crate::logging;
use crate::notify::Notifier;

/// Arguments of `m365 run` (everything else is in the configuration file).
#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {}

/// Runs the daemon; `global_config` is the `--config` option.
pub fn run(_args: RunArgs, global_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let loaded = config::load(global_config)?;
    logging::init(&loaded.config.log).exit_with(ExitStatus::Config)?;
    tracing::info!(config = %loaded.path.display(), version = env!("CARGO_PKG_VERSION"), "m365 starting");
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // One thread: the work is I/O at a few hertz, and one scheduler thread is the smallest
    // footprint (BlueZ's D-Bus traffic has a thread of its own, in the BLE transport). It
    // watches a few dozen descriptors at most: 64 readiness events per poll, not 1,024, keep
    // 24 KiB of buffer off the heap.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("m365")
        .max_io_events_per_tick(64)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(daemon::run(loaded.config, Notifier::from_env()))?;
    Ok(ExitCode::SUCCESS)
}
