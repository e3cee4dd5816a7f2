//! The simulated battery pack: charge, current, pack and cell voltages, temperatures and the
//! BMS's lifetime counters, kept mutually consistent so a client's cross-checks (cells sum to
//! the pack voltage, mAh and percent agree, current is negative while charging) hold.

use crate::profile::Battery;

/// Internal resistance of the whole pack, ohms (a typical 10S3P 18650 pack).
const PACK_RESISTANCE_OHM: f64 = 0.12;
/// Charger current while charging at constant current, amperes (the stock 42 V / 1.7 A brick).
const CHARGE_CURRENT_A: f64 = 1.7;
/// State of charge above which the charger tapers off linearly to zero at full.
const TAPER_FROM: f64 = 0.95;
/// Ambient temperature, °C.
pub(crate) const AMBIENT_C: f64 = 20.0;
/// Thermal time constant of the pack, seconds.
const PACK_TAU_S: f64 = 600.0;
/// Temperature rise per W of resistive loss at equilibrium, K/W.
const PACK_K_PER_W: f64 = 0.8;

/// Open-circuit voltage of one Li-ion cell (mV) against state of charge, piecewise linear.
const OCV_CURVE: [(f64, f64); 7] = [
    (0.0, 3000.0),
    (0.05, 3300.0),
    (0.1, 3450.0),
    (0.2, 3580.0),
    (0.5, 3750.0),
    (0.8, 3950.0),
    (1.0, 4150.0),
];

/// The state of the pack.
#[derive(Debug, Clone, PartialEq)]
pub struct Pack {
    battery: Battery,
    remaining_mah: f64,
    current_a: f64,
    temps_c: [f64; 2],
    /// Per-cell deviation from the mean (mV); sums to zero so the cells add up to the pack.
    cell_offsets_mv: Vec<i32>,
    charging: bool,
    charges: u16,
    base_cycles: u16,
    discharged_mah: f64,
    health: u8,
}

impl Pack {
    /// A pack at state of charge `soc` (0..=1) with the given history and a small fixed
    /// imbalance between cells (`imbalance` supplies one value in -1..=1 per cell pair).
    pub fn new(battery: Battery, soc: f64, charges: u16, cycles: u16, imbalance: &[f64]) -> Pack {
        let cells = usize::from(battery.cells);
        let mut cell_offsets_mv = vec![0i32; cells];
        // Pairs of cells deviate in opposite directions, so the offsets sum to zero exactly.
        for (pair, spread) in cell_offsets_mv.chunks_mut(2).zip(imbalance.iter()) {
            if let [a, b] = pair {
                let mv = (spread.clamp(-1.0, 1.0) * 8.0).round() as i32;
                *a = mv;
                *b = -mv;
            }
        }
        Pack {
            battery,
            remaining_mah: f64::from(battery.design_mah) * soc.clamp(0.0, 1.0),
            current_a: 0.0,
            temps_c: [AMBIENT_C + 2.0, AMBIENT_C + 1.0],
            cell_offsets_mv,
            charging: false,
            charges,
            base_cycles: cycles,
            discharged_mah: 0.0,
            health: 98,
        }
    }

    /// Pack facts.
    pub fn battery(&self) -> Battery {
        self.battery
    }

    /// State of charge, 0..=1.
    pub fn soc(&self) -> f64 {
        let design = f64::from(self.battery.design_mah);
        if design > 0.0 {
            (self.remaining_mah / design).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Remaining capacity, mAh (BMS 0x31).
    pub fn remaining_mah(&self) -> u16 {
        self.remaining_mah.round().clamp(0.0, f64::from(u16::MAX)) as u16
    }

    /// Charge level, % (BMS 0x32, ESC 0xB4).
    pub fn percent(&self) -> u16 {
        (self.soc() * 100.0).round() as u16
    }

    /// Current, A: positive while discharging, negative while charging.
    pub fn current_a(&self) -> f64 {
        self.current_a
    }

    /// Whether a charger is connected.
    pub fn charging(&self) -> bool {
        self.charging
    }

    /// Connect or disconnect the charger. Connecting counts one charge (BMS 0x1C).
    pub fn set_charging(&mut self, on: bool) {
        if on && !self.charging {
            self.charges = self.charges.saturating_add(1);
        }
        self.charging = on;
    }

    /// Number of charges (BMS 0x1C).
    pub fn charges(&self) -> u16 {
        self.charges
    }

    /// Full charge cycles (BMS 0x1B): the starting count plus capacity discharged since.
    pub fn cycles(&self) -> u16 {
        let design = f64::from(self.battery.design_mah.max(1));
        let extra = (self.discharged_mah / design)
            .floor()
            .clamp(0.0, f64::from(u16::MAX));
        self.base_cycles.saturating_add(extra as u16)
    }

    /// Battery health, % (BMS 0x3B).
    pub fn health(&self) -> u8 {
        self.health
    }

    /// Temperatures of the two sensors, °C.
    pub fn temps_c(&self) -> [f64; 2] {
        self.temps_c
    }

    /// Open-circuit voltage of one cell at the current state of charge, mV.
    pub fn ocv_cell_mv(&self) -> f64 {
        let soc = self.soc();
        let mut prev = OCV_CURVE[0];
        for &(s, v) in &OCV_CURVE[1..] {
            if soc <= s {
                let f = (soc - prev.0) / (s - prev.0);
                return prev.1 + (v - prev.1) * f;
            }
            prev = (s, v);
        }
        prev.1
    }

    /// Terminal voltage of the pack under the present current, mV.
    pub fn pack_mv(&self) -> u32 {
        let ocv = self.ocv_cell_mv() * f64::from(self.battery.cells);
        let sag = self.current_a * PACK_RESISTANCE_OHM * 1000.0;
        (ocv - sag).round().max(0.0) as u32
    }

    /// Cell voltages (mV), cell 1 first. They sum to exactly [`Pack::pack_mv`].
    pub fn cell_mv(&self) -> Vec<u16> {
        let pack = i64::from(self.pack_mv());
        let n = i64::from(self.battery.cells.max(1));
        let base = pack / n;
        let mut rest = pack - base * n;
        self.cell_offsets_mv
            .iter()
            .map(|off| {
                let extra = if rest > 0 {
                    rest -= 1;
                    1
                } else {
                    0
                };
                (base + i64::from(*off) + extra).clamp(0, i64::from(u16::MAX)) as u16
            })
            .collect()
    }

    /// Advance `dt_s` seconds while the motor controller draws `power_w` from the pack
    /// (negative while regenerating). A connected charger overrides the load.
    pub fn step(&mut self, dt_s: f64, power_w: f64) {
        if dt_s.is_nan() || dt_s <= 0.0 {
            return;
        }
        self.current_a = if self.charging {
            let soc = self.soc();
            if soc >= 1.0 {
                0.0
            } else if soc > TAPER_FROM {
                -CHARGE_CURRENT_A * (1.0 - soc) / (1.0 - TAPER_FROM)
            } else {
                -CHARGE_CURRENT_A
            }
        } else {
            let volts = self.ocv_cell_mv() * f64::from(self.battery.cells) / 1000.0;
            if volts > 0.0 { power_w / volts } else { 0.0 }
        };
        if self.soc() <= 0.0 && self.current_a > 0.0 {
            // An empty pack delivers nothing (the BMS cuts off).
            self.current_a = 0.0;
        }
        let delta_mah = self.current_a * dt_s / 3.6;
        if delta_mah > 0.0 {
            self.discharged_mah += delta_mah;
        }
        let design = f64::from(self.battery.design_mah);
        self.remaining_mah = (self.remaining_mah - delta_mah).clamp(0.0, design);
        let loss_w = self.current_a * self.current_a * PACK_RESISTANCE_OHM;
        let k = (dt_s / PACK_TAU_S).min(1.0);
        for (i, t) in self.temps_c.iter_mut().enumerate() {
            // Sensor 2 sits nearer the pack edge and runs a little cooler.
            let target = AMBIENT_C + 2.0 - i as f64 + loss_w * PACK_K_PER_W;
            *t += (target - *t) * k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(soc: f64) -> Pack {
        let battery = Battery {
            cells: 10,
            nominal_mv: 36_000,
            design_mah: 7800,
        };
        Pack::new(battery, soc, 3, 1, &[0.5, -0.25, 1.0, 0.0, -1.0])
    }

    #[test]
    fn cells_sum_to_pack_voltage() {
        let mut p = pack(0.63);
        p.step(1.0, 400.0);
        let cells = p.cell_mv();
        assert_eq!(cells.len(), 10);
        let sum: u32 = cells.iter().map(|&c| u32::from(c)).sum();
        assert_eq!(sum, p.pack_mv());
        assert!(cells.iter().any(|&c| c != cells[0]), "cells are imbalanced");
    }

    #[test]
    fn full_pack_is_about_41_volts_and_empty_about_30() {
        assert!((41_000..=42_000).contains(&pack(1.0).pack_mv()));
        assert!((29_500..=30_500).contains(&pack(0.0).pack_mv()));
    }

    #[test]
    fn discharge_lowers_charge_and_voltage_sags_under_load() {
        let mut p = pack(0.8);
        let rest = p.pack_mv();
        let before = p.remaining_mah();
        p.step(3600.0, 360.0);
        // About 10 A for an hour is about 10 Ah: more than the pack holds at 80 %.
        assert_eq!(p.remaining_mah(), 0);
        let mut q = pack(0.8);
        q.step(1.0, 360.0);
        assert!(q.current_a() > 8.0 && q.current_a() < 11.0);
        assert!(q.pack_mv() < rest);
        assert!(q.remaining_mah() < before);
    }

    #[test]
    fn charging_has_negative_current_and_counts_a_charge() {
        let mut p = pack(0.5);
        p.set_charging(true);
        p.step(60.0, 0.0);
        assert!(p.current_a() < 0.0);
        assert_eq!(p.charges(), 4);
        let before = p.remaining_mah();
        p.step(600.0, 0.0);
        assert!(p.remaining_mah() > before);
    }

    #[test]
    fn cycles_grow_with_discharged_capacity() {
        let mut p = pack(1.0);
        assert_eq!(p.cycles(), 1);
        p.step(1800.0, 300.0);
        assert_eq!(p.cycles(), 1, "half a pack is not a cycle");
        for _ in 0..300 {
            p.step(60.0, 300.0);
        }
        assert_eq!(p.remaining_mah(), 0);
        assert_eq!(p.current_a(), 0.0, "an empty pack delivers nothing");
        assert_eq!(p.cycles(), 2);
    }
}
