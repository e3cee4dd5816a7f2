//! The spool on its own: durable order, sequence numbers across restarts, acknowledgements per
//! topic, bounds that drop the oldest and count them, sync policies, and corrupt files.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use m365_pipeline::error::SpoolError;
use m365_pipeline::spool::{Spool, StoredRecord};
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{EventKind, Record, Sample, SpoolConfig, SyncPolicy};

#[path = "common/small_fs.rs"]
mod small_fs;

fn cfg(dir: &Path, sync: SyncPolicy) -> SpoolConfig {
    SpoolConfig {
        path: dir.join("spool.sqlite"),
        sync,
        commit_every: 5,
        commit_interval_ms: 200,
        ..SpoolConfig::default()
    }
}

fn scooter() -> SyntheticScooter {
    let start = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .unwrap()
        .to_utc();
    SyntheticScooter::new("s1", 1, start, Duration::from_secs(1))
}

fn outputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("topic/{i}")).collect()
}

#[test]
fn always_commits_each_record_and_numbers_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut sc = scooter();
    {
        let (mut spool, report) = Spool::open(&c, &outputs(1)).unwrap();
        assert!(report.is_none());
        for i in 1..=3u64 {
            let committed = spool.append(sc.next_sample(), Instant::now()).unwrap();
            assert_eq!(committed.len(), 1);
            assert_eq!(committed[0].record.seq, i);
        }
    }
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    assert_eq!(spool.stats().records, 3);
    let pending = spool.pending_after(0, 0, 100).unwrap();
    let seqs: Vec<u64> = pending.iter().map(|r| r.record.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "replayed in order after restart");
    // Acknowledge everything: the sequence still continues, it does not restart.
    let rows: Vec<i64> = pending.iter().map(|r| r.row).collect();
    assert_eq!(spool.ack(0, &rows).unwrap(), 3);
    drop(spool);
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    assert_eq!(spool.stats().records, 0);
    let next = spool.append(sc.next_sample(), Instant::now()).unwrap();
    assert_eq!(next[0].record.seq, 4);
    assert!(next[0].row > rows[2], "row ids are never reused");
}

#[test]
fn events_are_numbered_apart_so_telemetry_stays_gap_free_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut sc = scooter();
    let event = |kind| Sample::event("s1", Utc::now(), kind, None);
    let mut seqs = Vec::new();
    {
        let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
        for sample in [
            sc.next_sample(),
            event(EventKind::Unlocked),
            sc.next_sample(),
            event(EventKind::Locked),
            sc.next_sample(),
        ] {
            let r = &spool.append(sample, Instant::now()).unwrap()[0].record;
            seqs.push((r.is_event(), r.seq));
        }
    }
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    for sample in [event(EventKind::ConnectionLost), sc.next_sample()] {
        let r = &spool.append(sample, Instant::now()).unwrap()[0].record;
        seqs.push((r.is_event(), r.seq));
    }
    assert_eq!(
        seqs,
        vec![
            (false, 1),
            (true, 1),
            (false, 2),
            (true, 2),
            (false, 3),
            (true, 3),
            (false, 4)
        ]
    );
    // Stored and read back with the event, in commit order.
    let pending = spool.pending_after(0, 0, 100).unwrap();
    assert_eq!(pending.len(), 7);
    assert_eq!(pending[1].record.event, Some(EventKind::Unlocked));
    assert!(pending[0].record.event.is_none());
}

#[test]
fn normal_policy_batches_commits_by_count_and_deadline() {
    let dir = tempfile::tempdir().unwrap();
    // An interval long enough that a slow machine never reaches it within the test.
    let interval = Duration::from_secs(60);
    let c = SpoolConfig {
        commit_interval_ms: 60_000,
        ..cfg(dir.path(), SyncPolicy::Normal)
    };
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    let mut sc = scooter();
    // The first record after a quiet interval is committed at once: nothing waits for the
    // deadline when records come slowly.
    let before = Instant::now();
    let first = spool.append(sc.next_sample(), before).unwrap();
    assert_eq!(first.len(), 1, "committed at once");
    let t0 = Instant::now();
    for _ in 0..4 {
        assert!(
            spool.append(sc.next_sample(), t0).unwrap().is_empty(),
            "buffered"
        );
    }
    assert_eq!(spool.stats().buffered, 4);
    // Due one commit interval after the last commit, which came before them.
    let due = spool.flush_deadline().unwrap();
    assert!(before + interval <= due && due <= t0 + interval, "{due:?}");
    let committed = spool.append(sc.next_sample(), t0).unwrap();
    assert_eq!(committed.len(), 5, "commit_every reached");
    assert_eq!(spool.stats().buffered, 0);
    assert_eq!(spool.flush_deadline(), None);
    spool.append(sc.next_sample(), t0).unwrap();
    let committed = spool.flush().unwrap();
    assert_eq!(
        committed.iter().map(|r| r.record.seq).collect::<Vec<_>>(),
        vec![7]
    );
    // After a quiet interval, the next one is committed at once again.
    let later = Instant::now() + interval;
    assert_eq!(spool.append(sc.next_sample(), later).unwrap().len(), 1);
}

#[test]
fn records_stay_until_every_topic_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let (mut spool, _) = Spool::open(&c, &outputs(2)).unwrap();
    let mut sc = scooter();
    let a = spool.append(sc.next_sample(), Instant::now()).unwrap()[0].row;
    let b = spool.append(sc.next_sample(), Instant::now()).unwrap()[0].row;
    assert_eq!(spool.ack(0, &[a, b]).unwrap(), 0, "topic 1 still pending");
    assert!(spool.pending_after(0, 0, 10).unwrap().is_empty());
    assert_eq!(spool.pending_after(1, 0, 10).unwrap().len(), 2);
    assert_eq!(spool.ack(1, &[a]).unwrap(), 1);
    assert_eq!(spool.stats().records, 1);
    assert_eq!(spool.pending_after(1, 0, 10).unwrap()[0].row, b);
    assert_eq!(
        spool.get(0, &[a, b]).unwrap().len(),
        1,
        "deleted rows are skipped"
    );
}

#[test]
fn full_spool_drops_the_oldest_and_counts_them_persistently() {
    let dir = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        max_records: 10,
        ..cfg(dir.path(), SyncPolicy::Always)
    };
    let mut sc = scooter();
    {
        let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
        for _ in 0..25 {
            spool.append(sc.next_sample(), Instant::now()).unwrap();
        }
        let s = spool.stats();
        assert_eq!((s.records, s.dropped_total), (10, 15));
    }
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    assert_eq!(spool.stats().dropped_total, 15, "counter persisted");
    let seqs: Vec<u64> = spool
        .pending_after(0, 0, 100)
        .unwrap()
        .iter()
        .map(|r| r.record.seq)
        .collect();
    assert_eq!(seqs, (16..=25).collect::<Vec<_>>(), "newest kept");
}

#[test]
fn byte_bound_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        max_bytes: 8 * 1024,
        ..cfg(dir.path(), SyncPolicy::Normal)
    };
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    let mut sc = scooter();
    for _ in 0..200 {
        spool.append(sc.next_sample(), Instant::now()).unwrap();
    }
    spool.flush().unwrap();
    let s = spool.stats();
    assert!(s.bytes <= 8 * 1024, "{s:?}");
    assert!(s.records > 0 && s.dropped_total > 0);
    assert_eq!(s.records + s.dropped_total, 200);
}

#[test]
fn expired_records_are_dropped_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let c = SpoolConfig {
        max_age_s: Some(60),
        ..cfg(dir.path(), SyncPolicy::Always)
    };
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    let mut sc = scooter(); // one sample per second from 12:00:00
    for _ in 0..120 {
        spool.append(sc.next_sample(), Instant::now()).unwrap();
    }
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2025-06-01T12:02:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(spool.prune_expired(now).unwrap(), 60);
    assert_eq!(spool.stats().records, 60);
    assert_eq!(spool.stats().dropped_total, 60);
    assert_eq!(spool.pending_after(0, 0, 1).unwrap()[0].record.seq, 61);
}

#[test]
fn garbage_file_is_moved_aside_and_a_fresh_spool_starts() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    std::fs::write(&c.path, vec![0x5a; 64 * 1024]).unwrap();
    let (mut spool, report) = Spool::open(&c, &outputs(1)).unwrap();
    let report = report.expect("corruption reported");
    assert!(
        report
            .moved_to
            .to_string_lossy()
            .contains("spool.sqlite.corrupt-")
    );
    assert!(report.moved_to.exists());
    assert_eq!(
        std::fs::read(&report.moved_to).unwrap().len(),
        64 * 1024,
        "kept for inspection"
    );
    assert_eq!(
        (report.salvaged, report.unreadable, report.fully_scanned),
        (0, 0, false),
        "nothing in it could be read"
    );
    let r = spool
        .append(scooter().next_sample(), Instant::now())
        .unwrap();
    assert_eq!(r[0].record.seq, 1);
}

#[test]
fn damaged_pages_behind_a_valid_header_are_found_and_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut sc = scooter();
    {
        let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
        for _ in 0..300 {
            spool.append(sc.next_sample(), Instant::now()).unwrap();
        }
    } // closing checkpoints the WAL into the main file
    let mut bytes = std::fs::read(&c.path).unwrap();
    assert!(bytes.len() > 4 * 4096);
    // Keep the 100-byte header (so SQLite still sees a database) and the schema page; wreck
    // the table pages.
    for b in bytes.iter_mut().skip(2 * 4096) {
        *b = 0xff;
    }
    std::fs::write(&c.path, &bytes).unwrap();
    let (mut spool, report) = Spool::open(&c, &outputs(1)).unwrap();
    let report = report.expect("quick_check failure reported");
    assert!(report.moved_to.exists());
    assert_eq!(spool.stats().records, 0);
    let r = spool.append(sc.next_sample(), Instant::now()).unwrap();
    assert_eq!(r[0].record.seq, 1, "a fresh spool starts numbering again");
}

#[test]
fn a_missing_spool_folder_is_created_and_an_impossible_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("state/m365");
    let c = cfg(&nested, SyncPolicy::Normal);
    let (spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    drop(spool);
    assert!(nested.join("spool.sqlite").is_file());

    // A regular file where the folder should be: the error names that folder.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let c = cfg(&blocker.join("sub"), SyncPolicy::Normal);
    let Err(err) = Spool::open(&c, &outputs(1)) else {
        panic!("a spool folder under a regular file cannot be created");
    };
    let text = err.to_string();
    assert!(text.contains("cannot create the spool folder"), "{text}");
    assert!(text.contains("blocker"), "{text}");
}

/// Appends `n` samples from each scooter in turn, under `always`, and returns what was
/// committed, in commit order.
fn fill_spool(spool: &mut Spool, scooters: &mut [SyntheticScooter], n: usize) -> Vec<StoredRecord> {
    let mut committed = Vec::new();
    for _ in 0..n {
        for sc in scooters.iter_mut() {
            committed.extend(spool.append(sc.next_sample(), Instant::now()).unwrap());
        }
    }
    committed
}

fn two_scooters() -> Vec<SyntheticScooter> {
    let start = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .unwrap()
        .to_utc();
    vec![
        SyntheticScooter::new("s1", 1, start, Duration::from_secs(1)),
        SyntheticScooter::new("s2", 2, start, Duration::from_secs(1)),
    ]
}

/// A leaf page of `table` in the middle of the table's leaves, with its number of rows.
fn middle_leaf(db: &Path, table: &str) -> (u64, u64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT pageno, ncell FROM dbstat WHERE name = ?1 AND pagetype = 'leaf' ORDER BY pageno",
        )
        .unwrap();
    let leaves: Vec<(u64, u64)> = stmt
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        leaves.len() >= 3,
        "{table} spans only {} leaves",
        leaves.len()
    );
    leaves[leaves.len() / 2]
}

/// The only page of `table` (a table small enough to fit one).
fn single_page(db: &Path, table: &str) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT pageno FROM dbstat WHERE name = ?1", [table], |r| {
        r.get(0)
    })
    .unwrap()
}

fn page_size(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap()
}

/// Overwrites page `page` (1-based) of the database file with 0xff, as a bad block would.
fn wreck_page(db: &Path, page: u64, size: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(SeekFrom::Start((page - 1) * size)).unwrap();
    f.write_all(&vec![0xff; usize::try_from(size).unwrap()])
        .unwrap();
    f.sync_all().unwrap();
}

/// Every record pending on `output`, as the spool reads it back. Compared with this rather than
/// with what `append` returned: JSON does not give back every float bit for bit, and a salvage
/// copies the stored bytes, not the in-memory values.
fn stored_records(spool: &mut Spool, output: usize) -> Vec<Record> {
    spool
        .pending_after(output, 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect()
}

/// Asserts that `got` is `all` with exactly one run of `lost` consecutive records missing,
/// neither at the start nor at the end (a page in the middle of the table).
fn assert_one_middle_run_missing(got: &[Record], all: &[Record], lost: usize) {
    let key = |r: &Record| format!("{}#{}", r.scooter_id, r.seq);
    let got_keys: Vec<String> = got.iter().map(key).collect();
    let all_keys: Vec<String> = all.iter().map(key).collect();
    let k = got_keys
        .iter()
        .zip(&all_keys)
        .position(|(a, b)| a != b)
        .expect("some records are missing");
    assert!(k > 0, "the first records survive");
    let mut expected = all_keys[..k].to_vec();
    expected.extend_from_slice(&all_keys[(k + lost).min(all.len())..]);
    assert_eq!(got_keys, expected, "one run of {lost} missing at {k}");
    // Not only the numbers: the records themselves, record ids included.
    assert!(
        got[..k] == all[..k] && got[k..] == all[k + lost..],
        "records unchanged"
    );
}

fn moved_aside(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-"))
        .collect()
}

#[test]
fn a_damaged_page_is_salvaged_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut scooters = two_scooters();
    let all = {
        let (mut spool, _) = Spool::open(&c, &outputs(2)).unwrap();
        let committed = fill_spool(&mut spool, &mut scooters, 150);
        // Acknowledged on the first topic only: still stored, and must come back pending on
        // both.
        let rows: Vec<i64> = committed.iter().map(|r| r.row).take(10).collect();
        assert_eq!(spool.ack(0, &rows).unwrap(), 0);
        stored_records(&mut spool, 1)
    }; // closing checkpoints the WAL into the main file
    assert_eq!(all.len(), 300);
    let size = page_size(&c.path);
    let (leaf, lost) = middle_leaf(&c.path, "records");
    // The numbering table too: numbering must then come from the salvaged records.
    let seqs_page = single_page(&c.path, "seqs");
    wreck_page(&c.path, leaf, size);
    wreck_page(&c.path, seqs_page, size);
    let damaged = std::fs::read(&c.path).unwrap();

    let (mut spool, report) = Spool::open(&c, &outputs(2)).unwrap();
    let report = report.expect("damage reported");
    assert!(report.reason.contains("quick_check"), "{}", report.reason);
    assert_eq!(report.salvaged, 300 - lost);
    assert_eq!(
        report.unreadable, lost,
        "counted from the gap in the row ids"
    );
    assert!(report.fully_scanned);
    assert_eq!(
        std::fs::read(&report.moved_to).unwrap(),
        damaged,
        "the damaged file is kept as it was"
    );
    assert_eq!(spool.stats().records, 300 - lost);
    for output in 0..2 {
        let got: Vec<Record> = spool
            .pending_after(output, 0, 1000)
            .unwrap()
            .into_iter()
            .map(|r| r.record)
            .collect();
        assert_one_middle_run_missing(&got, &all, usize::try_from(lost).unwrap());
    }
    let next = fill_spool(&mut spool, &mut scooters, 1);
    let next: Vec<(&str, u64)> = next
        .iter()
        .map(|r| (r.record.scooter_id.as_str(), r.record.seq))
        .collect();
    assert_eq!(next, [("s1", 151), ("s2", 151)], "numbering continues");
}

#[test]
fn corruption_found_while_running_is_salvaged_too() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut scooters = two_scooters();
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    fill_spool(&mut spool, &mut scooters, 150);
    let all = stored_records(&mut spool, 0);
    assert_eq!(all.len(), 300);
    // Move the committed pages from the WAL into the main file, then damage one there, while
    // the spool has the file open.
    {
        let other = rusqlite::Connection::open(&c.path).unwrap();
        let (busy, _, _): (i64, i64, i64) = other
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0, "checkpoint completed");
    }
    let size = page_size(&c.path);
    let (leaf, lost) = middle_leaf(&c.path, "records");
    wreck_page(&c.path, leaf, size);

    let err = spool.pending_after(0, 0, 1000).unwrap_err();
    let SpoolError::Recovered {
        moved_to,
        salvaged,
        unreadable,
        ..
    } = &err
    else {
        panic!("expected a recovery, got {err:?}");
    };
    assert_eq!((*salvaged, *unreadable), (300 - lost, lost));
    assert!(moved_to.exists());
    assert!(
        err.to_string().contains("saved into a fresh spool"),
        "{err}"
    );
    let got: Vec<Record> = spool
        .pending_after(0, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.record)
        .collect();
    assert_one_middle_run_missing(&got, &all, usize::try_from(lost).unwrap());
    let next = fill_spool(&mut spool, &mut scooters, 1);
    assert_eq!(next[0].record.seq, 151, "numbering continues");
    drop(spool);
    let (spool, report) = Spool::open(&c, &outputs(1)).unwrap();
    assert!(report.is_none(), "the fresh spool is sound");
    assert_eq!(spool.stats().records, 300 - lost + 2);
}

#[test]
fn an_interrupted_recovery_is_finished_or_started_over() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let recovering = dir.path().join("spool.sqlite.recovering");
    let copy = SpoolConfig {
        path: recovering.clone(),
        ..c.clone()
    };
    let mut sc = scooter();
    let saved = {
        let (mut spool, _) = Spool::open(&copy, &outputs(1)).unwrap();
        (0..3)
            .map(|_| spool.append(sc.next_sample(), Instant::now()).unwrap()[0].clone())
            .collect::<Vec<_>>()
    };
    // Stopped after the damaged file was moved aside, before the copy took its place.
    let (mut spool, report) = Spool::open(&c, &outputs(1)).unwrap();
    assert!(report.is_none());
    assert!(!recovering.exists(), "the copy was put in place");
    assert_eq!(spool.pending_after(0, 0, 10).unwrap(), saved);
    drop(spool);

    // Stopped while copying: the spool is still there, the partial copy goes.
    std::fs::write(&recovering, b"partial").unwrap();
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    assert!(!recovering.exists(), "the partial copy was removed");
    assert_eq!(spool.pending_after(0, 0, 10).unwrap(), saved);
}

#[test]
fn a_locked_spool_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut sc = scooter();
    {
        let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
        spool.append(sc.next_sample(), Instant::now()).unwrap();
    }
    let holder = rusqlite::Connection::open(&c.path).unwrap();
    holder
        .execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE;")
        .unwrap();
    let err = Spool::open(&c, &outputs(1)).unwrap_err();
    assert!(matches!(err, SpoolError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("locked by another process"),
        "{err}"
    );
    assert!(moved_aside(dir.path()).is_empty());
    holder.execute_batch("COMMIT").unwrap();
    drop(holder);
    let (spool, report) = Spool::open(&c, &outputs(1)).unwrap();
    assert!(report.is_none());
    assert_eq!(spool.stats().records, 1);
}

#[test]
fn a_full_disk_at_start_moves_nothing_and_loses_nothing() {
    let Some(dir) =
        small_fs::small_fs("a_full_disk_at_start_moves_nothing_and_loses_nothing", "2m")
    else {
        return;
    };
    let c = cfg(&dir, SyncPolicy::Always);
    let mut sc = scooter();
    let committed = {
        let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
        (0..10)
            .map(|_| spool.append(sc.next_sample(), Instant::now()).unwrap()[0].clone())
            .collect::<Vec<_>>()
    }; // the broker never acknowledged them
    let before = std::fs::read(&c.path).unwrap();
    let filler = small_fs::fill(&dir);

    let err = Spool::open(&c, &outputs(1)).unwrap_err();
    let SpoolError::DiskFull { path, records } = &err else {
        panic!("expected a full disk, got {err:?}: {err}");
    };
    assert_eq!((path, *records), (&c.path, Some(10)));
    let text = err.to_string();
    assert!(
        text.contains("is full: free some space") && text.contains("the 10 records in it are kept"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&c.path).unwrap(),
        before,
        "the spool file is untouched"
    );
    assert!(moved_aside(&dir).is_empty(), "nothing moved aside");

    std::fs::remove_file(filler).unwrap();
    let (mut spool, report) = Spool::open(&c, &outputs(1)).unwrap();
    assert!(report.is_none());
    assert_eq!(
        spool.pending_after(0, 0, 100).unwrap(),
        committed,
        "all there, pending"
    );
    let next = spool.append(sc.next_sample(), Instant::now()).unwrap();
    assert_eq!(next[0].record.seq, 11);
}

#[test]
fn a_read_only_file_system_leaves_the_spool_alone() {
    let Some(dir) = small_fs::small_fs("a_read_only_file_system_leaves_the_spool_alone", "2m")
    else {
        return;
    };
    let c = cfg(&dir, SyncPolicy::Always);
    let mut sc = scooter();
    let committed = {
        let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
        (0..10)
            .map(|_| spool.append(sc.next_sample(), Instant::now()).unwrap()[0].clone())
            .collect::<Vec<_>>()
    };
    let before = std::fs::read(&c.path).unwrap();
    small_fs::remount(&dir, "ro");

    let err = Spool::open(&c, &outputs(1)).unwrap_err();
    let SpoolError::ReadOnly { records, .. } = &err else {
        panic!("expected read-only, got {err:?}: {err}");
    };
    assert_eq!(*records, Some(10));
    assert!(err.to_string().contains("read-only"), "{err}");

    small_fs::remount(&dir, "rw");
    assert_eq!(
        std::fs::read(&c.path).unwrap(),
        before,
        "the spool file is untouched"
    );
    assert!(moved_aside(&dir).is_empty(), "nothing moved aside");
    let (mut spool, report) = Spool::open(&c, &outputs(1)).unwrap();
    assert!(report.is_none());
    assert_eq!(spool.pending_after(0, 0, 100).unwrap(), committed);
}

#[test]
fn a_full_disk_while_running_buffers_at_most_max_records() {
    let Some(dir) = small_fs::small_fs(
        "a_full_disk_while_running_buffers_at_most_max_records",
        "2m",
    ) else {
        return;
    };
    let c = SpoolConfig {
        max_records: 20,
        ..cfg(&dir, SyncPolicy::Always)
    };
    let mut sc = scooter();
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    let filler = small_fs::fill(&dir);
    for _ in 0..30 {
        let err = spool.append(sc.next_sample(), Instant::now()).unwrap_err();
        assert!(matches!(err, SpoolError::DiskFull { .. }), "{err:?}: {err}");
    }
    let s = spool.stats();
    assert_eq!(
        (s.buffered, s.dropped_total),
        (20, 10),
        "bounded, drops counted"
    );

    std::fs::remove_file(filler).unwrap();
    let committed = spool.flush().unwrap();
    let seqs: Vec<u64> = committed.iter().map(|r| r.record.seq).collect();
    assert_eq!(seqs, (11..=30).collect::<Vec<_>>(), "the newest kept");
    drop(spool);
    let (spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    let s = spool.stats();
    assert_eq!(
        (s.records, s.dropped_total),
        (20, 10),
        "drop count persisted"
    );
}

#[test]
fn quarantined_rows_survive_other_outputs_acks_and_are_released_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut sc = scooter();
    let (mut spool, _) = Spool::open(&c, &outputs(2)).unwrap();
    for _ in 0..3 {
        spool.append(sc.next_sample(), Instant::now()).unwrap();
    }
    let rows: Vec<i64> = spool
        .pending_after(0, 0, 10)
        .unwrap()
        .iter()
        .map(|r| r.row)
        .collect();
    // Output 0 could not send the second record; output 1 sent all three.
    spool
        .quarantine(0, &[(rows[1], "cannot encode".to_owned())])
        .unwrap();
    assert_eq!(spool.stats().quarantined, 1);
    spool.ack(0, &[rows[0], rows[2]]).unwrap();
    let deleted = spool.ack(1, &rows).unwrap();
    assert_eq!(deleted, 2, "the quarantined row is not deleted");
    assert_eq!(spool.stats().records, 1);
    assert!(
        spool.pending_after(0, 0, 10).unwrap().is_empty(),
        "not retried in this run"
    );
    drop(spool);

    // The next start tries it again, on the output that could not send it.
    let (mut spool, _) = Spool::open(&c, &outputs(2)).unwrap();
    assert_eq!(spool.stats().quarantined, 0);
    let again: Vec<i64> = spool
        .pending_after(0, 0, 10)
        .unwrap()
        .iter()
        .map(|r| r.row)
        .collect();
    assert_eq!(again, vec![rows[1]]);
    assert!(spool.pending_after(1, 0, 10).unwrap().is_empty());
    assert_eq!(spool.ack(0, &again).unwrap(), 1);
    assert_eq!(spool.stats().records, 0);
}

#[test]
fn a_row_that_does_not_decode_is_quarantined_and_does_not_block_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Always);
    let mut sc = scooter();
    {
        let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
        for _ in 0..3 {
            spool.append(sc.next_sample(), Instant::now()).unwrap();
        }
    }
    let conn = rusqlite::Connection::open(&c.path).unwrap();
    conn.execute("UPDATE records SET body = x'7b7d' WHERE seq = 2", [])
        .unwrap();
    drop(conn);
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    let seqs: Vec<u64> = spool
        .pending_after(0, 0, 10)
        .unwrap()
        .iter()
        .map(|r| r.record.seq)
        .collect();
    assert_eq!(seqs, vec![1, 3]);
    assert_eq!(spool.stats().quarantined, 1);
    assert_eq!(spool.stats().records, 3);
}
