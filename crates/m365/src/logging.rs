//! Sets up `tracing` output from `[log]`: the level or filter (`RUST_LOG` wins when set, as
//! usual for Rust programs) and the line format. Logs go to stderr, which systemd sends to the
//! journal; colours are used only on a terminal, so the journal gets plain text.

use crate::config::{LogConfig, LogFormat};
use std::io::IsTerminal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

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
/// configured level. Both take a level (`info`) or per-target directives
/// (`warn,m365_ble=debug`); `tracing`'s target filter, without span and field filters, keeps
/// a regular-expression engine out of the binary.
pub fn filter(config: &LogConfig, rust_log: Option<&str>) -> Result<Targets, LoggingError> {
    let text = rust_log
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(&config.level);
    parse_filter(text)
}

/// Parses a level or a list of `target=level` directives.
pub fn parse_filter(text: &str) -> Result<Targets, LoggingError> {
    text.trim()
        .parse::<Targets>()
        .map_err(|source| LoggingError::Filter {
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
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let registry = tracing_subscriber::registry();
    Ok(match config.format {
        LogFormat::Text => Box::new(registry.with(layer.with_ansi(ansi)).with(filter)),
        LogFormat::Json => Box::new(registry.with(layer.json()).with(filter)),
    })
}

/// Installs the global subscriber for the program: stderr, `RUST_LOG` from the environment.
pub fn init(config: &LogConfig) -> Result<(), LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let ansi = std::io::stderr().is_terminal();
    let subscriber = subscriber(config, rust_log.as_deref(), std::io::stderr, ansi)?;
    tracing::subscriber::set_global_default(subscriber).map_err(|_| LoggingError::AlreadySet)
}
