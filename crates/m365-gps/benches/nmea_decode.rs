//! Throughput of NMEA decoding (reader + sentences + epochs) on a real capture: a Pi must keep
//! up with a 10 Hz receiver using a sliver of one core.
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark; `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn decode(c: &mut Criterion) {
    let Some(path) = m365_testdata::require(
        "bench nmea_decode",
        "testdata/gps/nmea/trimble_rtk_moving_gn_west.nmea",
    ) else {
        return;
    };
    let Ok(bytes) = std::fs::read(&path) else {
        eprintln!("cannot read {}", path.display());
        return;
    };
    let mut group = c.benchmark_group("nmea");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode_all trimble_rtk", |b| {
        b.iter(|| m365_gps::nmea::decode_all(std::hint::black_box(&bytes)))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
