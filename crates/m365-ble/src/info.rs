//! Everything readable about a scooter, for `m365 info`: identity, firmware versions, state,
//! trip and totals, battery, cells, settings and error codes with their meanings. One batch of
//! pipelined reads; each block decoded by the proto crate's register decoders.

use m365_proto::frame::Frame;
use m365_proto::model::Model;
use m365_proto::registers::battery::{BatteryInfo, CellVoltages};
use m365_proto::registers::bms::{self, BmsStatus, ChargeCounts, ManufactureDate};
use m365_proto::registers::codes::{ErrorCode, WarningCode};
use m365_proto::registers::esc::{self, SessionTimes, TotalTimes};
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::settings::{Settings, SpeedMode};
use m365_proto::registers::version::{BleVersion, FirmwareVersion};
use m365_proto::registers::{RegisterError, Unit, read_unit};

/// The decoded register blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// ESC serial number.
    pub serial: String,
    /// PIN.
    pub pin: String,
    /// ESC firmware.
    pub esc_version: FirmwareVersion,
    /// BMS firmware as seen by the ESC.
    pub bms_version: FirmwareVersion,
    /// External battery firmware, if one is fitted.
    pub ext_bms_version: Option<FirmwareVersion>,
    /// BLE module firmware.
    pub ble_version: BleVersion,
    /// ESC error (0x1B).
    pub error: ErrorCode,
    /// ESC warning (0x1C).
    pub warning: WarningCode,
    /// The motor-info block (state, speed, trip, uptime).
    pub motor: MotorInfo,
    /// Remaining range, km.
    pub range_km: f64,
    /// Odometer, m.
    pub total_distance_m: u32,
    /// Total power-on and riding time.
    pub total_times: TotalTimes,
    /// This power cycle's power-on and riding time.
    pub session_times: SessionTimes,
    /// Frame temperature, °C.
    pub frame_temperature_c: f64,
    /// KERS, cruise, tail light.
    pub settings: Settings,
    /// Speed mode (decoded for the model when known).
    pub speed_mode: SpeedMode,
    /// Battery serial.
    pub battery_serial: String,
    /// BMS firmware.
    pub battery_version: FirmwareVersion,
    /// Design capacity, mAh.
    pub design_capacity_mah: u16,
    /// Cycles and charges.
    pub charges: ChargeCounts,
    /// Manufacture date of the pack.
    pub manufactured: ManufactureDate,
    /// BMS status word.
    pub bms_status: BmsStatus,
    /// Live battery values.
    pub battery: BatteryInfo,
    /// Battery health, %.
    pub health_percent: u16,
    /// Cell voltages.
    pub cells: CellVoltages,
}

/// The reads [`decode`] needs, in its order.
pub fn requests() -> Vec<Frame> {
    vec![
        // 0x10..0x1C: serial, PIN, version, error, warning in one block.
        read_unit(Unit::Esc, esc::REG_SERIAL, 0x1A),
        esc::read_versions(),
        esc::read_motor_info(),
        esc::read_range(),
        esc::read_total_distance(),
        esc::read_total_times(),
        esc::read_session_times(),
        esc::read_frame_temperature(),
        esc::read_settings(),
        esc::read_speed_mode(),
        bms::read_identity(),
        bms::read_cycles(),
        bms::read_manufacture_date(),
        bms::read_status(),
        bms::read_battery_info(),
        bms::read_health(),
        bms::read_cells(),
    ]
}

/// Decodes the answers to [`requests`]; `model` decides how the speed mode reads.
pub fn decode(answers: &[Frame], model: Option<Model>) -> Result<Info, RegisterError> {
    let get = |i: usize| {
        answers.get(i).ok_or(RegisterError::NotCovered {
            reg: 0,
            words: 1,
            attr: 0,
            bytes: 0,
        })
    };
    let (error, warning) = esc::decode_codes(get(0)?)?;
    let speed_raw =
        m365_proto::registers::ReadResponse::new(get(9)?, Unit::Esc)?.u16(esc::REG_SPEED_MODE)?;
    Ok(Info {
        serial: esc::decode_serial(get(0)?)?,
        pin: esc::decode_pin(get(0)?)?,
        esc_version: esc::decode_version(get(0)?)?,
        error,
        warning,
        bms_version: esc::decode_bms_version(get(1)?)?,
        ext_bms_version: esc::decode_ext_bms_version(get(1)?)?,
        ble_version: esc::decode_ble_version(get(1)?)?,
        motor: MotorInfo::decode(get(2)?)?,
        range_km: esc::decode_range_km(get(3)?)?,
        total_distance_m: esc::decode_total_distance_m(get(4)?)?,
        total_times: TotalTimes::decode(get(5)?)?,
        session_times: SessionTimes::decode(get(6)?)?,
        frame_temperature_c: esc::decode_frame_temperature_c(get(7)?)?,
        settings: Settings::decode(get(8)?)?,
        speed_mode: match model {
            Some(model) => SpeedMode::from_raw(speed_raw, model),
            None => SpeedMode::Unknown(speed_raw),
        },
        battery_serial: bms::decode_serial(get(10)?)?,
        battery_version: bms::decode_version(get(10)?)?,
        design_capacity_mah: bms::decode_design_capacity_mah(get(10)?)?,
        charges: ChargeCounts::decode(get(11)?)?,
        manufactured: ManufactureDate::decode(get(12)?)?,
        bms_status: BmsStatus::decode(get(13)?)?,
        battery: BatteryInfo::decode(get(14)?)?,
        health_percent: bms::decode_health_percent(get(15)?)?,
        cells: CellVoltages::decode(get(16)?)?,
    })
}
