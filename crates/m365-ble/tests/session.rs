//! The session through the in-process transport on tokio's paused clock: every generation
//! reads a full sample with real values, 10,000 requests run without a desync, corrupted
//! notifications are rejected and counted without ending the session, writes are confirmed
//! (acknowledged or not), answers that differ from the request in RW or length are used, and
//! retries never reuse a counter.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::tamper::{Tampered, pass_events, pass_writes, rewrite_plain_frames};
use common::*;
use m365_ble::link::ScooterLink;
use m365_proto::gatt::Char;
use m365_proto::registers::esc;
use m365_proto::registers::settings::KersLevel;
use m365_proto::registers::write::WriteMode;
use m365_sim::in_process::{InProcessTransport, SimScooter};
use m365_sim::{Fault, Generation, Model};
use tokio::time::Instant;

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
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::CorruptBytes { percent: 5 }));
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
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::ClearAll));
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

/// A plain scooter whose UART answers go through `rewrite`, with an open link.
async fn plain_rewritten(
    seed: u64,
    rewrite: impl FnMut(m365_proto::frame::Frame) -> Vec<m365_proto::frame::Frame> + Send + 'static,
    dir: &std::path::Path,
) -> (SimScooter, ScooterLink<Tampered<InProcessTransport>>) {
    let sim = scooter(Model::M365, Generation::Plain, seed);
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        pass_writes(),
        rewrite_plain_frames(rewrite),
    );
    let link = ScooterLink::open(transport, config(&sim, dir.join("unused")))
        .await
        .unwrap();
    (sim, link)
}

#[tokio::test(start_paused = true)]
async fn answers_with_rw_02_or_another_length_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut link) = plain_rewritten(
        31,
        |mut frame| {
            match frame.attr {
                // Range answered with RW 0x02 (§5.3: one source client accepts both).
                0x25 => frame.rw = 0x02,
                // Motor info with two bytes more than asked.
                0xB0 => frame.payload.extend([0, 0]),
                // Cells with fewer bytes than asked: eight cells.
                0x40 => frame.payload.truncate(16),
                _ => {}
            }
            vec![frame]
        },
        dir.path(),
    )
    .await;
    let t0 = Instant::now();
    let sample = link.sample().await.unwrap();
    assert!(
        t0.elapsed() < link_config_timeout(),
        "answered in the first round"
    );
    let truth = sim.with(|s| s.ride().odometer_m());
    assert!((f64::from(sample.motor.total_distance_m) - truth).abs() < 50.0);
    assert!(sample.range_km > 0.0);
    let cells = sample.cells.unwrap();
    assert_eq!(cells.count(), 8, "{cells:?}");
    let c = link.counters();
    assert_eq!((c.retries, c.timeouts, c.unrelated_frames), (0, 0, 0));
    assert_eq!(c.answers, 5);
}

fn link_config_timeout() -> Duration {
    m365_ble::session::ExchangeConfig::default().request_timeout
}

#[tokio::test(start_paused = true)]
async fn a_write_ack_never_passes_as_register_data() {
    let dir = tempfile::tempdir().unwrap();
    // Before each range answer, a one-byte acknowledgement for the same register, once with
    // RW 0x02 and once with RW 0x01: neither is register data.
    let (_sim, mut link) = plain_rewritten(
        32,
        |frame| {
            if frame.attr == 0x25 {
                let ack = m365_proto::frame::Frame::new(0x23, 0x02, 0x25, vec![1]).unwrap();
                let mut short = ack.clone();
                short.rw = 0x01;
                vec![ack, short, frame]
            } else {
                vec![frame]
            }
        },
        dir.path(),
    )
    .await;
    for _ in 0..3 {
        let sample = link.sample().await.unwrap();
        assert!(sample.range_km > 0.0);
    }
    let c = link.counters();
    assert_eq!(c.unrelated_frames, 6, "{c:?}");
    assert_eq!((c.retries, c.timeouts), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn retried_requests_carry_fresh_counters() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(33);
    let mut link = online(&sim, dir.path()).await;
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::DropNotifications { percent: 10 }));
    let mut ok = 0;
    for _ in 0..50 {
        if link.sample().await.is_ok() {
            ok += 1;
        }
    }
    let c = link.counters();
    assert!(c.retries > 0, "{c:?}");
    assert!(ok >= 40, "{ok} of 50");
    // The scooter drops a frame whose counter is not newer than the last (§4.6.6): every
    // retry was encrypted again with the next counter, so none was dropped.
    assert_eq!(sim.counters().rejected_frames, 0);
    assert_eq!(
        sim.counters().reads,
        c.frames_sent,
        "every frame sent, retries included, was accepted"
    );
}

#[tokio::test(start_paused = true)]
async fn acknowledged_writes_fall_back_to_the_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let sim = scooter(Model::M365, Generation::Plain, 34);
    let drop_acks = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dropping = drop_acks.clone();
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        pass_writes(),
        rewrite_plain_frames(move |frame| {
            if frame.rw == 0x02 && dropping.load(std::sync::atomic::Ordering::SeqCst) {
                vec![]
            } else {
                vec![frame]
            }
        }),
    );
    let mut config = config(&sim, dir.path().join("unused"));
    config.write_mode = WriteMode::Ack;
    let mut link = ScooterLink::open(transport, config).await.unwrap();
    // Acknowledged: the ack is matched, the read-back confirms.
    link.set_cruise(true).await.unwrap();
    assert!(sim.with(|s| s.ride().cruise()));
    let answers = link.counters().answers;
    assert_eq!(answers, 2, "the ack and the read-back");
    // No acknowledgement: after about a second the read-back decides, no retry, no error.
    drop_acks.store(true, std::sync::atomic::Ordering::SeqCst);
    let t0 = Instant::now();
    link.set_kers(KersLevel::Strong).await.unwrap();
    let waited = t0.elapsed();
    assert_eq!(sim.with(|s| s.ride().kers()), 2);
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1_500),
        "{waited:?}"
    );
    let c = link.counters();
    assert_eq!((c.retries, c.timeouts), (0, 0), "{c:?}");
    assert_eq!(sim.counters().writes, 2, "each write sent once");
}

#[tokio::test(start_paused = true)]
async fn a_write_the_read_back_does_not_show_is_sent_once_more() {
    let dir = tempfile::tempdir().unwrap();
    let sim = scooter(Model::M365, Generation::Plain, 35);
    let mut swallowed = 0;
    // The first write of cruise control is lost on the way.
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        Box::new(move |char, data| {
            let cruise_write = char == Char::UartWrite
                && m365_proto::frame::Frame::decode(data)
                    .is_ok_and(|f| f.rw == 0x03 && f.attr == 0x7C);
            if cruise_write && swallowed == 0 {
                swallowed += 1;
                (false, vec![])
            } else {
                (true, vec![])
            }
        }),
        pass_events(),
    );
    let mut link = ScooterLink::open(transport, config(&sim, dir.path().join("unused")))
        .await
        .unwrap();
    link.set_cruise(true).await.unwrap();
    assert!(sim.with(|s| s.ride().cruise()));
    assert_eq!(sim.counters().writes, 1, "the repeated write arrived");
}

#[tokio::test(start_paused = true)]
async fn a_session_the_scooter_refuses_is_replaced_by_a_fresh_login() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(36);
    let token = registered(&sim, dir.path()).await;
    // Once armed, the next UART frame is answered with `E0` on UPNP, as if the scooter had
    // lost the session.
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trigger = armed.clone();
    let transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        Box::new(move |char, _| {
            let fire =
                char == Char::UartWrite && trigger.swap(false, std::sync::atomic::Ordering::SeqCst);
            (
                true,
                if fire {
                    vec![common::tamper::control(0xE0)]
                } else {
                    vec![]
                },
            )
        }),
        pass_events(),
    );
    let mut link = ScooterLink::open(transport, config(&sim, token))
        .await
        .unwrap();
    link.sample().await.unwrap();
    armed.store(true, std::sync::atomic::Ordering::SeqCst);
    link.sample().await.unwrap();
    assert_eq!(sim.counters().logins, 2, "logged in again");
    // The simulator still holds the session, so it answers the login on the same connection
    // with `E2`, and the login is made on a new connection (§11a Q9).
    let c = link.counters();
    assert_eq!((c.logins, c.link_losses, c.timeouts), (2, 1, 0), "{c:?}");
    for _ in 0..5 {
        link.sample().await.unwrap();
    }
}
