//! Spool write cost per record under each sync policy, and encoding cost per record.
//!
//! `cargo bench -p m365-pipeline --bench spool`
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark; `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use m365_pipeline::spool::Spool;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{Encoding, Record, SpoolConfig, SyncPolicy};

fn start() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .unwrap()
        .to_utc()
}

fn spool_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("spool_append");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    for (name, sync) in [
        ("always", SyncPolicy::Always),
        ("normal", SyncPolicy::Normal),
    ] {
        // The spool lives next to the build output (a real disk), not in a RAM-backed temp dir.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let cfg = SpoolConfig {
            path: dir.path().join("bench.sqlite"),
            sync,
            commit_every: 50,
            commit_interval_ms: 1000,
            ..SpoolConfig::default()
        };
        let (mut spool, _) = Spool::open(&cfg, &["t".to_owned()]).unwrap();
        let mut sc = SyntheticScooter::new("bench", 1, start(), Duration::from_millis(100));
        g.bench_function(name, |b| {
            b.iter_batched(
                || sc.next_sample(),
                |s| spool.append(s, Instant::now()).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut sc = SyntheticScooter::new("bench", 2, start(), Duration::from_secs(1));
    let records: Vec<Record> = (1..=50)
        .map(|i| Record::from_sample(sc.next_sample(), i))
        .collect();
    let mut g = c.benchmark_group("encode_per_record");
    g.throughput(Throughput::Elements(50));
    for enc in [Encoding::Legacy, Encoding::Json] {
        g.bench_function(format!("{enc:?}"), |b| {
            b.iter(|| {
                for r in &records {
                    std::hint::black_box(enc.encode(std::slice::from_ref(r)).unwrap());
                }
            })
        });
    }
    g.bench_function("Compact(batch 50)", |b| {
        b.iter(|| std::hint::black_box(Encoding::Compact.encode(&records).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, spool_append, encode);
criterion_main!(benches);
