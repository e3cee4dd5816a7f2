//! The spool on its own: durable order, sequence numbers across restarts, acknowledgements per
//! topic, bounds that drop the oldest and count them, sync policies, and corrupt files.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use m365_pipeline::spool::Spool;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{SpoolConfig, SyncPolicy};

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
fn normal_policy_batches_commits_by_count_and_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path(), SyncPolicy::Normal);
    let (mut spool, _) = Spool::open(&c, &outputs(1)).unwrap();
    let mut sc = scooter();
    let t0 = Instant::now();
    for _ in 0..4 {
        assert!(
            spool.append(sc.next_sample(), t0).unwrap().is_empty(),
            "buffered"
        );
    }
    assert_eq!(spool.stats().buffered, 4);
    assert_eq!(
        spool.flush_deadline(),
        Some(t0 + Duration::from_millis(200))
    );
    let committed = spool.append(sc.next_sample(), t0).unwrap();
    assert_eq!(committed.len(), 5, "commit_every reached");
    assert_eq!(spool.stats().buffered, 0);
    assert_eq!(spool.flush_deadline(), None);
    spool.append(sc.next_sample(), t0).unwrap();
    let committed = spool.flush().unwrap();
    assert_eq!(
        committed.iter().map(|r| r.record.seq).collect::<Vec<_>>(),
        vec![6]
    );
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
        spool.get(&[a, b]).unwrap().len(),
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
