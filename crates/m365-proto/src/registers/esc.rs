//! The ESC (motor controller) register map (protocol.md §6.5): addresses, the named reads a
//! client issues, and decoders of the single values. The motor-info block has its own file
//! ([`super::motor_info`]), as do the settings ([`super::settings`]).
//!
//! Requests go to DIR 0x20 and answers come from DIR 0x23.

use super::version::{BleVersion, FirmwareVersion};
use super::{ReadResponse, RegisterError, Unit, read_unit};
use crate::frame::Frame;

/// Serial number, 14 ASCII bytes (0x10..0x16).
pub const REG_SERIAL: u8 = 0x10;
/// PIN, 6 ASCII digits (0x17..0x19).
pub const REG_PIN: u8 = 0x17;
/// ESC firmware version.
pub const REG_VERSION: u8 = 0x1A;
/// Error code (as at 0xB0).
pub const REG_ERROR: u8 = 0x1B;
/// Warning code (as at 0xB1).
pub const REG_WARNING: u8 = 0x1C;
/// Remaining range, 0.01 km.
pub const REG_RANGE: u8 = 0x25;
/// Total distance, m, 32 bits (0x29..0x2A).
pub const REG_TOTAL_DISTANCE: u8 = 0x29;
/// Total power-on time, s, 32 bits (0x32..0x33).
pub const REG_TOTAL_POWER_ON: u8 = 0x32;
/// Total riding time, s, 32 bits (0x34..0x35).
pub const REG_TOTAL_RIDING: u8 = 0x34;
/// Seconds since power-on of this session (§11a Q1).
pub const REG_SESSION_POWER_ON: u8 = 0x3A;
/// Seconds ridden in this session (§11a Q1).
pub const REG_SESSION_RIDING: u8 = 0x3B;
/// Frame / controller temperature, 0.1 °C.
pub const REG_FRAME_TEMPERATURE: u8 = 0x3E;
/// Supply voltage measured by the ESC, 0.01 V.
pub const REG_SUPPLY_VOLTAGE: u8 = 0x47;
/// Motor phase current, 0.01 A.
pub const REG_PHASE_CURRENT: u8 = 0x53;
/// External-battery BMS firmware version (0 without an external pack).
pub const REG_EXT_BMS_VERSION: u8 = 0x66;
/// BMS firmware version as seen by the ESC.
pub const REG_BMS_VERSION: u8 = 0x67;
/// BLE module firmware version.
pub const REG_BLE_VERSION: u8 = 0x68;
/// Write 1 to lock.
pub const REG_LOCK: u8 = 0x70;
/// Write 1 to unlock.
pub const REG_UNLOCK: u8 = 0x71;
/// Speed mode (see [`super::settings::SpeedMode`]).
pub const REG_SPEED_MODE: u8 = 0x75;
/// Write 1 to reboot the ESC.
pub const REG_REBOOT: u8 = 0x78;
/// Write 1 to power off.
pub const REG_POWER_OFF: u8 = 0x79;
/// KERS level.
pub const REG_KERS: u8 = 0x7B;
/// Cruise control.
pub const REG_CRUISE: u8 = 0x7C;
/// Tail-light / unit flags.
pub const REG_TAIL_LIGHT: u8 = 0x7D;
/// First register of the motor-info block.
pub const REG_MOTOR_INFO: u8 = 0xB0;

/// Motor-info block: 0x20 bytes at 0xB0.
pub fn read_motor_info() -> Frame {
    read_unit(Unit::Esc, REG_MOTOR_INFO, 0x20)
}
/// Remaining range: 2 bytes at 0x25.
pub fn read_range() -> Frame {
    read_unit(Unit::Esc, REG_RANGE, 2)
}
/// Serial number: 14 bytes at 0x10.
pub fn read_serial() -> Frame {
    read_unit(Unit::Esc, REG_SERIAL, 0x0E)
}
/// ESC firmware version: 2 bytes at 0x1A.
pub fn read_version() -> Frame {
    read_unit(Unit::Esc, REG_VERSION, 2)
}
/// External BMS, BMS and BLE versions: 6 bytes at 0x66.
pub fn read_versions() -> Frame {
    read_unit(Unit::Esc, REG_EXT_BMS_VERSION, 6)
}
/// BLE module version: 2 bytes at 0x68.
pub fn read_ble_version() -> Frame {
    read_unit(Unit::Esc, REG_BLE_VERSION, 2)
}
/// Total distance: 4 bytes at 0x29.
pub fn read_total_distance() -> Frame {
    read_unit(Unit::Esc, REG_TOTAL_DISTANCE, 4)
}
/// Total power-on and riding time: 8 bytes at 0x32 (0x32..0x35).
pub fn read_total_times() -> Frame {
    read_unit(Unit::Esc, REG_TOTAL_POWER_ON, 8)
}
/// Session power-on and riding time: 4 bytes at 0x3A.
pub fn read_session_times() -> Frame {
    read_unit(Unit::Esc, REG_SESSION_POWER_ON, 4)
}
/// Frame temperature: 2 bytes at 0x3E.
pub fn read_frame_temperature() -> Frame {
    read_unit(Unit::Esc, REG_FRAME_TEMPERATURE, 2)
}
/// Supply voltage: 2 bytes at 0x47.
pub fn read_supply_voltage() -> Frame {
    read_unit(Unit::Esc, REG_SUPPLY_VOLTAGE, 2)
}
/// Phase current: 2 bytes at 0x53.
pub fn read_phase_current() -> Frame {
    read_unit(Unit::Esc, REG_PHASE_CURRENT, 2)
}
/// KERS, cruise and tail-light flags: 6 bytes at 0x7B.
pub fn read_settings() -> Frame {
    read_unit(Unit::Esc, REG_KERS, 6)
}
/// Speed mode: 2 bytes at 0x75.
pub fn read_speed_mode() -> Frame {
    read_unit(Unit::Esc, REG_SPEED_MODE, 2)
}

fn esc(frame: &Frame) -> Result<ReadResponse<'_>, RegisterError> {
    ReadResponse::new(frame, Unit::Esc)
}

/// Remaining range in km: raw in 0.01 km (1830 = 18.30 km).
pub fn decode_range_km(frame: &Frame) -> Result<f64, RegisterError> {
    Ok(f64::from(esc(frame)?.u16(REG_RANGE)?) / 100.0)
}

/// The ESC serial number (14 ASCII characters, e.g. `26354/00467353`).
pub fn decode_serial(frame: &Frame) -> Result<String, RegisterError> {
    esc(frame)?.ascii(REG_SERIAL, 7)
}

/// The PIN (6 ASCII digits).
pub fn decode_pin(frame: &Frame) -> Result<String, RegisterError> {
    esc(frame)?.ascii(REG_PIN, 3)
}

/// ESC firmware version (0x1A).
pub fn decode_version(frame: &Frame) -> Result<FirmwareVersion, RegisterError> {
    Ok(FirmwareVersion(esc(frame)?.u16(REG_VERSION)?))
}

/// BMS firmware version as the ESC reports it (0x67).
pub fn decode_bms_version(frame: &Frame) -> Result<FirmwareVersion, RegisterError> {
    Ok(FirmwareVersion(esc(frame)?.u16(REG_BMS_VERSION)?))
}

/// External-battery BMS version (0x66); `None` when no external pack is fitted (0).
pub fn decode_ext_bms_version(frame: &Frame) -> Result<Option<FirmwareVersion>, RegisterError> {
    let raw = esc(frame)?.u16(REG_EXT_BMS_VERSION)?;
    Ok((raw != 0).then_some(FirmwareVersion(raw)))
}

/// BLE module firmware version (0x68).
pub fn decode_ble_version(frame: &Frame) -> Result<BleVersion, RegisterError> {
    Ok(BleVersion(esc(frame)?.u16(REG_BLE_VERSION)?))
}

/// Lifetime times of the ESC (0x32..0x35).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TotalTimes {
    /// Total power-on time, s (0x32, u32).
    pub power_on_s: u32,
    /// Total riding time, s (0x34, u32).
    pub riding_s: u32,
}

/// Total distance in m (0x29..0x2A).
pub fn decode_total_distance_m(frame: &Frame) -> Result<u32, RegisterError> {
    esc(frame)?.u32(REG_TOTAL_DISTANCE)
}

impl TotalTimes {
    /// Decodes an answer covering 0x32..0x35.
    pub fn decode(frame: &Frame) -> Result<TotalTimes, RegisterError> {
        let r = esc(frame)?;
        Ok(TotalTimes {
            power_on_s: r.u32(REG_TOTAL_POWER_ON)?,
            riding_s: r.u32(REG_TOTAL_RIDING)?,
        })
    }
}

/// Times of the current power-on session (0x3A, 0x3B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimes {
    /// Seconds since power-on (same quantity as 0xBA).
    pub power_on_s: u16,
    /// Seconds actually ridden (counts only while the wheel turns).
    pub riding_s: u16,
}

impl SessionTimes {
    /// Decodes an answer covering 0x3A..0x3B.
    pub fn decode(frame: &Frame) -> Result<SessionTimes, RegisterError> {
        let r = esc(frame)?;
        Ok(SessionTimes {
            power_on_s: r.u16(REG_SESSION_POWER_ON)?,
            riding_s: r.u16(REG_SESSION_RIDING)?,
        })
    }
}

/// Frame temperature in °C: signed, 0.1 °C (280 = 28.0 °C).
pub fn decode_frame_temperature_c(frame: &Frame) -> Result<f64, RegisterError> {
    Ok(f64::from(esc(frame)?.i16(REG_FRAME_TEMPERATURE)?) / 10.0)
}

/// ESC supply voltage in V: 0.01 V.
pub fn decode_supply_voltage_v(frame: &Frame) -> Result<f64, RegisterError> {
    Ok(f64::from(esc(frame)?.u16(REG_SUPPLY_VOLTAGE)?) / 100.0)
}

/// Motor phase current in A: signed, 0.01 A.
pub fn decode_phase_current_a(frame: &Frame) -> Result<f64, RegisterError> {
    Ok(f64::from(esc(frame)?.i16(REG_PHASE_CURRENT)?) / 100.0)
}

/// Error and warning codes from 0x1B..0x1C.
pub fn decode_codes(
    frame: &Frame,
) -> Result<(super::codes::ErrorCode, super::codes::WarningCode), RegisterError> {
    let r = esc(frame)?;
    Ok((
        super::codes::ErrorCode::from_raw(r.u16(REG_ERROR)?),
        super::codes::WarningCode::from_raw(r.u16(REG_WARNING)?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::codes::{ErrorCode, WarningCode};

    fn answer(attr: u8, words: &[u16]) -> Frame {
        let payload = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        Frame::new(0x23, 0x01, attr, payload).unwrap()
    }

    #[test]
    fn scales() {
        assert_eq!(decode_range_km(&answer(0x25, &[1830])).unwrap(), 18.30);
        assert_eq!(
            decode_frame_temperature_c(&answer(0x3E, &[(-55i16) as u16])).unwrap(),
            -5.5
        );
        assert_eq!(
            decode_supply_voltage_v(&answer(0x47, &[4105])).unwrap(),
            41.05
        );
        assert_eq!(
            decode_phase_current_a(&answer(0x53, &[(-250i16) as u16])).unwrap(),
            -2.5
        );
        assert_eq!(
            decode_total_distance_m(&answer(0x29, &[0x0539, 0x0001])).unwrap(),
            66873
        );
        let t = TotalTimes::decode(&answer(0x32, &[10, 0, 5, 1])).unwrap();
        assert_eq!((t.power_on_s, t.riding_s), (10, 65541));
        assert_eq!(
            decode_codes(&answer(0x1B, &[21, 9])).unwrap(),
            (ErrorCode::BmsCommunication, WarningCode::Locked)
        );
        assert_eq!(
            decode_ext_bms_version(&answer(0x66, &[0, 0x115, 0x81])).unwrap(),
            None
        );
        assert_eq!(
            decode_ble_version(&answer(0x66, &[0, 0x115, 0x81]))
                .unwrap()
                .to_string(),
            "081"
        );
    }

    #[test]
    fn mismatches_are_typed() {
        let bms = Frame::new(0x25, 0x01, 0x25, vec![0, 0]).unwrap();
        assert_eq!(
            decode_range_km(&bms),
            Err(RegisterError::WrongDir {
                expected: 0x23,
                found: 0x25
            })
        );
        // An acknowledgement (one result byte) is not taken for the register's value.
        let ack = Frame::new(0x23, 0x02, 0x25, vec![1]).unwrap();
        assert!(matches!(
            decode_range_km(&ack),
            Err(RegisterError::NotCovered { .. })
        ));
        assert_eq!(
            decode_range_km(&answer(0x26, &[1])),
            Err(RegisterError::NotCovered {
                reg: 0x25,
                words: 1,
                attr: 0x26,
                bytes: 2
            })
        );
        assert!(matches!(
            decode_total_distance_m(&answer(0x29, &[1])),
            Err(RegisterError::NotCovered { reg: 0x2A, .. })
        ));
        let odd = Frame::new(0x23, 0x01, 0x25, vec![1]).unwrap();
        assert!(matches!(
            decode_range_km(&odd),
            Err(RegisterError::NotCovered { .. })
        ));
        assert_eq!(
            decode_serial(&answer(0xFF, &[0x3132])),
            Err(RegisterError::NotCovered {
                reg: 0x10,
                words: 7,
                attr: 0xFF,
                bytes: 2
            })
        );
    }
}
