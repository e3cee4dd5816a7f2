//! The reconnection policy end to end through the in-process transport, on tokio's paused
//! clock, against scooters and a radio that behave like real ones: a connect waits for a
//! scooter it cannot hear (as BlueZ's does) and succeeds the moment it is back, every
//! reconnect logs in again (real scooters drop the session on disconnect, §3.7), a scooter
//! gone past the window or never found ends with its own error no later than the window, and
//! a stale BlueZ connection is removed and recovered from. Session reuse, for scooters that
//! keep their session, is opt-in and never strands the link: a scooter that drops its session
//! costs one short probe and one login, then reuse is no longer tried.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::tamper::{Tampered, control, pass_events};
use common::*;
use m365_ble::BleError;
use m365_ble::link::ScooterLink;
use m365_ble::reconnect::{GiveUp, Phase};
use m365_proto::gatt::Char;
use m365_sim::in_process::{InProcessTransport, SimScooter};
use m365_sim::{Fault, Model, ScooterConfig};
use tokio::time::Instant;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[tokio::test(start_paused = true)]
async fn a_two_second_drop_logs_in_again_the_moment_the_scooter_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(21);
    let mut link = online(&sim, dir.path()).await;
    link.sample().await.unwrap();
    let before = sim.counters();
    sim.drop_link(secs(2));
    let t0 = Instant::now();
    let sample = link.sample().await.unwrap();
    let waited = t0.elapsed();
    assert!(waited >= secs(2), "could not be back before the radio");
    // The connect waited for the scooter and got it at once; the login and the sample take a
    // few connection events.
    assert!(waited < secs(3), "{waited:?}");
    assert!(sample.battery.percent <= 100);
    let after = sim.counters();
    assert_eq!(after.logins, before.logins + 1, "a new login (§3.7)");
    let c = link.counters();
    assert_eq!((c.link_losses, c.sessions_reused), (1, 0));
    assert_eq!(
        c.connect_attempts, c.connects,
        "the connect waited instead of failing"
    );
    assert!(matches!(link.phase(), Phase::Online { .. }));
    for _ in 0..5 {
        link.sample().await.unwrap();
    }
    assert_eq!(sim.counters().rejected_frames, 0);
}

#[tokio::test(start_paused = true)]
async fn a_ten_second_drop_logs_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(22);
    let mut link = online(&sim, dir.path()).await;
    link.sample().await.unwrap();
    sim.drop_link(secs(10));
    link.sample().await.unwrap();
    assert_eq!(
        sim.counters().logins,
        2,
        "a fresh login after the reuse time"
    );
    let c = link.counters();
    assert_eq!((c.link_losses, c.sessions_reused, c.logins), (1, 0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_reused_session_the_scooter_forgot_falls_back_to_login() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScooterConfig::new(Model::Pro2, 23);
    config.auto_press = Some(secs(1));
    config.session_grace = secs(1);
    let sim = SimScooter::new(config).unwrap();
    let token = registered(&sim, dir.path()).await;
    let mut config = common::config(&sim, token);
    config.reconnect.session_reuse = secs(5);
    let mut link = ScooterLink::open(InProcessTransport::new(vec![sim.clone()]), config)
        .await
        .unwrap();
    sim.drop_link(secs(2));
    link.sample().await.unwrap();
    assert_eq!(sim.counters().logins, 2);
    let c = link.counters();
    assert_eq!(c.sessions_reused, 1, "reuse was tried first");
    link.sample().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn out_of_range_past_the_window_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(24);
    let token = registered(&sim, dir.path()).await;
    let mut config = config(&sim, token);
    config.reconnect.reconnect_window = secs(10);
    let mut link = ScooterLink::open(InProcessTransport::new(vec![sim.clone()]), config)
        .await
        .unwrap();
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::OutOfRange { for_: secs(120) }));
    let t0 = Instant::now();
    let err = link.sample().await.unwrap_err();
    let waited = t0.elapsed();
    assert!(
        matches!(err, BleError::Lost { window, .. } if window == secs(10)),
        "{err}"
    );
    assert!(waited >= secs(10) && waited < secs(12), "{waited:?}");
    assert_eq!(link.phase(), Phase::GaveUp(GiveUp::Lost));
    assert!(!err.needs_pairing());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_connect_counts_against_the_default_window() {
    // BlueZ waits up to ~25 s for a scooter it cannot hear; those waits are part of the
    // 60 s window, and the give-up comes with the window, not a connect timeout later.
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(33);
    let mut link = online(&sim, dir.path()).await;
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::OutOfRange { for_: secs(300) }));
    let t0 = Instant::now();
    let err = link.sample().await.unwrap_err();
    let waited = t0.elapsed();
    assert!(matches!(err, BleError::Lost { .. }), "{err}");
    assert!(waited >= secs(60), "{waited:?}");
    assert!(waited <= secs(61), "{waited:?}");
    let c = link.counters();
    assert!(
        c.connect_attempts <= 4,
        "long waits, not a hammering loop: {c:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn out_of_range_within_the_window_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(25);
    let mut link = online(&sim, dir.path()).await;
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::OutOfRange { for_: secs(20) }));
    link.sample().await.unwrap();
    assert_eq!(sim.counters().logins, 2, "the scooter dropped the session");
}

#[tokio::test(start_paused = true)]
async fn a_scooter_that_never_shows_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(26);
    let mut config = config(&sim, dir.path().join(".mi-token"));
    config.filter.address = Some("00:11:22:33:44:55".parse().unwrap());
    config.reconnect.scan_timeout = secs(7);
    let t0 = Instant::now();
    let err = ScooterLink::open(InProcessTransport::new(vec![sim]), config)
        .await
        .unwrap_err();
    assert!(
        matches!(err, BleError::NotFound { timeout, .. } if timeout == secs(7)),
        "{err}"
    );
    assert_eq!(t0.elapsed(), secs(7));
    assert!(err.to_string().contains("00:11:22:33:44:55"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_stale_in_progress_is_removed_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(27);
    let mut link = online(&sim, dir.path()).await;
    sim.stale_in_progress();
    sim.drop_link(Duration::ZERO);
    link.sample().await.unwrap();
    let c = link.counters();
    assert_eq!(c.stale_removed, 1);
    assert_eq!(c.logins, 2, "recovered, with a new login");
}

#[tokio::test(start_paused = true)]
async fn a_link_that_stops_answering_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let sim = pro2(28);
    let mut link = online(&sim, dir.path()).await;
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::MuteUart));
    assert!(matches!(link.sample().await, Err(BleError::Timeout { .. })));
    assert_eq!(
        link.counters().link_losses,
        0,
        "one silent sample may be bad luck"
    );
    assert!(matches!(link.sample().await, Err(BleError::Timeout { .. })));
    assert_eq!(
        link.counters().link_losses,
        1,
        "two in a row: the link is rebuilt"
    );
    sim.with(|s| s.apply_fault(SimScooter::now(), Fault::ClearAll));
    link.sample().await.unwrap();
    assert_eq!(
        sim.counters().connects,
        3,
        "registration, first link, rebuilt link"
    );
}

/// A Pro 2 that keeps its session `grace` after a disconnect (zero: Xiaomi's library, §3.7),
/// with an open link that tries to reuse sessions and retries reconnects every ~100 ms.
async fn with_grace(
    grace: Duration,
    seed: u64,
    dir: &std::path::Path,
) -> (SimScooter, ScooterLink<InProcessTransport>) {
    let mut config = ScooterConfig::new(Model::Pro2, seed);
    config.auto_press = Some(secs(1));
    config.session_grace = grace;
    let sim = SimScooter::new(config).unwrap();
    let token = registered(&sim, dir).await;
    let mut config = common::config(&sim, token);
    config.reconnect.backoff_min = Duration::from_millis(100);
    config.reconnect.backoff_max = Duration::from_millis(100);
    config.reconnect.session_reuse = secs(5);
    let link = ScooterLink::open(InProcessTransport::new(vec![sim.clone()]), config)
        .await
        .unwrap();
    (sim, link)
}

#[tokio::test(start_paused = true)]
async fn a_scooter_that_drops_the_session_costs_one_prompt_login() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut link) = with_grace(Duration::ZERO, 29, dir.path()).await;
    link.sample().await.unwrap();
    let probe = link_probe();
    sim.drop_link(secs(2));
    let t0 = Instant::now();
    link.sample().await.unwrap();
    let waited = t0.elapsed();
    assert_eq!(sim.counters().logins, 2, "one extra login");
    let c = link.counters();
    assert_eq!((c.sessions_reused, c.logins), (1, 2), "{c:?}");
    // Back after 2 s; the reuse was given up after the probe, not after request timeouts.
    let bound = secs(2) + probe + Duration::from_millis(500);
    assert!(waited < bound, "{waited:?} (probe {probe:?})");
    for _ in 0..5 {
        link.sample().await.unwrap();
    }
    // The scooter showed it drops sessions: the next reconnect logs in without trying.
    sim.drop_link(secs(1));
    link.sample().await.unwrap();
    let c = link.counters();
    assert_eq!(
        (c.link_losses, c.sessions_reused, c.logins),
        (2, 1, 3),
        "{c:?}"
    );
    assert_eq!(sim.counters().logins, 3);
    assert_eq!(c.timeouts, 0, "the failed probe is not a lost request");
}

#[tokio::test(start_paused = true)]
async fn a_scooter_that_keeps_the_session_keeps_being_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut link) = with_grace(secs(5), 30, dir.path()).await;
    for _ in 0..3 {
        link.sample().await.unwrap();
        sim.drop_link(secs(1));
        link.sample().await.unwrap();
    }
    let c = link.counters();
    assert_eq!(
        (c.link_losses, c.sessions_reused, c.logins),
        (3, 3, 1),
        "{c:?}"
    );
    assert_eq!(sim.counters().logins, 1, "no extra login");
    assert_eq!(sim.counters().rejected_frames, 0);
}

/// How long a sample takes across a 1 s drop of a scooter that drops its session, when the
/// first UART frame on the new connection is answered with `E0` on UPNP (`e0`) or not at all.
async fn back_after_a_drop(e0: bool, seed: u64) -> (Duration, u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ScooterConfig::new(Model::Pro2, seed);
    config.auto_press = Some(secs(1));
    config.session_grace = Duration::ZERO;
    let sim = SimScooter::new(config).unwrap();
    let token = registered(&sim, dir.path()).await;
    let mut transport = Tampered::new(
        InProcessTransport::new(vec![sim.clone()]),
        Box::new(|_, _| (true, vec![])),
        pass_events(),
    );
    let connects = transport.connects();
    let armed_at = Arc::new(AtomicU32::new(u32::MAX));
    let armed = armed_at.clone();
    transport.set_write_hook(Box::new(move |char, _| {
        let after_arming = connects.load(Ordering::SeqCst) > armed.load(Ordering::SeqCst);
        if e0 && char == Char::UartWrite && after_arming {
            armed.store(u32::MAX, Ordering::SeqCst);
            (true, vec![control(0xE0)])
        } else {
            (true, vec![])
        }
    }));
    let connects = transport.connects();
    let mut config = common::config(&sim, token);
    config.reconnect.backoff_min = Duration::from_millis(100);
    config.reconnect.backoff_max = Duration::from_millis(100);
    config.reconnect.session_reuse = secs(5);
    let mut link = ScooterLink::open(transport, config).await.unwrap();
    link.sample().await.unwrap();
    sim.drop_link(secs(1));
    armed_at.store(connects.load(Ordering::SeqCst), Ordering::SeqCst);
    let t0 = Instant::now();
    link.sample().await.unwrap();
    assert_eq!(link.counters().sessions_reused, 1);
    (t0.elapsed(), sim.counters().logins)
}

#[tokio::test(start_paused = true)]
async fn a_login_required_signal_on_a_reused_session_logs_in_at_once() {
    let (probed, logins) = back_after_a_drop(false, 31).await;
    assert_eq!(logins, 2);
    let (signalled, logins) = back_after_a_drop(true, 32).await;
    assert_eq!(logins, 2, "logged in again");
    // Without the signal the probe ran out first; with it, no waiting. The reconnect itself
    // lands anywhere within one back-off step (~100 ms) after the drop ends.
    let probe = link_probe();
    assert!(
        signalled + probe / 2 < probed,
        "E0 {signalled:?}, silence {probed:?}"
    );
}

fn link_probe() -> Duration {
    m365_ble::reconnect::ReconnectConfig::default().session_probe
}
