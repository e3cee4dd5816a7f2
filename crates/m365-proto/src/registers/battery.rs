//! Live battery values: the 10-byte block at BMS 0x31 and the cell voltages at 0x40
//! (protocol.md §6.7, §7).

use super::bms::{REG_BATTERY_INFO, REG_CELLS};
use super::{ReadResponse, RegisterError, Unit};
use crate::frame::Frame;

/// The battery block (0x31..0x35).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatteryInfo {
    /// 0x31: remaining capacity, mAh (on every model, §11a Q12).
    pub remaining_mah: u16,
    /// 0x32: charge level, %.
    pub percent: u16,
    /// 0x33: current, A. Raw is signed 10 mA units (÷100); negative while charging.
    pub current_a: f64,
    /// 0x34: pack voltage, V. Raw is 10 mV units (÷100, §11a Q3).
    pub voltage_v: f64,
    /// 0x35 low byte (first on the wire): sensor 1, °C = raw − 20 (§11a Q4).
    pub temperature1_c: i16,
    /// 0x35 high byte: sensor 2, °C = raw − 20.
    pub temperature2_c: i16,
}

impl BatteryInfo {
    /// Decodes an answer covering 0x31..0x35.
    pub fn decode(frame: &Frame) -> Result<BatteryInfo, RegisterError> {
        let r = ReadResponse::new(frame, Unit::Bms)?;
        let temps = r.u16(REG_BATTERY_INFO + 4)?.to_le_bytes();
        Ok(BatteryInfo {
            remaining_mah: r.u16(REG_BATTERY_INFO)?,
            percent: r.u16(REG_BATTERY_INFO + 1)?,
            current_a: f64::from(r.i16(REG_BATTERY_INFO + 2)?) / 100.0,
            voltage_v: f64::from(r.u16(REG_BATTERY_INFO + 3)?) / 100.0,
            temperature1_c: i16::from(temps[0]) - 20,
            temperature2_c: i16::from(temps[1]) - 20,
        })
    }

    /// Power in W (voltage × current): positive while discharging, negative while charging.
    pub fn power_w(&self) -> f64 {
        self.voltage_v * self.current_a
    }
}

/// Cell voltages from the block at 0x40.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellVoltages {
    /// Voltage of each populated cell, mV, cell 1 first. The count is the number of leading
    /// non-zero words: packs have 10 cells (some third-party packs 12) and the unused words
    /// read 0.
    pub mv: Vec<u16>,
}

impl CellVoltages {
    /// Decodes an answer covering 0x40 and any number of following words.
    pub fn decode(frame: &Frame) -> Result<CellVoltages, RegisterError> {
        let r = ReadResponse::new(frame, Unit::Bms)?;
        // Words from 0x40 to the end of the answer (at least one must be there).
        let skipped = usize::from(REG_CELLS.saturating_sub(r.attr));
        let words = (r.payload.len() / 2).saturating_sub(skipped).max(1);
        let bytes = r.bytes(REG_CELLS, words)?;
        let mv = bytes
            .chunks_exact(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .take_while(|&v| v != 0)
            .collect();
        Ok(CellVoltages { mv })
    }

    /// Number of populated cells.
    pub fn count(&self) -> usize {
        self.mv.len()
    }

    /// Voltages in V.
    pub fn volts(&self) -> impl Iterator<Item = f64> + '_ {
        self.mv.iter().map(|&v| f64::from(v) / 1000.0)
    }

    /// Difference between the highest and lowest cell, mV (0 with no cells).
    pub fn spread_mv(&self) -> u16 {
        let max = self.mv.iter().max().copied().unwrap_or(0);
        let min = self.mv.iter().min().copied().unwrap_or(0);
        max - min
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charging_current_is_negative_and_power_follows() {
        // 5000 mAh, 50 %, −2.00 A, 40.00 V, sensors 30 / 35 °C.
        let payload = [
            5000u16,
            50,
            (-200i16) as u16,
            4000,
            u16::from_le_bytes([50, 55]),
        ]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
        let b = BatteryInfo::decode(&Frame::new(0x25, 0x01, 0x31, payload).unwrap()).unwrap();
        assert_eq!(b.current_a, -2.0);
        assert_eq!(b.power_w(), -80.0);
        assert_eq!((b.temperature1_c, b.temperature2_c), (30, 35));
    }

    #[test]
    fn cells_count_leading_non_zero_words() {
        let words = [4100u16, 4090, 4110, 0, 4000];
        let payload = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let c = CellVoltages::decode(&Frame::new(0x25, 0x01, 0x40, payload).unwrap()).unwrap();
        assert_eq!(c.mv, vec![4100, 4090, 4110]);
        assert_eq!(c.spread_mv(), 20);
        assert_eq!(c.volts().next(), Some(4.1));
        let empty = Frame::new(0x25, 0x01, 0x40, vec![]).unwrap();
        assert!(CellVoltages::decode(&empty).is_err());
    }
}
