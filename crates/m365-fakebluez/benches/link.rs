//! Round trips and throughput through the whole stack (btleplug → libdbus → dbus-daemon →
//! fake BlueZ → peripheral and back): the latency the fake adds with an instant link, and that
//! a paced link delivers the throughput its timing model promises.
//!
//! Runs in a re-executed process that has its private system bus from the start
//! (`isolation::reexec_with_private_bus`), on a current-thread runtime (see the crate docs).
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use btleplug::api::{
    Central as _, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    ValueNotification, WriteType,
};
use btleplug::platform::{Manager, Peripheral as BlePeripheral};
use criterion::{Criterion, Throughput};
use futures::{Stream, StreamExt};
use m365_fakebluez::isolation::reexec_with_private_bus;
use m365_fakebluez::{
    Advertisement, AttError, BluezAddress, CharFlags, FakeBluez, Link, LinkTiming, Peripheral,
    ServiceSpec, Uuid, WriteKind,
};

const SERVICE: Uuid = Uuid::from_u128(0x6e400001_b5a3_f393_e0a9_e50e24dcca9e);
const WRITE: Uuid = Uuid::from_u128(0x6e400002_b5a3_f393_e0a9_e50e24dcca9e);
const NOTIFY: Uuid = Uuid::from_u128(0x6e400003_b5a3_f393_e0a9_e50e24dcca9e);
/// Notifications per burst in the throughput benchmark.
const BURST: u8 = 60;

/// Echoes a write; `[0xB0]` asks for a burst of [`BURST`] full 20-byte notifications.
struct Echo {
    address: BluezAddress,
    link: Arc<Mutex<Option<Link>>>,
}

impl Peripheral for Echo {
    fn advertisement(&self) -> Advertisement {
        Advertisement::new(self.address).with_name("bench")
    }

    fn services(&self) -> Vec<ServiceSpec> {
        vec![
            ServiceSpec::primary(SERVICE)
                .with_characteristic(WRITE, CharFlags::WRITE_WITHOUT_RESPONSE)
                .with_characteristic(NOTIFY, CharFlags::NOTIFY),
        ]
    }

    fn on_connect(&mut self, link: Link) {
        *self.link.lock().unwrap() = Some(link);
    }

    fn on_write(&mut self, _: Uuid, data: &[u8], _: WriteKind) -> Result<(), AttError> {
        if let Some(link) = self.link.lock().unwrap().as_ref() {
            if data == [0xB0] {
                for i in 0..BURST {
                    link.notify(NOTIFY, &[i; 20])
                        .map_err(|_| AttError::UnlikelyError)?;
                }
            } else {
                link.notify(NOTIFY, data)
                    .map_err(|_| AttError::UnlikelyError)?;
            }
        }
        Ok(())
    }

    fn on_disconnect(&mut self) {
        *self.link.lock().unwrap() = None;
    }
}

type Notes = std::pin::Pin<Box<dyn Stream<Item = ValueNotification> + Send>>;

/// Scans for, connects to and subscribes to the device at `address`.
async fn open(address: BluezAddress) -> (BlePeripheral, Characteristic, Notes) {
    let manager = Manager::new().await.unwrap();
    let adapter = manager.adapters().await.unwrap().remove(0);
    let mut events = adapter.events().await.unwrap();
    adapter.start_scan(ScanFilter::default()).await.unwrap();
    let wanted = address.to_string();
    let p = loop {
        if let Some(CentralEvent::DeviceDiscovered(id)) = events.next().await {
            let p = adapter.peripheral(&id).await.unwrap();
            if p.address().to_string() == wanted {
                break p;
            }
        }
    };
    adapter.stop_scan().await.unwrap();
    p.connect().await.unwrap();
    p.discover_services().await.unwrap();
    let chars = p.characteristics();
    let notify = chars.iter().find(|c| c.uuid == NOTIFY).unwrap().clone();
    let write = chars.iter().find(|c| c.uuid == WRITE).unwrap().clone();
    p.subscribe(&notify).await.unwrap();
    let notes = p.notifications().await.unwrap();
    (p, write, notes)
}

fn main() {
    let bus = reexec_with_private_bus().expect("private bus (is dbus-daemon installed?)");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let instant = BluezAddress::new([0xBE, 0, 0, 0, 0, 1]);
    let paced = BluezAddress::new([0xBE, 0, 0, 0, 0, 2]);
    let (fake, mut a, mut b) = rt.block_on(async {
        let fake = FakeBluez::start(bus.address()).await.unwrap();
        for address in [instant, paced] {
            let echo = Echo {
                address,
                link: Arc::default(),
            };
            fake.add_peripheral(echo).unwrap();
        }
        fake.device(paced)
            .unwrap()
            .set_link_timing(LinkTiming::paced(Duration::from_micros(7500), 6));
        let a = open(instant).await;
        let b = open(paced).await;
        (fake, a, b)
    });

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("write_to_notification_round_trip_instant_link", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let (p, write, notes) = &mut a;
                p.write(write, b"ping", WriteType::WithoutResponse)
                    .await
                    .unwrap();
                notes.next().await.unwrap()
            })
        })
    });

    let mut group = c.benchmark_group("paced_link_7.5ms_6_per_event");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(u64::from(BURST) * 20));
    group.bench_function("notification_burst", |bench| {
        bench.iter(|| {
            rt.block_on(async {
                let (p, write, notes) = &mut b;
                p.write(write, &[0xB0], WriteType::WithoutResponse)
                    .await
                    .unwrap();
                for _ in 0..BURST {
                    notes.next().await.unwrap();
                }
            })
        })
    });
    group.finish();
    c.final_summary();
    // bluez-async's streams spawn a task when dropped: drop them inside the runtime.
    rt.block_on(async move {
        drop((a, b));
        drop(fake);
    });
}
