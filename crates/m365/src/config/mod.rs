//! The `martinete.toml` configuration: where it is looked for, how it is read, and the effective
//! settings every part of `m365` uses.
//!
//! Files written for the earlier client keep working unchanged (its keys are read with the same
//! meaning, see `docs/configuration.md`). Everything else is optional with a default. Each bad
//! value is reported with `file:line:column`, the key and what is wrong; unknown keys are ignored
//! with a warning (and a "did you mean" when one is close).
//!
//! Relative paths in the file (token, CA, password file, spool) are relative to the working
//! directory, as they were for the earlier client; the systemd unit sets it to the state
//! directory.

mod commands;
mod error;
mod example;
mod gps;
mod homeassistant;
mod location;
mod log;
mod mac;
mod mqtt;
mod reader;
mod render;
mod scooter;
mod spool;
mod telemetry;
pub mod units;

pub use error::{ConfigError, KeyPath, Problem, Warning};
pub use example::EXAMPLE;
pub use gps::{GpsConfig, GpsKind, GpsSource};
pub use homeassistant::HomeAssistantConfig;
pub use location::Location;
pub use log::{LogConfig, LogFormat};
pub use m365_pipeline::Secret;
pub use m365_pipeline::mqtt::BrokerUrlError;
pub use mac::MacError;
pub use mqtt::{
    BrokerUrl, Encoding, MqttConfig, MqttProtocol, PASSWORD_ENV, PasswordSource, TlsConfig,
    TopicEncoding, USERNAME_ENV,
};
pub use render::{MASK, render};
pub use scooter::{ScooterConfig, ScooterProtocol};
pub use spool::{DEFAULT_STATE_DIR, SPOOL_FILE, SpoolConfig, SyncPolicy};
pub use telemetry::{DEFAULT_INTERVAL, MAX_INTERVAL, MIN_INTERVAL, TelemetryConfig};

use location::SourceMap;
use reader::{Diagnostics, Section};
use std::path::{Path, PathBuf};

/// The configuration file's name, looked for in the working directory first.
pub const FILE_NAME: &str = "martinete.toml";
/// The system-wide configuration, looked for second (the .deb installs it).
pub const SYSTEM_PATH: &str = "/etc/m365/martinete.toml";

const TOP_KEYS: &[&str] = &[
    "mqtt",
    "scooter",
    "serial",
    "gps",
    "telemetry",
    "spool",
    "homeassistant",
    "log",
];

/// The effective configuration: the file's values with defaults for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// `[scooter]`.
    pub scooter: ScooterConfig,
    /// `[gps]` (or the earlier `[serial]`).
    pub gps: GpsConfig,
    /// `[telemetry]` (the interval may come from the earlier `[mqtt] send_interval`).
    pub telemetry: TelemetryConfig,
    /// `[spool]`.
    pub spool: SpoolConfig,
    /// `[homeassistant]`.
    pub homeassistant: HomeAssistantConfig,
    /// `[log]`.
    pub log: LogConfig,
}

/// A configuration read from a file, with the warnings (unknown keys) found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// The effective settings.
    pub config: Config,
    /// Unknown keys, in file order.
    pub warnings: Vec<Warning>,
}

/// The places looked at when no `--config` is given, in order.
pub fn search_paths() -> Vec<PathBuf> {
    vec![PathBuf::from(FILE_NAME), PathBuf::from(SYSTEM_PATH)]
}

/// The file to read: `explicit` if given (it must exist), else the first of [`search_paths`]
/// that exists.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let searched = search_paths();
    searched
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(ConfigError::NotFound { searched })
}

/// Finds and reads the configuration, with overrides from the process environment.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = locate(explicit)?;
    load_file(&path, &|name| std::env::var(name).ok())
}

/// Reads the configuration at `path`; `env` looks up environment variables (for the secret
/// overrides and systemd's `STATE_DIRECTORY`).
pub fn load_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let (config, warnings) = parse(&path.display().to_string(), &text, env)?;
    Ok(Loaded {
        path: path.to_path_buf(),
        config,
        warnings,
    })
}

/// Parses configuration `text`; `file` names it in messages.
pub fn parse(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Warning>), ConfigError> {
    let source = SourceMap::new(file, text);
    let document = toml::de::DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        location: source.locate_offset(e.span().map_or(0, |s| s.start)),
        message: e.message().trim().replace('\n', " "),
    })?;
    let diag = Diagnostics::default();
    let config = read(&diag, source, document.get_ref(), env);
    let (mut problems, mut warnings) = diag.into_parts();
    warnings.sort_by_key(|w| (w.location.line, w.location.column));
    problems.sort_by_key(|p| (p.location.line, p.location.column));
    if problems.is_empty() {
        Ok((config, warnings))
    } else {
        Err(ConfigError::Invalid { problems, warnings })
    }
}

fn read<'a, 'i>(
    diag: &'a Diagnostics,
    source: SourceMap<'a>,
    document: &'a toml::de::DeTable<'i>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Config {
    let mut top = Section::new(diag, source, "", Some(document), TOP_KEYS);

    let scooter = scooter::read(&mut top.table("scooter", scooter::KEYS));

    let mut telemetry_section = top.table("telemetry", telemetry::KEYS);
    let scooter_id = telemetry::read_scooter_id(&mut telemetry_section).unwrap_or_else(|| {
        scooter
            .mac
            .map_or_else(|| "scooter".to_owned(), |m| m.compact())
    });
    let interval = telemetry::read_interval(&mut telemetry_section, "interval");
    drop(telemetry_section);

    let mut mqtt_section = top.table("mqtt", mqtt::KEYS);
    let mqtt = mqtt::read(&mut mqtt_section, &scooter_id, env);
    // The earlier client's sampling interval lived in [mqtt]; it means [telemetry] interval.
    let send_interval = telemetry::read_interval(&mut mqtt_section, "send_interval");
    if let (Some(_), Some(legacy)) = (&interval, &send_interval) {
        mqtt_section.problem(
            "send_interval",
            &legacy.span,
            "both [telemetry] interval and this earlier-format key are set; keep only interval",
        );
    }
    drop(mqtt_section);
    let telemetry = TelemetryConfig {
        interval: interval
            .or(send_interval)
            .map_or(telemetry::DEFAULT_INTERVAL, |i| i.value),
        scooter_id,
    };

    let gps = gps::read(
        &mut top.table("gps", gps::KEYS),
        &mut top.table("serial", gps::LEGACY_KEYS),
    );
    let spool = spool::read(&mut top.table("spool", spool::KEYS), &spool::state_dir(env));
    let homeassistant = homeassistant::read(&mut top.table("homeassistant", homeassistant::KEYS));
    let log = log::read(&mut top.table("log", log::KEYS));

    Config {
        mqtt,
        scooter,
        gps,
        telemetry,
        spool,
        homeassistant,
        log,
    }
}
