//! Link faults as btleplug sees them: link loss and reconnect, out of range, refused connects,
//! a stale InProgress cleared by RemoveDevice, and the call counters.

mod common;

use std::time::Duration;

use btleplug::api::{Central as _, CentralEvent, Peripheral as _, WriteType};
use common::*;
use futures::StreamExt;
use m365_fakebluez::isolation::isolated_bus;
use m365_fakebluez::{
    ADAPTER_PATH, BLUEZ_NAME, BluezError, FakeBluez, FakeConfig, FakeError, GattOnDisconnect,
    device_path,
};

#[tokio::test]
async fn dropped_link_is_reported_and_reconnect_works() {
    let Some(bus) = isolated_bus("dropped_link_is_reported_and_reconnect_works") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let echo = Echo::new(1, -60);
    let log = echo.log.clone();
    let control = fake.add_peripheral(echo).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;

    assert!(control.drop_link(Duration::ZERO).await);
    wait_disconnected(&mut events, &p.id()).await;
    assert!(!p.is_connected().await.unwrap());
    assert!(!control.is_connected());
    // GATT objects are gone (not bonded), so the stale handle cannot be written.
    assert!(
        p.write(&write, b"x", WriteType::WithoutResponse)
            .await
            .is_err()
    );

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
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    control.set_gatt_on_disconnect(GattOnDisconnect::Keep);
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;

    // During the hold-off the link cannot come back.
    control.drop_link(Duration::from_secs(600)).await;
    wait_disconnected(&mut events, &p.id()).await;
    let err = p
        .write(&write, b"x", WriteType::WithoutResponse)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Not connected"), "{err}");
    let err = p.connect().await.unwrap_err();
    assert!(
        err.to_string().contains("le-connection-abort-by-local"),
        "{err}"
    );
    assert!(!p.is_connected().await.unwrap());
    assert_eq!(control.counters().writes, 1);
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
    // Not connectable while away (it may already be forgotten: then the object is gone).
    assert!(p.connect().await.is_err());
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
async fn injected_connect_errors_surface_in_btleplug() {
    let Some(bus) = isolated_bus("injected_connect_errors_surface_in_btleplug") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;

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
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;

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
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
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
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    control.set_gatt_on_disconnect(GattOnDisconnect::Keep);
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
