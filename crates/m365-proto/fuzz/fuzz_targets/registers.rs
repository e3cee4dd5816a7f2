//! Runs every register decoder on a frame built from arbitrary bytes (DIR, RW, ATTR, payload),
//! and on the same payload presented as an ESC and a BMS read answer, and parses it as a
//! request the way the simulator does: no decoder may panic.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365_proto::frame::Frame;
use m365_proto::model::Model;
use m365_proto::registers::battery::{BatteryInfo, CellVoltages};
use m365_proto::registers::bms::{self, BmsStatus, ChargeCounts, ManufactureDate};
use m365_proto::registers::esc::{self, SessionTimes, TotalTimes};
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::request::Request;
use m365_proto::registers::settings::{self, Settings, SpeedMode};
use m365_proto::registers::write::WriteAck;

fn decode_all(f: &Frame) {
    let _ = MotorInfo::decode(f).map(|m| (m.error.to_string(), m.warning.to_string()));
    let _ = BatteryInfo::decode(f).map(|b| b.power_w());
    let _ = CellVoltages::decode(f).map(|c| c.spread_mv());
    let _ = esc::decode_range_km(f);
    let _ = esc::decode_serial(f);
    let _ = esc::decode_pin(f);
    let _ = esc::decode_version(f).map(|v| v.to_string());
    let _ = esc::decode_bms_version(f);
    let _ = esc::decode_ext_bms_version(f);
    let _ = esc::decode_ble_version(f).map(|v| (v.to_string(), v.dotted()));
    let _ = esc::decode_total_distance_m(f);
    let _ = TotalTimes::decode(f);
    let _ = SessionTimes::decode(f);
    let _ = esc::decode_frame_temperature_c(f);
    let _ = esc::decode_supply_voltage_v(f);
    let _ = esc::decode_phase_current_a(f);
    let _ = esc::decode_codes(f);
    let _ = Settings::decode(f).map(|s| s.tail_light.with_always_on(true));
    let _ = settings::decode_kers(f);
    let _ = settings::decode_cruise(f);
    let _ = settings::decode_tail_light(f);
    for m in Model::all() {
        let _ = SpeedMode::decode(f, m).map(|s| s.to_string());
    }
    let _ = bms::decode_serial(f);
    let _ = bms::decode_version(f);
    let _ = bms::decode_design_capacity_mah(f);
    let _ = bms::decode_health_percent(f);
    let _ = ChargeCounts::decode(f);
    let _ = ManufactureDate::decode(f).map(|d| d.to_string());
    let _ = BmsStatus::decode(f).map(|s| s.charging());
    let _ = WriteAck::decode(f).map(|a| a.accepted());
    let _ = Request::parse(f);
}

fuzz_target!(|data: &[u8]| {
    let [dir, rw, attr, payload @ ..] = data else {
        return;
    };
    let frame = Frame {
        dir: *dir,
        rw: *rw,
        attr: *attr,
        payload: payload.to_vec(),
    };
    decode_all(&frame);
    for dir in [0x20, 0x22, 0x23, 0x25] {
        decode_all(&Frame {
            dir,
            rw: 0x01,
            ..frame.clone()
        });
    }
});
