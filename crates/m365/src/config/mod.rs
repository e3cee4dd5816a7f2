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
mod events;
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
mod scooters;
mod spool;
mod telemetry;
pub mod units;

pub use commands::{CommandName, CommandsConfig};
pub use error::{ConfigError, KeyPath, Problem, Warning};
pub use events::EventsConfig;
pub use example::EXAMPLE;
pub use gps::{GpsConfig, GpsKind, GpsSource};
pub use homeassistant::HomeAssistantConfig;
pub use location::Location;
pub use log::{LogConfig, LogFormat};
pub use m365_pipeline::Secret;
pub use m365_pipeline::mqtt::BrokerUrlError;
pub use mac::{MacError, parse_mac};
pub use mqtt::{
    BrokerUrl, Encoding, MqttConfig, MqttProtocol, PASSWORD_ENV, PasswordSource, TlsConfig,
    TopicEncoding, USERNAME_ENV,
};
pub use render::{MASK, render};
pub use scooter::{ScooterConfig, ScooterProtocol};
pub use scooters::ScooterEntry;
pub use spool::{DEFAULT_STATE_DIR, SPOOL_FILE, SpoolConfig, SyncPolicy};
pub use telemetry::{
    DEFAULT_HEARTBEAT, DEFAULT_INTERVAL, DEFAULT_PARKED_INTERVAL, MAX_INTERVAL, MIN_INTERVAL,
    TelemetryConfig,
};

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
    "commands",
    "events",
    "log",
];

/// The effective configuration: the file's values with defaults for the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[mqtt]` as written, `{id}` not yet replaced: [`ScooterEntry::mqtt`] is what applies to
    /// each scooter.
    pub mqtt: MqttConfig,
    /// The scooters served: the `[scooter]` table, or every `[[scooter]]` entry, in file order
    /// (never empty).
    pub scooters: Vec<ScooterEntry>,
    /// `[gps]` (or the earlier `[serial]`).
    pub gps: GpsConfig,
    /// `[telemetry]`: the sampling every scooter inherits (the interval may come from the
    /// earlier `[mqtt] send_interval`).
    pub telemetry: TelemetryConfig,
    /// `[spool]` (for several scooters, each has its file beside `path`).
    pub spool: SpoolConfig,
    /// `[commands]`.
    pub commands: CommandsConfig,
    /// `[events]`.
    pub events: EventsConfig,
    /// `[homeassistant]`.
    pub homeassistant: HomeAssistantConfig,
    /// `[log]`.
    pub log: LogConfig,
}

impl Config {
    /// The first (or only) scooter: the one `m365 register`, `info` and `config check` act on
    /// unless told otherwise.
    pub fn first(&self) -> &ScooterEntry {
        // `read` never builds a configuration without a scooter.
        &self.scooters[0]
    }

    /// The scooter named `id`.
    pub fn scooter(&self, id: &str) -> Option<&ScooterEntry> {
        self.scooters.iter().find(|s| s.id == id)
    }
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

    let mut telemetry_section = top.table("telemetry", telemetry::KEYS);
    let single_id = telemetry::read_scooter_id(&mut telemetry_section, "scooter_id");
    let interval = telemetry::read_interval(&mut telemetry_section, "interval");

    // Templates: `{id}` is replaced per scooter.
    let mut mqtt_section = top.table("mqtt", mqtt::KEYS);
    let mqtt = mqtt::read(&mut mqtt_section, "{id}", env);
    // The earlier client's sampling interval lived in [mqtt]; it means [telemetry] interval.
    let send_interval = telemetry::read_interval(&mut mqtt_section, "send_interval");
    if let (Some(_), Some(legacy)) = (&interval, &send_interval) {
        mqtt_section.problem(
            "send_interval",
            &legacy.span,
            "both [telemetry] interval and this earlier-format key are set; keep only interval",
        );
    }
    let interval = interval.or(send_interval).map(|i| i.value);
    let telemetry =
        telemetry::read_sampling(&mut telemetry_section, interval, TelemetryConfig::default());

    let spool = spool::read(&mut top.table("spool", spool::KEYS), &spool::state_dir(env));
    let mut commands_section = top.table("commands", commands::KEYS);
    let commands = commands::read(&mut commands_section);
    let events = events::read(&mut top.table("events", events::KEYS));

    let several = top.is_array("scooter");
    let raw: Vec<_> = if several {
        let sections = top.tables("scooter", scooters::KEYS);
        if sections.is_empty() && top.has("scooter") {
            top.problem_here("scooter", "[[scooter]] needs at least one entry");
        }
        sections
            .into_iter()
            .map(|s| scooters::read_entry(s, telemetry))
            .collect()
    } else {
        vec![scooters::read_entry(
            top.table("scooter", scooters::KEYS),
            telemetry,
        )]
    };
    let several = raw.len() > 1;
    if several {
        if let Some(id) = &single_id {
            telemetry_section.problem(
                "scooter_id",
                &id.span,
                "with several scooters each [[scooter]] names its own id",
            );
        }
        for (key, value) in mqtt.per_scooter_names() {
            if !value.contains("{id}") {
                mqtt_section.problem_here(
                    key,
                    format!(
                        "with several scooters this must contain {{id}} (each scooter needs its \
                         own), found {value:?}"
                    ),
                );
            }
        }
    }
    if several {
        for (key, value) in [
            ("topic", &commands.topic),
            ("result_topic", &commands.result_topic),
        ] {
            if !value.contains("{id}") {
                commands_section.problem_here(
                    key,
                    format!(
                        "with several scooters this must contain {{id}} (each scooter needs its \
                         own), found {value:?}"
                    ),
                );
            }
        }
    }
    drop(commands_section);
    drop(telemetry_section);
    drop(mqtt_section);
    let ids: Vec<String> = raw
        .iter()
        .map(|e| match (&e.id, &single_id) {
            (Some(id), _) => id.value.clone(),
            (None, Some(id)) if !several => id.value.clone(),
            (None, _) => scooters::default_id(&e.link),
        })
        .collect();
    if let (false, Some(entry), Some(_)) = (several, raw.first(), &single_id)
        && let Some(id) = &entry.id
    {
        entry.section.problem(
            "id",
            &id.span,
            "both [telemetry] scooter_id and this key are set; keep only one",
        );
    }
    let mut raw = raw;
    if several {
        for (entry, id) in raw.iter_mut().zip(&ids) {
            if !entry.section.has("token_file_path") {
                // Each scooter pairs with its own token.
                entry.link.token_file = PathBuf::from(format!(".mi-token-{id}"));
            }
        }
        scooters::check_distinct(&raw, &ids);
    }
    let scooters = raw
        .into_iter()
        .zip(ids)
        .map(|(entry, id)| {
            let link = entry.link;
            ScooterEntry {
                mqtt: mqtt.for_scooter(&id),
                spool_path: if several {
                    scooters::spool_path_for(&spool.path, &id)
                } else {
                    spool.path.clone()
                },
                commands: entry.commands.unwrap_or_else(|| commands.allow.clone()),
                telemetry: entry.telemetry,
                link,
                id,
            }
        })
        .collect::<Vec<_>>();
    let scooters = if scooters.is_empty() {
        // An empty [[scooter]] list was reported above; a default keeps the reading going.
        vec![ScooterEntry {
            id: "scooter".to_owned(),
            link: ScooterConfig::default(),
            telemetry,
            mqtt: mqtt.for_scooter("scooter"),
            spool_path: spool.path.clone(),
            commands: commands.allow.clone(),
        }]
    } else {
        scooters
    };

    let gps = gps::read(
        &mut top.table("gps", gps::KEYS),
        &mut top.table("serial", gps::LEGACY_KEYS),
    );
    let homeassistant = homeassistant::read(&mut top.table("homeassistant", homeassistant::KEYS));
    let log = log::read(&mut top.table("log", log::KEYS));

    Config {
        mqtt,
        scooters,
        gps,
        telemetry,
        spool,
        commands,
        events,
        homeassistant,
        log,
    }
}
