//! The scooters one process serves: the single `[scooter]` table of the earlier format, or
//! several `[[scooter]]` entries, each with its own address, token, protocol, id, sampling,
//! topics and spool, so that one scooter's trouble never touches another's.

use super::mqtt::MqttConfig;
use super::reader::Section;
use super::scooter::{self, ScooterConfig};
use super::telemetry::{self, TelemetryConfig};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Keys of a scooter table: the link's, plus what may differ per scooter.
pub(crate) const KEYS: &[&str] = &[
    "mac",
    "token_file_path",
    "name_prefix",
    "protocol",
    "scan_timeout",
    "reconnect_window",
    "session_reuse",
    "request_timeout",
    "read_cells",
    "id",
    "interval",
    "parked_interval",
    "heartbeat",
    "commands",
];

/// One scooter served by the process, with everything that is its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScooterEntry {
    /// Names the scooter in topics (`{id}`), records and the client id.
    pub id: String,
    /// How to find it and log in, and how patient to be with the radio link.
    pub link: ScooterConfig,
    /// How often it is sampled.
    pub telemetry: TelemetryConfig,
    /// `[mqtt]` as it applies to this scooter (`{id}` replaced).
    pub mqtt: MqttConfig,
    /// Its spool file.
    pub spool_path: PathBuf,
    /// Remote commands allowed for it (`[commands] allow`, or the entry's `commands`).
    pub commands: std::collections::BTreeSet<super::commands::CommandName>,
}

/// What a scooter table holds before the process-wide settings are applied to it.
pub(crate) struct RawEntry<'a, 'i> {
    pub(crate) section: Section<'a, 'i>,
    pub(crate) link: ScooterConfig,
    pub(crate) id: Option<super::reader::Located<String>>,
    pub(crate) telemetry: TelemetryConfig,
    pub(crate) commands: Option<std::collections::BTreeSet<super::commands::CommandName>>,
}

/// Reads one scooter table (`[scooter]` or a `[[scooter]]` entry).
pub(crate) fn read_entry<'a, 'i>(
    mut section: Section<'a, 'i>,
    base: TelemetryConfig,
) -> RawEntry<'a, 'i> {
    let link = scooter::read(&mut section);
    let id = telemetry::read_scooter_id(&mut section, "id");
    let interval = telemetry::read_interval(&mut section, "interval").map(|i| i.value);
    let telemetry = telemetry::read_sampling(&mut section, interval, base);
    let commands = super::commands::read_allow(&mut section, "commands");
    RawEntry {
        section,
        link,
        id,
        telemetry,
        commands,
    }
}

/// The default id: the MAC as 12 hex digits, or `scooter` without one.
pub(crate) fn default_id(link: &ScooterConfig) -> String {
    link.mac
        .map_or_else(|| "scooter".to_owned(), |m| m.compact())
}

/// `spool.sqlite` → `spool-<id>.sqlite`, beside it: each scooter of several has its own file.
pub(crate) fn spool_path_for(path: &Path, id: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "spool".to_owned(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{id}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{id}"),
    };
    path.with_file_name(name)
}

/// Checks what must differ between several scooters (ids, addresses, token files), each
/// problem placed at the entry that repeats a value.
pub(crate) fn check_distinct(entries: &[RawEntry<'_, '_>], ids: &[String]) {
    let mut seen_ids = HashSet::new();
    let mut seen_macs = HashSet::new();
    let mut seen_tokens = HashSet::new();
    for (entry, id) in entries.iter().zip(ids) {
        let repeated_id = !seen_ids.insert(id.clone());
        if repeated_id {
            entry.section.problem_here(
                "id",
                format!("another [[scooter]] already has the id {id:?}; each needs its own"),
            );
        }
        match entry.link.mac {
            Some(mac) => {
                if !seen_macs.insert(mac) {
                    entry
                        .section
                        .problem_here("mac", format!("{mac} is listed twice"));
                }
            }
            None => entry.section.problem_here(
                "mac",
                "with several scooters each [[scooter]] needs its mac (the first scooter found by \
                 name could be any of them)",
            ),
        }
        // A default token file named after a repeated id says nothing new.
        let derived = !entry.section.has("token_file_path");
        if !seen_tokens.insert(entry.link.token_file.clone()) && (!repeated_id || !derived) {
            entry.section.problem_here(
                "token_file_path",
                format!(
                    "{} is the token file of another [[scooter]]; each scooter pairs with its own",
                    entry.link.token_file.display()
                ),
            );
        }
    }
}
