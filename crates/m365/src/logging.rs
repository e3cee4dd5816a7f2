//! Sets up `tracing` output from `[log]`: the level or filter (`RUST_LOG` wins when set, as
//! usual for Rust programs) and the line format. Logs go to stderr, which systemd sends to the
//! journal; colours are used only on a terminal, so the journal gets plain text.

use crate::config::{LogConfig, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The filter or the subscriber could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `RUST_LOG` (or `[log] level`) is not a valid filter.
    #[error("invalid log filter {filter:?}: {source}")]
    Filter {
        /// The text that was refused.
        filter: String,
        /// The parser's explanation.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("logging was already set up")]
    AlreadySet,
}

/// The filter: `rust_log` (the value of `RUST_LOG`) when set and non-empty, else the
/// configured level.
pub fn filter(config: &LogConfig, rust_log: Option<&str>) -> Result<EnvFilter, LoggingError> {
    let text = rust_log
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(&config.level);
    EnvFilter::try_new(text).map_err(|source| LoggingError::Filter {
        filter: text.to_owned(),
        source,
    })
}

/// A subscriber for `config` that writes to `writer` (stderr in the program, a buffer in tests).
pub fn subscriber<W>(
    config: &LogConfig,
    rust_log: Option<&str>,
    writer: W,
    ansi: bool,
) -> Result<Box<dyn tracing::Subscriber + Send + Sync>, LoggingError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = filter(config, rust_log)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match config.format {
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Box::new(builder.json().finish()),
    })
}

/// Installs the global subscriber for the program: stderr, `RUST_LOG` from the environment.
pub fn init(config: &LogConfig) -> Result<(), LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let ansi = std::io::stderr().is_terminal();
    let subscriber = subscriber(config, rust_log.as_deref(), std::io::stderr, ansi)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LoggingError::AlreadySet)
}
