//! The session through the in-process transport on tokio's paused clock: every generation
//! reads a full sample with real values, 10,000 requests run without a desync, corrupted
//! notifications are rejected and counted without ending the session, writes are confirmed.

mod common;

use common::*;
use m365_ble::link::ScooterLink;
use m365_ble::transport::in_process::InProcessTransport;
use m365_proto::registers::esc;
use m365_proto::registers::settings::KersLevel;
use m365_sim::{Fault, Generation, Model};

#[tokio::test(start_paused = true)]
async fn every_generation_reads_a_full_sample() {
    for (generation, seed) in [
        (Generation::MiAuth, 11),
        (Generation::Xor, 12),
        (Generation::Plain, 13),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let model = if generation == Generation::MiAuth {
            Model::Pro2
        } else {
            Model::M365
        };
        let sim = scooter(model, generation, seed);
        let mut link = if generation == Generation::MiAuth {
            online(&sim, dir.path()).await
        } else {
            // No pairing: the token file is never read.
            ScooterLink::open(
                InProcessTransport::new(vec![sim.clone()]),
                config(&sim, dir.path().join("unused")),
            )
            .await
            .unwrap()
        };
        assert_eq!(link.generation(), Some(generation));
        let sample = link.sample().await.unwrap();
        let truth = sim.with(|s| s.ride().odometer_m());
        assert!(
            (f64::from(sample.motor.total_distance_m) - truth).abs() < 50.0,
            "{generation:?}: odometer {} vs {truth}",
            sample.motor.total_distance_m
        );
        let cells = sample.cells.as_ref().unwrap();
        assert_eq!(cells.count(), 10, "{generation:?}");
        let sum: f64 = cells.volts().sum();
        assert!(
            (sum - sample.battery.voltage_v).abs() < 0.5,
            "{generation:?}: cells {sum} vs pack {}",
            sample.battery.voltage_v
        );
        assert!(sample.range_km > 0.0);
        assert_eq!(link.counters().samples, 1);
        assert_eq!(link.counters().rejected_frames, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_requests_without_a_desync() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(14);
    let mut link = online(&sim, dir.path()).await;
    let reads_before = sim.counters().reads;
    for _ in 0..2_000 {
        // Five pipelined reads per sample.
        let sample = link.sample().await.unwrap();
        assert!(sample.battery.percent <= 100);
    }
    let c = link.counters();
    assert_eq!(sim.counters().reads - reads_before, 10_000);
    assert_eq!(c.answers, 10_000);
    assert_eq!(c.frames_sent, 10_000);
    assert_eq!((c.retries, c.timeouts), (0, 0));
    assert_eq!((c.rejected_frames, c.unrelated_frames), (0, 0));
    assert_eq!(sim.counters().logins, 1, "one session throughout");
    assert_eq!(sim.counters().rejected_frames, 0, "every counter was fresh");
}

#[tokio::test(start_paused = true)]
async fn corrupted_notifications_are_rejected_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(15);
    let mut link = online(&sim, dir.path()).await;
    sim.with(|s| {
        s.apply_fault(
            m365_ble::transport::in_process::SimScooter::now(),
            Fault::CorruptBytes { percent: 5 },
        )
    });
    let mut ok = 0;
    for _ in 0..100 {
        if link.sample().await.is_ok() {
            ok += 1;
        }
    }
    let c = link.counters();
    assert!(sim.counters().notifications_corrupted > 0);
    assert!(c.rejected_frames > 0, "{c:?}");
    assert!(c.retries > 0, "lost answers were asked again: {c:?}");
    assert!(ok >= 95, "the session continued: {ok} of 100 samples");
    assert_eq!(sim.counters().logins, 1, "no new login needed");
    // After the fault clears, every sample works.
    sim.with(|s| {
        s.apply_fault(
            m365_ble::transport::in_process::SimScooter::now(),
            Fault::ClearAll,
        )
    });
    for _ in 0..10 {
        link.sample().await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn writes_are_confirmed_by_reading_back() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(16);
    let mut link = online(&sim, dir.path()).await;
    link.set_locked(true).await.unwrap();
    assert!(sim.with(|s| s.ride().locked()));
    link.set_locked(false).await.unwrap();
    assert!(!sim.with(|s| s.ride().locked()));
    link.set_cruise(true).await.unwrap();
    assert!(sim.with(|s| s.ride().cruise()));
    link.set_kers(KersLevel::Strong).await.unwrap();
    assert_eq!(sim.with(|s| s.ride().kers()), 2);
    link.set_tail_light(true).await.unwrap();
    link.set_tail_light(false).await.unwrap();
    let answers = link.request(&[esc::read_settings()]).await.unwrap();
    let settings = m365_proto::registers::settings::Settings::decode(&answers[0]).unwrap();
    assert!(!settings.tail_light.always_on());
    assert!(settings.cruise);
}

#[tokio::test(start_paused = true)]
async fn info_reads_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(17);
    let mut link = online(&sim, dir.path()).await;
    let info = link.info().await.unwrap();
    let profile = sim.with(|s| s.profile().clone());
    assert_eq!(info.serial, profile.esc_serial_str());
    assert_eq!(info.esc_version.0, profile.firmware.esc);
    assert_eq!(info.ble_version.0, profile.firmware.ble);
    assert_eq!(info.design_capacity_mah, profile.battery.design_mah);
    assert_eq!(info.cells.count(), usize::from(profile.battery.cells));
    assert!(info.health_percent <= 100);
}
