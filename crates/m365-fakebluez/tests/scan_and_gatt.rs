//! Scanning and the GATT path through an unmodified btleplug central: discovery with
//! advertising data, filtering, connect, service discovery, subscribe, write, notify, read.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use btleplug::api::{Central as _, CentralEvent, Peripheral as _, ScanFilter, WriteType};
use common::*;
use futures::StreamExt;
use m365_fakebluez::isolation::isolated_bus;
use m365_fakebluez::{
    ADAPTER_PATH, BLUEZ_NAME, BluezAddress, FakeBluez, HEART_RATE_MEASUREMENT, HeartRateMonitor,
    LinkError, WriteKind,
};

const ADAPTER: &str = "org.bluez.Adapter1";
const HRM: BluezAddress = BluezAddress::new([0xC0, 0xFF, 0xEE, 0x00, 0x00, 0x01]);

#[tokio::test]
async fn scan_reports_devices_with_advertised_data() {
    let Some(bus) = isolated_bus("scan_reports_devices_with_advertised_data") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    for i in 1..=3 {
        fake.add_peripheral(Echo::new(i, -50 - i16::from(i)))
            .unwrap();
    }
    fake.add_peripheral(HeartRateMonitor::new(HRM, 72)).unwrap();

    let (adapter, mut events) = central().await;
    adapter.start_scan(ScanFilter::default()).await.unwrap();
    let mut found = HashMap::new();
    while found.len() < 4 {
        let id = wait_for(&mut events, |e| match e {
            CentralEvent::DeviceDiscovered(id) => Some(id),
            _ => None,
        })
        .await;
        let p = adapter.peripheral(&id).await.unwrap();
        let props = p.properties().await.unwrap().expect("properties");
        found.insert(props.address.to_string(), props);
    }
    for i in 1..=3u8 {
        let props = &found[&echo_address(i).to_string()];
        assert_eq!(
            props.local_name.as_deref(),
            Some(format!("Echo-{i}").as_str())
        );
        assert_eq!(props.rssi, Some(-50 - i16::from(i)));
        assert_eq!(props.manufacturer_data[&ECHO_COMPANY], [i, 0x01]);
        assert_eq!(props.services, [ECHO_SERVICE]);
    }
    let hrm = &found[&HRM.to_string()];
    assert_eq!(hrm.local_name.as_deref(), Some("HRM-Strap"));
    assert_eq!(hrm.address_type, Some(btleplug::api::AddressType::Random));
    assert!(!hrm.manufacturer_data.contains_key(&ECHO_COMPANY));
    adapter.stop_scan().await.unwrap();
}

#[tokio::test]
async fn service_filter_hides_unrelated_devices() {
    let Some(bus) = isolated_bus("service_filter_hides_unrelated_devices") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    fake.add_peripheral(HeartRateMonitor::new(HRM, 72)).unwrap();
    fake.add_peripheral(Echo::new(1, -60)).unwrap();

    let (adapter, mut events) = central().await;
    adapter
        .start_scan(ScanFilter {
            services: vec![ECHO_SERVICE],
        })
        .await
        .unwrap();
    discover(&adapter, &mut events, echo_address(1)).await;
    // Both devices are considered in the same advertising step, so the monitor would be
    // listed by now had the filter let it through.
    let listed: Vec<_> = adapter
        .peripherals()
        .await
        .unwrap()
        .iter()
        .map(|p| p.address().to_string())
        .collect();
    assert_eq!(listed, [echo_address(1).to_string()]);
    assert!(!fake.device(HRM).unwrap().is_visible());
}

#[tokio::test]
async fn rssi_changes_are_published() {
    let Some(bus) = isolated_bus("rssi_changes_are_published") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let control = fake.add_peripheral(Echo::new(1, -60)).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    control.set_rssi(Some(-90));
    let rssi = wait_for(&mut events, |e| match e {
        CentralEvent::RssiUpdate { id, rssi } if id == p.id() => Some(rssi),
        _ => None,
    })
    .await;
    assert_eq!(rssi, -90);
    assert_eq!(p.properties().await.unwrap().unwrap().rssi, Some(-90));
}

#[tokio::test]
async fn write_notify_and_read_round_trip() {
    let Some(bus) = isolated_bus("write_notify_and_read_round_trip") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let echo = Echo::new(1, -60);
    let log = echo.log.clone();
    let control = fake.add_peripheral(echo).unwrap();

    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;
    assert!(p.is_connected().await.unwrap());
    assert_eq!(p.services().len(), 1);
    let mut notes = p.notifications().await.unwrap();

    p.write(&write, b"hello", WriteType::WithoutResponse)
        .await
        .unwrap();
    let note = tokio::time::timeout(WAIT, notes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.uuid, ECHO_NOTIFY);
    assert_eq!(note.value, b"hello");

    p.write(&write, b"again", WriteType::WithResponse)
        .await
        .unwrap();
    let note = tokio::time::timeout(WAIT, notes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.value, b"again");

    let version = find(&p.characteristics(), ECHO_VERSION);
    assert_eq!(p.read(&version).await.unwrap(), VERSION);

    // A peripheral's ATT error reaches the client of a write request as BlueZ words it.
    let err = p
        .write(&write, &[REJECT], WriteType::WithResponse)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Write not permitted"), "{err}");

    assert_eq!(
        log.lock().unwrap().writes,
        [
            (b"hello".to_vec(), WriteKind::Command),
            (b"again".to_vec(), WriteKind::Request),
            (vec![REJECT], WriteKind::Request),
        ]
    );
    let counters = control.counters();
    assert_eq!(counters.connects, 1);
    assert_eq!(counters.successful_connects, 1);
    assert_eq!(counters.writes, 3);
    assert_eq!(counters.reads, 1);
    assert_eq!(counters.start_notify, 1);

    p.disconnect().await.unwrap();
    assert!(!p.is_connected().await.unwrap());
    assert_eq!(control.counters().disconnects, 1);
    assert_eq!(log.lock().unwrap().disconnects, 1);
}

#[tokio::test]
async fn oversized_notifications_are_refused() {
    let Some(bus) = isolated_bus("oversized_notifications_are_refused") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let echo = Echo::new(1, -60);
    let log = echo.log.clone();
    fake.add_peripheral(echo).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    let write = connect_and_subscribe(&p).await;
    let mut notes = p.notifications().await.unwrap();

    // A 21-byte write request is legal; echoing it would exceed the 20-byte ATT payload.
    p.write(&write, &[7; 21], WriteType::WithResponse)
        .await
        .unwrap();
    p.write(&write, &[8; 20], WriteType::WithResponse)
        .await
        .unwrap();
    let note = tokio::time::timeout(WAIT, notes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.value, [8; 20]);
    assert_eq!(
        log.lock().unwrap().notify_errors,
        [LinkError::TooLong { len: 21, max: 20 }]
    );
}

#[tokio::test]
async fn unrelated_device_works_too() {
    let Some(bus) = isolated_bus("unrelated_device_works_too") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    fake.add_peripheral(HeartRateMonitor::new(HRM, 72)).unwrap();
    let (adapter, mut events) = central().await;
    adapter.start_scan(ScanFilter::default()).await.unwrap();
    let p = discover(&adapter, &mut events, HRM).await;
    tokio::time::timeout(WAIT, p.connect())
        .await
        .unwrap()
        .unwrap();
    p.discover_services().await.unwrap();
    let measurement = find(&p.characteristics(), HEART_RATE_MEASUREMENT);
    let mut notes = p.notifications().await.unwrap();
    p.subscribe(&measurement).await.unwrap();
    let note = tokio::time::timeout(WAIT, notes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.value, [0x00, 72]);
    let err = p.read(&measurement).await.unwrap_err();
    assert!(err.to_string().contains("Read not permitted"), "{err}");
    // Writing a notify-only characteristic fails like BlueZ.
    let err = p
        .write(&measurement, &[1], WriteType::WithResponse)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Write not permitted"), "{err}");
}

#[tokio::test]
async fn discovery_ends_when_its_client_leaves_the_bus() {
    let Some(bus) = isolated_bus("discovery_ends_when_its_client_leaves_the_bus") else {
        return;
    };
    let _fake = FakeBluez::start(bus.address()).await.unwrap();
    let connect = || async {
        zbus::connection::Builder::address(bus.address())
            .unwrap()
            .build()
            .await
            .unwrap()
    };
    let watcher = connect().await;
    let props = zbus::fdo::PropertiesProxy::builder(&watcher)
        .destination(BLUEZ_NAME)
        .unwrap()
        .path(ADAPTER_PATH)
        .unwrap()
        .build()
        .await
        .unwrap();
    let mut changes = props.receive_properties_changed().await.unwrap();
    let mut next_discovering = async || {
        tokio::time::timeout(WAIT, async {
            loop {
                let signal = changes.next().await.expect("signal stream");
                let args = signal.args().unwrap();
                if let Some(v) = args.changed_properties().get("Discovering") {
                    return bool::try_from(v).unwrap();
                }
            }
        })
        .await
        .expect("Discovering changed")
    };

    let client = connect().await;
    client
        .call_method(
            Some(BLUEZ_NAME),
            ADAPTER_PATH,
            Some(ADAPTER),
            "StartDiscovery",
            &(),
        )
        .await
        .unwrap();
    assert!(next_discovering().await);
    // A second StartDiscovery from the same client is refused, as by BlueZ.
    let err = client
        .call_method(
            Some(BLUEZ_NAME),
            ADAPTER_PATH,
            Some(ADAPTER),
            "StartDiscovery",
            &(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("InProgress"), "{err}");
    client.close().await.unwrap();
    assert!(!next_discovering().await);
}
