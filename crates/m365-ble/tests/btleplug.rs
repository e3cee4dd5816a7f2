//! The whole BLE stack through btleplug, D-Bus and the fake BlueZ, with simulated scooters
//! plugged into it (`m365_sim::bluez`). Each test runs in its own process with its own private
//! bus (`isolated_bus`), because libdbus reads the bus address once per process.
//!
//! The fake runs with BlueZ's defaults (a connect waits for a scooter it cannot hear, devices
//! nobody hears are forgotten, GATT objects are kept across a drop) and the scooters with a
//! real scooter's (an empty notification after every frame of 20, 40, … bytes, no session
//! after a disconnect).
//!
//! These use the real clock (the fake BlueZ is a separate set of tasks answering D-Bus), so
//! they stay short; the long runs and the timer arithmetic are in the in-process tests.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use m365_ble::BleError;
use m365_ble::link::{LinkConfig, ScooterLink};
use m365_ble::pairing::{self, PairingOptions};
use m365_ble::scanner::{ScanFilter, Scanner};
use m365_ble::transport::btleplug::{BtleplugSession, BtleplugTransport};
use m365_ble::{BdAddr, Transport as _};
use m365_fakebluez::isolation::isolated_bus;
use m365_fakebluez::{BluezAddress, FakeBluez, FakeConfig, HeartRateMonitor, PrivateBus};
use m365_sim::bluez::{DEFAULT_PHYSICS_TICK, ServedScooter};
use m365_sim::{Fault, Generation, Model, Scooter, ScooterConfig};
use tokio::time::Instant;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn fake(bus: &PrivateBus) -> FakeBluez {
    FakeBluez::start(bus.address()).await.expect("fake BlueZ")
}

/// A fake BlueZ whose temporary timeout and connect timeout are short, so a scooter BlueZ
/// forgets can be watched in a short test.
async fn forgetful_fake(bus: &PrivateBus) -> FakeBluez {
    let config = FakeConfig {
        temporary_timeout: Duration::from_millis(1_500),
        connect_timeout: Duration::from_secs(2),
        ..FakeConfig::default()
    };
    FakeBluez::start_with(bus.address(), config)
        .await
        .expect("fake BlueZ")
}

fn serve(fake: &FakeBluez, model: Model, generation: Generation, seed: u64) -> ServedScooter {
    let mut config = ScooterConfig::new(model, seed).with_generation(generation);
    config.auto_press = Some(secs(1));
    // Answers leave at once: these tests are about behaviour, the benchmark is about timing.
    config.link = None;
    let scooter = Scooter::new(config).expect("scooter");
    ServedScooter::start(fake, scooter, DEFAULT_PHYSICS_TICK).expect("served")
}

fn address(served: &ServedScooter) -> BdAddr {
    BdAddr(served.with_scooter(|s| s.profile().address))
}

async fn register(served: &ServedScooter, dir: &Path) -> PathBuf {
    let path = dir.join(".mi-token");
    let mut transport = BtleplugTransport::new().await.expect("transport");
    let mut options = PairingOptions::new(path.clone());
    options.retry_wait = secs(1);
    pairing::register(&mut transport, address(served), &options, &mut |_| {})
        .await
        .expect("registration");
    transport.disconnect().await.expect("disconnect");
    path
}

fn config(served: &ServedScooter, token: PathBuf) -> LinkConfig {
    let mut config = LinkConfig::new(token);
    config.filter = ScanFilter {
        address: Some(address(served)),
        ..ScanFilter::default()
    };
    config.reconnect.scan_timeout = secs(20);
    config
}

async fn online(served: &ServedScooter, dir: &Path) -> ScooterLink<BtleplugTransport> {
    let token = register(served, dir).await;
    let transport = BtleplugTransport::new().await.expect("transport");
    ScooterLink::open(transport, config(served, token))
        .await
        .expect("link")
}

#[tokio::test]
async fn scan_finds_the_scooters_and_ignores_other_devices() {
    let Some(bus) = isolated_bus("scan_finds_the_scooters_and_ignores_other_devices") else {
        return;
    };
    let fake = fake(&bus).await;
    let scooters: Vec<ServedScooter> = [(Model::Pro2, 1), (Model::OneS, 2), (Model::Lite, 3)]
        .into_iter()
        .map(|(model, seed)| serve(&fake, model, Generation::MiAuth, seed))
        .collect();
    fake.add_peripheral(HeartRateMonitor::new(
        BluezAddress::new([0xC0, 0xFF, 0xEE, 0, 0, 1]),
        70,
    ))
    .unwrap();
    let wanted: BTreeSet<BdAddr> = scooters.iter().map(address).collect();

    let mut transport = BtleplugTransport::new().await.unwrap();
    let mut scanner = Scanner::start(&mut transport, ScanFilter::default())
        .await
        .unwrap();
    let deadline = Instant::now() + secs(10);
    let mut found = BTreeSet::new();
    let mut complete = BTreeSet::new();
    // BlueZ may announce a device before its advertising data is complete: keep listening
    // until every scooter was seen with its manufacturer data.
    while complete.len() < wanted.len() {
        let Some(d) = scanner.next(deadline).await.unwrap() else {
            break;
        };
        assert!(d.name.as_deref().unwrap_or("").starts_with("MIScooter"));
        found.insert(d.address);
        if d.generation.is_some() {
            assert_eq!(
                d.generation,
                Some(m365_proto::model::Detected::Generation(Generation::MiAuth))
            );
            complete.insert(d.address);
        }
    }
    assert_eq!(found, wanted, "the heart-rate monitor is not a scooter");
    assert_eq!(complete, wanted);
    let models: BTreeSet<String> = scanner
        .seen()
        .filter_map(|d| d.model.map(|m| m.to_string()))
        .collect();
    assert!(models.contains("Pro 2"), "{models:?}");
    scanner.stop().await.unwrap();
}

#[tokio::test]
async fn registered_token_logs_in_and_reads_samples_without_desync() {
    let Some(bus) = isolated_bus("registered_token_logs_in_and_reads_samples_without_desync")
    else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut link = online(&served, dir.path()).await;
    for _ in 0..200 {
        let sample = link.sample().await.unwrap();
        assert_eq!(sample.cells.as_ref().map(|c| c.count()), Some(10));
    }
    let c = link.counters();
    assert_eq!(c.answers, 1_000);
    assert_eq!((c.retries, c.timeouts, c.rejected_frames), (0, 0, 0));
    // Each sample's range answer is 20 bytes on the wire: its empty terminator came through
    // BlueZ and btleplug and was counted, not taken for anything.
    assert!(c.empty_notifications >= 200, "{c:?}");
    assert_eq!(c.unrelated_frames, 0);
    assert_eq!(served.counters().logins, 1);
    assert_eq!(served.counters().registrations, 1);
    // The UART went through BlueZ's sockets (AcquireNotify/AcquireWrite), not one D-Bus
    // message per request and notification: only the login used WriteValue.
    let bluez = served.control().counters();
    // Once per connection: registration, then login.
    let per_connection = bluez.successful_connects;
    assert_eq!(
        (bluez.acquire_notify, bluez.acquire_write),
        (per_connection, per_connection),
        "{bluez:?}"
    );
    assert!(bluez.socket_writes >= 1_000, "{bluez:?}");
    assert!(bluez.socket_notifications >= 1_200, "{bluez:?}");
    assert!(bluez.writes < 50, "{bluez:?}");
    let info = link.info().await.unwrap();
    assert_eq!(
        info.serial,
        served.with_scooter(|s| s.profile().esc_serial_str())
    );
}

#[tokio::test]
async fn a_loss_bluez_has_not_reported_yet_is_found_by_asking_it() {
    let Some(bus) = isolated_bus("a_loss_bluez_has_not_reported_yet_is_found_by_asking_it") else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 40);
    let dir = tempfile::tempdir().unwrap();
    let mut link = online(&served, dir.path()).await;
    link.sample().await.unwrap();
    assert!(link.verify_online().await, "up and answering");
    // The link drops; nothing has read the transport's events since, so only asking BlueZ
    // can tell.
    served.control().drop_link(secs(1)).await;
    assert!(
        link.is_online(),
        "the loss is not known from the events yet"
    );
    assert!(!link.verify_online().await);
    assert!(
        !link.is_online(),
        "marked lost: the next request reconnects"
    );
    link.sample().await.unwrap();
    assert!(link.verify_online().await);
    assert_eq!(link.counters().link_losses, 1);
}

#[tokio::test]
async fn xor_and_plain_scooters_read_full_samples() {
    let Some(bus) = isolated_bus("xor_and_plain_scooters_read_full_samples") else {
        return;
    };
    let fake = fake(&bus).await;
    let dir = tempfile::tempdir().unwrap();
    for (generation, seed) in [(Generation::Xor, 20), (Generation::Plain, 21)] {
        let served = serve(&fake, Model::M365, generation, seed);
        let transport = BtleplugTransport::new().await.unwrap();
        let mut link = ScooterLink::open(transport, config(&served, dir.path().join("none")))
            .await
            .unwrap();
        assert_eq!(link.generation(), Some(generation));
        let sample = link.sample().await.unwrap();
        assert!(sample.battery.voltage_v > 30.0, "{sample:?}");
        // A drop: the waiting connect gets the scooter back, the session is rebuilt.
        served.control().drop_link(secs(1)).await;
        for _ in 0..5 {
            link.sample().await.unwrap();
        }
        let c = link.counters();
        assert_eq!((c.link_losses, c.connects), (1, 2), "{generation:?}: {c:?}");
        assert_eq!(
            c.empty_notifications,
            served.counters().empty_notifications,
            "{generation:?}"
        );
        link.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_wrong_token_is_rejected_naming_the_file() {
    let Some(bus) = isolated_bus("a_wrong_token_is_rejected_naming_the_file") else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 30);
    let dir = tempfile::tempdir().unwrap();
    register(&served, dir.path()).await;
    let wrong = dir.path().join("wrong.mi-token");
    std::fs::write(&wrong, [9u8; 12]).unwrap();
    let transport = BtleplugTransport::new().await.unwrap();
    let err = ScooterLink::open(transport, config(&served, wrong.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BleError::TokenRejected { ref path } if *path == wrong),
        "{err}"
    );
}

#[tokio::test]
async fn a_drop_is_waited_out_by_the_connect_and_followed_by_a_new_login() {
    let Some(bus) = isolated_bus("a_drop_is_waited_out_by_the_connect_and_followed_by_a_new_login")
    else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 40);
    let dir = tempfile::tempdir().unwrap();
    let mut link = online(&served, dir.path()).await;
    link.sample().await.unwrap();

    served.control().drop_link(secs(2)).await;
    let t0 = Instant::now();
    link.sample().await.unwrap();
    let back = t0.elapsed();
    assert!(back >= Duration::from_millis(1_900), "{back:?}");
    assert!(back < secs(4), "{back:?}");
    assert_eq!(
        served.counters().logins,
        2,
        "real scooters drop the session"
    );
    let c = link.counters();
    assert_eq!((c.link_losses, c.sessions_reused), (1, 0));
    assert_eq!(
        c.connect_attempts, c.connects,
        "one connect waited for the scooter; none failed"
    );
    assert_eq!(served.control().counters().connect_timeouts, 0);

    served.control().drop_link(secs(7)).await;
    link.sample().await.unwrap();
    assert_eq!(served.counters().logins, 3);
    assert_eq!(link.counters().link_losses, 2);
    for _ in 0..20 {
        link.sample().await.unwrap();
    }
    assert_eq!(link.counters().rejected_frames, 0);
}

#[tokio::test]
async fn a_power_cycled_scooter_is_back_with_a_new_login() {
    let Some(bus) = isolated_bus("a_power_cycled_scooter_is_back_with_a_new_login") else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::OneS, Generation::MiAuth, 41);
    let dir = tempfile::tempdir().unwrap();
    let mut link = online(&served, dir.path()).await;
    let before = link.sample().await.unwrap();
    served
        .apply_fault(Fault::PowerCycle { off_for: secs(2) })
        .await;
    let t0 = Instant::now();
    let after = link.sample().await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(1_900));
    assert_eq!(served.counters().logins, 2);
    assert!(
        after.motor.uptime_s < before.motor.uptime_s.max(1) + 3,
        "a new power-on session: {} then {}",
        before.motor.uptime_s,
        after.motor.uptime_s
    );
}

#[tokio::test]
async fn a_scooter_bluez_forgot_is_found_again_by_scanning() {
    let Some(bus) = isolated_bus("a_scooter_bluez_forgot_is_found_again_by_scanning") else {
        return;
    };
    let fake = forgetful_fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 42);
    let dir = tempfile::tempdir().unwrap();
    let token = register(&served, dir.path()).await;
    let mut config = config(&served, token);
    config.reconnect.reconnect_window = secs(20);
    let transport = BtleplugTransport::new().await.unwrap();
    let mut link = ScooterLink::open(transport, config).await.unwrap();
    link.sample().await.unwrap();

    // Away for 6 s: the first connect waits 2 s and fails, BlueZ forgets the scooter 1.5 s
    // after the drop while no connect waits, and only a scan finds it again.
    let control = served.control().clone();
    let forgotten = tokio::spawn(async move {
        let until = Instant::now() + secs(10);
        while Instant::now() < until {
            if !control.is_visible() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });
    served
        .apply_fault(Fault::OutOfRange { for_: secs(6) })
        .await;
    let t0 = Instant::now();
    link.sample().await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(5_900));
    assert!(forgotten.await.unwrap(), "BlueZ forgot the scooter");
    assert!(served.control().counters().connect_timeouts >= 1);
    assert_eq!(served.counters().logins, 2);
    assert!(served.control().is_visible());
}

#[tokio::test]
async fn empty_notifications_anywhere_are_ignored_through_btleplug() {
    let Some(bus) = isolated_bus("empty_notifications_anywhere_are_ignored_through_btleplug")
    else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 43);
    // An empty notification before every notification: inside every parcel exchange of the
    // registration and the login, before every answer, right after every reconnect.
    served
        .apply_fault(Fault::ExtraEmptyNotifications { percent: 100 })
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut link = online(&served, dir.path()).await;
    for _ in 0..10 {
        link.sample().await.unwrap();
    }
    served.control().drop_link(secs(1)).await;
    for _ in 0..10 {
        link.sample().await.unwrap();
    }
    let c = link.counters();
    assert_eq!((c.logins, c.answers), (2, 100), "{c:?}");
    assert_eq!(
        (c.rejected_frames, c.unrelated_frames, c.retries, c.timeouts),
        (0, 0, 0, 0),
        "{c:?}"
    );
    let s = served.counters();
    assert_eq!((s.registrations, s.logins, s.login_failures), (1, 2, 0));
    assert!(c.empty_notifications > 100, "{c:?}");
}

#[tokio::test]
async fn out_of_range_past_the_window_is_lost() {
    let Some(bus) = isolated_bus("out_of_range_past_the_window_is_lost") else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 50);
    let dir = tempfile::tempdir().unwrap();
    let token = register(&served, dir.path()).await;
    let mut config = config(&served, token);
    config.reconnect.reconnect_window = secs(3);
    let transport = BtleplugTransport::new().await.unwrap();
    let mut link = ScooterLink::open(transport, config).await.unwrap();
    served
        .apply_fault(Fault::OutOfRange { for_: secs(60) })
        .await;
    let t0 = Instant::now();
    let err = link.sample().await.unwrap_err();
    assert!(matches!(err, BleError::Lost { .. }), "{err}");
    // The connect waited for the scooter until the window ended, then gave up.
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(2_900), "{waited:?}");
    assert!(waited < secs(5), "{waited:?}");
    assert_eq!(served.control().counters().connects_cancelled, 1);
}

#[tokio::test]
async fn a_stale_in_progress_is_removed_and_recovered() {
    let Some(bus) = isolated_bus("a_stale_in_progress_is_removed_and_recovered") else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 60);
    let dir = tempfile::tempdir().unwrap();
    let mut link = online(&served, dir.path()).await;
    served.control().stale_in_progress();
    served.control().drop_link(Duration::ZERO).await;
    link.sample().await.unwrap();
    assert_eq!(link.counters().stale_removed, 1);
    assert_eq!(served.control().counters().remove_device, 1);
}

#[tokio::test]
async fn corrupted_notifications_are_rejected_and_the_session_continues() {
    let Some(bus) = isolated_bus("corrupted_notifications_are_rejected_and_the_session_continues")
    else {
        return;
    };
    let fake = fake(&bus).await;
    let served = serve(&fake, Model::Pro2, Generation::MiAuth, 70);
    let dir = tempfile::tempdir().unwrap();
    let mut link = online(&served, dir.path()).await;
    served.apply_fault(Fault::CorruptBytes { percent: 5 }).await;
    let mut ok = 0;
    for _ in 0..40 {
        if link.sample().await.is_ok() {
            ok += 1;
        }
    }
    assert!(link.counters().rejected_frames > 0);
    assert!(ok >= 36, "{ok} of 40");
    assert_eq!(served.counters().logins, 1);
}

#[tokio::test]
async fn registration_without_the_button_fails_then_a_press_lets_the_retry_pass() {
    let Some(bus) =
        isolated_bus("registration_without_the_button_fails_then_a_press_lets_the_retry_pass")
    else {
        return;
    };
    let fake = fake(&bus).await;
    let served_by = |seed: u64, auto_press: Option<Duration>| {
        let mut config = ScooterConfig::new(Model::OneS, seed);
        config.link = None;
        config.auto_press = auto_press;
        ServedScooter::start(&fake, Scooter::new(config).unwrap(), DEFAULT_PHYSICS_TICK).unwrap()
    };
    let nobody = served_by(80, None);
    // Too late for the attempt's 3 s wait, but within 5 s of the beep: the retry passes.
    let late = served_by(81, Some(Duration::from_millis(4_000)));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".mi-token");
    let mut transport = BtleplugTransport::new().await.unwrap();

    let mut options = PairingOptions::new(path.clone());
    options.attempts = 1;
    let err = pairing::register(&mut transport, address(&nobody), &options, &mut |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, BleError::ButtonNeverPressed { attempts: 1 }),
        "{err}"
    );
    assert!(!path.exists());
    assert_eq!(nobody.counters().beeps, 1);

    options.attempts = 3;
    options.retry_wait = secs(2);
    let registered = pairing::register(&mut transport, address(&late), &options, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(
        registered.attempts, 2,
        "the first attempt stalls, the retry passes"
    );
    let stored = late
        .with_scooter(|s| s.stored_token().map(|t| t.0))
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), stored);
}

#[tokio::test]
async fn opt_in_session_reuse_against_a_scooter_that_drops_sessions_costs_one_login() {
    let Some(bus) =
        isolated_bus("opt_in_session_reuse_against_a_scooter_that_drops_sessions_costs_one_login")
    else {
        return;
    };
    let fake = fake(&bus).await;
    // Xiaomi's library drops the session keys on disconnect (protocol.md §3.7).
    let mut config = ScooterConfig::new(Model::Pro2, 90);
    config.auto_press = Some(secs(1));
    config.link = None;
    config.session_grace = Duration::ZERO;
    let served =
        ServedScooter::start(&fake, Scooter::new(config).unwrap(), DEFAULT_PHYSICS_TICK).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = register(&served, dir.path()).await;
    let mut config = self::config(&served, token);
    config.reconnect.session_reuse = secs(5);
    let transport = BtleplugTransport::new().await.unwrap();
    let mut link = ScooterLink::open(transport, config).await.unwrap();
    link.sample().await.unwrap();

    served.control().drop_link(secs(1)).await;
    link.sample().await.unwrap();
    assert_eq!(served.counters().logins, 2, "one extra login");
    let c = link.counters();
    assert_eq!((c.sessions_reused, c.logins), (1, 2), "{c:?}");
    for _ in 0..10 {
        link.sample().await.unwrap();
    }

    // Reuse is not tried again with this scooter.
    served.control().drop_link(secs(1)).await;
    link.sample().await.unwrap();
    let c = link.counters();
    assert_eq!(
        (c.link_losses, c.sessions_reused, c.logins),
        (2, 1, 3),
        "{c:?}"
    );
    assert_eq!(served.counters().logins, 3);
}

fn serve_xor(fake: &FakeBluez, seed: u64) -> ServedScooter {
    let mut config = ScooterConfig::new(Model::M365, seed).with_generation(Generation::Xor);
    config.link = None;
    let scooter = Scooter::new(config).expect("scooter");
    ServedScooter::start(fake, scooter, DEFAULT_PHYSICS_TICK).expect("served")
}

async fn open_on(
    session: &BtleplugSession,
    served: &ServedScooter,
    dir: &std::path::Path,
) -> ScooterLink<BtleplugTransport> {
    let mut config = LinkConfig::new(dir.join("none"));
    config.filter = ScanFilter {
        address: Some(BdAddr(served.with_scooter(|s| s.profile().address))),
        ..ScanFilter::default()
    };
    config.reconnect.scan_timeout = Duration::from_secs(20);
    ScooterLink::open(session.transport(), config)
        .await
        .expect("link")
}

#[tokio::test]
async fn one_session_serves_several_scooters_each_with_its_own_events() {
    let Some(bus) = isolated_bus("one_session_serves_several_scooters_each_with_its_own_events")
    else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.expect("fake BlueZ");
    let (one, two) = (serve_xor(&fake, 1), serve_xor(&fake, 2));
    let dir = tempfile::tempdir().unwrap();
    let session = BtleplugSession::start().await.unwrap();
    // Both scan at once (one adapter scan for both), then connect and log in.
    let (mut a, mut b) = tokio::join!(
        open_on(&session, &one, dir.path()),
        open_on(&session, &two, dir.path())
    );
    for _ in 0..10 {
        let (x, y) = tokio::join!(a.sample(), b.sample());
        x.unwrap();
        y.unwrap();
    }
    // Each handle saw its own scooter's notifications only.
    assert_eq!(
        a.counters().empty_notifications,
        one.counters().empty_notifications
    );
    assert_eq!(
        b.counters().empty_notifications,
        two.counters().empty_notifications
    );
    // One scooter's link loss is that scooter's only.
    one.control().drop_link(Duration::from_secs(1)).await;
    for _ in 0..3 {
        let (x, y) = tokio::join!(a.sample(), b.sample());
        x.unwrap();
        y.unwrap();
    }
    assert_eq!((a.counters().link_losses, a.counters().connects), (1, 2));
    assert_eq!((b.counters().link_losses, b.counters().connects), (0, 1));
    // A dropped handle frees its scooter and leaves the other alone.
    drop(b);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while two.control().is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "still connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        a.sample().await.unwrap();
    }
    assert_eq!(a.counters().link_losses, 1);
    assert!(one.control().is_connected());
    a.close().await.unwrap();
    // A handle on a session whose clones are all dropped still works.
    let lone = session.transport();
    drop(session);
    let mut c = ScooterLink::open(lone, {
        let mut config = LinkConfig::new(dir.path().join("none"));
        config.filter = ScanFilter {
            address: Some(BdAddr(two.with_scooter(|s| s.profile().address))),
            ..ScanFilter::default()
        };
        config
    })
    .await
    .unwrap();
    c.sample().await.unwrap();
    c.close().await.unwrap();
}
