//! The spool's settings: where the file is, how much it may hold and how hard it syncs. Plain
//! values: the `m365` configuration reader parses and checks the file's `[spool]` table and
//! builds them.

use std::path::PathBuf;
use std::str::FromStr;

/// When the spool forces its writes to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// One transaction per record with `synchronous=FULL`: when `append` returns, the record
    /// survives a power cut. Costs one fsync of the WAL per record.
    Always,
    /// Records are buffered and committed together every `commit_every` records or
    /// `commit_interval_ms`, whichever comes first, with `synchronous=NORMAL`; the first record
    /// after a quiet interval is committed at once, so a slow stream is not delayed. A power
    /// cut loses
    /// the records not yet committed, and may also roll back transactions committed since the
    /// last WAL checkpoint (SQLite fsyncs the WAL only at checkpoints in this mode).
    #[default]
    Normal,
}

impl SyncPolicy {
    /// The names [`SyncPolicy::from_str`] accepts, as written in a configuration.
    pub const NAMES: &[&str] = &["always", "normal"];

    /// As written in a configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::Always => "always",
            SyncPolicy::Normal => "normal",
        }
    }
}

/// A name that is not one of [`SyncPolicy::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected \"always\" or \"normal\", found {0:?}")]
pub struct UnknownSyncPolicy(pub String);

impl FromStr for SyncPolicy {
    type Err = UnknownSyncPolicy;

    /// `always` or `normal`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "always" => Ok(SyncPolicy::Always),
            "normal" => Ok(SyncPolicy::Normal),
            _ => Err(UnknownSyncPolicy(s.to_owned())),
        }
    }
}

/// Spool location, bounds and durability.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// Path of the SQLite file.
    pub path: PathBuf,
    /// Most records kept; the oldest are dropped beyond it.
    pub max_records: u64,
    /// Most payload bytes kept (sum of stored record sizes); the oldest are dropped beyond it.
    pub max_bytes: u64,
    /// Records older than this many seconds are dropped; `None` keeps them regardless of age.
    pub max_age_s: Option<u64>,
    /// Sync policy (see [`SyncPolicy`]).
    pub sync: SyncPolicy,
    /// `normal` policy: commit after this many buffered records.
    pub commit_every: usize,
    /// `normal` policy: commit buffered records at least this often, milliseconds.
    pub commit_interval_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            path: PathBuf::from("m365-spool.sqlite"),
            max_records: 500_000,
            max_bytes: 256 * 1024 * 1024,
            max_age_s: Some(30 * 24 * 3600),
            sync: SyncPolicy::Normal,
            commit_every: 50,
            commit_interval_ms: 1000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_policies_read_back_what_they_print() {
        for name in SyncPolicy::NAMES {
            let policy: SyncPolicy = name.parse().unwrap();
            assert_eq!(policy.as_str(), *name);
        }
        assert_eq!("ALWAYS".parse(), Ok(SyncPolicy::Always));
        assert_eq!(
            "sometimes".parse::<SyncPolicy>(),
            Err(UnknownSyncPolicy("sometimes".into()))
        );
    }
}
