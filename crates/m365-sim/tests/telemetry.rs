//! Reading every register block through a logged-in Mi-auth session and decoding it with the
//! client's decoders: the values must agree with the simulated physics.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bench, UartClient, instant_config, word};
use m365_proto::registers::battery::{BatteryInfo, CellVoltages};
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::{Unit, bms, esc};
use m365_sim::{Generation, Model, Script};

fn riding_bench(script: Script) -> (Bench, UartClient) {
    let mut c = instant_config(Model::Pro2, Generation::MiAuth, 21);
    c.script = script;
    let mut bench = Bench::new(c);
    let (_, client) = bench.paired_session();
    (bench, client)
}

#[test]
fn identity_registers_match_the_profile() {
    let (mut bench, mut client) = riding_bench(Script::Parked);
    let profile = bench.scooter.profile().clone();
    let serial = bench
        .request(&mut client, &esc::read_serial())
        .expect("serial");
    assert_eq!(
        esc::decode_serial(&serial).ok(),
        Some(profile.esc_serial_str())
    );
    let versions = bench
        .request(&mut client, &esc::read_versions())
        .expect("versions");
    // 0x66 external BMS (none), 0x67 BMS, 0x68 BLE.
    assert_eq!(word(&versions.payload, 0), 0);
    assert_eq!(word(&versions.payload, 2), profile.firmware.bms);
    assert_eq!(word(&versions.payload, 4), profile.firmware.ble);
    assert_eq!(esc::decode_ext_bms_version(&versions).ok(), Some(None));
    let version = bench
        .request(&mut client, &esc::read_version())
        .expect("version");
    assert_eq!(word(&version.payload, 0), profile.firmware.esc);
    let bms_serial = bench
        .request(&mut client, &bms::read_serial())
        .expect("bms serial");
    assert_eq!(
        bms::decode_serial(&bms_serial).ok().as_deref(),
        std::str::from_utf8(&profile.bms_serial).ok()
    );
    let capacity = bench
        .request(&mut client, &bms::read_design_capacity())
        .expect("capacity");
    assert_eq!(
        bms::decode_design_capacity_mah(&capacity).ok(),
        Some(profile.battery.design_mah)
    );
    let date = bench
        .request(&mut client, &bms::read_manufacture_date())
        .expect("date");
    let date = bms::ManufactureDate::decode(&date).expect("decodes");
    assert!(format!("{date:?}").contains("2021"), "{date:?}");
}

#[test]
fn motor_block_follows_the_ride() {
    // 10 s ramp to 18 km/h, then steady.
    let (mut bench, mut client) =
        riding_bench(Script::Trace(vec![(0.0, 0.0), (10.0, 18.0), (600.0, 18.0)]));
    bench.scooter.step_physics(Duration::from_secs(70));
    let frame = bench
        .request(&mut client, &esc::read_motor_info())
        .expect("motor info");
    let info = MotorInfo::decode(&frame).expect("decodes");
    assert!((info.speed_kmh - 18.0).abs() < 0.01, "{}", info.speed_kmh);
    // ∫speed = 25 m (ramp) + 60 s × 5 m/s = 325 m, reported in 10 m units.
    assert_eq!(info.trip_distance_m, 320);
    assert_eq!(info.uptime_s, 70);
    assert!(!info.status.locked());
    assert_eq!(
        info.total_distance_m,
        bench.scooter.ride().odometer_m() as u32
    );
    assert!((info.average_speed_kmh - 325.0 / 70.0 * 3.6).abs() < 0.1);
    assert_eq!(info.battery_percent, bench.scooter.ride().pack().percent());
    let times = bench
        .request(&mut client, &esc::read_session_times())
        .expect("session times");
    assert_eq!(word(&times.payload, 0), 70, "0x3A mirrors 0xBA");
    // The wheel starts turning during the first 0.1 s step of the ramp.
    let riding = word(&times.payload, 2);
    assert!(
        (69..=70).contains(&riding),
        "0x3B counts riding seconds: {riding}"
    );
}

#[test]
fn battery_block_and_cells_are_consistent() {
    let (mut bench, mut client) = riding_bench(Script::Trace(vec![(0.0, 20.0)]));
    bench.scooter.step_physics(Duration::from_secs(120));
    let battery = bench
        .request(&mut client, &bms::read_battery_info())
        .expect("battery");
    let battery = BatteryInfo::decode(&battery).expect("decodes");
    let cells = bench
        .request(&mut client, &bms::read_cells())
        .expect("cells");
    let cells = CellVoltages::decode(&cells).expect("decodes");
    assert_eq!(cells.count(), 10);
    let sum: f64 = cells.volts().sum();
    assert!(
        (sum - battery.voltage_v).abs() < 0.02,
        "cells {sum} V vs pack {} V",
        battery.voltage_v
    );
    assert!(battery.current_a > 1.0, "riding draws current");
    assert!((30.0..42.5).contains(&battery.voltage_v));
    assert!(battery.percent > 0 && battery.percent <= 100);
    assert!(cells.spread_mv() < 40);
    assert!((15..40).contains(&battery.temperature1_c));
    let remaining = f64::from(battery.remaining_mah);
    let design = f64::from(bench.scooter.profile().battery.design_mah);
    assert!((remaining / design * 100.0 - f64::from(battery.percent)).abs() <= 1.0);
}

#[test]
fn charging_reports_negative_current_and_the_status_bit() {
    let (mut bench, mut client) = riding_bench(Script::Parked);
    bench.scooter.ride_mut().set_charging(true);
    bench.scooter.step_physics(Duration::from_secs(10));
    let battery = bench
        .request(&mut client, &bms::read_battery_info())
        .expect("battery");
    let battery = BatteryInfo::decode(&battery).expect("decodes");
    assert!(battery.current_a < 0.0);
    let status = bench
        .request(&mut client, &bms::read_status())
        .expect("status");
    assert!(bms::BmsStatus::decode(&status).expect("decodes").charging());
}

#[test]
fn range_and_temperature_and_zero_block() {
    let (mut bench, mut client) = riding_bench(Script::Parked);
    let range = bench
        .request(&mut client, &esc::read_range())
        .expect("range");
    let km = esc::decode_range_km(&range).expect("decodes");
    assert!((km - bench.scooter.ride().range_km()).abs() < 0.011, "{km}");
    let temp = bench
        .request(&mut client, &esc::read_frame_temperature())
        .expect("temperature");
    let c = esc::decode_frame_temperature_c(&temp).expect("decodes");
    assert!((c - bench.scooter.ride().esc_temp_c()).abs() < 0.06);
    let zeros = bench
        .read(&mut client, Unit::Bms, 0x50, 0x20)
        .expect("zero block");
    assert_eq!(zeros.payload, vec![0u8; 32]);
    let unknown = bench.read(&mut client, Unit::Esc, 0x69, 2).expect("0x69");
    assert_eq!(unknown.payload, vec![0, 0]);
}

#[test]
fn every_block_of_both_memories_can_be_read() {
    let (mut bench, mut client) = riding_bench(Script::Loop(Default::default()));
    bench.scooter.step_physics(Duration::from_secs(30));
    // Dump the ESC (0x00–0xFF) and BMS (0x00–0x7F) memories in 0x38-byte reads, as py9b does.
    for (unit, words) in [(Unit::Esc, 256u16), (Unit::Bms, 128u16)] {
        let mut dumped = Vec::new();
        let mut attr = 0u16;
        while attr < words {
            let frame = bench
                .read(&mut client, unit, attr as u8, 0x38)
                .unwrap_or_else(|| panic!("{unit:?} {attr:#x} unanswered"));
            assert_eq!(frame.attr, attr as u8);
            assert_eq!(frame.payload.len(), 0x38);
            dumped.extend_from_slice(&frame.payload);
            attr += 0x1C;
        }
        let expected = bench.scooter.registers();
        for i in 0..usize::from(words) {
            assert_eq!(
                word(&dumped, i * 2),
                expected.word(unit, i),
                "{unit:?} word {i:#x}"
            );
        }
    }
    assert!(bench.scooter.counters().reads >= 15);
}
