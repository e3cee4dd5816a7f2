//! Register writes through an encrypted session: RW 0x02 is acknowledged (`01` accepted, `00`
//! read-only), RW 0x03 gets no answer, and every accepted write reads back or has its side
//! effect (lock bit, reboot, power-off).
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Bench, UartClient, instant_config, word};
use m365_proto::frame::Frame;
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::settings::{KersLevel, TailLightFlags};
use m365_proto::registers::write::{self, WriteAck, WriteMode};
use m365_proto::registers::{Unit, esc};
use m365_sim::{Generation, Model, ScooterEvent, Script};

fn session(script: Script) -> (Bench, UartClient) {
    let mut c = instant_config(Model::Pro2, Generation::MiAuth, 31);
    c.script = script;
    let mut bench = Bench::new(c);
    let (_, client) = bench.paired_session();
    (bench, client)
}

fn read_word(bench: &mut Bench, client: &mut UartClient, reg: u8) -> u16 {
    let frame = bench
        .read(client, Unit::Esc, reg, 2)
        .unwrap_or_else(|| panic!("no answer reading {reg:#x}"));
    word(&frame.payload, 0)
}

#[test]
fn acknowledged_writes_answer_01_and_read_back() {
    let (mut bench, mut client) = session(Script::Parked);
    let ack = bench
        .request(
            &mut client,
            &write::kers(KersLevel::from_raw(2), WriteMode::Ack),
        )
        .expect("ack");
    let ack = WriteAck::decode(&ack).expect("decodes");
    assert!(ack.accepted());
    assert_eq!(ack.reg, esc::REG_KERS);
    assert_eq!(read_word(&mut bench, &mut client, esc::REG_KERS), 2);
    assert_eq!(bench.scooter.ride().kers(), 2);
}

#[test]
fn unacknowledged_writes_get_no_answer_but_take_effect() {
    let (mut bench, mut client) = session(Script::Parked);
    let answer = bench.request(&mut client, &write::cruise(true, WriteMode::NoAck));
    assert_eq!(answer, None, "RW 0x03 is never answered");
    assert_eq!(read_word(&mut bench, &mut client, esc::REG_CRUISE), 1);
    let flags = TailLightFlags(0x0010).with_always_on(true);
    assert!(
        bench
            .request(
                &mut client,
                &write::write_word(Unit::Esc, esc::REG_TAIL_LIGHT, flags.0, WriteMode::NoAck)
            )
            .is_none()
    );
    // 0x7D is stored unchanged, mph bit included.
    assert_eq!(
        read_word(&mut bench, &mut client, esc::REG_TAIL_LIGHT),
        0x0012
    );
    assert_eq!(bench.scooter.counters().writes, 2);
}

#[test]
fn read_only_registers_answer_00_and_keep_their_value() {
    let (mut bench, mut client) = session(Script::Parked);
    let before = read_word(&mut bench, &mut client, esc::REG_VERSION);
    let ack = bench
        .request(
            &mut client,
            &write::write_word(Unit::Esc, esc::REG_VERSION, 0x0999, WriteMode::Ack),
        )
        .expect("ack");
    assert!(!WriteAck::decode(&ack).expect("decodes").accepted());
    assert_eq!(read_word(&mut bench, &mut client, esc::REG_VERSION), before);
    let bms = bench
        .request(
            &mut client,
            &write::write_word(Unit::Bms, 0x31, 1, WriteMode::Ack),
        )
        .expect("ack");
    let bms = WriteAck::decode(&bms).expect("decodes");
    assert_eq!((bms.unit, bms.accepted()), (Unit::Bms, false));
}

#[test]
fn lock_stops_the_scooter_sets_the_flag_and_pushing_raises_the_alarm() {
    let (mut bench, mut client) = session(Script::Trace(vec![(0.0, 15.0)]));
    bench.scooter.step_physics(Duration::from_secs(5));
    let ack = bench
        .request(&mut client, &write::lock(WriteMode::Ack))
        .expect("ack");
    assert!(WriteAck::decode(&ack).expect("decodes").accepted());
    // The script still asks for 15 km/h: the locked scooter is being pushed.
    bench.scooter.step_physics(Duration::from_secs(2));
    let info = bench
        .request(&mut client, &esc::read_motor_info())
        .expect("info");
    let info = MotorInfo::decode(&info).expect("decodes");
    assert_eq!(info.speed_kmh, 0.0);
    assert!(info.status.locked() && info.status.alarm());
    assert_eq!(info.warning.raw(), 9, "warning 9: vehicle in lock mode");

    assert!(
        bench
            .request(&mut client, &write::unlock(WriteMode::NoAck))
            .is_none()
    );
    bench.scooter.step_physics(Duration::from_secs(1));
    let info = bench
        .request(&mut client, &esc::read_motor_info())
        .expect("info");
    let info = MotorInfo::decode(&info).expect("decodes");
    assert!(!info.status.locked() && !info.status.alarm());
    assert!(info.speed_kmh > 14.0);
}

#[test]
fn pin_and_speed_mode_are_writable() {
    let (mut bench, mut client) = session(Script::Parked);
    let pin = Frame {
        dir: 0x20,
        rw: 0x03,
        attr: esc::REG_PIN,
        payload: b"654321".to_vec(),
    };
    assert!(bench.request(&mut client, &pin).is_none());
    let read = bench
        .read(&mut client, Unit::Esc, esc::REG_PIN, 6)
        .expect("pin");
    assert_eq!(esc::decode_pin(&read).ok().as_deref(), Some("654321"));
    let ack = bench
        .request(
            &mut client,
            &write::write_word(Unit::Esc, esc::REG_SPEED_MODE, 2, WriteMode::Ack),
        )
        .expect("ack");
    assert!(WriteAck::decode(&ack).expect("decodes").accepted());
    assert_eq!(read_word(&mut bench, &mut client, esc::REG_SPEED_MODE), 2);
}

#[test]
fn reboot_restarts_the_session_counters() {
    let (mut bench, mut client) = session(Script::Trace(vec![(0.0, 10.0)]));
    bench.scooter.step_physics(Duration::from_secs(30));
    assert_eq!(read_word(&mut bench, &mut client, 0x3A), 30);
    assert!(
        bench
            .request(&mut client, &write::reboot(WriteMode::NoAck))
            .is_none()
    );
    assert!(bench.events.contains(&ScooterEvent::Rebooted));
    assert_eq!(read_word(&mut bench, &mut client, 0x3A), 0);
    assert_eq!(read_word(&mut bench, &mut client, 0xB9), 0);
}

#[test]
fn power_off_drops_the_link_and_the_button_turns_it_back_on() {
    let (mut bench, mut client) = session(Script::Parked);
    let ack = bench.request(&mut client, &write::power_off(WriteMode::Ack));
    assert_eq!(
        ack, None,
        "the link drops before the acknowledgement leaves"
    );
    assert!(bench.events.contains(&ScooterEvent::PoweredOff));
    assert!(bench.events.contains(&ScooterEvent::DropLink));
    assert!(!bench.scooter.is_connected());
    let now = bench.now;
    assert!(bench.scooter.advertisement(now).is_none(), "off: silent");
    assert!(bench.scooter.connect(now).is_err());
    bench.press();
    assert!(bench.events.contains(&ScooterEvent::PoweredOn));
    assert!(bench.scooter.advertisement(now).is_some());
    assert!(bench.scooter.connect(now).is_ok());
}
