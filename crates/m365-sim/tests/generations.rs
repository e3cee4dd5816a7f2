//! Each generation reads a full telemetry sample: Mi-auth after login (D), XOR after key
//! recovery from the KEY characteristic and BMS 0x50 (B), plain frames (A). Also: what each
//! generation advertises and exposes, and that Mi-auth firmware ignores plain frames.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Bench, UartClient, instant_config};
use m365_proto::frame::Frame;
use m365_proto::gatt::{CHAR_KEY, CHAR_VERSION, Char};
use m365_proto::model::{GattDetection, ManufacturerData, detect_from_gatt};
use m365_proto::registers::battery::{BatteryInfo, CellVoltages};
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::{bms, esc};
use m365_sim::profile::{ALL_GENERATIONS, ALL_MODELS};
use m365_sim::{Generation, Model};

/// Reads the blocks of a full sample and checks they decode.
fn full_sample(bench: &mut Bench, client: &mut UartClient) {
    let info = bench
        .request(client, &esc::read_motor_info())
        .expect("motor info");
    assert!(MotorInfo::decode(&info).is_ok());
    let range = bench.request(client, &esc::read_range()).expect("range");
    assert!(esc::decode_range_km(&range).expect("range") > 0.0);
    let battery = bench
        .request(client, &bms::read_battery_info())
        .expect("battery");
    assert!(BatteryInfo::decode(&battery).expect("battery").voltage_v > 30.0);
    let cells = bench.request(client, &bms::read_cells()).expect("cells");
    assert_eq!(CellVoltages::decode(&cells).expect("cells").count(), 10);
    let serial = bench.request(client, &esc::read_serial()).expect("serial");
    assert_eq!(
        esc::decode_serial(&serial).ok(),
        Some(bench.scooter.profile().esc_serial_str())
    );
}

#[test]
fn miauth_reads_a_full_sample() {
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 41));
    let (_, mut client) = bench.paired_session();
    full_sample(&mut bench, &mut client);
    assert_eq!(bench.scooter.counters().rejected_frames, 0);
}

#[test]
fn xor_reads_a_full_sample_after_key_recovery() {
    let mut bench = Bench::new(instant_config(Model::M365, Generation::Xor, 42));
    bench.connect();
    let mut client = bench.xor_client();
    let recovered = client.keystream.as_ref().map(|k| k.as_bytes().to_vec());
    assert_eq!(recovered, Some(bench.scooter.profile().xor_key.clone()));
    full_sample(&mut bench, &mut client);
    // A client with a wrong key gets answers it cannot decode, and the scooter cannot read it.
    let mut wrong = UartClient::new(Generation::Xor);
    wrong.keystream = Some(m365_proto::xor::Keystream::new(vec![0x5A; 35]));
    assert!(bench.request(&mut wrong, &esc::read_serial()).is_none());
}

#[test]
fn plain_reads_a_full_sample() {
    let mut bench = Bench::new(instant_config(Model::M365, Generation::Plain, 43));
    bench.connect();
    let mut client = UartClient::new(Generation::Plain);
    full_sample(&mut bench, &mut client);
}

#[test]
fn every_model_and_generation_answers_a_read() {
    for (i, model) in ALL_MODELS.into_iter().enumerate() {
        for generation in ALL_GENERATIONS {
            let mut bench = Bench::new(instant_config(model, generation, 100 + i as u64));
            let mut client = match generation {
                Generation::MiAuth => bench.paired_session().1,
                Generation::Xor => {
                    bench.connect();
                    bench.xor_client()
                }
                Generation::Plain => {
                    bench.connect();
                    UartClient::new(Generation::Plain)
                }
            };
            let cap = bench
                .request(&mut client, &bms::read_design_capacity())
                .unwrap_or_else(|| panic!("{model} {generation}: no answer"));
            assert_eq!(
                bms::decode_design_capacity_mah(&cap).ok(),
                Some(bench.scooter.profile().battery.design_mah)
            );
        }
    }
}

#[test]
fn miauth_ignores_plain_frames_before_and_after_login() {
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 44));
    bench.connect();
    let mut plain = UartClient::new(Generation::Plain);
    assert!(bench.request(&mut plain, &esc::read_serial()).is_none());
    assert_eq!(bench.scooter.counters().rejected_frames, 1);
    assert_eq!(bench.scooter.counters().reads, 0);
    // Logged in, plain frames are still ignored.
    bench.disconnect();
    let (_, mut session) = bench.paired_session();
    assert!(bench.request(&mut plain, &esc::read_serial()).is_none());
    assert!(bench.request(&mut session, &esc::read_serial()).is_some());
}

#[test]
fn an_encrypted_frame_whose_second_slice_starts_like_a_plain_frame_is_not_dropped() {
    use m365_proto::encrypted::seal_with_counter;
    use m365_proto::registers::write::{self, WriteMode};
    let mut bench = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 46));
    let (_, mut session) = bench.paired_session();
    let keys = session.keys.clone().expect("keys");
    // A PIN write is 24 bytes on the wire: the second 20-byte write starts inside the tag.
    // Look for the random bytes that make it start with `55 AA` (about 1 in 65 536).
    let frame = write::pin(*b"424242", WriteMode::NoAck);
    let wire = (0u32..)
        .map(|r| {
            seal_with_counter(&keys.app_key, &keys.app_iv, 0, &frame, r.to_le_bytes())
                .expect("seal")
        })
        .find(|w| w.get(20..22) == Some(&[0x55, 0xAA][..]))
        .expect("such random bytes exist");
    for chunk in wire.chunks(20) {
        bench.write(m365_proto::gatt::Char::UartWrite, chunk);
    }
    assert_eq!(
        bench.scooter.counters().writes,
        1,
        "the write arrived whole"
    );
    let read = m365_proto::registers::read_unit(m365_proto::registers::Unit::Esc, 0x17, 6);
    let pin = bench.request(&mut session, &read).expect("PIN");
    assert_eq!(pin.payload, b"424242");
}

#[test]
fn advertisement_and_gatt_identify_the_generation() {
    for generation in ALL_GENERATIONS {
        let mut bench = Bench::new(instant_config(Model::Pro2, generation, 45));
        let now = bench.now;
        let adv = bench.scooter.advertisement(now).expect("advertising");
        let data = ManufacturerData::parse(adv.company_id, &adv.manufacturer_data).expect("parses");
        assert!(data.check_ok);
        assert_eq!(data.model(), Some(Model::Pro2));
        assert_eq!(data.generation_code, generation.advert_code());
        assert!(adv.name.starts_with("MIScooter"));
        let uuids = bench
            .scooter
            .profile()
            .gatt()
            .into_iter()
            .flat_map(|s| s.chars.into_iter().map(|c| c.uuid));
        match detect_from_gatt(uuids) {
            GattDetection::Generation(g) => assert_eq!(g, generation),
            other => assert_eq!(generation, Generation::Plain, "{other:?}"),
        }
        // The FE95 frame counter moves between advertisements (Mi-auth only).
        let next = bench.scooter.advertisement(now).expect("advertising");
        match generation {
            Generation::MiAuth => assert_ne!(adv.service_data, next.service_data),
            _ => assert_eq!(adv.service_data, None),
        }
    }
}

#[test]
fn readable_characteristics_per_generation() {
    let d = Bench::new(instant_config(Model::Pro2, Generation::MiAuth, 46));
    assert_eq!(
        d.scooter.read_characteristic(CHAR_VERSION),
        Some(b"1.5.7".to_vec())
    );
    assert_eq!(d.scooter.read_characteristic(CHAR_KEY), None);
    let b = Bench::new(instant_config(Model::M365, Generation::Xor, 46));
    assert_eq!(
        b.scooter.read_characteristic(CHAR_KEY).map(|k| k.len()),
        Some(12)
    );
    assert_eq!(Char::Key.uuid(), CHAR_KEY);
}

#[test]
fn long_answers_are_sliced_into_20_byte_notifications() {
    let mut bench = Bench::new(instant_config(Model::M365, Generation::Plain, 47));
    bench.connect();
    let read = Frame {
        dir: 0x20,
        rw: 0x01,
        attr: 0xB0,
        payload: vec![0x20],
    };
    for chunk in read.encode().chunks(20) {
        bench.write(Char::UartWrite, chunk);
    }
    let mut sizes = Vec::new();
    while let Some(t) = bench.scooter.poll_transmit() {
        assert_eq!(t.char, Char::UartNotify);
        sizes.push(t.data.len());
    }
    // 0x20 bytes + 2 → LEN 0x22, plain frame 40 bytes: 20 + 20, and the empty notification
    // that ends a frame whose last notification is full (§2.3).
    assert_eq!(sizes, vec![20, 20, 0]);
}
