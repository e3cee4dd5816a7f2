//! Shared pieces of the btleplug integration tests: an echo peripheral, and functions that drive
//! an unmodified btleplug central against the fake with bounded waits.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use btleplug::api::{
    Central as _, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
};
use btleplug::platform::{Adapter, Manager, Peripheral as BlePeripheral, PeripheralId};
use futures::{Stream, StreamExt};
use m365_fakebluez::{
    Advertisement, AttError, BluezAddress, CharFlags, Link, LinkError, Peripheral, ServiceSpec,
    Uuid, WriteKind,
};

/// The echo service and its characteristics.
pub(crate) const ECHO_SERVICE: Uuid = Uuid::from_u128(0x6e400001_b5a3_f393_e0a9_e50e24dcca9e);
/// Write (both kinds): echoed back as a notification on [`ECHO_NOTIFY`].
pub(crate) const ECHO_WRITE: Uuid = Uuid::from_u128(0x6e400002_b5a3_f393_e0a9_e50e24dcca9e);
/// Notify.
pub(crate) const ECHO_NOTIFY: Uuid = Uuid::from_u128(0x6e400003_b5a3_f393_e0a9_e50e24dcca9e);
/// Read: the firmware version.
pub(crate) const ECHO_VERSION: Uuid = Uuid::from_u128(0x6e400004_b5a3_f393_e0a9_e50e24dcca9e);

/// Company identifier the echo devices advertise.
pub(crate) const ECHO_COMPANY: u16 = 0x424E;
/// A write starting with this byte asks for a burst: `[BURST, n]` → `n` notifications `[i]`.
pub(crate) const BURST: u8 = 0xB0;
/// A write request starting with this byte is rejected with Write Not Permitted.
pub(crate) const REJECT: u8 = 0xEE;
/// A write of exactly this byte is answered with a zero-length notification.
pub(crate) const EMPTY: u8 = 0xE0;
/// What reading [`ECHO_VERSION`] returns.
pub(crate) const VERSION: &[u8] = b"echo-1.0";

/// What the echo peripheral saw, shared with the test.
#[derive(Debug, Default)]
pub(crate) struct EchoLog {
    pub connects: usize,
    pub disconnects: usize,
    pub writes: Vec<(Vec<u8>, WriteKind)>,
    pub notify_errors: Vec<LinkError>,
}

/// A peripheral that echoes every write as a notification.
pub(crate) struct Echo {
    address: BluezAddress,
    name: String,
    rssi: i16,
    link: Option<Link>,
    pub log: Arc<Mutex<EchoLog>>,
}

impl Echo {
    pub(crate) fn new(index: u8, rssi: i16) -> Self {
        Echo {
            address: echo_address(index),
            name: format!("Echo-{index}"),
            rssi,
            link: None,
            log: Arc::default(),
        }
    }

    fn notify(&mut self, data: &[u8]) {
        if let Some(link) = &self.link
            && let Err(e) = link.notify(ECHO_NOTIFY, data)
        {
            self.log.lock().unwrap().notify_errors.push(e);
        }
    }
}

/// The address of echo device `index`.
pub(crate) fn echo_address(index: u8) -> BluezAddress {
    BluezAddress::new([0xD5, 0x1A, 0x00, 0x00, 0x00, index])
}

impl Peripheral for Echo {
    fn advertisement(&self) -> Advertisement {
        Advertisement::new(self.address)
            .with_name(self.name.clone())
            .with_rssi(self.rssi)
            .with_manufacturer_data(ECHO_COMPANY, [self.address.0[5], 0x01])
            .with_service(ECHO_SERVICE)
    }

    fn services(&self) -> Vec<ServiceSpec> {
        vec![
            ServiceSpec::primary(ECHO_SERVICE)
                .with_characteristic(
                    ECHO_WRITE,
                    CharFlags::WRITE | CharFlags::WRITE_WITHOUT_RESPONSE,
                )
                .with_characteristic(ECHO_NOTIFY, CharFlags::NOTIFY)
                .with_characteristic(ECHO_VERSION, CharFlags::READ),
        ]
    }

    fn on_connect(&mut self, link: Link) {
        self.log.lock().unwrap().connects += 1;
        self.link = Some(link);
    }

    fn on_write(&mut self, _: Uuid, data: &[u8], kind: WriteKind) -> Result<(), AttError> {
        self.log.lock().unwrap().writes.push((data.to_vec(), kind));
        match data {
            [REJECT, ..] if kind == WriteKind::Request => Err(AttError::WriteNotPermitted),
            [EMPTY] => {
                self.notify(&[]);
                Ok(())
            }
            [BURST, n] => {
                for i in 0..*n {
                    self.notify(&[i]);
                }
                Ok(())
            }
            _ => {
                self.notify(data);
                Ok(())
            }
        }
    }

    fn on_read(&mut self, characteristic: Uuid) -> Result<Vec<u8>, AttError> {
        if characteristic == ECHO_VERSION {
            Ok(VERSION.to_vec())
        } else {
            Err(AttError::ReadNotPermitted)
        }
    }

    fn on_disconnect(&mut self) {
        self.log.lock().unwrap().disconnects += 1;
        self.link = None;
    }
}

/// Upper bound for any single wait on the fake; generous for a loaded CI machine. Tests never
/// assert how long something took, only that it happened.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

pub(crate) type Events = Pin<Box<dyn Stream<Item = CentralEvent> + Send>>;

/// The first adapter of a fresh btleplug manager (the fake's hci0) and its event stream.
pub(crate) async fn central() -> (Adapter, Events) {
    let manager = Manager::new().await.expect("btleplug manager");
    let adapter = manager
        .adapters()
        .await
        .expect("adapters")
        .into_iter()
        .next()
        .expect("the fake adapter is visible to btleplug");
    let events = adapter.events().await.expect("event stream");
    (adapter, events)
}

/// Waits for an event `pick` accepts.
pub(crate) async fn wait_for<T>(
    events: &mut Events,
    mut pick: impl FnMut(CentralEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let Some(found) = pick(event) {
                return found;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("expected event did not arrive")
}

/// Scans until the device with `address` is discovered; returns its peripheral.
pub(crate) async fn discover(
    adapter: &Adapter,
    events: &mut Events,
    address: BluezAddress,
) -> BlePeripheral {
    let wanted = address.to_string();
    // It may already be known from an earlier scan.
    for p in adapter.peripherals().await.expect("peripherals") {
        if p.address().to_string() == wanted {
            return p;
        }
    }
    loop {
        let id = wait_for(events, |e| match e {
            CentralEvent::DeviceDiscovered(id) => Some(id),
            _ => None,
        })
        .await;
        let p = adapter
            .peripheral(&id)
            .await
            .expect("discovered peripheral");
        if p.address().to_string() == wanted {
            return p;
        }
    }
}

/// Starts an unfiltered scan and discovers echo device `index`.
pub(crate) async fn scan_for(adapter: &Adapter, events: &mut Events, index: u8) -> BlePeripheral {
    adapter
        .start_scan(ScanFilter::default())
        .await
        .expect("start scan");
    discover(adapter, events, echo_address(index)).await
}

/// Connects, discovers services and subscribes to [`ECHO_NOTIFY`]; returns the write
/// characteristic.
pub(crate) async fn connect_and_subscribe(p: &BlePeripheral) -> Characteristic {
    tokio::time::timeout(WAIT, p.connect())
        .await
        .expect("connect in time")
        .expect("connect");
    p.discover_services().await.expect("discover services");
    let chars = p.characteristics();
    let notify = find(&chars, ECHO_NOTIFY);
    p.subscribe(&notify).await.expect("subscribe");
    find(&chars, ECHO_WRITE)
}

/// The characteristic with this UUID.
pub(crate) fn find(chars: &BTreeSet<Characteristic>, uuid: Uuid) -> Characteristic {
    chars
        .iter()
        .find(|c| c.uuid == uuid)
        .cloned()
        .unwrap_or_else(|| panic!("no characteristic {uuid}"))
}

/// Waits for the `DeviceDisconnected` event of `id`.
pub(crate) async fn wait_disconnected(events: &mut Events, id: &PeripheralId) {
    wait_for(events, |e| match e {
        CentralEvent::DeviceDisconnected(got) if &got == id => Some(()),
        _ => None,
    })
    .await;
}
