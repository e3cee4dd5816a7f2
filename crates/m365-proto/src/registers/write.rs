//! Write commands (protocol.md §6.8, §5.3, §11a Q7) and the acknowledgement of RW 0x02.
//!
//! Every command exists in two forms, chosen with [`WriteMode`]: RW 0x03 gets no answer, so
//! the caller confirms by reading the register back (works on every generation); RW 0x02 is
//! answered with `02 <reg> <result>`, result `01` meaning accepted. A client waiting for an
//! acknowledgement should fall back to a read-back after about a second instead of failing.

use super::esc::{
    REG_CRUISE, REG_KERS, REG_LOCK, REG_PIN, REG_POWER_OFF, REG_REBOOT, REG_TAIL_LIGHT, REG_UNLOCK,
};
use super::settings::{KersLevel, TailLightFlags};
use super::{RegisterError, Unit};
use crate::frame::{DIR_BMS_REPLY, DIR_ESC_REPLY, Frame, RW_READ, RW_WRITE, RW_WRITE_ACK};

/// Whether a write asks for an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteMode {
    /// RW 0x03: no answer.
    NoAck,
    /// RW 0x02: answered with `02 <reg> <result>`.
    Ack,
}

impl WriteMode {
    /// The RW byte.
    pub const fn rw(self) -> u8 {
        match self {
            WriteMode::NoAck => RW_WRITE,
            WriteMode::Ack => RW_WRITE_ACK,
        }
    }
}

/// Writes `value` (little-endian) to `reg` of `unit`.
pub fn write_word(unit: Unit, reg: u8, value: u16, mode: WriteMode) -> Frame {
    Frame {
        dir: unit.request_dir(),
        rw: mode.rw(),
        attr: reg,
        payload: value.to_le_bytes().to_vec(),
    }
}

/// Lock: 1 to ESC 0x70.
pub fn lock(mode: WriteMode) -> Frame {
    write_word(Unit::Esc, REG_LOCK, 1, mode)
}

/// Unlock: 1 to ESC 0x71.
pub fn unlock(mode: WriteMode) -> Frame {
    write_word(Unit::Esc, REG_UNLOCK, 1, mode)
}

/// Reboot the ESC (save configuration and restart): 1 to ESC 0x78.
pub fn reboot(mode: WriteMode) -> Frame {
    write_word(Unit::Esc, REG_REBOOT, 1, mode)
}

/// Power off: 1 to ESC 0x79.
pub fn power_off(mode: WriteMode) -> Frame {
    write_word(Unit::Esc, REG_POWER_OFF, 1, mode)
}

/// Cruise control on or off (ESC 0x7C).
pub fn cruise(on: bool, mode: WriteMode) -> Frame {
    write_word(Unit::Esc, REG_CRUISE, u16::from(on), mode)
}

/// KERS level (ESC 0x7B).
pub fn kers(level: KersLevel, mode: WriteMode) -> Frame {
    write_word(Unit::Esc, REG_KERS, level.raw(), mode)
}

/// Sets the PIN (ESC 0x17..0x19): six ASCII characters, first character first (§6.5, §6.8).
pub fn pin(pin: [u8; 6], mode: WriteMode) -> Frame {
    Frame {
        dir: Unit::Esc.request_dir(),
        rw: mode.rw(),
        attr: REG_PIN,
        payload: pin.to_vec(),
    }
}

/// Tail light always on or not, from the flags just read at 0x7D so the other bits (mph) are
/// kept (see [`TailLightFlags::with_always_on`]).
pub fn tail_light(current: TailLightFlags, on: bool, mode: WriteMode) -> Frame {
    write_word(
        Unit::Esc,
        REG_TAIL_LIGHT,
        current.with_always_on(on).0,
        mode,
    )
}

/// The answer to an RW 0x02 write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteAck {
    /// Who answered.
    pub unit: Unit,
    /// The register written.
    pub reg: u8,
    /// Result byte: 1 accepted, anything else write-protected.
    pub result: u8,
}

impl WriteAck {
    /// Decodes `DIR(0x23|0x25) 02 <reg> <result>`.
    ///
    /// Lenient where scooters differ: RW 0x01 is accepted as well as 0x02 (one source client
    /// matches acknowledgements by register and accepts both, §5.3), and bytes after the
    /// result byte are ignored. An empty payload is [`RegisterError::BadAck`].
    pub fn decode(frame: &Frame) -> Result<WriteAck, RegisterError> {
        let unit = match frame.dir {
            DIR_ESC_REPLY => Unit::Esc,
            DIR_BMS_REPLY => Unit::Bms,
            found => {
                return Err(RegisterError::WrongDir {
                    expected: DIR_ESC_REPLY,
                    found,
                });
            }
        };
        if frame.rw != RW_WRITE_ACK && frame.rw != RW_READ {
            return Err(RegisterError::WrongRw {
                expected: RW_WRITE_ACK,
                found: frame.rw,
            });
        }
        // With RW 0x01 only a single byte is an acknowledgement: longer payloads are read data.
        match (frame.rw, frame.payload.as_slice()) {
            (RW_WRITE_ACK, [result, ..]) | (RW_READ, [result]) => Ok(WriteAck {
                unit,
                reg: frame.attr,
                result: *result,
            }),
            (_, other) => Err(RegisterError::BadAck(other.len())),
        }
    }

    /// Whether the write was accepted.
    pub fn accepted(&self) -> bool {
        self.result == 1
    }

    /// The acknowledgement a scooter sends for `request` (a simulator's answer).
    pub fn answer(request: &Frame, accepted: bool) -> Frame {
        Frame {
            dir: request.dir.wrapping_add(3),
            rw: RW_WRITE_ACK,
            attr: request.attr,
            payload: vec![if accepted { 1 } else { 0 }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_frames() {
        // §6.8.
        assert_eq!(
            cruise(true, WriteMode::NoAck).encode(),
            [0x55, 0xAA, 0x04, 0x20, 0x03, 0x7C, 0x01, 0x00, 0x5B, 0xFF]
        );
        assert_eq!(
            kers(KersLevel::Strong, WriteMode::Ack).encode(),
            [0x55, 0xAA, 0x04, 0x20, 0x02, 0x7B, 0x02, 0x00, 0x5C, 0xFF]
        );
        assert_eq!(
            tail_light(TailLightFlags(0), true, WriteMode::NoAck).encode(),
            [0x55, 0xAA, 0x04, 0x20, 0x03, 0x7D, 0x02, 0x00, 0x59, 0xFF]
        );
    }

    #[test]
    fn ack_decoding() {
        let ack = WriteAck::answer(&kers(KersLevel::Strong, WriteMode::Ack), true);
        assert_eq!(ack.dir, DIR_ESC_REPLY);
        let d = WriteAck::decode(&ack).unwrap();
        assert_eq!((d.unit, d.reg, d.accepted()), (Unit::Esc, 0x7B, true));
        let refused = WriteAck::answer(&write_word(Unit::Bms, 0x18, 0, WriteMode::Ack), false);
        let d = WriteAck::decode(&refused).unwrap();
        assert_eq!((d.unit, d.accepted()), (Unit::Bms, false));
        let mut long = ack.clone();
        long.payload.push(0);
        assert!(WriteAck::decode(&long).unwrap().accepted());
        let mut read = ack.clone();
        read.rw = 0x01;
        read.payload = vec![1, 0];
        assert_eq!(WriteAck::decode(&read), Err(RegisterError::BadAck(2)));
        read.rw = 0x03;
        assert!(matches!(
            WriteAck::decode(&read),
            Err(RegisterError::WrongRw { .. })
        ));
        read.dir = 0x20;
        assert!(matches!(
            WriteAck::decode(&read),
            Err(RegisterError::WrongDir { .. })
        ));
    }
}
