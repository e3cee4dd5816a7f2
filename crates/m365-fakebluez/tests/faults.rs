//! Link faults as btleplug sees them, with BlueZ's own behaviour by default: link loss and
//! reconnect, a connect that waits for an unreachable device (and its timeout and cancel), a
//! device forgotten after the temporary timeout, GATT objects kept across a drop, refused
//! connects, a stale InProgress cleared by RemoveDevice, the harsher variants on demand, and
//! the call counters.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use btleplug::api::{Central as _, CentralEvent, Peripheral as _, WriteType};
use common::*;
use futures::StreamExt;
use m365_fakebluez::isolation::isolated_bus;
use m365_fakebluez::{
    ADAPTER_PATH, BLUEZ_NAME, BluezError, FakeBluez, FakeConfig, FakeError, GattOnDisconnect,
    Harshness, device_path,
};
use tokio::time::Instant;

#[tokio::test]
async fn dropped_link_is_reported_and_reconnect_works() {
    let Some(bus) = isolated_bus("dropped_link_is_reported_and_reconnect_works") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let echo = Echo::new(1, -60);
    let log = echo.log.clone();
    let control = fake.add_peripheral(echo).unwrap();
    // BlueZ with `[GATT] Cache = no`: the objects go with the link.
    control.set_gatt_on_disconnect(GattOnDisconnect::Remove);
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;

    assert!(control.drop_link(Duration::ZERO).await);
    wait_disconnected(&mut events, &p.id()).await;
    assert!(!p.is_connected().await.unwrap());
    assert!(!control.is_connected());
    let err = p
        .write(&write, b"x", WriteType::WithoutResponse)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Unknown object"), "{err}");

    let write = connect_and_subscribe(&p).await;
    let mut notes = p.notifications().await.unwrap();
    p.write(&write, b"back", WriteType::WithoutResponse)
        .await
        .unwrap();
    let note = tokio::time::timeout(WAIT, notes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.value, b"back");

    let counters = control.counters();
    assert_eq!(counters.connects, 2);
    assert_eq!(counters.successful_connects, 2);
    assert_eq!(counters.link_drops, 1);
    assert_eq!(counters.disconnects, 0);
    assert_eq!(counters.start_notify, 2);
    let log = log.lock().unwrap();
    assert_eq!((log.connects, log.disconnects), (2, 1));
}

#[tokio::test]
async fn kept_gatt_objects_answer_not_connected_after_a_drop() {
    let Some(bus) = isolated_bus("kept_gatt_objects_answer_not_connected_after_a_drop") else {
        return;
    };
    let (_fake, control, _adapter, mut events, p) = echo_found(&bus).await;
    let write = connect_and_subscribe(&p).await;

    // BlueZ's default cache keeps the objects: the write reaches them and fails for the link.
    control.drop_link(Duration::from_secs(600)).await;
    wait_disconnected(&mut events, &p.id()).await;
    let err = p
        .write(&write, b"x", WriteType::WithoutResponse)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Not connected"), "{err}");
    assert!(!p.is_connected().await.unwrap());
    assert_eq!(control.counters().writes, 1);
}

#[tokio::test]
async fn a_harsh_drop_removes_the_gatt_objects_and_fails_connects_at_once() {
    let Some(bus) =
        isolated_bus("a_harsh_drop_removes_the_gatt_objects_and_fails_connects_at_once")
    else {
        return;
    };
    let (_fake, control, _adapter, mut events, p) = echo_found(&bus).await;
    let write = connect_and_subscribe(&p).await;

    let harsh = Harshness {
        fail_at_once: true,
        remove_gatt: true,
    };
    control
        .drop_link_with(Duration::from_secs(600), harsh)
        .await;
    wait_disconnected(&mut events, &p.id()).await;
    let err = p
        .write(&write, b"x", WriteType::WithoutResponse)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Unknown object"), "{err}");
    let started = Instant::now();
    let err = p.connect().await.unwrap_err();
    assert!(
        err.to_string().contains("le-connection-abort-by-local"),
        "{err}"
    );
    assert!(started.elapsed() < WAIT, "failed at once");
    assert_eq!(control.counters().connect_timeouts, 0);
    assert_eq!(control.counters().writes, 0, "no object to write to");
}

#[tokio::test]
async fn a_connect_waits_for_the_device_and_succeeds_when_it_is_back() {
    let Some(bus) = isolated_bus("a_connect_waits_for_the_device_and_succeeds_when_it_is_back")
    else {
        return;
    };
    let (_fake, control, _adapter, mut events, p) = echo_found(&bus).await;
    connect_and_subscribe(&p).await;

    let hold_off = Duration::from_millis(1_500);
    control.drop_link(hold_off).await;
    wait_disconnected(&mut events, &p.id()).await;
    let started = Instant::now();
    p.connect().await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1_000), "{waited:?}");
    assert!(p.is_connected().await.unwrap());
    let counters = control.counters();
    assert_eq!((counters.connects, counters.successful_connects), (2, 2));

    // Out of range: the connect waits while nothing advertises and connects as it comes back.
    control.out_of_range(hold_off).await;
    wait_disconnected(&mut events, &p.id()).await;
    let started = Instant::now();
    let (connected, ()) = tokio::join!(p.connect(), async {
        assert!(
            wait_connecting(&control).await,
            "the connect waits for the device"
        );
    });
    connected.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1_000));
    assert_eq!(control.counters().connect_timeouts, 0);
}

#[tokio::test]
async fn a_connect_to_an_absent_device_fails_after_the_connect_timeout() {
    let Some(bus) = isolated_bus("a_connect_to_an_absent_device_fails_after_the_connect_timeout")
    else {
        return;
    };
    let config = FakeConfig {
        connect_timeout: Duration::from_millis(700),
        ..FakeConfig::default()
    };
    let fake = FakeBluez::start_with(bus.address(), config).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    adapter.stop_scan().await.unwrap();
    control.out_of_range(Duration::from_secs(600)).await;

    let started = Instant::now();
    let err = p.connect().await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        err.to_string().contains("le-connection-abort-by-local"),
        "{err}"
    );
    assert!(waited >= Duration::from_millis(600), "{waited:?}");
    let counters = control.counters();
    assert_eq!(
        (counters.connect_timeouts, counters.successful_connects),
        (1, 0)
    );
    assert!(!control.is_connecting());

    // Back in range: the next connect succeeds at once.
    control.clear_faults();
    p.connect().await.unwrap();
    assert!(p.is_connected().await.unwrap());
}

#[tokio::test]
async fn disconnect_and_clear_faults_end_a_waiting_connect() {
    let Some(bus) = isolated_bus("disconnect_and_clear_faults_end_a_waiting_connect") else {
        return;
    };
    let (_fake, control, _adapter, _events, p) = echo_found(&bus).await;
    control.out_of_range(Duration::from_secs(600)).await;

    // Disconnect() cancels the pending Connect(), which then fails.
    let (connected, ()) = tokio::join!(p.connect(), async {
        assert!(wait_connecting(&control).await);
        p.disconnect().await.unwrap();
    });
    let err = connected.unwrap_err();
    assert!(
        err.to_string().contains("le-connection-abort-by-local"),
        "{err}"
    );
    assert_eq!(control.counters().connects_cancelled, 1);
    assert!(!control.is_connecting());

    // Ending the out-of-range period lets a waiting connect through at once.
    let started = Instant::now();
    let (connected, ()) = tokio::join!(p.connect(), async {
        assert!(wait_connecting(&control).await);
        control.clear_faults();
    });
    connected.unwrap();
    assert!(started.elapsed() < WAIT);
    assert!(control.is_connected());
}

#[tokio::test]
async fn an_unseen_device_is_forgotten_after_the_temporary_timeout_and_found_again() {
    let Some(bus) =
        isolated_bus("an_unseen_device_is_forgotten_after_the_temporary_timeout_and_found_again")
    else {
        return;
    };
    let config = FakeConfig {
        temporary_timeout: Duration::from_millis(600),
        ..FakeConfig::default()
    };
    let fake = FakeBluez::start_with(bus.address(), config).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    adapter.stop_scan().await.unwrap();
    connect_and_subscribe(&p).await;

    // Connected: never forgotten, however long.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(control.is_visible());

    // Disconnected and no scan running: gone once the temporary timeout passed, although the
    // device still advertises.
    p.disconnect().await.unwrap();
    wait_disconnected(&mut events, &p.id()).await;
    tokio::time::timeout(WAIT, async {
        while control.is_visible() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("forgotten after the temporary timeout");
    assert!(
        adapter
            .peripherals()
            .await
            .unwrap()
            .iter()
            .all(|q| q.id() != p.id()),
        "no longer listed"
    );
    let err = p.connect().await.unwrap_err();
    assert!(err.to_string().contains("Unknown object"), "{err}");

    // A scan hears it again: same path, connectable.
    adapter.start_scan(Default::default()).await.unwrap();
    let id = wait_for(&mut events, |e| match e {
        CentralEvent::DeviceDiscovered(id) if id == p.id() => Some(id),
        _ => None,
    })
    .await;
    let p = adapter.peripheral(&id).await.unwrap();
    connect_and_subscribe(&p).await;
    assert_eq!(control.counters().successful_connects, 2);
}

#[tokio::test]
async fn out_of_range_device_is_forgotten_and_comes_back() {
    let Some(bus) = isolated_bus("out_of_range_device_is_forgotten_and_comes_back") else {
        return;
    };
    let config = FakeConfig {
        temporary_timeout: Duration::from_millis(50),
        ..FakeConfig::default()
    };
    let fake = FakeBluez::start_with(bus.address(), config).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    connect_and_subscribe(&p).await;

    control.out_of_range(Duration::from_millis(800)).await;
    wait_disconnected(&mut events, &p.id()).await;
    // A running scan does not hear it: it is forgotten while away.
    tokio::time::timeout(WAIT, async {
        while control.is_visible() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("forgotten while out of range");
    // Back in range: the running scan reports it again and it connects.
    let id = wait_for(&mut events, |e| match e {
        CentralEvent::DeviceDiscovered(id) if id == p.id() => Some(id),
        _ => None,
    })
    .await;
    let p = adapter.peripheral(&id).await.unwrap();
    connect_and_subscribe(&p).await;
    assert!(p.is_connected().await.unwrap());
    let counters = control.counters();
    assert_eq!(counters.link_drops, 1);
    assert_eq!(counters.successful_connects, 2);
}

#[tokio::test]
async fn zero_length_notifications_reach_btleplug_as_empty_values() {
    let Some(bus) = isolated_bus("zero_length_notifications_reach_btleplug_as_empty_values") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;
    let mut notes = p.notifications().await.unwrap();
    for data in [&b"a"[..], &[EMPTY], b"b"] {
        p.write(&write, data, WriteType::WithoutResponse)
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let note = tokio::time::timeout(WAIT, notes.next())
            .await
            .unwrap()
            .unwrap();
        got.push(note.value);
    }
    assert_eq!(got, [b"a".to_vec(), Vec::new(), b"b".to_vec()]);
}

#[tokio::test]
async fn injected_connect_errors_surface_in_btleplug() {
    let Some(bus) = isolated_bus("injected_connect_errors_surface_in_btleplug") else {
        return;
    };
    let (_fake, control, _adapter, _events, p) = echo_found(&bus).await;

    control.fail_next_connects(2, BluezError::le_connection_abort_by_local());
    for _ in 0..2 {
        let err = p.connect().await.unwrap_err();
        assert!(
            err.to_string().contains("le-connection-abort-by-local"),
            "{err}"
        );
        assert!(!p.is_connected().await.unwrap());
    }
    p.connect().await.unwrap();
    assert!(p.is_connected().await.unwrap());
    let counters = control.counters();
    assert_eq!((counters.connects, counters.successful_connects), (3, 1));
}

#[tokio::test]
async fn concurrent_connect_is_in_progress() {
    let Some(bus) = isolated_bus("concurrent_connect_is_in_progress") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    control.set_connect_delay(Duration::from_millis(300));
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;

    let (a, b) = tokio::join!(p.connect(), p.connect());
    let errors: Vec<String> = [a, b]
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("In Progress"), "{errors:?}");
    assert!(p.is_connected().await.unwrap());
    assert_eq!(control.counters().successful_connects, 1);
}

#[tokio::test]
async fn stale_in_progress_is_cleared_by_remove_device() {
    let Some(bus) = isolated_bus("stale_in_progress_is_cleared_by_remove_device") else {
        return;
    };
    let (_fake, control, adapter, mut events, p) = echo_found(&bus).await;

    control.stale_in_progress();
    for _ in 0..3 {
        let err = p.connect().await.unwrap_err();
        assert!(err.to_string().contains("In Progress"), "{err}");
    }
    // btleplug has no RemoveDevice; a client calls it over D-Bus itself.
    let conn = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    let path = zbus::zvariant::ObjectPath::try_from(device_path(echo_address(1))).unwrap();
    conn.call_method(
        Some(BLUEZ_NAME),
        ADAPTER_PATH,
        Some("org.bluez.Adapter1"),
        "RemoveDevice",
        &(path,),
    )
    .await
    .unwrap();
    // Removing it again fails: it is gone until the scan finds it again.
    let again = conn
        .call_method(
            Some(BLUEZ_NAME),
            ADAPTER_PATH,
            Some("org.bluez.Adapter1"),
            "RemoveDevice",
            &(zbus::zvariant::ObjectPath::try_from(device_path(echo_address(1))).unwrap(),),
        )
        .await
        .unwrap_err();
    assert!(again.to_string().contains("DoesNotExist"), "{again}");

    let p = discover(&adapter, &mut events, echo_address(1)).await;
    p.connect().await.unwrap();
    assert!(p.is_connected().await.unwrap());
    let counters = control.counters();
    assert_eq!(counters.remove_device, 1);
    assert_eq!((counters.connects, counters.successful_connects), (4, 1));
}

#[tokio::test]
async fn second_instance_cannot_take_the_name() {
    let Some(bus) = isolated_bus("second_instance_cannot_take_the_name") else {
        return;
    };
    let _first = FakeBluez::start(bus.address()).await.unwrap();
    match FakeBluez::start(bus.address()).await {
        Err(FakeError::Bus { source, .. }) => {
            assert!(matches!(*source, zbus::Error::NameTaken), "{source}");
        }
        other => panic!("a second org.bluez was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn powered_off_adapter_drops_links_and_refuses_work() {
    let Some(bus) = isolated_bus("powered_off_adapter_drops_links_and_refuses_work") else {
        return;
    };
    let (fake, control, adapter, mut events, p) = echo_found(&bus).await;
    connect_and_subscribe(&p).await;

    fake.set_powered(false).await;
    wait_disconnected(&mut events, &p.id()).await;
    assert!(!fake.is_powered());
    let err = p.connect().await.unwrap_err();
    assert!(err.to_string().contains("Resource Not Ready"), "{err}");
    // The scan ended with the power: there is no session left to stop.
    adapter.stop_scan().await.unwrap_err();
    // btleplug powers the adapter before scanning; rfkill does not let it.
    assert!(adapter.start_scan(Default::default()).await.is_err());

    fake.set_powered(true).await;
    adapter.start_scan(Default::default()).await.unwrap();
    connect_and_subscribe(&p).await;
    let counters = control.counters();
    assert_eq!((counters.connects, counters.successful_connects), (3, 2));
    assert_eq!(counters.link_drops, 1);
}

#[tokio::test]
async fn kept_gatt_objects_survive_a_reconnect() {
    let Some(bus) = isolated_bus("kept_gatt_objects_survive_a_reconnect") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    // BlueZ's default: the attribute cache keeps the objects.
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;

    control.drop_link(Duration::ZERO).await;
    wait_disconnected(&mut events, &p.id()).await;
    p.connect().await.unwrap();
    // No rediscovery: the characteristic handles from before the drop still work, but the
    // subscription did not survive the link.
    let notify = find(&p.characteristics(), ECHO_NOTIFY);
    p.subscribe(&notify).await.unwrap();
    let mut notes = p.notifications().await.unwrap();
    p.write(&write, b"kept", WriteType::WithoutResponse)
        .await
        .unwrap();
    let note = tokio::time::timeout(WAIT, notes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.value, b"kept");
    assert_eq!(control.counters().start_notify, 2);
}

/// Waits until the fake holds a pending Connect() for the device; returns whether it did.
async fn wait_connecting(control: &m365_fakebluez::DeviceControl) -> bool {
    m365_testkit::wait::until(WAIT, || control.is_connecting()).await
}

/// A fake BlueZ with BlueZ's defaults serving echo device 1, and a btleplug central that found
/// it: the fake (keep it alive), the device's control, the adapter, its events, the peripheral.
async fn echo_found(
    bus: &m365_fakebluez::PrivateBus,
) -> (
    FakeBluez,
    m365_fakebluez::DeviceControl,
    btleplug::platform::Adapter,
    Events,
    btleplug::platform::Peripheral,
) {
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    (fake, control, adapter, events, p)
}
