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
//!     `commit_every` records or `commit_interval_ms`. A power cut loses the buffered records
//!     (never yet offered to MQTT, so never published) and can roll back transactions committed
//!     since the last WAL checkpoint: those records may have been published already, and their
//!     sequence numbers can then be assigned again to new records (the record ids differ).
//!   - Acknowledgements are committed with `synchronous=NORMAL` under both policies: losing one
//!     only means the record is published again, and downstream deduplicates by record id.
//! * **Corruption.** A file SQLite cannot read (not a database, failed `quick_check`, corruption
//!   found while running) is renamed `<name>.corrupt-<UTC timestamp>` (with its `-wal`), a fresh
//!   spool is started and the caller gets a report; the process keeps running.
//!
//! SQLite is synchronous: the publisher's single driver task owns the spool and calls it
//! directly; each call is one short transaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use tracing::{error, warn};

use crate::config::{SpoolConfig, SyncPolicy};
use crate::error::SpoolError;
use crate::record::{Record, Sample, TimeSource};

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
}

/// What happened to an unreadable spool file at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptionReport {
    /// Where the old file was moved.
    pub moved_to: PathBuf,
    /// What SQLite said.
    pub reason: String,
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
    next_seq: HashMap<String, u64>,
    stats: SpoolStats,
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
";

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly))
}

/// Why opening failed: either the file is damaged (move it aside) or the environment is wrong
/// (locked, no permission: do not touch the file).
enum OpenFailure {
    Damaged(String),
    Other(rusqlite::Error),
}

impl Spool {
    /// Opens (or creates) the spool at `cfg.path` for the given outputs (topic names, in
    /// configuration order). A damaged file is moved aside and a fresh spool started; the report
    /// says where it went. When the list of outputs changed since the file was written, every
    /// stored record becomes pending on every current output.
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
        let signature = outputs.join("\n");
        match Self::try_open(cfg, &signature, outputs.len()) {
            Ok(spool) => Ok((spool, None)),
            Err(OpenFailure::Other(source)) => Err(SpoolError::Sqlite {
                path: cfg.path.clone(),
                source,
            }),
            Err(OpenFailure::Damaged(reason)) => {
                let moved_to = move_aside(&cfg.path).map_err(|e| SpoolError::Unrecoverable {
                    path: cfg.path.clone(),
                    reason: format!("{reason}; moving it aside failed: {e}"),
                })?;
                error!(
                    spool = %cfg.path.display(),
                    moved_to = %moved_to.display(),
                    %reason,
                    "spool file unreadable: moved aside, starting a fresh spool"
                );
                match Self::try_open(cfg, &signature, outputs.len()) {
                    Ok(spool) => Ok((spool, Some(CorruptionReport { moved_to, reason }))),
                    Err(OpenFailure::Other(source)) => Err(SpoolError::Sqlite {
                        path: cfg.path.clone(),
                        source,
                    }),
                    Err(OpenFailure::Damaged(r)) => Err(SpoolError::Unrecoverable {
                        path: cfg.path.clone(),
                        reason: r,
                    }),
                }
            }
        }
    }

    fn try_open(cfg: &SpoolConfig, signature: &str, outputs: usize) -> Result<Spool, OpenFailure> {
        let classify = |e: rusqlite::Error| {
            if is_busy(&e) {
                OpenFailure::Other(e)
            } else {
                OpenFailure::Damaged(e.to_string())
            }
        };
        let conn = Connection::open(&cfg.path).map_err(OpenFailure::Other)?;
        conn.busy_timeout(Duration::from_secs(2))
            .map_err(OpenFailure::Other)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(classify)?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(mode, "spool: SQLite refused WAL mode");
        }
        let check: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(classify)?;
        if check != "ok" {
            return Err(OpenFailure::Damaged(format!("quick_check: {check}")));
        }
        conn.execute_batch(SCHEMA).map_err(classify)?;
        let full_mask = (1i64 << outputs) - 1;
        let mut spool = Spool {
            conn,
            path: cfg.path.clone(),
            cfg: cfg.clone(),
            full_mask,
            outputs_signature: signature.to_owned(),
            buffer: Vec::new(),
            buffer_since: None,
            next_seq: HashMap::new(),
            stats: SpoolStats::default(),
        };
        spool.load_state().map_err(classify)?;
        spool.set_synchronous(cfg.sync).map_err(classify)?;
        Ok(spool)
    }

    fn load_state(&mut self) -> rusqlite::Result<()> {
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

    /// Numbers `sample` and stores it. Under `always` it is committed now and returned; under
    /// `normal` it is buffered and all buffered records are returned once a commit happens
    /// (this call reaching `commit_every`, or [`Spool::flush`] after [`Spool::flush_deadline`]).
    /// Only returned records are durable and may be offered to MQTT.
    pub fn append(
        &mut self,
        sample: Sample,
        now: Instant,
    ) -> Result<Vec<StoredRecord>, SpoolError> {
        let next = self.next_seq.entry(sample.scooter_id.clone()).or_insert(1);
        let seq = *next;
        *next = next.saturating_add(1);
        self.buffer.push(Record::from_sample(sample, seq));
        if self.buffer_since.is_none() {
            self.buffer_since = Some(now);
        }
        let commit_now = match self.cfg.sync {
            SyncPolicy::Always => true,
            SyncPolicy::Normal => self.buffer.len() >= self.cfg.commit_every.max(1),
        };
        if commit_now {
            self.flush()
        } else {
            Ok(Vec::new())
        }
    }

    /// When buffered records must be committed at the latest (`normal` policy), if any are.
    pub fn flush_deadline(&self) -> Option<Instant> {
        self.buffer_since
            .map(|t| t + Duration::from_millis(self.cfg.commit_interval_ms))
    }

    /// Commits buffered records, enforces the bounds, and returns the committed records that
    /// are still stored (a bound can drop even them when it is tiny).
    pub fn flush(&mut self) -> Result<Vec<StoredRecord>, SpoolError> {
        if self.buffer.is_empty() {
            return Ok(Vec::new());
        }
        let records = std::mem::take(&mut self.buffer);
        self.buffer_since = None;
        let result = self.commit(&records);
        match self.guard(result) {
            Ok(v) => Ok(v),
            Err(e) => {
                // Keep the records for the next attempt unless the file was replaced (then they
                // go into the fresh spool on the next flush as well).
                let mut back = records;
                back.append(&mut self.buffer);
                self.buffer = back;
                self.buffer_since = Some(Instant::now());
                Err(e)
            }
        }
    }

    fn commit(&mut self, records: &[Record]) -> rusqlite::Result<Vec<StoredRecord>> {
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(records.len());
        let mut added_bytes = 0u64;
        {
            let mut ins = tx.prepare_cached(
                "INSERT INTO records(scooter_id, seq, created_ms, pending, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut seqs = tx.prepare_cached(
                "INSERT INTO seqs(scooter_id, next_seq) VALUES (?1, ?2)
                 ON CONFLICT(scooter_id) DO UPDATE SET next_seq = MAX(next_seq, excluded.next_seq)",
            )?;
            for r in records {
                let body = serde_json::to_vec(r)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                // Untrusted timestamps are not aged out: they would look decades old.
                let created = (r.time_source != TimeSource::UntrustedSystem)
                    .then(|| r.timestamp.timestamp_millis());
                ins.execute(params![
                    r.scooter_id,
                    i64::try_from(r.seq).unwrap_or(i64::MAX),
                    created,
                    self.full_mask,
                    body
                ])?;
                added_bytes += body.len() as u64;
                out.push(StoredRecord {
                    row: tx.last_insert_rowid(),
                    record: r.clone(),
                });
                seqs.execute(params![
                    r.scooter_id,
                    i64::try_from(r.seq.saturating_add(1)).unwrap_or(i64::MAX)
                ])?;
            }
        }
        let mut records_now = self.stats.records + records.len() as u64;
        let mut bytes_now = self.stats.bytes + added_bytes;
        let (dropped, freed, last_dropped) =
            enforce_bounds(&tx, &self.cfg, records_now, bytes_now)?;
        if dropped > 0 {
            add_dropped(&tx, self.stats.dropped_total + dropped)?;
        }
        tx.commit()?;
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
        decode_rows(&path, rows)
    }

    /// The stored records among `rows` (those dropped meanwhile are skipped), in id order.
    pub fn get(&mut self, rows: &[RowId]) -> Result<Vec<StoredRecord>, SpoolError> {
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
        decode_rows(&path, rows)
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
                let mut del = tx.prepare_cached(
                    "DELETE FROM records WHERE id = ?1 AND pending = 0 RETURNING LENGTH(body)",
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
            Err(source) => Err(SpoolError::Sqlite {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn replace_corrupt<T>(&mut self, reason: String) -> Result<T, SpoolError> {
        // Close the old connection first so the rename moves a quiescent file.
        let placeholder = Connection::open_in_memory().map_err(|source| SpoolError::Sqlite {
            path: self.path.clone(),
            source,
        })?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        let moved_to = move_aside(&self.path).map_err(|e| SpoolError::Unrecoverable {
            path: self.path.clone(),
            reason: format!("{reason}; moving it aside failed: {e}"),
        })?;
        let outputs = self.full_mask.count_ones() as usize;
        match Self::try_open(&self.cfg, &self.outputs_signature, outputs) {
            Ok(fresh) => {
                let buffer = std::mem::take(&mut self.buffer);
                let seqs = std::mem::take(&mut self.next_seq);
                *self = fresh;
                self.buffer = buffer;
                // Keep numbering where it was: the sequence must not go backwards in-process.
                self.next_seq = seqs;
                error!(moved_to = %moved_to.display(), "spool replaced by a fresh file");
                Err(SpoolError::Recovered {
                    path: self.path.clone(),
                    moved_to,
                    reason,
                })
            }
            Err(OpenFailure::Other(source)) => Err(SpoolError::Sqlite {
                path: self.path.clone(),
                source,
            }),
            Err(OpenFailure::Damaged(r)) => Err(SpoolError::Unrecoverable {
                path: self.path.clone(),
                reason: r,
            }),
        }
    }
}

fn decode_rows(path: &Path, rows: Vec<(i64, Vec<u8>)>) -> Result<Vec<StoredRecord>, SpoolError> {
    let mut out = Vec::with_capacity(rows.len());
    for (row, body) in rows {
        match serde_json::from_slice::<Record>(&body) {
            Ok(record) => out.push(StoredRecord { row, record }),
            // A row that does not decode cannot be published; say so and skip it rather than
            // block the queue behind it. It is deleted with the next acknowledgement of a later
            // row only if it is acked, so it stays in the file for inspection.
            Err(e) => {
                let err = SpoolError::BadRow {
                    path: path.to_path_buf(),
                    row,
                    reason: e.to_string(),
                };
                error!(%err, "skipping undecodable spool row");
            }
        }
    }
    Ok(out)
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
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{stamp}"));
    let target = PathBuf::from(name);
    std::fs::rename(path, &target)?;
    let side = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let wal = side("-wal");
    if wal.exists() {
        let mut t = target.as_os_str().to_owned();
        t.push("-wal");
        std::fs::rename(&wal, PathBuf::from(t))?;
    }
    let shm = side("-shm");
    if shm.exists() {
        std::fs::remove_file(shm)?;
    }
    Ok(target)
}
