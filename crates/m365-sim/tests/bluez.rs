//! The scooter served on the fake BlueZ, seen through an unmodified btleplug central: it is
//! discovered with its advertisement, and the `m365-proto` client machines register, log in and
//! read telemetry over real D-Bus GATT calls. Link faults are played by the fake.

mod common;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use btleplug::api::{
    Central as _, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    ValueNotification, WriteType,
};
use btleplug::platform::{Manager, Peripheral as BlePeripheral};
use common::{ClientMachine, UartClient};
use futures::{Stream, StreamExt};
use m365_fakebluez::isolation::isolated_bus;
use m365_fakebluez::{FakeBluez, Uuid};
use m365_proto::gatt::{ATT_PAYLOAD, CHAR_UART_NOTIFY, Char, SERVICE_FE95};
use m365_proto::login::{self, ClientLogin};
use m365_proto::pairing::{self, ClientConfig, ClientPairing};
use m365_proto::registers::esc;
use m365_sim::bluez::ServedScooter;
use m365_sim::{Fault, Generation, Model, Scooter, ScooterConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Upper bound of any single wait; tests assert what happened, never how long it took.
const WAIT: Duration = Duration::from_secs(15);

type Notes = Pin<Box<dyn Stream<Item = ValueNotification> + Send>>;

fn config() -> ScooterConfig {
    let mut c = ScooterConfig::new(Model::Pro2, 81).with_generation(Generation::MiAuth);
    // The button logic is tested on the fake clock; here the press comes at once.
    c.auto_press = Some(Duration::from_millis(1));
    // The fake paces (here: does not pace) the link itself.
    c.link = None;
    c
}

async fn discover_and_connect(address: String) -> BlePeripheral {
    let manager = Manager::new().await.expect("btleplug manager");
    let adapter = manager
        .adapters()
        .await
        .expect("adapters")
        .into_iter()
        .next()
        .expect("the fake adapter");
    let mut events = adapter.events().await.expect("events");
    adapter
        .start_scan(ScanFilter::default())
        .await
        .expect("scan");
    let peripheral = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.next().await {
            if let CentralEvent::DeviceDiscovered(id) = event {
                let p = adapter.peripheral(&id).await.expect("peripheral");
                if p.address().to_string() == address {
                    return p;
                }
            }
        }
        panic!("event stream ended")
    })
    .await
    .expect("scooter discovered");
    tokio::time::timeout(WAIT, peripheral.connect())
        .await
        .expect("connect in time")
        .expect("connect");
    peripheral.discover_services().await.expect("services");
    peripheral
}

fn find(chars: &BTreeSet<Characteristic>, uuid: u128) -> Characteristic {
    chars
        .iter()
        .find(|c| c.uuid == Uuid::from_u128(uuid))
        .cloned()
        .unwrap_or_else(|| panic!("no characteristic {uuid:x}"))
}

/// Runs a client machine over btleplug until it reports an event.
async fn drive<M: ClientMachine>(
    p: &BlePeripheral,
    notes: &mut Notes,
    machine: &mut M,
) -> M::Event {
    let chars = p.characteristics();
    tokio::time::timeout(WAIT, async {
        loop {
            while let Some(t) = machine.transmit() {
                let c = find(&chars, t.char.uuid());
                p.write(&c, &t.data, WriteType::WithoutResponse)
                    .await
                    .expect("write");
            }
            if let Some(event) = machine.event() {
                return event;
            }
            let deadline = machine
                .deadline()
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + WAIT);
            tokio::select! {
                note = notes.next() => {
                    let note = note.expect("notification stream");
                    if let Some(char) = Char::from_uuid(note.uuid.as_u128()) {
                        machine.notify(std::time::Instant::now(), char, &note.value);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    machine.timeout(std::time::Instant::now());
                }
            }
        }
    })
    .await
    .expect("the exchange finished")
}

#[tokio::test]
async fn btleplug_registers_logs_in_and_reads_through_the_fake_bluez() {
    let Some(bus) = isolated_bus("btleplug_registers_logs_in_and_reads_through_the_fake_bluez")
    else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.expect("fake BlueZ");
    let scooter = Scooter::new(config()).expect("scooter");
    let profile = scooter.profile().clone();
    let served = ServedScooter::start(&fake, scooter, Duration::from_millis(100)).expect("served");

    let p = discover_and_connect(profile.address_string()).await;
    let props = p.properties().await.expect("properties").expect("known");
    assert_eq!(props.local_name, Some(profile.name()));
    assert_eq!(
        props.manufacturer_data.get(&0x424E).map(Vec::as_slice),
        Some(&[0x28, 0x02, 0, 0, 0, 0xD5][..])
    );
    assert!(
        props
            .service_data
            .contains_key(&Uuid::from_u128(SERVICE_FE95))
    );

    let chars = p.characteristics();
    for uuid in [Char::Upnp.uuid(), Char::Avdtp.uuid(), CHAR_UART_NOTIFY] {
        p.subscribe(&find(&chars, uuid)).await.expect("subscribe");
    }
    let mut notes: Notes = p.notifications().await.expect("notifications");
    let mut rng = StdRng::seed_from_u64(5);

    let mut pairing =
        ClientPairing::new(std::time::Instant::now(), &mut rng, ClientConfig::default());
    let registration = match drive(&p, &mut notes, &mut pairing).await {
        pairing::ClientEvent::Registered(r) => r,
        other => panic!("registration: {other:?}"),
    };
    let mut client_login = ClientLogin::new(
        std::time::Instant::now(),
        &mut rng,
        registration.token.clone(),
        login::Config::default(),
    );
    let keys = match drive(&p, &mut notes, &mut client_login).await {
        login::ClientEvent::LoggedIn(keys) => keys,
        other => panic!("login: {other:?}"),
    };

    let mut uart = UartClient::miauth(keys);
    let write = find(&chars, Char::UartWrite.uuid());
    let wire = uart
        .cipher
        .as_mut()
        .map(|c| c.seal(&esc::read_serial(), [9, 9, 9, 9]))
        .expect("cipher");
    for chunk in wire.chunks(ATT_PAYLOAD) {
        p.write(&write, chunk, WriteType::WithoutResponse)
            .await
            .expect("write");
    }
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            let note = notes.next().await.expect("notification stream");
            if note.uuid != Uuid::from_u128(CHAR_UART_NOTIFY) {
                continue;
            }
            uart.reassembler.push(&note.value);
            if let Some(wire) = uart.reassembler.next_frame() {
                return uart.cipher.as_mut().and_then(|c| c.open(&wire).ok());
            }
        }
    })
    .await
    .expect("answer in time")
    .expect("answer decrypts");
    assert_eq!(
        esc::decode_serial(&answer).ok(),
        Some(profile.esc_serial_str())
    );
    let c = served.counters();
    assert_eq!((c.registrations, c.logins, c.reads, c.beeps), (1, 1, 1, 1));

    // A link fault is played by the fake: btleplug sees the device disconnect.
    served
        .apply_fault(Fault::DropLink {
            down_for: Duration::from_millis(300),
        })
        .await;
    assert!(!served.with_scooter(|s| s.is_connected()));
    assert!(!p.is_connected().await.expect("state"));

    // Like BlueZ, the connect waits out the hold-off and then succeeds; like a real scooter,
    // the new connection has no session until the client logs in again (protocol.md §3.7).
    let started = tokio::time::Instant::now();
    tokio::time::timeout(WAIT, p.connect())
        .await
        .expect("connects once the hold-off is over")
        .expect("connect");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(served.with_scooter(|s| s.is_connected()));
    assert!(
        !served.with_scooter(|s| s.has_session()),
        "the session died with the link"
    );
    assert_eq!(served.counters().logins, 1);
}

#[tokio::test]
async fn btleplug_reads_the_key_characteristic_and_talks_xor() {
    let Some(bus) = isolated_bus("btleplug_reads_the_key_characteristic_and_talks_xor") else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.expect("fake BlueZ");
    let mut c = ScooterConfig::new(Model::M365, 82).with_generation(Generation::Xor);
    c.link = None;
    let scooter = Scooter::new(c).expect("scooter");
    let profile = scooter.profile().clone();
    let _served = ServedScooter::start(&fake, scooter, Duration::from_millis(100)).expect("served");

    let p = discover_and_connect(profile.address_string()).await;
    let chars = p.characteristics();
    assert!(
        !chars
            .iter()
            .any(|c| c.uuid == Uuid::from_u128(Char::Avdtp.uuid())),
        "generation B has no AVDTP characteristic"
    );
    let key = p
        .read(&find(&chars, Char::Key.uuid()))
        .await
        .expect("KEY is readable");
    assert_eq!(key, profile.key_char());
    p.subscribe(&find(&chars, CHAR_UART_NOTIFY))
        .await
        .expect("subscribe");
    let mut notes: Notes = p.notifications().await.expect("notifications");
    let write = find(&chars, Char::UartWrite.uuid());
    let mut uart = UartClient::new(Generation::Xor);

    // Recover the rest of the keystream from the all-zero BMS 0x50 block, then read the serial.
    let mut keystream = m365_proto::xor::Keystream::new(key);
    let mut exchange = async |wire: Vec<u8>, uart: &mut UartClient| -> Vec<u8> {
        for chunk in wire.chunks(ATT_PAYLOAD) {
            p.write(&write, chunk, WriteType::WithoutResponse)
                .await
                .expect("write");
        }
        tokio::time::timeout(WAIT, async {
            loop {
                let note = notes.next().await.expect("notification stream");
                uart.reassembler.push(&note.value);
                if let Some(frame) = uart.reassembler.next_frame() {
                    return frame;
                }
            }
        })
        .await
        .expect("answer in time")
    };
    let answer = exchange(keystream.recovery_request(), &mut uart).await;
    keystream
        .extend_from_zero_read(&answer)
        .expect("key recovery");
    assert_eq!(keystream.as_bytes(), profile.xor_key.as_slice());
    let answer = exchange(keystream.encrypt(&esc::read_serial()), &mut uart).await;
    let serial = keystream.decrypt(&answer).expect("decrypts");
    assert_eq!(
        esc::decode_serial(&serial).ok(),
        Some(profile.esc_serial_str())
    );
}
