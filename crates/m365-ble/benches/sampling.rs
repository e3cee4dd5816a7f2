//! Telemetry samples per second through the in-process transport, on the simulator's link
//! timing model, at connection intervals of 15, 30 and 50 ms: pipelined (one batch per
//! sample, as `ScooterLink::sample` sends it) and sequential (each read waits for the previous
//! answer), next to the link limit the same model computes for each pattern.
//!
//! Time is tokio's paused clock, so the figures are simulated link time, not CPU time: they are
//! the same on every machine. Run with `cargo bench -p m365-ble --bench sampling`.
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use m365_ble::link::{LinkConfig, ScooterLink};
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::scanner::ScanFilter;
use m365_ble::telemetry;
use m365_sim::in_process::{InProcessTransport, SimScooter};
use m365_sim::link_timing::{self, FULL_SAMPLE, Pattern, link_limit};
use m365_sim::scooter::Processing;
use m365_sim::{Generation, Model, ScooterConfig};
use tokio::time::Instant;

const SAMPLES: u32 = 200;

async fn link_at(
    interval: Duration,
    cells: bool,
    dir: &std::path::Path,
) -> ScooterLink<InProcessTransport> {
    let mut config = ScooterConfig::new(Model::Pro2, 1);
    config.auto_press = Some(Duration::from_secs(1));
    config.link = Some(link_timing::with_interval(interval).expect("interval in range"));
    let sim = SimScooter::new(config).expect("scooter");
    let path = dir.join(format!(".mi-token-{}-{cells}", interval.as_millis()));
    let mut transport = InProcessTransport::new(vec![sim.clone()]);
    pairing::register(
        &mut transport,
        sim.address(),
        &PairingOptions::new(path.clone()),
        &mut |_| {},
    )
    .await
    .expect("registration");
    let mut link_config = LinkConfig::new(path);
    link_config.read_cells = cells;
    link_config.filter = ScanFilter {
        address: Some(sim.address()),
        ..ScanFilter::default()
    };
    ScooterLink::open(transport, link_config)
        .await
        .expect("link")
}

async fn rate(link: &mut ScooterLink<InProcessTransport>, cells: bool, pattern: Pattern) -> f64 {
    // One sample first, so every measured sample starts in the steady state.
    link.sample().await.expect("sample");
    let start = Instant::now();
    for _ in 0..SAMPLES {
        match pattern {
            Pattern::Pipelined => {
                link.sample().await.expect("sample");
            }
            Pattern::Sequential => {
                let mut answers = Vec::new();
                for read in telemetry::requests(cells) {
                    answers.extend(link.request(&[read]).await.expect("read"));
                }
                telemetry::decode(&answers).expect("decode");
            }
        }
    }
    f64::from(SAMPLES) / start.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("m365-ble-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!("samples/s, Mi-auth, 4 packets per connection event, simulated link time");
    println!(
        "{:>26} {:>9} | {:>9} {:>7} {:>6} | {:>10} {:>7} {:>6}",
        "sample", "interval", "pipelined", "limit", "ratio", "sequential", "limit", "ratio"
    );
    for (cells, name) in [
        (false, "0xB0 0x25 0x3A BMS 0x31"),
        (true, "same + BMS cells 0x40"),
    ] {
        let reads = if cells {
            &FULL_SAMPLE[..]
        } else {
            &FULL_SAMPLE[..4]
        };
        for ms in [15, 30, 50] {
            let interval = Duration::from_millis(ms);
            let timing = link_timing::with_interval(interval).expect("interval");
            let (pipe, seq) = runtime.block_on(async {
                let mut link = link_at(interval, cells, &dir).await;
                let pipe = rate(&mut link, cells, Pattern::Pipelined).await;
                let seq = rate(&mut link, cells, Pattern::Sequential).await;
                (pipe, seq)
            });
            let processing = Processing::default();
            let limit = |pattern| {
                link_limit(
                    &timing,
                    &processing,
                    Generation::MiAuth,
                    reads,
                    pattern,
                    SAMPLES,
                )
            };
            let (pipe_limit, seq_limit) = (limit(Pattern::Pipelined), limit(Pattern::Sequential));
            println!(
                "{:>26} {:>7}ms | {:>9.2} {:>7.2} {:>6.2} | {:>10.2} {:>7.2} {:>6.2}",
                name,
                ms,
                pipe,
                pipe_limit,
                pipe / pipe_limit,
                seq,
                seq_limit,
                seq / seq_limit
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
