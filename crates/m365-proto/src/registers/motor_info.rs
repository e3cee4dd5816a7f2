//! The motor-info block: 0x20 bytes read at ESC 0xB0 (protocol.md §6.6), the one read that
//! carries most live telemetry.

use super::codes::{ErrorCode, WarningCode};
use super::esc::REG_MOTOR_INFO;
use super::{ReadResponse, RegisterError, Unit};
use crate::frame::Frame;

/// Status flags word at 0xB2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusFlags {
    /// The raw word; bits without a documented meaning (e.g. 0x0800) are kept here.
    pub raw: u16,
}

impl StatusFlags {
    /// Bit 0: speed limited.
    pub fn speed_limited(self) -> bool {
        self.raw & 0x0001 != 0
    }
    /// Bit 1: locked.
    pub fn locked(self) -> bool {
        self.raw & 0x0002 != 0
    }
    /// Bit 2: alarm ("phone vibrates").
    pub fn alarm(self) -> bool {
        self.raw & 0x0004 != 0
    }
}

/// The decoded motor-info block (registers 0xB0..0xBB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotorInfo {
    /// 0xB0.
    pub error: ErrorCode,
    /// 0xB1.
    pub warning: WarningCode,
    /// 0xB2.
    pub status: StatusFlags,
    /// 0xB4: battery level, %.
    pub battery_percent: u16,
    /// 0xB5: current speed, km/h. Raw is signed m/h (km/h × 1000) and can be negative.
    pub speed_kmh: f64,
    /// 0xB6: average speed, km/h (raw m/h, unsigned).
    pub average_speed_kmh: f64,
    /// 0xB7..0xB8: total distance, m (u32).
    pub total_distance_m: u32,
    /// 0xB9: trip distance of this session, m. Raw is in 10 m units (§11a Q2), so raw 5 = 50 m.
    pub trip_distance_m: u32,
    /// 0xBA: seconds since power-on.
    pub uptime_s: u16,
    /// 0xBB: frame temperature, °C. Raw is signed 0.1 °C (250 = 25.0 °C).
    pub frame_temperature_c: f64,
}

/// Registers the block must cover (0xB0..0xBB); the answer to the usual 0x20-byte read covers
/// 0xB0..0xBF.
const WORDS: usize = 12;

impl MotorInfo {
    /// Decodes an ESC answer starting at 0xB0 with at least 24 bytes.
    pub fn decode(frame: &Frame) -> Result<MotorInfo, RegisterError> {
        let r = ReadResponse::new(frame, Unit::Esc)?;
        // One length check for the whole block, then each field by register.
        r.bytes(REG_MOTOR_INFO, WORDS)?;
        Ok(MotorInfo {
            error: ErrorCode::from_raw(r.u16(0xB0)?),
            warning: WarningCode::from_raw(r.u16(0xB1)?),
            status: StatusFlags { raw: r.u16(0xB2)? },
            battery_percent: r.u16(0xB4)?,
            speed_kmh: f64::from(r.i16(0xB5)?) / 1000.0,
            average_speed_kmh: f64::from(r.u16(0xB6)?) / 1000.0,
            total_distance_m: r.u32(0xB7)?,
            trip_distance_m: u32::from(r.u16(0xB9)?) * 10,
            uptime_s: r.u16(0xBA)?,
            frame_temperature_c: f64::from(r.i16(0xBB)?) / 10.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_speed_flags_and_trip_unit() {
        let mut words = [0u16; 16];
        words[2] = 0x0006; // locked with alarm
        words[5] = (-3500i16) as u16;
        words[9] = 5; // 50 m
        words[11] = (-12i16) as u16;
        let payload = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let m = MotorInfo::decode(&Frame::new(0x23, 0x01, 0xB0, payload).unwrap()).unwrap();
        assert!(m.status.locked() && m.status.alarm() && !m.status.speed_limited());
        assert_eq!(m.speed_kmh, -3.5);
        assert_eq!(m.trip_distance_m, 50);
        assert_eq!(m.frame_temperature_c, -1.2);
        let short = Frame::new(0x23, 0x01, 0xB0, vec![0; 22]).unwrap();
        assert!(matches!(
            MotorInfo::decode(&short),
            Err(RegisterError::NotCovered { .. })
        ));
    }
}
