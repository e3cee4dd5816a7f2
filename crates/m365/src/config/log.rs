//! `[log]`: how much `m365` logs and in which format. `RUST_LOG`, when set, still wins over
//! `level`, as usual for Rust programs.

use super::reader::{Refusal, Section};
use toml::de::DeValue;

pub(crate) const KEYS: &[&str] = &["level", "format"];

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (the journal adds its own timestamps).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    const NAMES: &[&str] = &["text", "json"];

    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// The effective `[log]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or a `tracing` filter such as
    /// `"info,m365_proto=debug"`.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace", "off"];

pub(crate) fn read(section: &mut Section<'_, '_>) -> LogConfig {
    let d = LogConfig::default();
    LogConfig {
        level: section
            .value("level", |v| match v {
                DeValue::String(s) if LEVELS.contains(&s.to_ascii_lowercase().as_str()) => {
                    Ok(s.to_ascii_lowercase())
                }
                // A filter with per-target directives: let tracing's own parser judge it (the
                // one `crate::logging::parse_filter` uses).
                DeValue::String(s) if s.contains('=') => s
                    .trim()
                    .parse::<tracing_subscriber::filter::Targets>()
                    .map(|_| s.to_string())
                    .map_err(|e| Refusal::Invalid(format!("not a valid log filter: {e}"))),
                _ => Err(Refusal::Invalid(format!(
                    "expected one of error, warn, info, debug, trace, off, or a filter such as \"info,m365=debug\", found {}",
                    super::reader::describe(v)
                ))),
            })
            .map_or(d.level, |l| l.value),
        format: section
            .choice("format", LogFormat::NAMES)
            .map_or(d.format, |f| match f.value {
                "json" => LogFormat::Json,
                _ => LogFormat::Text,
            }),
    }
}
