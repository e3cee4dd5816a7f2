//! The scooter's view of the register layer: what a received request asks for, and the frame
//! that answers it (protocol.md §5.3, §8 step 6). The simulator dispatches on these.

use super::Unit;
use super::write::WriteMode;
use crate::frame::{DIR_BMS, DIR_ESC, Frame, RW_READ, RW_WRITE, RW_WRITE_ACK};

/// A request addressed to the ESC or the BMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Read `len` bytes from register `attr` on.
    Read {
        /// Addressed unit.
        unit: Unit,
        /// First register.
        attr: u8,
        /// Bytes requested.
        len: u8,
    },
    /// Write little-endian words from register `attr` on.
    Write {
        /// Addressed unit.
        unit: Unit,
        /// First register.
        attr: u8,
        /// The words, first register first (a trailing odd byte is dropped).
        words: Vec<u16>,
        /// Whether an acknowledgement is expected.
        mode: WriteMode,
    },
}

impl Request {
    /// Classifies a frame a client sent; `None` for anything that is not an ESC or BMS read
    /// or write (e.g. BLE-module commands or a malformed read without its length byte).
    pub fn parse(frame: &Frame) -> Option<Request> {
        let unit = match frame.dir {
            DIR_ESC => Unit::Esc,
            DIR_BMS => Unit::Bms,
            _ => return None,
        };
        let attr = frame.attr;
        match frame.rw {
            // Bytes after the length are ignored: what is asked for is clear from the first.
            RW_READ => match frame.payload.as_slice() {
                [len, ..] => Some(Request::Read {
                    unit,
                    attr,
                    len: *len,
                }),
                _ => None,
            },
            RW_WRITE | RW_WRITE_ACK => Some(Request::Write {
                unit,
                attr,
                words: frame
                    .payload
                    .chunks_exact(2)
                    .map(|w| u16::from_le_bytes([w[0], w[1]]))
                    .collect(),
                mode: if frame.rw == RW_WRITE {
                    WriteMode::NoAck
                } else {
                    WriteMode::Ack
                },
            }),
            _ => None,
        }
    }
}

/// The answer to a read: the unit's reply DIR, RW 0x01, the same ATTR, and `payload` (the
/// requested bytes).
pub fn read_answer(unit: Unit, attr: u8, payload: Vec<u8>) -> Frame {
    Frame {
        dir: unit.reply_dir(),
        rw: RW_READ,
        attr,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::settings::KersLevel;
    use crate::registers::write::{WriteAck, kers, lock};
    use crate::registers::{ReadResponse, bms, esc};

    #[test]
    fn requests_built_here_parse_back() {
        assert_eq!(
            Request::parse(&esc::read_motor_info()),
            Some(Request::Read {
                unit: Unit::Esc,
                attr: 0xB0,
                len: 0x20
            })
        );
        assert_eq!(
            Request::parse(&bms::read_cells()),
            Some(Request::Read {
                unit: Unit::Bms,
                attr: 0x40,
                len: 0x1E
            })
        );
        assert_eq!(
            Request::parse(&kers(KersLevel::Strong, WriteMode::Ack)),
            Some(Request::Write {
                unit: Unit::Esc,
                attr: 0x7B,
                words: vec![2],
                mode: WriteMode::Ack
            })
        );
        assert!(matches!(
            Request::parse(&lock(WriteMode::NoAck)),
            Some(Request::Write {
                attr: 0x70,
                mode: WriteMode::NoAck,
                ..
            })
        ));
        let ble = Frame::new(0x21, 0x01, 0x10, vec![2]).unwrap();
        assert_eq!(Request::parse(&ble), None);
        let no_len = Frame::new(0x20, 0x01, 0x10, vec![]).unwrap();
        assert_eq!(Request::parse(&no_len), None);
    }

    #[test]
    fn answers_decode_on_the_client() {
        let answer = read_answer(Unit::Esc, 0x25, vec![0x26, 0x07]);
        assert_eq!(esc::decode_range_km(&answer).unwrap(), 18.30);
        assert_eq!(
            ReadResponse::new(&answer, Unit::Esc).unwrap().u16(0x25),
            Ok(1830)
        );
        let ack = WriteAck::answer(&lock(WriteMode::Ack), true);
        assert!(WriteAck::decode(&ack).unwrap().accepted());
    }
}
