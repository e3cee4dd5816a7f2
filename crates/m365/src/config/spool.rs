//! `[spool]`: the on-disk queue that keeps every record until the broker has acknowledged it.

use super::reader::Section;
pub use m365_pipeline::SyncPolicy;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const KEYS: &[&str] = &["path", "max_bytes", "max_age", "sync", "batch"];

/// Where systemd's `StateDirectory=m365` puts the service's state, used when `STATE_DIRECTORY`
/// is not set (e.g. when started by hand).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/m365";
/// File name of the spool inside the state directory.
pub const SPOOL_FILE: &str = "spool.sqlite";

/// The effective `[spool]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The SQLite file.
    pub path: PathBuf,
    /// Beyond this size the oldest records are dropped.
    pub max_bytes: u64,
    /// Records older than this are dropped unsent.
    pub max_age: Duration,
    /// Durability of each write: `always` (every record is on disk before the next is taken,
    /// SQLite `synchronous=FULL`) or `normal` (safe against a crash of `m365`, and against power
    /// loss up to the last few transactions; spares SD cards).
    pub sync: SyncPolicy,
    /// Most records in one `compact` message (`legacy` and `json` carry one record each).
    pub batch: u32,
}

impl SpoolConfig {
    /// The folder of the spool: the state directory, where the daemon keeps its other state
    /// too (the commands' replay memory, the Home Assistant state file).
    pub fn state_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// Defaults, with the spool in `state_dir`.
    pub fn with_state_dir(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(SPOOL_FILE),
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(7 * 86_400),
            sync: SyncPolicy::Normal,
            batch: 50,
        }
    }
}

/// The state directory: systemd's `STATE_DIRECTORY` (its first entry), else the default.
pub(crate) fn state_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("STATE_DIRECTORY")
        .and_then(|dirs| dirs.split(':').next().map(str::to_owned))
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from)
}

pub(crate) fn read(section: &mut Section<'_, '_>, state_dir: &Path) -> SpoolConfig {
    let d = SpoolConfig::with_state_dir(state_dir);
    SpoolConfig {
        path: section
            .non_empty_string("path")
            .map_or(d.path, |p| PathBuf::from(p.value)),
        max_bytes: section
            .size("max_bytes", (1 << 20)..=(1 << 40))
            .map_or(d.max_bytes, |s| s.value),
        max_age: section
            .duration(
                "max_age",
                Duration::from_secs(60)..=Duration::from_secs(366 * 86_400),
            )
            .map_or(d.max_age, |a| a.value),
        sync: section
            .choice("sync", SyncPolicy::NAMES)
            .and_then(|s| s.value.parse().ok())
            .unwrap_or(d.sync),
        batch: section
            .integer("batch", 1..=10_000)
            .and_then(|b| u32::try_from(b.value).ok())
            .unwrap_or(d.batch),
    }
}
