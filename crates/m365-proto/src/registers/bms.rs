//! The BMS (battery) register map (protocol.md §6.7): addresses, named reads, identity,
//! counters, manufacture date, health and status. The live battery block and the cell
//! voltages are in [`super::battery`].
//!
//! Requests go to DIR 0x22 and answers come from DIR 0x25.

use super::version::FirmwareVersion;
use super::{ReadResponse, RegisterError, Unit, read_unit};
use crate::frame::Frame;

/// Battery serial, 14 ASCII bytes (0x10..0x16).
pub const REG_SERIAL: u8 = 0x10;
/// BMS firmware version.
pub const REG_VERSION: u8 = 0x17;
/// Design capacity, mAh.
pub const REG_DESIGN_CAPACITY: u8 = 0x18;
/// Full charge cycles.
pub const REG_CYCLES: u8 = 0x1B;
/// Number of charges.
pub const REG_CHARGES: u8 = 0x1C;
/// Manufacture date (packed).
pub const REG_DATE: u8 = 0x20;
/// Status word; bit 6 = charging.
pub const REG_STATUS: u8 = 0x30;
/// Start of the battery block (remaining mAh).
pub const REG_BATTERY_INFO: u8 = 0x31;
/// Health, %.
pub const REG_HEALTH: u8 = 0x3B;
/// Cell 1 voltage, mV; cell n at 0x40 + n − 1.
pub const REG_CELLS: u8 = 0x40;
/// Bytes read for the cell block: 15 words (0x40..0x4E) cover every pack seen, including
/// third-party 12S packs, and the length is even as registers are words (§7).
pub const CELLS_READ_LEN: u8 = 0x1E;

/// Serial, version and design capacity: 18 bytes at 0x10.
pub fn read_identity() -> Frame {
    read_unit(Unit::Bms, REG_SERIAL, 0x12)
}
/// Battery serial: 14 bytes at 0x10.
pub fn read_serial() -> Frame {
    read_unit(Unit::Bms, REG_SERIAL, 0x0E)
}
/// BMS firmware version: 2 bytes at 0x17.
pub fn read_version() -> Frame {
    read_unit(Unit::Bms, REG_VERSION, 2)
}
/// Design capacity: 2 bytes at 0x18.
pub fn read_design_capacity() -> Frame {
    read_unit(Unit::Bms, REG_DESIGN_CAPACITY, 2)
}
/// Cycles and charges: 4 bytes at 0x1B.
pub fn read_cycles() -> Frame {
    read_unit(Unit::Bms, REG_CYCLES, 4)
}
/// Manufacture date: 2 bytes at 0x20.
pub fn read_manufacture_date() -> Frame {
    read_unit(Unit::Bms, REG_DATE, 2)
}
/// Status word: 2 bytes at 0x30.
pub fn read_status() -> Frame {
    read_unit(Unit::Bms, REG_STATUS, 2)
}
/// Battery block: 10 bytes at 0x31.
pub fn read_battery_info() -> Frame {
    read_unit(Unit::Bms, REG_BATTERY_INFO, 0x0A)
}
/// Health: 2 bytes at 0x3B.
pub fn read_health() -> Frame {
    read_unit(Unit::Bms, REG_HEALTH, 2)
}
/// Cell voltages: [`CELLS_READ_LEN`] bytes at 0x40.
pub fn read_cells() -> Frame {
    read_unit(Unit::Bms, REG_CELLS, CELLS_READ_LEN)
}

fn bms(frame: &Frame) -> Result<ReadResponse<'_>, RegisterError> {
    ReadResponse::new(frame, Unit::Bms)
}

/// The battery serial (14 ASCII characters).
pub fn decode_serial(frame: &Frame) -> Result<String, RegisterError> {
    bms(frame)?.ascii(REG_SERIAL, 7)
}

/// BMS firmware version (0x17).
pub fn decode_version(frame: &Frame) -> Result<FirmwareVersion, RegisterError> {
    Ok(FirmwareVersion(bms(frame)?.u16(REG_VERSION)?))
}

/// Design (factory) capacity in mAh (0x18).
pub fn decode_design_capacity_mah(frame: &Frame) -> Result<u16, RegisterError> {
    bms(frame)?.u16(REG_DESIGN_CAPACITY)
}

/// Charge counters (0x1B, 0x1C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeCounts {
    /// Full charge cycles.
    pub cycles: u16,
    /// Number of charges.
    pub charges: u16,
}

impl ChargeCounts {
    /// Decodes an answer covering 0x1B..0x1C.
    pub fn decode(frame: &Frame) -> Result<ChargeCounts, RegisterError> {
        let r = bms(frame)?;
        Ok(ChargeCounts {
            cycles: r.u16(REG_CYCLES)?,
            charges: r.u16(REG_CHARGES)?,
        })
    }
}

/// Manufacture date at 0x20: bits 15..9 year − 2000, bits 8..5 month, bits 4..0 day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManufactureDate {
    /// Year (2000..2127).
    pub year: u16,
    /// Month as stored (1..12 when valid).
    pub month: u8,
    /// Day as stored (1..31 when valid).
    pub day: u8,
}

impl ManufactureDate {
    /// Unpacks the register value (0x22A2 = 2017-05-02).
    pub fn from_raw(raw: u16) -> ManufactureDate {
        ManufactureDate {
            year: 2000 + (raw >> 9),
            month: ((raw >> 5) & 0x0F) as u8,
            day: (raw & 0x1F) as u8,
        }
    }

    /// Decodes an answer covering 0x20.
    pub fn decode(frame: &Frame) -> Result<ManufactureDate, RegisterError> {
        Ok(ManufactureDate::from_raw(bms(frame)?.u16(REG_DATE)?))
    }
}

impl core::fmt::Display for ManufactureDate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Battery health in % (0x3B); below 60 the pack is faulty.
pub fn decode_health_percent(frame: &Frame) -> Result<u16, RegisterError> {
    bms(frame)?.u16(REG_HEALTH)
}

/// Health below which the pack counts as faulty (§6.7).
pub const HEALTH_FAULT_BELOW: u16 = 60;

/// BMS status word (0x30). Only bit 6 (charging) is documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BmsStatus {
    /// The raw word.
    pub raw: u16,
}

impl BmsStatus {
    /// Bit 6: charging.
    pub fn charging(self) -> bool {
        self.raw & 0x0040 != 0
    }

    /// Decodes an answer covering 0x30.
    pub fn decode(frame: &Frame) -> Result<BmsStatus, RegisterError> {
        Ok(BmsStatus {
            raw: bms(frame)?.u16(REG_STATUS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_the_spec() {
        assert_eq!(ManufactureDate::from_raw(0x150F).to_string(), "2010-08-15");
        assert_eq!(ManufactureDate::from_raw(0x22A2).to_string(), "2017-05-02");
    }

    #[test]
    fn status_bit() {
        assert!(BmsStatus { raw: 0x0040 }.charging());
        assert!(!BmsStatus { raw: 0xFFBF }.charging());
    }
}
