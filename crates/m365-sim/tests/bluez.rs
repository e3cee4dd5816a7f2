//! The scooter served on the fake BlueZ, seen through an unmodified btleplug central: it is
//! discovered with its advertisement, and the `m365-proto` client machines register, log in and
//! read telemetry over real D-Bus GATT calls. Link faults are played by the fake.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// The number of notifications the earlier client waits for after a request whose answer
/// carries `payload` bytes: as many as the Mi-auth frame fills, and one more when the last is
/// full (the empty terminator it relies on, protocol.md §2.3; its `read(2)` for 20-byte
/// answers).
fn notifications_per_answer(payload: usize) -> usize {
    let wire = payload + 2 + 16;
    wire.div_ceil(ATT_PAYLOAD) + usize::from(wire.is_multiple_of(ATT_PAYLOAD))
}

/// A read the way the earlier client (martinge17/escooter-monitoring, after macbury/m365)
/// makes it: the request sealed with counter 0 every time, then exactly
/// [`notifications_per_answer`] UART notifications taken and concatenated, with no
/// reassembly by LEN. `None` when they do not all come within 2 s, which is how that client
/// fails.
async fn read_by_counting(
    p: &BlePeripheral,
    notes: &mut Notes,
    keys: &m365_proto::keys::SessionKeys,
    request: &m365_proto::frame::Frame,
) -> Option<m365_proto::frame::Frame> {
    use m365_proto::encrypted::{open_with_counter, seal_with_counter};
    let payload = usize::from(*request.payload.first()?);
    let wire = seal_with_counter(&keys.app_key, &keys.app_iv, 0, request, [7, 7, 7, 7]).ok()?;
    let write = find(&p.characteristics(), Char::UartWrite.uuid());
    for chunk in wire.chunks(ATT_PAYLOAD) {
        p.write(&write, chunk, WriteType::WithoutResponse)
            .await
            .expect("write");
    }
    let mut bytes = Vec::new();
    let mut taken = 0;
    let all = tokio::time::timeout(Duration::from_secs(2), async {
        while taken < notifications_per_answer(payload) {
            let note = notes.next().await.expect("notification stream");
            if note.uuid == Uuid::from_u128(CHAR_UART_NOTIFY) {
                bytes.extend_from_slice(&note.value);
                taken += 1;
            }
        }
    })
    .await;
    all.ok()?;
    let counter = u32::from(u16::from_le_bytes([*bytes.get(3)?, *bytes.get(4)?]));
    open_with_counter(&keys.dev_key, &keys.dev_iv, counter, &bytes)
        .ok()
        .map(|(frame, _)| frame)
}

/// Serves a Pro 2 (with or without the empty terminator), registers and logs in with the
/// proto machines over btleplug; the peripheral, its notifications and the session keys.
async fn logged_in(
    fake: &FakeBluez,
    seed: u64,
    empty_terminator: bool,
) -> (
    ServedScooter,
    BlePeripheral,
    Notes,
    m365_proto::keys::SessionKeys,
) {
    let mut c = ScooterConfig::new(Model::Pro2, seed);
    c.auto_press = Some(Duration::from_millis(1));
    c.link = None;
    c.empty_terminator = empty_terminator;
    let scooter = Scooter::new(c).expect("scooter");
    let address = scooter.profile().address_string();
    let served = ServedScooter::start(fake, scooter, Duration::from_millis(100)).expect("served");
    let p = discover_and_connect(address).await;
    let chars = p.characteristics();
    for uuid in [Char::Upnp.uuid(), Char::Avdtp.uuid(), CHAR_UART_NOTIFY] {
        p.subscribe(&find(&chars, uuid)).await.expect("subscribe");
    }
    let mut notes: Notes = p.notifications().await.expect("notifications");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pairing =
        ClientPairing::new(std::time::Instant::now(), &mut rng, ClientConfig::default());
    let registration = match drive(&p, &mut notes, &mut pairing).await {
        pairing::ClientEvent::Registered(r) => r,
        other => panic!("registration: {other:?}"),
    };
    let mut login = ClientLogin::new(
        std::time::Instant::now(),
        &mut rng,
        registration.token.clone(),
        login::Config::default(),
    );
    let keys = match drive(&p, &mut notes, &mut login).await {
        login::ClientEvent::LoggedIn(keys) => keys,
        other => panic!("login: {other:?}"),
    };
    (served, p, notes, keys)
}

#[tokio::test]
async fn a_client_that_counts_notifications_like_the_earlier_one_reads_correct_values() {
    let Some(bus) = isolated_bus(
        "a_client_that_counts_notifications_like_the_earlier_one_reads_correct_values",
    ) else {
        return;
    };
    use m365_proto::registers::battery::BatteryInfo;
    use m365_proto::registers::motor_info::MotorInfo;
    use m365_proto::registers::{Unit, bms, read_unit};
    let fake = FakeBluez::start(bus.address()).await.expect("fake BlueZ");
    let (served, p, mut notes, keys) = logged_in(&fake, 83, true).await;
    let profile = served.with_scooter(|s| s.profile().clone());

    // The earlier client's reads: range and speed (20 bytes on the wire: 2 notifications, the
    // second empty), the motor block (50 bytes: 3), the battery block (28 bytes: 2), the
    // serial (32 bytes: 2), every request with counter 0.
    assert_eq!(notifications_per_answer(2), 2);
    for _ in 0..3 {
        let range = read_by_counting(&p, &mut notes, &keys, &esc::read_range())
            .await
            .expect("range: its two notifications came");
        let km = esc::decode_range_km(&range).expect("range");
        let registers = served.with_scooter(|s| s.registers());
        let now_km = f64::from(registers.word(Unit::Esc, 0x25)) / 100.0;
        assert!((km - now_km).abs() < 0.5, "{km} vs {now_km}");

        let speed = read_by_counting(&p, &mut notes, &keys, &read_unit(Unit::Esc, 0xB5, 2))
            .await
            .expect("speed");
        assert_eq!((speed.attr, speed.payload.len()), (0xB5, 2));

        let motor = read_by_counting(&p, &mut notes, &keys, &esc::read_motor_info())
            .await
            .expect("motor info");
        let motor = MotorInfo::decode(&motor).expect("motor info");
        assert!(motor.battery_percent <= 100);

        let battery = read_by_counting(&p, &mut notes, &keys, &bms::read_battery_info())
            .await
            .expect("battery");
        let battery = BatteryInfo::decode(&battery).expect("battery");
        assert!((30.0..43.0).contains(&battery.voltage_v), "{battery:?}");

        let serial = read_by_counting(&p, &mut notes, &keys, &esc::read_serial())
            .await
            .expect("serial");
        assert_eq!(
            esc::decode_serial(&serial).ok(),
            Some(profile.esc_serial_str())
        );
    }
    let c = served.counters();
    assert_eq!((c.reads, c.rejected_frames), (15, 0));
    assert_eq!(c.empty_notifications, 6, "one per 20-byte answer");

    // Without the terminator the same client waits for a notification that never comes: the
    // earlier client's failure against a simulator that left it out.
    let (quiet, p, mut notes, keys) = logged_in(&fake, 84, false).await;
    assert!(
        read_by_counting(&p, &mut notes, &keys, &esc::read_range())
            .await
            .is_none()
    );
    assert_eq!(quiet.counters().reads, 1, "the request was answered");
}
