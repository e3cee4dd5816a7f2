//! The reconnection timeline through the whole production path (btleplug → libdbus →
//! dbus-daemon → the fake BlueZ with BlueZ's defaults → a simulated Pro 2 with a real scooter's
//! defaults), on a link paced like a Pi's (30 ms connection interval, 4 packets per event):
//!
//! - a 2 s radio drop: time from the scooter being reachable again to the first new sample,
//!   with BlueZ's waiting connect, and for comparison with connects that fail at once (the
//!   harsher, older model);
//! - a power cycle (3 s off): time from the scooter being on again to the first new sample;
//! - a 60 s absence: time from the loss to `BleError::Lost` (exit code 75 in the daemon).
//!
//! Real clock, so figures vary by a few milliseconds between runs; the absence case takes a
//! minute. Runs in a re-executed process that has its private system bus from the start. Run
//! with `cargo bench -p m365-ble --bench reconnect`.
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use m365_ble::BleError;
use m365_ble::link::{LinkConfig, ScooterLink};
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::scanner::ScanFilter;
use m365_ble::transport::Transport as _;
use m365_ble::transport::btleplug::BtleplugTransport;
use m365_ble::{BdAddr, Counters};
use m365_fakebluez::isolation::reexec_with_private_bus;
use m365_fakebluez::{FakeBluez, FakeConfig, Harshness, LinkTiming};
use m365_sim::bluez::{DEFAULT_PHYSICS_TICK, ServedScooter};
use m365_sim::{Fault, Model, Scooter, ScooterConfig};
use tokio::time::Instant;

/// Drops measured per variant.
const DROPS: usize = 9;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn range(values: &[f64]) -> (f64, f64) {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

async fn register(served: &ServedScooter, path: PathBuf) -> LinkConfig {
    let address = BdAddr(served.with_scooter(|s| s.profile().address));
    let mut transport = BtleplugTransport::new().await.expect("transport");
    let mut options = PairingOptions::new(path.clone());
    options.retry_wait = Duration::from_secs(1);
    pairing::register(&mut transport, address, &options, &mut |_| {})
        .await
        .expect("registration");
    transport.disconnect().await.expect("disconnect");
    let mut config = LinkConfig::new(path);
    config.filter = ScanFilter {
        address: Some(address),
        ..ScanFilter::default()
    };
    config
}

/// How long after the scooter could be reached again the link was up, and the first new
/// sample read, for each of a series of interruptions.
#[derive(Default)]
struct Timeline {
    connected: Vec<f64>,
    sampled: Vec<f64>,
}

impl Timeline {
    /// Reads a sample through an interruption that `start` begins and that ends `down` later.
    async fn measure<F: Future<Output = ()>>(
        &mut self,
        served: &ServedScooter,
        link: &mut ScooterLink<BtleplugTransport>,
        down: Duration,
        start: F,
    ) {
        link.sample().await.expect("sample before the interruption");
        start.await;
        let reachable = Instant::now() + down;
        let control = served.control().clone();
        let up = tokio::spawn(async move {
            while !control.is_connected() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Instant::now()
        });
        link.sample().await.expect("sample after the interruption");
        let up = up.await.expect("watcher");
        self.connected
            .push(ms(up.saturating_duration_since(reachable)));
        self.sampled
            .push(ms(Instant::now().saturating_duration_since(reachable)));
        // Let the link settle between interruptions.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    fn report(&self, name: &str, logins: u64) {
        let (min, max) = range(&self.sampled);
        println!(
            "{name:<36} link up {:>5.0} ms | first sample median {:>5.0} ms (min {:>5.0}, max {:>5.0}) | new logins {logins}/{}",
            median(self.connected.clone()),
            median(self.sampled.clone()),
            min,
            max,
            self.sampled.len()
        );
    }
}

async fn run(bus: &m365_fakebluez::PrivateBus) {
    let config = FakeConfig {
        link_timing: LinkTiming::paced(Duration::from_millis(30), 4),
        ..FakeConfig::default()
    };
    let fake = FakeBluez::start_with(bus.address(), config)
        .await
        .expect("fake BlueZ");
    let mut scooter = ScooterConfig::new(Model::Pro2, 7);
    scooter.auto_press = Some(Duration::from_millis(500));
    // The fake paces the link; the scooter adds the controllers' processing time.
    scooter.link = None;
    let served = ServedScooter::start(
        &fake,
        Scooter::new(scooter).expect("scooter"),
        DEFAULT_PHYSICS_TICK,
    )
    .expect("served");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = register(&served, dir.path().join(".mi-token")).await;

    let opened = Instant::now();
    let transport = BtleplugTransport::new().await.expect("transport");
    let mut link = ScooterLink::open(transport, config.clone())
        .await
        .expect("link");
    let open = opened.elapsed();
    let sampled = Instant::now();
    for _ in 0..20 {
        link.sample().await.expect("sample");
    }
    let sample = sampled.elapsed() / 20;
    println!("Mi-auth Pro 2, BlueZ defaults, 30 ms connection interval, 4 packets per event");
    println!(
        "{:<44} {:>7.0} ms",
        "open (scan, connect, GATT, login)",
        ms(open)
    );
    println!("{:<44} {:>7.0} ms", "one full sample (5 reads)", ms(sample));

    println!("times from the scooter being reachable again:");
    let down = Duration::from_secs(2);
    for (name, harshness) in [
        ("2 s drop, BlueZ's waiting connect", Harshness::default()),
        (
            "2 s drop, connects failing at once",
            Harshness {
                fail_at_once: true,
                remove_gatt: true,
            },
        ),
    ] {
        let logins = served.counters().logins;
        let mut timeline = Timeline::default();
        for _ in 0..DROPS {
            let drop = served.drop_link_with(down, harshness);
            timeline.measure(&served, &mut link, down, drop).await;
        }
        timeline.report(name, served.counters().logins - logins);
    }

    let logins = served.counters().logins;
    let mut timeline = Timeline::default();
    let off = Duration::from_secs(3);
    for _ in 0..3 {
        let cycle = served.apply_fault(Fault::PowerCycle { off_for: off });
        timeline.measure(&served, &mut link, off, cycle).await;
    }
    timeline.report("power cycle, 3 s off", served.counters().logins - logins);

    let before: Counters = link.counters();
    served
        .apply_fault(Fault::OutOfRange {
            for_: Duration::from_secs(600),
        })
        .await;
    let lost = Instant::now();
    match link.sample().await {
        Err(BleError::Lost { window, .. }) => {
            let after = link.counters();
            println!(
                "{:<44} {:>7.0} ms   (window {:?}, {} connect attempts, {} BlueZ connect timeouts)",
                "absence: loss to BleError::Lost (exit 75)",
                ms(lost.elapsed()),
                window,
                after.connect_attempts - before.connect_attempts,
                served.control().counters().connect_timeouts
            );
        }
        other => println!("absence: unexpected outcome {other:?}"),
    }
}

fn main() {
    // First thing: libdbus must see the private bus from the start of the process.
    let bus = reexec_with_private_bus().expect("private bus (dbus-daemon installed?)");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(&bus));
}
