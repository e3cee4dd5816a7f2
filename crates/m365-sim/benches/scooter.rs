//! How much work the simulator does per telemetry sample, so soak tests and benchmarks of the
//! client know the simulator is not their bottleneck; and the theoretical link limits the
//! client's sampling rate is compared against (printed once, from the pure link model).
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark; `criterion_group!` generates an undocumented `pub fn`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{Bench, instant_config};
use criterion::{Criterion, criterion_group, criterion_main};
use m365_proto::registers::{bms, esc};
use m365_sim::link_timing::{self, FULL_SAMPLE, Pattern, link_limit};
use m365_sim::scooter::Processing;
use m365_sim::{Generation, Model, Script};

fn print_link_limits() {
    for ms in [7.5, 15.0, 30.0, 50.0] {
        let timing = link_timing::with_interval(Duration::from_secs_f64(ms / 1000.0))
            .unwrap_or_else(|_| link_timing::typical());
        let processing = Processing::default();
        for generation in [Generation::MiAuth, Generation::Plain] {
            let limit =
                |pattern| link_limit(&timing, &processing, generation, &FULL_SAMPLE, pattern, 50);
            let (seq, pipe) = (limit(Pattern::Sequential), limit(Pattern::Pipelined));
            eprintln!(
                "link limit {generation:?} interval {ms} ms, {} packets/event: \
                 sequential {seq:.2} samples/s, pipelined {pipe:.2} samples/s",
                timing.packets_per_event().unwrap_or_default()
            );
        }
    }
}

fn benches(c: &mut Criterion) {
    print_link_limits();

    let mut config = instant_config(Model::Pro2, Generation::MiAuth, 7);
    config.script = Script::Loop(Default::default());
    let mut bench = Bench::new(config);
    let (_, mut client) = bench.paired_session();
    let sample = [
        esc::read_motor_info(),
        esc::read_range(),
        esc::read_session_times(),
        bms::read_battery_info(),
        bms::read_cells(),
    ];
    c.bench_function("miauth_full_sample_round_trip", |b| {
        b.iter(|| {
            for request in &sample {
                // A lost answer would make the loop measure nothing: insist on each one.
                let answer = bench.request(&mut client, request);
                assert!(answer.is_some(), "no answer to {request:?}");
                black_box(answer);
            }
        })
    });

    let scooter = &bench.scooter;
    c.bench_function("register_snapshot", |b| {
        b.iter(|| black_box(scooter.registers()))
    });

    let mut ride_bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 8));
    c.bench_function("physics_one_second", |b| {
        b.iter(|| ride_bench.scooter.step_physics(Duration::from_secs(1)))
    });
}

criterion_group!(sim, benches);
criterion_main!(sim);
