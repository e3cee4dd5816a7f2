//! `m365 scan [--timeout S] [--json]`: lists the scooters in range as they are heard, so an
//! installer can find the address to put in `[scooter] mac` (or to pass to `m365 register`).
//! Human output is one line per scooter; `--json` prints JSON Lines, one object per scooter.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use m365_ble::scanner::{Discovered, ScanFilter, Scanner};
use m365_ble::transport::btleplug::BtleplugTransport;
use m365_proto::model::Detected;
use serde_json::json;
use tokio::time::Instant;

use super::info::{exit_status, scooter_config};
use crate::exit::{ExitStatus, Fatal};

/// Arguments of `m365 scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// How long to listen, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub timeout: f64,
    /// Print JSON Lines (one object per scooter) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Look for scooters named like this configured one (its id or address; default: the
    /// first).
    #[arg(long, value_name = "ID|MAC")]
    pub scooter: Option<String>,
}

/// Runs `m365 scan`; `global_config` is the `--config` option (the name prefix comes from
/// `[scooter] name_prefix`).
pub fn run(args: ScanArgs, global_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        return Err(Fatal {
            status: ExitStatus::Usage,
            error: anyhow::anyhow!(
                "--timeout must be a number of seconds above 0 and at most 3600, found {}",
                args.timeout
            ),
        }
        .into());
    }
    let scooter = scooter_config(global_config, args.scooter.as_deref())?;
    let filter = ScanFilter {
        name_prefix: scooter.name_prefix,
        address: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(scan(
        filter,
        Duration::from_secs_f64(args.timeout),
        args.json,
    ))
}

async fn scan(filter: ScanFilter, timeout: Duration, json: bool) -> anyhow::Result<ExitCode> {
    let mut transport = BtleplugTransport::new()
        .await
        .context("cannot use Bluetooth (is bluetoothd running?)")?;
    let prefix = filter.name_prefix.clone();
    let mut scanner = Scanner::start(&mut transport, filter)
        .await
        .context("cannot start scanning")?;
    if !json {
        eprintln!("Scanning for {timeout:?} for devices named {prefix}…",);
    }
    let deadline = Instant::now() + timeout;
    let mut listed = HashSet::new();
    let mut out = std::io::stdout().lock();
    while let Some(found) = scanner.next(deadline).await.map_err(|e| Fatal {
        status: exit_status(&e),
        error: e.into(),
    })? {
        if listed.insert(found.address) {
            if json {
                writeln!(out, "{}", to_json(&found))?;
            } else {
                writeln!(out, "{}", to_line(&found))?;
            }
            out.flush()?;
        }
    }
    let _ = scanner.stop().await;
    if !json {
        let n = listed.len();
        eprintln!("{n} scooter{} found", if n == 1 { "" } else { "s" });
    }
    Ok(if listed.is_empty() {
        ExitStatus::ScooterNotFound.into()
    } else {
        ExitCode::SUCCESS
    })
}

fn protocol(found: &Discovered) -> &'static str {
    match found.generation {
        Some(Detected::Generation(g)) => match g {
            m365_proto::model::Generation::MiAuth => "miauth",
            m365_proto::model::Generation::Xor => "xor",
            m365_proto::model::Generation::Plain => "plain",
        },
        Some(Detected::Ninebot) => "ninebot",
        None => "unknown",
    }
}

fn to_line(found: &Discovered) -> String {
    format!(
        "{}  {:<14} {:>8}  {:<10} {}",
        found.address,
        found.name.as_deref().unwrap_or("?"),
        found
            .rssi
            .map_or_else(|| "?".to_owned(), |r| format!("{r} dBm")),
        found
            .model
            .map_or_else(|| "unknown".to_owned(), |m| m.to_string()),
        protocol(found),
    )
}

fn to_json(found: &Discovered) -> serde_json::Value {
    let seen = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    json!({
        "address": found.address.to_string(),
        "name": found.name,
        "rssi_dbm": found.rssi,
        "model": found.model.map(|m| m.to_string()),
        "protocol": protocol(found),
        "last_seen_unix": seen,
    })
}
