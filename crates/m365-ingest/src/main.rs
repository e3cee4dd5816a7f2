//! `m365-ingest --config ingest.toml`: runs one ingest worker until SIGTERM or SIGINT, then
//! commits what it holds, acknowledges it and disconnects (the broker keeps the session).
//! Exit codes are listed in `docs/server.md`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use m365_ingest::config::{self, LogFormat};
use m365_ingest::{Disposition, RunError, Shutdown, StoreError};
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Overrides `[database] url` (e.g. to keep a password out of the file).
const DATABASE_URL_ENV: &str = "M365_INGEST_DATABASE_URL";

/// Exit status: the configuration is invalid (or names a database that does not exist).
const EXIT_CONFIG: u8 = 78;
/// Exit status: the broker or the database refused the credentials or the privileges.
const EXIT_NOPERM: u8 = 77;
/// Exit status: the schema cannot be brought up to date.
const EXIT_SCHEMA: u8 = 70;

/// Stores what m365 clients publish into PostgreSQL, exactly once.
#[derive(Debug, Parser)]
#[command(name = "m365-ingest", version)]
struct Args {
    /// The configuration file.
    #[arg(long, short, env = "M365_INGEST_CONFIG", default_value = "ingest.toml")]
    config: PathBuf,
    /// MQTT client id of this worker, overriding `[mqtt] client_id` (e.g. one per instance of
    /// a systemd template unit).
    #[arg(long, env = "M365_INGEST_CLIENT_ID")]
    client_id: Option<String>,
    /// Check the configuration, print it and exit (0 when valid, 78 otherwise).
    #[arg(long)]
    check: bool,
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn exit_code(e: &RunError) -> u8 {
    match e {
        RunError::Mqtt(_) => EXIT_CONFIG,
        RunError::BrokerRefused(_) => EXIT_NOPERM,
        RunError::Store(StoreError::Schema(_)) => EXIT_SCHEMA,
        RunError::Store(StoreError::PasswordFile { .. }) => EXIT_CONFIG,
        RunError::Store(s @ StoreError::Db(db)) => {
            let missing_db = db
                .code()
                .is_some_and(|c| *c == tokio_postgres::error::SqlState::INVALID_CATALOG_NAME);
            if missing_db {
                EXIT_CONFIG
            } else if s.disposition() == Disposition::Fatal {
                EXIT_NOPERM
            } else {
                1
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(url) = std::env::var(DATABASE_URL_ENV)
        .ok()
        .filter(|v| !v.is_empty())
    {
        match config::DatabaseUrl::parse(&url) {
            Ok(u) => cfg.database.url = u,
            Err(e) => {
                eprintln!("error: {DATABASE_URL_ENV}: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let worker = args
        .client_id
        .clone()
        .unwrap_or_else(|| cfg.mqtt.resolved_client_id());
    if args.check {
        use std::io::Write as _;
        // A closed pipe (`| head`) is not an error worth a panic.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "configuration {} is valid\nworker (client id): {worker}\n{cfg:#?}",
            args.config.display()
        );
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg.log.level, cfg.log.format);
    match serve(cfg, worker) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<RunError>().map_or(1, exit_code);
            tracing::error!(error = %format!("{e:#}"), code, "stopped");
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

fn serve(cfg: config::Config, worker: String) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let (trigger, stop) = Shutdown::new();
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stop requested");
            trigger.trigger();
        });
        m365_ingest::run(cfg, worker, stop).await?;
        Ok(())
    })
}
