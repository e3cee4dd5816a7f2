//! The ESC and BMS register memories as a client sees them (protocol.md §6.4–6.7), and what a
//! write to them means.
//!
//! The memories are a *view*: [`Registers::snapshot`] renders the profile and the ride into
//! 256 ESC and 128 BMS words at the moment of a read, so a register can never disagree with
//! the physics. Writes go the other way: [`decode_write`] turns the words a client wrote into
//! [`Command`]s for the ride (lock, KERS, …), or refuses a read-only register.

use crate::profile::Profile;
use crate::ride::Ride;

/// Words in the ESC memory (word indices 0x00–0xFF).
pub(crate) const ESC_WORDS: usize = 256;
/// Words in the BMS memory (word indices 0x00–0x7F).
pub(crate) const BMS_WORDS: usize = 128;

pub(crate) use m365_proto::registers::Unit;

/// The unit a request with direction byte `dir` addresses (0x20 ESC, 0x22 BMS; §6.2).
pub(crate) const fn unit_of_request(dir: u8) -> Option<Unit> {
    match dir {
        0x20 => Some(Unit::Esc),
        0x22 => Some(Unit::Bms),
        _ => None,
    }
}

/// ESC register indices used below (§6.5, §6.6).
pub(crate) mod esc {
    /// Serial number, 7 words of ASCII.
    pub(crate) const SERIAL: u8 = 0x10;
    /// PIN, 3 words of ASCII digits.
    pub(crate) const PIN: u8 = 0x17;
    /// ESC firmware version.
    pub(crate) const VERSION: u8 = 0x1A;
    /// Error code.
    pub(crate) const ERROR: u8 = 0x1B;
    /// Warning code.
    pub(crate) const WARNING: u8 = 0x1C;
    /// Work mode.
    pub(crate) const WORK_MODE: u8 = 0x1F;
    /// Remaining range, 0.01 km.
    pub(crate) const RANGE: u8 = 0x25;
    /// Total mileage, m (u32).
    pub(crate) const TOTAL_MILEAGE: u8 = 0x29;
    /// Total power-on time, s (u32).
    pub(crate) const TOTAL_POWER_ON: u8 = 0x32;
    /// Total riding time, s (u32).
    pub(crate) const TOTAL_RIDING: u8 = 0x34;
    /// Seconds since power-on.
    pub(crate) const POWER_ON_TIME: u8 = 0x3A;
    /// Seconds ridden since power-on.
    pub(crate) const RIDING_TIME: u8 = 0x3B;
    /// Frame temperature, 0.1 °C.
    pub(crate) const FRAME_TEMP: u8 = 0x3E;
    /// Supply voltage, 0.01 V.
    pub(crate) const SUPPLY_VOLTAGE: u8 = 0x47;
    /// Motor phase current, 0.01 A.
    pub(crate) const PHASE_CURRENT: u8 = 0x53;
    /// External BMS version (0: none).
    pub(crate) const EXT_BMS_VERSION: u8 = 0x66;
    /// BMS version as seen by the ESC.
    pub(crate) const BMS_VERSION: u8 = 0x67;
    /// BLE module version.
    pub(crate) const BLE_VERSION: u8 = 0x68;
    /// Lock command.
    pub(crate) const LOCK: u8 = 0x70;
    /// Unlock command.
    pub(crate) const UNLOCK: u8 = 0x71;
    /// Unknown, observed 20000.
    pub(crate) const UNKNOWN_73: u8 = 0x73;
    /// Unknown, observed 10000.
    pub(crate) const UNKNOWN_74: u8 = 0x74;
    /// Speed mode.
    pub(crate) const SPEED_MODE: u8 = 0x75;
    /// Reboot command.
    pub(crate) const REBOOT: u8 = 0x78;
    /// Power-off command.
    pub(crate) const POWER_OFF: u8 = 0x79;
    /// KERS level.
    pub(crate) const KERS: u8 = 0x7B;
    /// Cruise control.
    pub(crate) const CRUISE: u8 = 0x7C;
    /// Light/unit flags.
    pub(crate) const LIGHT_FLAGS: u8 = 0x7D;
    /// Start of the motor info block (0xB0–0xBF).
    pub(crate) const MOTOR_INFO: u8 = 0xB0;
    /// Status flags inside the block.
    pub(crate) const STATUS: u8 = 0xB2;
    /// MCU unique id, 6 words.
    pub(crate) const MCU_UID: u8 = 0xDA;
}

/// BMS register indices used below (§6.7).
pub(crate) mod bms {
    /// Battery serial, 7 words of ASCII.
    pub(crate) const SERIAL: u8 = 0x10;
    /// BMS firmware version.
    pub(crate) const VERSION: u8 = 0x17;
    /// Design capacity, mAh.
    pub(crate) const DESIGN_CAPACITY: u8 = 0x18;
    /// Full charge cycles.
    pub(crate) const CYCLES: u8 = 0x1B;
    /// Number of charges.
    pub(crate) const CHARGES: u8 = 0x1C;
    /// Manufacture date.
    pub(crate) const DATE: u8 = 0x20;
    /// Status word (bit 6: charging).
    pub(crate) const STATUS: u8 = 0x30;
    /// Remaining capacity, mAh (start of the 0x31–0x35 battery block).
    pub(crate) const REMAINING: u8 = 0x31;
    /// Health, %.
    pub(crate) const HEALTH: u8 = 0x3B;
    /// Cell 1 voltage, mV; further cells follow.
    pub(crate) const CELLS: u8 = 0x40;
    /// BMS 0x30 bit: charging.
    pub(crate) const STATUS_CHARGING: u16 = 0x0040;
}

/// The two word memories at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registers {
    esc: [u16; ESC_WORDS],
    bms: [u16; BMS_WORDS],
}

impl Registers {
    /// Render `profile`, `pin` and `ride` into the register memories.
    pub fn snapshot(profile: &Profile, pin: &[u8; 6], ride: &Ride) -> Registers {
        let mut r = Registers {
            esc: [0; ESC_WORDS],
            bms: [0; BMS_WORDS],
        };
        let pack = ride.pack();
        let speed_mh = (ride.speed_kmh() * 1000.0).round();
        let uptime = clamp_u16(ride.power_on_s().floor());
        let frame_temp = clamp_i16((ride.esc_temp_c() * 10.0).round());

        // ESC identity and settings.
        r.put_ascii(Unit::Esc, esc::SERIAL, &profile.esc_serial);
        r.put_ascii(Unit::Esc, esc::PIN, pin);
        r.put(Unit::Esc, esc::VERSION, profile.firmware.esc);
        r.put(Unit::Esc, esc::ERROR, ride.error());
        r.put(Unit::Esc, esc::WARNING, ride.warning());
        r.put(Unit::Esc, esc::WORK_MODE, ride.speed_mode());
        r.put(
            Unit::Esc,
            esc::RANGE,
            clamp_u16((ride.range_km() * 100.0).floor()),
        );
        r.put_u32(
            Unit::Esc,
            esc::TOTAL_MILEAGE,
            clamp_u32(ride.odometer_m().floor()),
        );
        r.put_u32(
            Unit::Esc,
            esc::TOTAL_POWER_ON,
            clamp_u32(ride.total_power_on_s().floor()),
        );
        r.put_u32(
            Unit::Esc,
            esc::TOTAL_RIDING,
            clamp_u32(ride.total_riding_s().floor()),
        );
        r.put(Unit::Esc, esc::POWER_ON_TIME, uptime);
        r.put(
            Unit::Esc,
            esc::RIDING_TIME,
            clamp_u16(ride.riding_s().floor()),
        );
        r.put(Unit::Esc, esc::FRAME_TEMP, frame_temp as u16);
        r.put(
            Unit::Esc,
            esc::SUPPLY_VOLTAGE,
            clamp_u16((f64::from(pack.pack_mv()) / 10.0).round()),
        );
        r.put(
            Unit::Esc,
            esc::PHASE_CURRENT,
            clamp_i16((ride.phase_current_a() * 100.0).round()) as u16,
        );
        r.put(Unit::Esc, esc::EXT_BMS_VERSION, 0);
        r.put(Unit::Esc, esc::BMS_VERSION, profile.firmware.bms);
        r.put(Unit::Esc, esc::BLE_VERSION, profile.firmware.ble);
        r.put(Unit::Esc, esc::UNKNOWN_73, 20000);
        r.put(Unit::Esc, esc::UNKNOWN_74, 10000);
        r.put(Unit::Esc, esc::SPEED_MODE, ride.speed_mode());
        r.put(Unit::Esc, esc::KERS, ride.kers());
        r.put(Unit::Esc, esc::CRUISE, u16::from(ride.cruise()));
        r.put(Unit::Esc, esc::LIGHT_FLAGS, ride.light_flags());

        // Motor info block 0xB0–0xBF (§6.6).
        r.put(Unit::Esc, esc::MOTOR_INFO, ride.error());
        r.put(Unit::Esc, 0xB1, ride.warning());
        r.put(Unit::Esc, esc::STATUS, ride.status_flags());
        r.put(Unit::Esc, 0xB4, pack.percent());
        r.put(Unit::Esc, 0xB5, clamp_i16(speed_mh) as u16);
        r.put(
            Unit::Esc,
            0xB6,
            clamp_u16((ride.average_kmh() * 1000.0).round()),
        );
        r.put_u32(Unit::Esc, 0xB7, clamp_u32(ride.odometer_m().floor()));
        // Trip distance in 10 m units (§6.6, Q2): one count per 10 m ridden.
        r.put(Unit::Esc, 0xB9, clamp_u16((ride.trip_m() / 10.0).floor()));
        r.put(Unit::Esc, 0xBA, uptime);
        r.put(Unit::Esc, 0xBB, frame_temp as u16);

        // MCU unique id: stable per scooter, derived from its address.
        for (i, pair) in profile.address.chunks(2).enumerate() {
            if let [a, b] = pair {
                let w = u16::from_le_bytes([*a, *b]);
                r.put(Unit::Esc, esc::MCU_UID + i as u8, w);
                r.put(Unit::Esc, esc::MCU_UID + 3 + i as u8, !w);
            }
        }

        // BMS (§6.7).
        r.put_ascii(Unit::Bms, bms::SERIAL, &profile.bms_serial);
        r.put(Unit::Bms, bms::VERSION, profile.firmware.bms);
        r.put(Unit::Bms, bms::DESIGN_CAPACITY, profile.battery.design_mah);
        r.put(Unit::Bms, bms::CYCLES, pack.cycles());
        r.put(Unit::Bms, bms::CHARGES, pack.charges());
        r.put(Unit::Bms, bms::DATE, profile.bms_date);
        let status = if pack.charging() {
            bms::STATUS_CHARGING
        } else {
            0
        };
        r.put(Unit::Bms, bms::STATUS, status);
        r.put(Unit::Bms, bms::REMAINING, pack.remaining_mah());
        r.put(Unit::Bms, 0x32, pack.percent());
        r.put(
            Unit::Bms,
            0x33,
            clamp_i16((pack.current_a() * 100.0).round()) as u16,
        );
        r.put(
            Unit::Bms,
            0x34,
            clamp_u16((f64::from(pack.pack_mv()) / 10.0).round()),
        );
        // Sensor 1 in the low byte, sensor 2 in the high byte, both °C + 20 (§6.7, Q4).
        let [t1, t2] = pack
            .temps_c()
            .map(|t| (t + 20.0).round().clamp(0.0, 255.0) as u8);
        r.put(Unit::Bms, 0x35, u16::from_le_bytes([t1, t2]));
        r.put(Unit::Bms, bms::HEALTH, u16::from(pack.health()));
        for (i, mv) in pack.cell_mv().into_iter().enumerate().take(16) {
            r.put(Unit::Bms, bms::CELLS + i as u8, mv);
        }
        // 0x50–0x5F stay zero: generation-B clients recover the XOR key from them.
        r
    }

    /// The word at `index`; zero outside the memory.
    pub fn word(&self, unit: Unit, index: usize) -> u16 {
        match unit {
            Unit::Esc => self.esc.get(index).copied().unwrap_or(0),
            Unit::Bms => self.bms.get(index).copied().unwrap_or(0),
        }
    }

    /// The `len` bytes a read of `len` bytes at word `attr` returns: consecutive words,
    /// little-endian, zeros past the end of the memory (§5.3, §6.4).
    pub fn read(&self, unit: Unit, attr: u8, len: u8) -> Vec<u8> {
        let start = usize::from(attr);
        let words = usize::from(len).div_ceil(2);
        let mut out: Vec<u8> = (start..start + words)
            .flat_map(|i| self.word(unit, i).to_le_bytes())
            .collect();
        out.truncate(usize::from(len));
        out
    }

    fn slot(&mut self, unit: Unit, index: u8) -> Option<&mut u16> {
        match unit {
            Unit::Esc => self.esc.get_mut(usize::from(index)),
            Unit::Bms => self.bms.get_mut(usize::from(index)),
        }
    }

    fn put(&mut self, unit: Unit, index: u8, value: u16) {
        if let Some(w) = self.slot(unit, index) {
            *w = value;
        }
    }

    fn put_u32(&mut self, unit: Unit, index: u8, value: u32) {
        self.put(unit, index, value as u16);
        self.put(unit, index.wrapping_add(1), (value >> 16) as u16);
    }

    /// ASCII, first character first: the first character is the low byte of the first word.
    fn put_ascii(&mut self, unit: Unit, index: u8, text: &[u8]) {
        for (i, pair) in text.chunks(2).enumerate() {
            let lo = pair.first().copied().unwrap_or(0);
            let hi = pair.get(1).copied().unwrap_or(0);
            self.put(
                unit,
                index.wrapping_add(i as u8),
                u16::from_le_bytes([lo, hi]),
            );
        }
    }
}

/// What a write asks the scooter to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// 0x70 = 1.
    Lock,
    /// 0x71 = 1.
    Unlock,
    /// 0x78 = 1.
    Reboot,
    /// 0x79 = 1.
    PowerOff,
    /// 0x75.
    SpeedMode(u16),
    /// 0x7B.
    Kers(u16),
    /// 0x7C (non-zero = on).
    Cruise(bool),
    /// 0x7D, stored unchanged.
    LightFlags(u16),
    /// One word of the PIN: `word` 0..3 from 0x17, two ASCII bytes.
    PinWord {
        /// Word offset from 0x17.
        word: usize,
        /// The two characters.
        bytes: [u8; 2],
    },
    /// A command register written with a value other than 1: accepted, no effect.
    Ignored,
}

/// Why a write is refused (answered `[00]` under RW 0x02, §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// The register cannot be written.
    #[error("{unit:?} register {register:#04x} is read-only")]
    ReadOnly {
        /// Which memory.
        unit: Unit,
        /// The first read-only word of the write.
        register: u8,
    },
    /// The payload is not a whole number of words.
    #[error("write payload of {len} bytes is not a whole number of 16-bit words")]
    OddLength {
        /// Its length.
        len: usize,
    },
    /// No data.
    #[error("write without data")]
    Empty,
}

/// Decode a write of `payload` (little-endian words) starting at word `attr`. Either every word
/// is writable and the commands are returned in order, or nothing is applied.
pub(crate) fn decode_write(
    unit: Unit,
    attr: u8,
    payload: &[u8],
) -> Result<Vec<Command>, WriteError> {
    if payload.is_empty() {
        return Err(WriteError::Empty);
    }
    if !payload.len().is_multiple_of(2) {
        return Err(WriteError::OddLength { len: payload.len() });
    }
    let mut commands = Vec::with_capacity(payload.len() / 2);
    for (i, pair) in payload.chunks_exact(2).enumerate() {
        let register = usize::from(attr) + i;
        let bytes = [pair[0], pair[1]];
        let value = u16::from_le_bytes(bytes);
        let read_only = WriteError::ReadOnly {
            unit,
            register: u8::try_from(register).unwrap_or(u8::MAX),
        };
        if unit != Unit::Esc {
            return Err(read_only);
        }
        let Ok(reg) = u8::try_from(register) else {
            return Err(read_only);
        };
        let command = match reg {
            0x17..=0x19 => Command::PinWord {
                word: usize::from(reg - esc::PIN),
                bytes,
            },
            esc::LOCK | esc::UNLOCK | esc::REBOOT | esc::POWER_OFF if value != 1 => {
                Command::Ignored
            }
            esc::LOCK => Command::Lock,
            esc::UNLOCK => Command::Unlock,
            esc::REBOOT => Command::Reboot,
            esc::POWER_OFF => Command::PowerOff,
            esc::SPEED_MODE => Command::SpeedMode(value),
            esc::KERS => Command::Kers(value),
            esc::CRUISE => Command::Cruise(value != 0),
            esc::LIGHT_FLAGS => Command::LightFlags(value),
            _ => return Err(read_only),
        };
        commands.push(command);
    }
    Ok(commands)
}

fn clamp_u16(x: f64) -> u16 {
    x.clamp(0.0, f64::from(u16::MAX)) as u16
}

fn clamp_i16(x: f64) -> i16 {
    x.clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

fn clamp_u32(x: f64) -> u32 {
    x.clamp(0.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::profile::{Generation, Model};
    use crate::ride::Script;

    fn setup() -> (Profile, Ride) {
        let p = Profile::new(Model::Pro2, Generation::MiAuth, 3);
        let ride = Ride::new(&p, Script::Trace(vec![(0.0, 0.0), (5.0, 18.0)]), 3);
        (p, ride)
    }

    fn u16_at(bytes: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([bytes[i], bytes[i + 1]])
    }

    #[test]
    fn serial_pin_and_versions_read_as_documented() {
        let (p, ride) = setup();
        let r = Registers::snapshot(&p, b"123456", &ride);
        assert_eq!(r.read(Unit::Esc, 0x10, 14), p.esc_serial.to_vec());
        assert_eq!(r.read(Unit::Esc, 0x17, 6), b"123456".to_vec());
        let v = r.read(Unit::Esc, 0x67, 4);
        assert_eq!(u16_at(&v, 0), p.firmware.bms);
        assert_eq!(u16_at(&v, 2), p.firmware.ble);
        assert_eq!(r.read(Unit::Esc, 0x73, 4), vec![0x20, 0x4E, 0x10, 0x27]);
    }

    #[test]
    fn motor_block_reflects_the_ride() {
        let (p, mut ride) = setup();
        ride.step(Duration::from_secs(65));
        let r = Registers::snapshot(&p, &p.pin, &ride);
        let b = r.read(Unit::Esc, 0xB0, 0x20);
        assert_eq!(b.len(), 32);
        assert_eq!(u16_at(&b, 10), 18_000); // speed m/h
        assert_eq!(u16_at(&b, 18), (ride.trip_m() / 10.0) as u16);
        assert_eq!(u16_at(&b, 20), 65); // 0xBA
        assert_eq!(r.word(Unit::Esc, 0x3A), 65);
        assert_eq!(r.word(Unit::Esc, 0x3B), ride.riding_s() as u16);
        assert_eq!(&b[24..], &[0u8; 8]);
        let odo = u32::from(u16_at(&b, 14)) | (u32::from(u16_at(&b, 16)) << 16);
        assert_eq!(odo, ride.odometer_m() as u32);
        assert_eq!(r.word(Unit::Esc, 0x29), odo as u16);
    }

    #[test]
    fn battery_block_and_cells_are_consistent() {
        let (p, mut ride) = setup();
        ride.step(Duration::from_secs(30));
        let r = Registers::snapshot(&p, &p.pin, &ride);
        let block = r.read(Unit::Bms, 0x31, 0x0A);
        let pack_10mv = u32::from(u16_at(&block, 6));
        let cells = r.read(Unit::Bms, 0x40, 0x1E);
        let sum: u32 = (0..15).map(|i| u32::from(u16_at(&cells, i * 2))).sum();
        assert!((sum as i64 - (pack_10mv * 10) as i64).abs() <= 5);
        assert_eq!(u16_at(&cells, 20), 0, "an m365-family pack has 10 cells");
        assert_eq!(r.read(Unit::Bms, 0x50, 0x20), vec![0u8; 32]);
        assert_eq!(r.word(Unit::Bms, 0x18), p.battery.design_mah);
        let temp1 = block[8];
        assert!((40..=60).contains(&temp1), "°C + 20: {temp1}");
    }

    #[test]
    fn reads_past_memory_and_unknown_registers_are_zero() {
        let (p, ride) = setup();
        let r = Registers::snapshot(&p, &p.pin, &ride);
        assert_eq!(r.read(Unit::Bms, 0x7F, 6), vec![0u8; 6]);
        assert_eq!(r.read(Unit::Esc, 0x69, 2), vec![0, 0]);
        assert_eq!(r.read(Unit::Esc, 0xFF, 3).len(), 3);
    }

    #[test]
    fn locked_status_and_charging_status() {
        let (p, mut ride) = setup();
        ride.lock();
        ride.set_charging(true);
        ride.step(Duration::from_secs(1));
        let r = Registers::snapshot(&p, &p.pin, &ride);
        assert_eq!(r.word(Unit::Esc, 0xB2) & 0x0002, 0x0002);
        assert_eq!(r.word(Unit::Bms, 0x30), bms::STATUS_CHARGING);
        assert!((r.word(Unit::Bms, 0x33) as i16) < 0);
    }

    #[test]
    fn writes_decode_to_commands_or_are_refused() {
        assert_eq!(
            decode_write(Unit::Esc, 0x70, &[1, 0]),
            Ok(vec![Command::Lock])
        );
        assert_eq!(
            decode_write(Unit::Esc, 0x70, &[2, 0]),
            Ok(vec![Command::Ignored])
        );
        assert_eq!(
            decode_write(Unit::Esc, 0x7D, &[0x12, 0]),
            Ok(vec![Command::LightFlags(0x12)])
        );
        assert_eq!(
            decode_write(Unit::Esc, 0x17, b"123456").map(|c| c.len()),
            Ok(3)
        );
        assert_eq!(
            decode_write(Unit::Esc, 0x7B, &[2, 0, 1, 0]),
            Ok(vec![Command::Kers(2), Command::Cruise(true)])
        );
        assert!(matches!(
            decode_write(Unit::Esc, 0xB5, &[1, 0]),
            Err(WriteError::ReadOnly { register: 0xB5, .. })
        ));
        assert!(decode_write(Unit::Bms, 0x31, &[1, 0]).is_err());
        assert_eq!(
            decode_write(Unit::Esc, 0x7C, &[1]),
            Err(WriteError::OddLength { len: 1 })
        );
        assert_eq!(decode_write(Unit::Esc, 0x7C, &[]), Err(WriteError::Empty));
        assert!(decode_write(Unit::Esc, 0xFF, &[0, 0, 0, 0]).is_err());
    }
}
