//! The durable spool: every record is committed to SQLite before it is offered to MQTT, and is
//! deleted only after every configured topic's broker acknowledged it (QoS 1 PUBACK).
//!
//! * **Order and replay.** Rows carry an `AUTOINCREMENT` id, so ids are never reused and give
//!   the commit order; after a reconnect or a restart, unacknowledged rows are read back in id
//!   order.
//! * **Several topics.** Each row has a `pending` bit mask, one bit per output (topic); an
//!   acknowledgement clears that output's bit and a row with no bit left is deleted.
//! * **Bounds.** `max_records`, `max_bytes` (sum of stored record sizes) and `max_age_s`. When a
//!   bound is exceeded the oldest rows are dropped; the number dropped is added to a counter kept
//!   in the file (published in the status message).
//! * **Durability** (see [`SyncPolicy`]):
//!   - `always`: `synchronous=FULL`, one transaction per record. Once `append` returned the
//!     record survives a power cut. Nothing committed is lost.
//!   - `normal`: `synchronous=NORMAL`, records buffered in memory and committed every
//!     `commit_every` records or `commit_interval_ms`; a record that comes after a quiet
//!     interval is committed at once (at one record a second nothing waits, a burst is
//!     batched). A power cut loses the buffered records
//!     (never yet offered to MQTT, so never published) and can roll back transactions committed
//!     since the last WAL checkpoint: those records may have been published already, and their
//!     sequence numbers can then be assigned again to new records (the record ids differ).
//!   - Acknowledgements are committed with `synchronous=NORMAL` under both policies: losing one
//!     only means the record is published again, and downstream deduplicates by record id.
//! * **Corruption.** Only a file SQLite itself reports as damaged (not a database, corrupt, a
//!   failed `quick_check`, at open or while running) is replaced. Before anything is moved, every
//!   record that can still be read is copied into a new file, `<name>.recovering`, pending on
//!   every output with its `scooter_id`, `seq`, timestamps and record id; numbering continues
//!   after the highest salvaged (or recorded) sequence number. Then the damaged file is renamed
//!   `<name>.corrupt-<UTC timestamp>` (with its `-wal`) and kept for inspection, the new file
//!   takes its place, and the caller gets a report with the counts. If the copy cannot be made
//!   (disk full, say), nothing is moved and the error is returned; the next attempt starts over.
//!   A start that finds `<name>.recovering` but no `<name>` finishes an interrupted swap.
//! * **Everything else leaves the file alone.** A full disk, an I/O error, a read-only file or
//!   file system, a lock held by another process, a permission problem: the file is not touched
//!   and a typed [`SpoolError`] says what to fix. While running, records that cannot be
//!   committed stay in memory (at most `max_records` or [`MAX_UNCOMMITTED`], an hour at one
//!   sample a second, whichever is smaller; beyond that the oldest are dropped and counted in
//!   `dropped_total`) and are committed by the next successful flush.
//!
//! SQLite is synchronous: the publisher's single driver task owns the spool and calls it
//! directly; each call is one short transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tracing::{error, warn};

use crate::record::{Record, Sample, TimeSource, seq_key};

mod config;
mod error;

pub use config::{SpoolConfig, SyncPolicy, UnknownSyncPolicy};
pub use error::SpoolError;

/// Connection settings of the spool: a 256 KiB page cache, temporary tables in memory.
const SPOOL_PRAGMAS: &str = "PRAGMA cache_size = -256; PRAGMA temp_store = MEMORY;";

/// Most records held in memory while the file cannot take them (a full disk): an hour at one
/// sample a second, about a megabyte and a half. The oldest go first beyond that, counted as
/// dropped.
pub const MAX_UNCOMMITTED: usize = 3_600;

/// Most outputs (topics) the per-row acknowledgement mask can track.
pub const MAX_OUTPUTS: usize = 16;

/// Row id of a committed record: strictly increasing, never reused.
pub type RowId = i64;

/// A record as stored, with its row id.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Row id.
    pub row: RowId,
    /// The record.
    pub record: Record,
}

/// Counters of the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    /// Committed records not yet acknowledged on every output.
    pub records: u64,
    /// Their stored size in bytes.
    pub bytes: u64,
    /// Records dropped by the bounds since the spool file was created (persisted).
    pub dropped_total: u64,
    /// Records buffered in memory, not yet committed (`normal` policy).
    pub buffered: u64,
    /// Stored records that could not be turned into a message for some output; kept, never
    /// deleted, and tried again at the next start ([`Spool::quarantine`]).
    pub quarantined: u64,
}

/// What happened to a damaged spool file at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionReport {
    /// Where the damaged file was moved (it is kept for inspection).
    pub moved_to: PathBuf,
    /// What SQLite said.
    pub reason: String,
    /// Records read back from the damaged file and stored in the fresh spool, pending on every
    /// output, with their original sequence numbers and record ids.
    pub salvaged: u64,
    /// Rows of the damaged file that could not be read; they remain in the moved file only.
    /// Rows inside a damaged page are counted from the gap in the row ids around it, so when
    /// some of them had been acknowledged (deleted) already this is an upper bound.
    pub unreadable: u64,
    /// Whether the whole table of records could be walked. `false` means a damaged part could
    /// not be counted (the start of the table, or the whole file): more rows than
    /// `unreadable` may be lost.
    pub fully_scanned: bool,
}

/// The durable spool.
#[derive(Debug)]
pub struct Spool {
    conn: Connection,
    path: PathBuf,
    cfg: SpoolConfig,
    full_mask: i64,
    outputs_signature: String,
    buffer: Vec<Record>,
    buffer_since: Option<Instant>,
    /// When a commit was last tried: under `normal`, a record that comes after a quiet
    /// `commit_interval_ms` is committed at once, so a slow stream waits for no deadline.
    last_flush: Option<Instant>,
    next_seq: HashMap<String, u64>,
    stats: SpoolStats,
    /// `stats.dropped_total` includes records dropped from the memory buffer that the file does
    /// not count yet; the next commit writes the total.
    drops_unsaved: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scooter_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_ms INTEGER,
    pending INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS seqs (scooter_id TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    mask INTEGER NOT NULL,
    reason TEXT NOT NULL,
    since_ms INTEGER NOT NULL
);
";

/// Moves the outputs of quarantined rows back to pending and empties the quarantine: a start
/// (often a new version) tries them again.
const RELEASE_QUARANTINE: &str = "
UPDATE records SET pending = pending
    | COALESCE((SELECT mask FROM quarantine q WHERE q.id = records.id), 0)
    WHERE id IN (SELECT id FROM quarantine);
DELETE FROM quarantine;
";

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

const INSERT_RECORD: &str = "INSERT INTO records(scooter_id, seq, created_ms, pending, body)
     VALUES (?1, ?2, ?3, ?4, ?5)";

const RAISE_SEQ: &str = "INSERT INTO seqs(scooter_id, next_seq) VALUES (?1, ?2)
     ON CONFLICT(scooter_id) DO UPDATE SET next_seq = MAX(next_seq, excluded.next_seq)";

/// The `created_ms` column: the time bounds age records by. Untrusted timestamps are not aged
/// out: they would look decades old.
fn created_ms(r: &Record) -> Option<i64> {
    (r.time_source != TimeSource::UntrustedSystem).then(|| r.timestamp.timestamp_millis())
}

/// Why opening failed: either SQLite says the file is damaged (salvage it, move it aside), or
/// anything else (full disk, I/O error, read-only, locked, no permission): the file is left
/// alone and the error says what to fix.
enum OpenFailure {
    Damaged(String),
    Other(SpoolError),
}

/// A failure inside [`Spool::try_open`], classified once the connection is closed.
enum RawFailure {
    Sqlite(rusqlite::Error),
    QuickCheck(String),
    ReadOnly,
}

/// `<path><suffix>`, e.g. the `-wal` next to a database.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Turns an SQLite error that is not corruption into the [`SpoolError`] that says what to fix.
/// `count` says how many records the file holds (asked only for the errors whose message
/// mentions them). With `probe`, an I/O error or a file that cannot be opened is diagnosed by
/// writing a small scratch file next to the spool: SQLite reports a full disk as a plain I/O
/// error when it is the shared-memory index (`-shm`) that cannot grow.
fn environment_error(
    path: &Path,
    e: rusqlite::Error,
    count: impl FnOnce() -> Option<u64>,
    probe: bool,
) -> SpoolError {
    let path = path.to_path_buf();
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    };
    match code {
        Some(ErrorCode::DiskFull) => SpoolError::DiskFull {
            path,
            records: count(),
        },
        Some(ErrorCode::ReadOnly) => SpoolError::ReadOnly {
            path,
            records: count(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            SpoolError::Locked { path, source: e }
        }
        Some(
            c @ (ErrorCode::SystemIoFailure | ErrorCode::CannotOpen | ErrorCode::PermissionDenied),
        ) => {
            let probed = if probe {
                probe_space(&path).err().map(|p| p.kind())
            } else {
                None
            };
            match probed {
                Some(std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) => {
                    SpoolError::DiskFull {
                        path,
                        records: count(),
                    }
                }
                Some(std::io::ErrorKind::ReadOnlyFilesystem) => SpoolError::ReadOnly {
                    path,
                    records: count(),
                },
                _ if c == ErrorCode::SystemIoFailure => SpoolError::Io {
                    path,
                    detail: e.to_string(),
                    records: count(),
                },
                _ => SpoolError::CannotOpen { path, source: e },
            }
        }
        _ => SpoolError::Sqlite { path, source: e },
    }
}

/// The same for a file-system error while replacing a damaged spool.
fn io_environment_error(path: &Path, e: &std::io::Error) -> SpoolError {
    let path = path.to_path_buf();
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            SpoolError::DiskFull {
                path,
                records: None,
            }
        }
        std::io::ErrorKind::ReadOnlyFilesystem => SpoolError::ReadOnly {
            path,
            records: None,
        },
        _ => SpoolError::Io {
            path,
            detail: e.to_string(),
            records: None,
        },
    }
}

/// Writes and removes a 64 KiB scratch file next to `path`: enough for the `-shm` index
/// (32 KiB) and a few WAL frames, so a success means space is not what failed.
fn probe_space(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let scratch = sibling(path, ".space-check");
    let result = std::fs::File::create(&scratch).and_then(|mut f| {
        f.write_all(&[0u8; 64 * 1024])?;
        f.sync_all()
    });
    // The scratch file may not exist (creating it failed); nothing else to do about it.
    let _ = std::fs::remove_file(&scratch);
    result
}

/// How many records the spool file at `path` holds, read without any chance of changing it;
/// `None` when that cannot be known that way. A non-empty `-wal` may hold committed records
/// the main file does not show yet, and reading it needs the shared-memory index, the very
/// thing that cannot be created on a full disk: then there is no count. Otherwise the main
/// file is the whole story and is read as immutable (no locks, no `-shm`, no writes).
fn count_records(path: &Path) -> Option<u64> {
    match std::fs::metadata(sibling(path, "-wal")) {
        Ok(m) if m.len() > 0 => return None,
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return None,
    }
    let mut uri = url::Url::from_file_path(std::path::absolute(path).ok()?).ok()?;
    uri.set_query(Some("immutable=1"));
    let conn = Connection::open_with_flags(
        uri.as_str(),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM records", [], |r| r.get(0))
        .ok()?;
    u64::try_from(n).ok()
}

impl Spool {
    /// Opens (or creates) the spool at `cfg.path` for the given outputs (topic names, in
    /// configuration order). A file SQLite reports as damaged is salvaged into a fresh spool and
    /// moved aside; the report says where it went and how many records were saved. Any other
    /// failure leaves the file as it is and is returned. When the list of outputs changed since
    /// the file was written, every stored record becomes pending on every current output.
    pub fn open(
        cfg: &SpoolConfig,
        outputs: &[String],
    ) -> Result<(Spool, Option<CorruptionReport>), SpoolError> {
        if outputs.len() > MAX_OUTPUTS || outputs.is_empty() {
            return Err(SpoolError::TooManyOutputs { got: outputs.len() });
        }
        // Started by hand rather than by systemd, the default state folder may not exist yet.
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SpoolError::Directory {
                dir: dir.to_path_buf(),
                source,
            })?;
        }
        finish_interrupted_swap(&cfg.path)?;
        let signature = outputs.join("\n");
        match Self::try_open(cfg, &signature, outputs.len()) {
            Ok(spool) => Ok((spool, None)),
            Err(OpenFailure::Other(e)) => Err(e),
            Err(OpenFailure::Damaged(reason)) => {
                let (spool, report) = Self::recover(cfg, &signature, outputs.len(), reason)?;
                Ok((spool, Some(report)))
            }
        }
    }

    fn try_open(cfg: &SpoolConfig, signature: &str, outputs: usize) -> Result<Spool, OpenFailure> {
        // Classified only after the connection is closed: the count for the message opens the
        // file again.
        match Self::open_checked(cfg, signature, outputs) {
            Ok(spool) => Ok(spool),
            Err(RawFailure::QuickCheck(check)) => {
                Err(OpenFailure::Damaged(format!("quick_check: {check}")))
            }
            Err(RawFailure::Sqlite(e)) if is_corruption(&e) => {
                Err(OpenFailure::Damaged(e.to_string()))
            }
            Err(RawFailure::Sqlite(e)) => Err(OpenFailure::Other(environment_error(
                &cfg.path,
                e,
                || count_records(&cfg.path),
                true,
            ))),
            Err(RawFailure::ReadOnly) => Err(OpenFailure::Other(SpoolError::ReadOnly {
                path: cfg.path.clone(),
                records: count_records(&cfg.path),
            })),
        }
    }

    fn open_checked(
        cfg: &SpoolConfig,
        signature: &str,
        outputs: usize,
    ) -> Result<Spool, RawFailure> {
        let conn = Connection::open(&cfg.path).map_err(RawFailure::Sqlite)?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(RawFailure::Sqlite)?;
        // The spool is written at its tail and read at its head: a small page cache serves
        // that, and keeps a backlog from growing the daemon's memory (SQLite's default is 2 MB).
        conn.execute_batch(SPOOL_PRAGMAS)
            .map_err(RawFailure::Sqlite)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(RawFailure::Sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(mode, "spool: SQLite refused WAL mode");
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(RawFailure::Sqlite)?;
        if check != "ok" {
            return Err(RawFailure::QuickCheck(check));
        }
        // SQLite falls back to read-only when it cannot open the file for writing (read-only
        // file system, immutable file), and reading still works: a spool that cannot commit is
        // unusable, so say so now rather than at the first record.
        if conn
            .is_readonly(rusqlite::MAIN_DB)
            .map_err(RawFailure::Sqlite)?
        {
            return Err(RawFailure::ReadOnly);
        }
        conn.execute_batch(SCHEMA).map_err(RawFailure::Sqlite)?;
        let mut spool = Spool {
            conn,
            path: cfg.path.clone(),
            cfg: cfg.clone(),
            full_mask: full_mask(outputs),
            outputs_signature: signature.to_owned(),
            buffer: Vec::new(),
            buffer_since: None,
            last_flush: None,
            next_seq: HashMap::new(),
            stats: SpoolStats::default(),
            drops_unsaved: false,
        };
        spool.load_state().map_err(RawFailure::Sqlite)?;
        spool
            .set_synchronous(cfg.sync)
            .map_err(RawFailure::Sqlite)?;
        Ok(spool)
    }

    /// Replaces the damaged file at `cfg.path`: copies its readable records into
    /// `<name>.recovering`, moves the damaged file aside, puts the copy in its place and opens
    /// it. Until the damaged file is moved nothing is changed, so a failure there (a full disk
    /// while copying) returns the error with the file still in place, to be tried again.
    fn recover(
        cfg: &SpoolConfig,
        signature: &str,
        outputs: usize,
        reason: String,
    ) -> Result<(Spool, CorruptionReport), SpoolError> {
        let path = &cfg.path;
        let recovering = sibling(path, RECOVERING);
        warn!(
            spool = %path.display(),
            %reason,
            "spool file damaged: saving its readable records into a fresh spool"
        );
        let salvage = match salvage_into(path, &recovering, signature, full_mask(outputs)) {
            Ok(s) => s,
            Err(e) => {
                remove_db_files(&recovering);
                error!(
                    spool = %path.display(),
                    error = %e,
                    "could not save the records of the damaged spool file; it was left in place"
                );
                return Err(e);
            }
        };
        let moved_to = match move_aside(path) {
            Ok(m) => m,
            Err(e) => {
                // Once the damaged file has left its place the copy is the spool: keep it for
                // the next start (see `finish_interrupted_swap`).
                if path.exists() {
                    remove_db_files(&recovering);
                }
                return Err(SpoolError::Unrecoverable {
                    path: path.clone(),
                    reason: format!("{reason}; moving it aside failed: {e}"),
                });
            }
        };
        if let Err(e) = std::fs::rename(&recovering, path) {
            return Err(SpoolError::Unrecoverable {
                path: path.clone(),
                reason: format!(
                    "{reason}; it was moved to {}, but its saved records in {} could not be put \
                     in its place ({e}); the next start does that",
                    moved_to.display(),
                    recovering.display()
                ),
            });
        }
        sync_parent(path);
        error!(
            spool = %path.display(),
            moved_to = %moved_to.display(),
            %reason,
            salvaged = salvage.salvaged,
            unreadable = salvage.unreadable,
            fully_scanned = salvage.fully_scanned,
            "spool file damaged: moved aside, its readable records are in a fresh spool"
        );
        let spool = match Self::try_open(cfg, signature, outputs) {
            Ok(spool) => spool,
            Err(OpenFailure::Other(e)) => return Err(e),
            Err(OpenFailure::Damaged(r)) => {
                return Err(SpoolError::Unrecoverable {
                    path: path.clone(),
                    reason: format!("the fresh spool is unreadable too: {r}"),
                });
            }
        };
        Ok((
            spool,
            CorruptionReport {
                moved_to,
                reason,
                salvaged: salvage.salvaged,
                unreadable: salvage.unreadable,
                fully_scanned: salvage.fully_scanned,
            },
        ))
    }

    fn load_state(&mut self) -> rusqlite::Result<()> {
        let released: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?;
        if released > 0 {
            self.conn.execute_batch(RELEASE_QUARANTINE)?;
            warn!(
                records = released,
                "spool: records that could not be sent before are tried again"
            );
        }
        let stored: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'outputs'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if stored.as_deref() != Some(self.outputs_signature.as_str()) {
            if stored.is_some() {
                warn!("spool: the configured topics changed; stored records go to every topic");
            }
            self.conn
                .execute("UPDATE records SET pending = ?1", params![self.full_mask])?;
            self.conn.execute(
                "INSERT INTO meta(key, value) VALUES('outputs', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![self.outputs_signature],
            )?;
        }
        let (records, bytes): (i64, i64) = self.conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let dropped: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'dropped_total'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        self.stats = SpoolStats {
            records: u64::try_from(records).unwrap_or(0),
            bytes: u64::try_from(bytes).unwrap_or(0),
            dropped_total: dropped.and_then(|d| d.parse().ok()).unwrap_or(0),
            buffered: 0,
            quarantined: 0,
        };
        self.next_seq.clear();
        let mut stmt = self.conn.prepare("SELECT scooter_id, next_seq FROM seqs")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (id, next) = row?;
            self.next_seq
                .insert(id, u64::try_from(next).unwrap_or(1).max(1));
        }
        Ok(())
    }

    fn set_synchronous(&self, policy: SyncPolicy) -> rusqlite::Result<()> {
        let v = match policy {
            SyncPolicy::Always => "FULL",
            SyncPolicy::Normal => "NORMAL",
        };
        self.conn.pragma_update(None, "synchronous", v)
    }

    /// Path of the spool file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Current counters.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            buffered: self.buffer.len() as u64,
            ..self.stats
        }
    }

    /// Numbers `sample` and stores it. Telemetry and events are numbered apart (the `seqs` key
    /// of a scooter's events is `<scooter_id>#events`), so telemetry sequence numbers have no
    /// gaps where events were committed. Under `always` it is committed now and returned; under
    /// `normal` it is buffered and all buffered records are returned once a commit happens
    /// (this call reaching `commit_every`, or [`Spool::flush`] after [`Spool::flush_deadline`]).
    /// Only returned records are durable and may be offered to MQTT.
    pub fn append(
        &mut self,
        sample: Sample,
        now: Instant,
    ) -> Result<Vec<StoredRecord>, SpoolError> {
        let key = seq_key(&sample.scooter_id, sample.event.is_some()).into_owned();
        let next = self.next_seq.entry(key).or_insert(1);
        let seq = *next;
        *next = next.saturating_add(1);
        self.buffer.push(Record::from_sample(sample, seq));
        if self.buffer_since.is_none() {
            self.buffer_since = Some(now);
        }
        let interval = Duration::from_millis(self.cfg.commit_interval_ms);
        let commit_now = match self.cfg.sync {
            SyncPolicy::Always => true,
            // Commits are at most one per interval, and the first record after a quiet one is
            // committed at once: at one record a second nothing waits, a burst is batched.
            SyncPolicy::Normal => {
                self.buffer.len() >= self.cfg.commit_every.max(1)
                    || self
                        .last_flush
                        .is_none_or(|t| now.saturating_duration_since(t) >= interval)
            }
        };
        if commit_now {
            self.flush_at(now)
        } else {
            Ok(Vec::new())
        }
    }

    /// When buffered records must be committed at the latest (`normal` policy), if any are:
    /// one commit interval after the last commit was tried (or after the first of them was
    /// buffered, when none was).
    pub fn flush_deadline(&self) -> Option<Instant> {
        let since = self.buffer_since?;
        Some(self.last_flush.unwrap_or(since) + Duration::from_millis(self.cfg.commit_interval_ms))
    }

    /// Commits buffered records, enforces the bounds, and returns the committed records that
    /// are still stored (a bound can drop even them when it is tiny). When the commit fails the
    /// records stay buffered for the next attempt, at most `max_records` of them: beyond that
    /// the oldest are dropped and counted in `dropped_total`, as the bound would drop them at
    /// the next commit anyway.
    pub fn flush(&mut self) -> Result<Vec<StoredRecord>, SpoolError> {
        self.flush_at(Instant::now())
    }

    /// [`Spool::flush`] at `now`, on the clock [`Spool::append`] is given (the publisher's,
    /// which tests pause), so the commit interval is measured on one clock.
    pub fn flush_at(&mut self, now: Instant) -> Result<Vec<StoredRecord>, SpoolError> {
        if self.buffer.is_empty() {
            return Ok(Vec::new());
        }
        let records = std::mem::take(&mut self.buffer);
        self.buffer_since = None;
        self.last_flush = Some(now);
        let result = self.commit(&records);
        match self.guard(result) {
            Ok(v) => Ok(v),
            Err(e) => {
                // Keep the records for the next attempt unless the file was replaced (then they
                // go into the fresh spool on the next flush as well).
                let mut back = records;
                back.append(&mut self.buffer);
                self.buffer = back;
                self.buffer_since = Some(now);
                self.bound_buffer();
                Err(e)
            }
        }
    }

    /// Drops the oldest buffered records beyond `max_records` and counts them.
    fn bound_buffer(&mut self) {
        let cap = usize::try_from(self.cfg.max_records.max(1))
            .unwrap_or(usize::MAX)
            .min(MAX_UNCOMMITTED);
        let excess = self.buffer.len().saturating_sub(cap);
        if excess == 0 {
            return;
        }
        self.buffer.drain(..excess);
        self.stats.dropped_total += excess as u64;
        self.drops_unsaved = true;
        warn!(
            dropped = excess,
            total = self.stats.dropped_total,
            buffered = self.buffer.len(),
            "spool cannot commit and its memory buffer is full: dropped the oldest records"
        );
    }

    fn commit(&mut self, records: &[Record]) -> rusqlite::Result<Vec<StoredRecord>> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(records.len());
        let mut added_bytes = 0u64;
        {
            let mut ins = tx.prepare_cached(INSERT_RECORD)?;
            let mut seqs = tx.prepare_cached(RAISE_SEQ)?;
            for r in records {
                let body = serde_json::to_vec(r)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                ins.execute(params![
                    r.scooter_id,
                    i64::try_from(r.seq).unwrap_or(i64::MAX),
                    created_ms(r),
                    self.full_mask,
                    body
                ])?;
                added_bytes += body.len() as u64;
                out.push(StoredRecord {
                    row: tx.last_insert_rowid(),
                    record: r.clone(),
                });
                seqs.execute(params![
                    seq_key(&r.scooter_id, r.is_event()),
                    i64::try_from(r.seq.saturating_add(1)).unwrap_or(i64::MAX)
                ])?;
            }
        }
        let mut records_now = self.stats.records + records.len() as u64;
        let mut bytes_now = self.stats.bytes + added_bytes;
        let (dropped, freed, last_dropped) =
            enforce_bounds(&tx, &self.cfg, records_now, bytes_now)?;
        if dropped > 0 || self.drops_unsaved {
            add_dropped(&tx, self.stats.dropped_total + dropped)?;
        }
        tx.commit()?;
        self.drops_unsaved = false;
        records_now -= dropped;
        bytes_now = bytes_now.saturating_sub(freed);
        if dropped > 0 {
            warn!(
                dropped,
                total = self.stats.dropped_total + dropped,
                "spool full: dropped the oldest records"
            );
        }
        self.stats.records = records_now;
        self.stats.bytes = bytes_now;
        self.stats.dropped_total += dropped;
        if let Some(last) = last_dropped {
            out.retain(|s| s.row > last);
        }
        Ok(out)
    }

    /// Records still pending on `output` with a row id above `after`, oldest first.
    pub fn pending_after(
        &mut self,
        output: usize,
        after: RowId,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, SpoolError> {
        Ok(self.scan_pending(output, after, limit)?.0)
    }

    /// [`Spool::pending_after`], with the ids of every row the scan went through, the ones
    /// quarantined on the way included, so a reader's cursor moves past them.
    pub fn scan_pending(
        &mut self,
        output: usize,
        after: RowId,
        limit: usize,
    ) -> Result<(Vec<StoredRecord>, Vec<RowId>), SpoolError> {
        let bit = 1i64 << output.min(MAX_OUTPUTS - 1);
        let path = self.path.clone();
        let r = (|| {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, body FROM records WHERE id > ?1 AND (pending & ?2) != 0
                 ORDER BY id LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![after, bit, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })();
        let rows = self.guard(r)?;
        let seen = rows.iter().map(|(id, _)| *id).collect();
        Ok((self.decode_for(output, &path, rows)?, seen))
    }

    /// The stored records among `rows` (those dropped meanwhile are skipped), in id order, for
    /// `output` (a row that does not decode is quarantined for it).
    pub fn get(&mut self, output: usize, rows: &[RowId]) -> Result<Vec<StoredRecord>, SpoolError> {
        let path = self.path.clone();
        let r = (|| {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT id, body FROM records WHERE id = ?1")?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                if let Some(v) = stmt
                    .query_row(params![row], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })
                    .optional()?
                {
                    out.push(v);
                }
            }
            Ok(out)
        })();
        let rows = self.guard(r)?;
        self.decode_for(output, &path, rows)
    }

    /// Decodes stored rows for `output`; the ones that do not decode (written by another
    /// version, damaged) are quarantined rather than skipped or deleted.
    fn decode_for(
        &mut self,
        output: usize,
        path: &Path,
        rows: Vec<(i64, Vec<u8>)>,
    ) -> Result<Vec<StoredRecord>, SpoolError> {
        let (good, bad) = decode_rows(path, rows);
        if !bad.is_empty() {
            self.quarantine(output, &bad)?;
        }
        Ok(good)
    }

    /// Takes `rows` out of `output`'s queue without deleting them: they could not be turned into
    /// a message (a record that does not decode or encode). They stay in the file, counted in
    /// [`SpoolStats::quarantined`], until the next start tries them again, presumably with a
    /// version that can send them. Nothing else ever deletes them but the spool's own bounds.
    pub fn quarantine(
        &mut self,
        output: usize,
        rows: &[(RowId, String)],
    ) -> Result<(), SpoolError> {
        if rows.is_empty() {
            return Ok(());
        }
        let bit = 1i64 << output.min(MAX_OUTPUTS - 1);
        let now = Utc::now().timestamp_millis();
        let r = (|| {
            let tx = self.conn.transaction()?;
            {
                let mut upd =
                    tx.prepare_cached("UPDATE records SET pending = pending & ~?2 WHERE id = ?1")?;
                let mut ins = tx.prepare_cached(
                    "INSERT INTO quarantine(id, mask, reason, since_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(id) DO UPDATE SET mask = mask | excluded.mask,
                                                   reason = excluded.reason",
                )?;
                for (row, reason) in rows {
                    upd.execute(params![row, bit])?;
                    ins.execute(params![row, bit, reason, now])?;
                }
            }
            tx.commit()?;
            self.conn.query_row(
                "SELECT COUNT(*) FROM quarantine q JOIN records r ON r.id = q.id",
                [],
                |r| r.get::<_, i64>(0),
            )
        })();
        let count = self.guard(r)?;
        let before = self.stats.quarantined;
        self.stats.quarantined = u64::try_from(count).unwrap_or(0);
        if let Some((row, reason)) = rows.first() {
            // Said once per run at error level; the count is in the health figures.
            if before == 0 {
                error!(
                    row,
                    %reason,
                    records = rows.len(),
                    "records that cannot be sent are kept in the spool's quarantine; the next \
                     start tries them again"
                );
            } else {
                tracing::debug!(row, %reason, "quarantined");
            }
        }
        Ok(())
    }

    /// Marks `rows` acknowledged on `output`; rows acknowledged everywhere are deleted.
    /// Returns how many rows were deleted.
    pub fn ack(&mut self, output: usize, rows: &[RowId]) -> Result<u64, SpoolError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let bit = 1i64 << output.min(MAX_OUTPUTS - 1);
        let sync = self.cfg.sync;
        let r = (|| {
            if sync == SyncPolicy::Always {
                self.set_synchronous(SyncPolicy::Normal)?;
            }
            let tx = self.conn.transaction()?;
            let mut deleted = 0u64;
            let mut freed = 0u64;
            {
                let mut upd =
                    tx.prepare_cached("UPDATE records SET pending = pending & ~?2 WHERE id = ?1")?;
                // A row quarantined for another output stays, whatever this one says.
                let mut del = tx.prepare_cached(
                    "DELETE FROM records WHERE id = ?1 AND pending = 0
                     AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.id = records.id)
                     RETURNING LENGTH(body)",
                )?;
                for row in rows {
                    upd.execute(params![row, bit])?;
                    if let Some(len) = del
                        .query_row(params![row], |r| r.get::<_, i64>(0))
                        .optional()?
                    {
                        deleted += 1;
                        freed += u64::try_from(len).unwrap_or(0);
                    }
                }
            }
            tx.commit()?;
            if sync == SyncPolicy::Always {
                self.set_synchronous(SyncPolicy::Always)?;
            }
            Ok((deleted, freed))
        })();
        let (deleted, freed) = self.guard(r)?;
        self.stats.records = self.stats.records.saturating_sub(deleted);
        self.stats.bytes = self.stats.bytes.saturating_sub(freed);
        Ok(deleted)
    }

    /// Drops records older than `max_age_s` relative to `now` (a trustworthy clock reading).
    /// Returns how many were dropped.
    pub fn prune_expired(&mut self, now: DateTime<Utc>) -> Result<u64, SpoolError> {
        let Some(age) = self.cfg.max_age_s else {
            return Ok(0);
        };
        if now < crate::record::trusted_clock_floor() {
            return Ok(0);
        }
        let cutoff = now
            .timestamp_millis()
            .saturating_sub(i64::try_from(age.saturating_mul(1000)).unwrap_or(i64::MAX));
        let total = self.stats.dropped_total;
        let r = (|| {
            let tx = self.conn.transaction()?;
            let (n, freed) = {
                let mut stmt = tx.prepare_cached(
                    "DELETE FROM records WHERE created_ms IS NOT NULL AND created_ms < ?1
                     RETURNING LENGTH(body)",
                )?;
                let lens = stmt.query_map(params![cutoff], |r| r.get::<_, i64>(0))?;
                let mut n = 0u64;
                let mut freed = 0u64;
                for l in lens {
                    n += 1;
                    freed += u64::try_from(l?).unwrap_or(0);
                }
                (n, freed)
            };
            if n > 0 {
                add_dropped(&tx, total + n)?;
            }
            tx.commit()?;
            Ok((n, freed))
        })();
        let (n, freed) = self.guard(r)?;
        if n > 0 {
            warn!(dropped = n, "spool: dropped records older than max_age_s");
        }
        self.stats.records = self.stats.records.saturating_sub(n);
        self.stats.bytes = self.stats.bytes.saturating_sub(freed);
        self.stats.dropped_total += n;
        Ok(n)
    }

    /// Turns SQLite errors into [`SpoolError`]; on corruption moves the file aside, starts a
    /// fresh spool in place and reports [`SpoolError::Recovered`].
    fn guard<T>(&mut self, r: rusqlite::Result<T>) -> Result<T, SpoolError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) if is_corruption(&e) => {
                let reason = e.to_string();
                error!(spool = %self.path.display(), %reason, "spool corrupt while running");
                self.replace_corrupt(reason)
            }
            // No scratch-file probe here: this runs for every failed call, possibly once per
            // sample for hours, and SQLite reports a full disk on a write as such.
            Err(e) => {
                let records = self.stats.records;
                Err(environment_error(&self.path, e, || Some(records), false))
            }
        }
    }

    fn replace_corrupt<T>(&mut self, reason: String) -> Result<T, SpoolError> {
        // Close the old connection first so the rename moves a quiescent file.
        let placeholder = Connection::open_in_memory().map_err(|source| SpoolError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let outputs = self.full_mask.count_ones() as usize;
        match Self::recover(&self.cfg, &self.outputs_signature, outputs, reason.clone()) {
            Ok((fresh, report)) => {
                let buffer = std::mem::take(&mut self.buffer);
                let mut seqs = std::mem::take(&mut self.next_seq);
                let dropped = self.stats.dropped_total;
                let drops_unsaved = self.drops_unsaved;
                *self = fresh;
                self.buffer = buffer;
                // Keep numbering where it was: the sequence must not go backwards in-process.
                for (id, next) in std::mem::take(&mut self.next_seq) {
                    let n = seqs.entry(id).or_insert(next);
                    *n = (*n).max(next);
                }
                self.next_seq = seqs;
                if dropped > self.stats.dropped_total {
                    self.stats.dropped_total = dropped;
                    self.drops_unsaved = true;
                } else {
                    self.drops_unsaved |= drops_unsaved;
                }
                Err(SpoolError::Recovered {
                    path: self.path.clone(),
                    moved_to: report.moved_to,
                    reason,
                    salvaged: report.salvaged,
                    unreadable: report.unreadable,
                })
            }
            Err(e) => {
                // Nothing was moved when the copy failed (a full disk, say): keep using the
                // damaged file as far as it goes, so the next corruption error tries again.
                // Opened without `CREATE`: if the file is gone (moved, the copy not yet in
                // place), an empty file here would hide the saved copy from the next start.
                match Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                ) {
                    Ok(conn) => {
                        let _ = conn.busy_timeout(Duration::from_secs(2));
                        self.conn = conn;
                        if let Err(e) = self.set_synchronous(self.cfg.sync) {
                            warn!(error = %e, "spool: cannot set the sync policy");
                        }
                    }
                    Err(e) => warn!(error = %e, "spool: cannot reopen the damaged file"),
                }
                Err(e)
            }
        }
    }
}

/// Splits stored rows into records and the rows that do not decode, with the reason.
fn decode_rows(
    path: &Path,
    rows: Vec<(i64, Vec<u8>)>,
) -> (Vec<StoredRecord>, Vec<(RowId, String)>) {
    let mut out = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for (row, body) in rows {
        match serde_json::from_slice::<Record>(&body) {
            Ok(record) => out.push(StoredRecord { row, record }),
            Err(e) => {
                let err = SpoolError::BadRow {
                    path: path.to_path_buf(),
                    row,
                    reason: e.to_string(),
                };
                bad.push((row, err.to_string()));
            }
        }
    }
    (out, bad)
}

fn add_dropped(tx: &rusqlite::Transaction<'_>, total: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES('dropped_total', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![total.to_string()],
    )?;
    Ok(())
}

/// Deletes the oldest rows until `records <= max_records` and `bytes <= max_bytes`.
/// Returns (rows dropped, bytes freed, id of the last dropped row).
fn enforce_bounds(
    tx: &rusqlite::Transaction<'_>,
    cfg: &SpoolConfig,
    records: u64,
    bytes: u64,
) -> rusqlite::Result<(u64, u64, Option<RowId>)> {
    let excess_records = records.saturating_sub(cfg.max_records);
    let excess_bytes = bytes.saturating_sub(cfg.max_bytes);
    if excess_records == 0 && excess_bytes == 0 {
        return Ok((0, 0, None));
    }
    let mut dropped = 0u64;
    let mut freed = 0u64;
    let mut last = None;
    {
        let mut stmt = tx.prepare_cached("SELECT id, LENGTH(body) FROM records ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while dropped < excess_records || freed < excess_bytes {
            let Some(row) = rows.next()? else { break };
            let id: i64 = row.get(0)?;
            let len: i64 = row.get(1)?;
            dropped += 1;
            freed += u64::try_from(len).unwrap_or(0);
            last = Some(id);
        }
    }
    if let Some(last) = last {
        tx.execute("DELETE FROM records WHERE id <= ?1", params![last])?;
    }
    Ok((dropped, freed, last))
}

/// Renames `path` (and its `-wal`; the `-shm` is removed) to `<path>.corrupt-<UTC timestamp>`.
/// The `-wal` must not stay behind: SQLite would replay it into the new file at `path`.
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let target = sibling(path, &format!(".corrupt-{stamp}"));
    std::fs::rename(path, &target)?;
    let wal = sibling(path, "-wal");
    if wal.exists() {
        std::fs::rename(&wal, sibling(&target, "-wal"))?;
    }
    let shm = sibling(path, "-shm");
    if shm.exists() {
        std::fs::remove_file(shm)?;
    }
    Ok(target)
}

/// Suffix of the file a damaged spool's records are copied into before it takes its place.
const RECOVERING: &str = ".recovering";

/// The acknowledgement mask with a bit for each of `outputs`.
fn full_mask(outputs: usize) -> i64 {
    (1i64 << outputs.min(MAX_OUTPUTS)) - 1
}

/// A `<name>.recovering` left by an interrupted recovery: with `<name>` missing, the damaged
/// file was already moved aside and this complete copy is the spool (it is renamed only once
/// its last transaction committed); with `<name>` present, it is a partial copy, removed so the
/// recovery can start over.
fn finish_interrupted_swap(path: &Path) -> Result<(), SpoolError> {
    let recovering = sibling(path, RECOVERING);
    let io_err = |e: std::io::Error| io_environment_error(path, &e);
    if !recovering.try_exists().map_err(io_err)? {
        return Ok(());
    }
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            remove_db_files(&recovering);
            return Ok(());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // Interrupted between moving the damaged file and moving its `-wal`: that WAL must follow
    // it, or SQLite would replay it into the copy.
    let wal = sibling(path, "-wal");
    if wal.try_exists().map_err(io_err)? {
        match newest_moved_aside(path) {
            Some(moved) => std::fs::rename(&wal, sibling(&moved, "-wal")).map_err(io_err)?,
            None => {
                return Err(SpoolError::Unrecoverable {
                    path: path.to_path_buf(),
                    reason: format!(
                        "an interrupted recovery left {} and {} behind; move the -wal file away \
                         (keep it for inspection) and start again",
                        recovering.display(),
                        wal.display()
                    ),
                });
            }
        }
    }
    let shm = sibling(path, "-shm");
    if shm.try_exists().map_err(io_err)? {
        std::fs::remove_file(&shm).map_err(io_err)?;
    }
    std::fs::rename(&recovering, path).map_err(io_err)?;
    sync_parent(path);
    warn!(
        spool = %path.display(),
        "spool: finished an interrupted recovery (put the saved records in place)"
    );
    Ok(())
}

/// The most recent `<name>.corrupt-<UTC timestamp>` next to `path` that has no `-wal` yet
/// (the timestamps sort as text).
fn newest_moved_aside(path: &Path) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!("{}.corrupt-", path.file_name()?.to_str()?);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix) && !n.ends_with("-wal"))
        .map(|n| dir.join(n))
        .filter(|p| !sibling(p, "-wal").exists())
        .max()
}

/// Removes a database file and its side files, if they exist. Best effort: used only on a copy
/// that is being abandoned.
fn remove_db_files(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let p = sibling(path, suffix);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(file = %p.display(), error = %e, "spool: cannot remove a partial copy");
        }
    }
}

/// Makes renames in the spool's folder durable. Best effort: a failure only means a power cut
/// right now could undo the rename, which the next start handles.
fn sync_parent(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Err(e) = std::fs::File::open(dir).and_then(|d| d.sync_all()) {
        warn!(dir = %dir.display(), error = %e, "spool: cannot sync the folder");
    }
}

/// Counts of a salvage (see [`CorruptionReport`]).
struct Salvage {
    salvaged: u64,
    unreadable: u64,
    fully_scanned: bool,
}

/// Copies every record that can still be read from the damaged spool at `damaged` into a new
/// spool file at `target`, pending on every output (`full_mask`), in their original order and
/// with their original bodies (so `scooter_id`, `seq`, timestamps and record id are kept). The
/// old `seqs` table and drop counter are carried over as far as they can be read; numbering
/// continues after the highest salvaged sequence number in any case.
///
/// Read errors in the damaged file are counted, not returned (that is what it is being
/// salvaged from), except when it cannot be opened at all for a reason other than damage: then
/// nothing could be saved, and moving it aside would strand its records, so the error is
/// returned. Errors writing `target` are returned too (a full disk): the caller must not move
/// the damaged file then. `target` is written with a rollback journal and closed, so once this
/// returns it is a single, complete file.
fn salvage_into(
    damaged: &Path,
    target: &Path,
    signature: &str,
    full_mask: i64,
) -> Result<Salvage, SpoolError> {
    // Errors name the spool file: that is the one the user knows, and both files share a disk.
    let err = |e: rusqlite::Error| environment_error(damaged, e, || None, true);
    let old = Connection::open_with_flags(
        damaged,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    // The first read decides whether the file can be read at all; only damage is expected.
    let readable = match old.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => true,
        Err(e) if is_corruption(&e) => false,
        Err(e) => return Err(err(e)),
    };

    remove_db_files(target);
    let mut new = Connection::open(target).map_err(err)?;
    new.query_row("PRAGMA journal_mode=DELETE", [], |r| r.get::<_, String>(0))
        .map_err(err)?;
    new.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    new.execute_batch(SCHEMA).map_err(err)?;
    let mut salvage = Salvage {
        salvaged: 0,
        unreadable: 0,
        fully_scanned: readable,
    };
    let tx = new.transaction().map_err(err)?;
    tx.execute(
        "INSERT INTO meta(key, value) VALUES('outputs', ?1)",
        params![signature],
    )
    .map_err(err)?;
    if readable {
        let (ids, skipped, complete) = readable_ids(&old);
        salvage.unreadable = skipped;
        salvage.fully_scanned = complete;
        let mut get = old.prepare("SELECT body FROM records WHERE id = ?1").ok();
        if get.is_none() {
            salvage.fully_scanned = false;
        }
        let mut ins = tx.prepare(INSERT_RECORD).map_err(err)?;
        let mut seqs = tx.prepare(RAISE_SEQ).map_err(err)?;
        for id in &ids {
            let body = get
                .as_mut()
                .and_then(|g| g.query_row(params![id], |r| r.get::<_, Vec<u8>>(0)).ok());
            // The same decoding as `decode_rows`: a body that does not decode could never be
            // published, so it is not worth saving.
            let Some((body, record)) =
                body.and_then(|b| serde_json::from_slice::<Record>(&b).ok().map(|r| (b, r)))
            else {
                salvage.unreadable += 1;
                continue;
            };
            ins.execute(params![
                record.scooter_id,
                i64::try_from(record.seq).unwrap_or(i64::MAX),
                created_ms(&record),
                full_mask,
                body
            ])
            .map_err(err)?;
            seqs.execute(params![
                seq_key(&record.scooter_id, record.is_event()),
                i64::try_from(record.seq.saturating_add(1)).unwrap_or(i64::MAX)
            ])
            .map_err(err)?;
            salvage.salvaged += 1;
        }
        // Numbering recorded in the old file may be ahead of every record left (all
        // acknowledged, or lost in a damaged page): keep it as far as it can be read.
        if let Ok(mut stmt) = old.prepare("SELECT scooter_id, next_seq FROM seqs")
            && let Ok(rows) =
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        {
            for (id, next) in rows.map_while(Result::ok) {
                seqs.execute(params![id, next]).map_err(err)?;
            }
        }
        let dropped: Option<String> = old
            .query_row(
                "SELECT value FROM meta WHERE key = 'dropped_total'",
                [],
                |r| r.get(0),
            )
            .ok();
        if let Some(total) = dropped.and_then(|d| d.parse::<u64>().ok()) {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES('dropped_total', ?1)",
                params![total.to_string()],
            )
            .map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    new.close().map_err(|(_, e)| err(e))?;
    Ok(salvage)
}

/// The row ids of the damaged file's `records`, in order, walking past damaged pages: a scan
/// stops at the first page it cannot read, so after a failure the smallest id from which a
/// seek succeeds again (which lands past the damaged page) is searched for, and the scan
/// resumes there. Returns the ids, how many ids the skipped ranges span (bounded by a readable
/// row on both sides, or by the highest id ever assigned at the end), and whether every range
/// could be bounded that way.
fn readable_ids(old: &Connection) -> (Vec<i64>, u64, bool) {
    let mut ids = Vec::new();
    let mut skipped = 0u64;
    let mut complete = true;
    // Row ids start at 1 (`AUTOINCREMENT`).
    let mut from = 0i64;
    while scan_ids(old, from, &mut ids).is_err() {
        let last = ids.last().copied();
        // Where the scan broke: after the last id it returned, or at its start.
        let start = last.filter(|&l| l >= from).unwrap_or(from);
        let Some((resume, next)) = resume_point(old, start) else {
            // Nothing past the damage can be read.
            complete = false;
            break;
        };
        let gap = |from: i64, to: i64| u64::try_from(to.saturating_sub(from)).unwrap_or(0);
        match (last, next) {
            (Some(last), Some(next)) => skipped += gap(last, next).saturating_sub(1),
            (Some(last), None) => match highest_assigned_id(old) {
                Some(high) => skipped += gap(last, high),
                None => complete = false,
            },
            // The damage is before the first readable row: where the table started is not
            // known.
            (None, _) => complete = false,
        }
        if next.is_none() {
            break;
        }
        from = resume;
    }
    (ids, skipped, complete)
}

/// Appends the ids `>= from` to `ids`, in order, until the end or the first error.
fn scan_ids(old: &Connection, from: i64, ids: &mut Vec<i64>) -> rusqlite::Result<()> {
    let mut stmt = old.prepare("SELECT id FROM records WHERE id >= ?1 ORDER BY id")?;
    let mut rows = stmt.query(params![from])?;
    while let Some(row) = rows.next()? {
        ids.push(row.get(0)?);
    }
    Ok(())
}

/// After a scan failed past `start`: the smallest `x > start` from which a seek works again,
/// with the first id `>= x` (`None`: nothing after). Found by doubling the step until a seek
/// works, then bisecting back, so it costs about 2·log₂(gap) seeks. `None` when no seek works.
fn resume_point(old: &Connection, start: i64) -> Option<(i64, Option<i64>)> {
    let seek = |x: i64| {
        old.query_row(
            "SELECT id FROM records WHERE id >= ?1 ORDER BY id LIMIT 1",
            params![x],
            |r| r.get::<_, i64>(0),
        )
        .optional()
    };
    let mut bad = start;
    let mut step = 1i64;
    let (mut good, mut found) = loop {
        let x = start.checked_add(step)?;
        match seek(x) {
            Ok(found) => break (x, found),
            Err(_) => {
                bad = x;
                step = step.checked_mul(2)?;
            }
        }
    };
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        match seek(mid) {
            Ok(f) => {
                good = mid;
                found = f;
            }
            Err(_) => bad = mid,
        }
    }
    Some((good, found))
}

/// The highest row id ever given out in the damaged file (`AUTOINCREMENT` keeps it).
fn highest_assigned_id(old: &Connection) -> Option<i64> {
    old.query_row(
        "SELECT seq FROM sqlite_sequence WHERE name = 'records'",
        [],
        |r| r.get(0),
    )
    .ok()
}
