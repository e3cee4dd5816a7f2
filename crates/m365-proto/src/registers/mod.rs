//! The register layer inside every framing (protocol.md §6): request builders and typed
//! decoders for the ESC and BMS register maps.
//!
//! A register is a 16-bit word addressed by a one-byte word index. A read of `n` bytes at
//! `attr` is answered with words `attr, attr+1, …` little-endian. Decoders take the answer's
//! [`Frame`], check direction and RW, and find the words they need by register address, so one
//! answer covering several registers (e.g. ESC 0x67..0x68) feeds several decoders. Scales are
//! documented next to each field, with the section of protocol.md they come from.
//!
//! - [`esc`]: ESC addresses, named reads and decoders of single ESC values.
//! - [`motor_info`]: the 0xB0 motor-info block.
//! - [`bms`]: BMS addresses, named reads, identity and status.
//! - [`battery`]: the 0x31 battery block and the cell voltages.
//! - [`codes`]: error and warning codes.
//! - [`version`]: firmware version numbers.
//! - [`settings`]: KERS, cruise, tail-light flags, speed mode.
//! - [`request`]: the scooter side: parsing requests and building read answers.
//! - [`answer`]: the client side: which received frame answers which request.
//! - [`write`](mod@write): write commands and their acknowledgement.

pub mod answer;
pub mod battery;
pub mod bms;
pub mod codes;
pub mod esc;
pub mod motor_info;
pub mod request;
pub mod settings;
pub mod version;
pub mod write;

use crate::frame::{DIR_BMS, DIR_BMS_REPLY, DIR_ESC, DIR_ESC_REPLY, Frame, RW_READ};

/// The controller a register belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Motor controller.
    Esc,
    /// Battery management system.
    Bms,
}

impl Unit {
    /// DIR of a request to this unit.
    pub const fn request_dir(self) -> u8 {
        match self {
            Unit::Esc => DIR_ESC,
            Unit::Bms => DIR_BMS,
        }
    }

    /// DIR of this unit's answers.
    pub const fn reply_dir(self) -> u8 {
        match self {
            Unit::Esc => DIR_ESC_REPLY,
            Unit::Bms => DIR_BMS_REPLY,
        }
    }
}

/// Why an answer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The frame does not come from the expected unit.
    #[error("answer from DIR {found:#04x}, expected {expected:#04x}")]
    WrongDir {
        /// The unit's reply DIR.
        expected: u8,
        /// DIR of the frame.
        found: u8,
    },
    /// The frame is not an acknowledgement (RW other than 0x01 or 0x02).
    #[error("RW {found:#04x}, expected {expected:#04x}")]
    WrongRw {
        /// RW wanted.
        expected: u8,
        /// RW of the frame.
        found: u8,
    },
    /// The answer does not cover a register the decoder needs.
    #[error(
        "register {reg:#04x} ({words} words) is not in the answer starting at {attr:#04x} with {bytes} bytes"
    )]
    NotCovered {
        /// First register needed.
        reg: u8,
        /// Words needed from `reg` on.
        words: usize,
        /// ATTR of the answer.
        attr: u8,
        /// Payload bytes of the answer.
        bytes: usize,
    },
    /// An acknowledgement whose payload is not one result byte.
    #[error("acknowledgement payload has {0} bytes, expected 1")]
    BadAck(usize),
}

/// A plain read request: `dir`, RW 0x01, `attr`, payload = number of bytes to read.
pub fn read(dir: u8, attr: u8, len: u8) -> Frame {
    Frame {
        dir,
        rw: RW_READ,
        attr,
        payload: vec![len],
    }
}

/// A read request to a unit.
pub fn read_unit(unit: Unit, attr: u8, len: u8) -> Frame {
    read(unit.request_dir(), attr, len)
}

/// A read answer checked for unit and RW, addressed by register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadResponse<'a> {
    /// Register of the first payload word.
    pub attr: u8,
    /// The words, little-endian.
    pub payload: &'a [u8],
}

impl<'a> ReadResponse<'a> {
    /// Checks that `frame` comes from `unit`.
    ///
    /// The RW byte is not checked: a read answer echoes RW 0x01, but one source client accepts
    /// answers with RW 0x02 too (§5.3), and the registers are found by address and length
    /// anyway. A write acknowledgement (one result byte) covers no whole register, so it
    /// cannot be taken for read data.
    pub fn new(frame: &'a Frame, unit: Unit) -> Result<ReadResponse<'a>, RegisterError> {
        if frame.dir != unit.reply_dir() {
            return Err(RegisterError::WrongDir {
                expected: unit.reply_dir(),
                found: frame.dir,
            });
        }
        Ok(ReadResponse {
            attr: frame.attr,
            payload: &frame.payload,
        })
    }

    /// `words` registers starting at `reg`, as raw bytes.
    pub fn bytes(&self, reg: u8, words: usize) -> Result<&'a [u8], RegisterError> {
        let err = || RegisterError::NotCovered {
            reg,
            words,
            attr: self.attr,
            bytes: self.payload.len(),
        };
        let offset = usize::from(reg.checked_sub(self.attr).ok_or_else(err)?) * 2;
        self.payload.get(offset..offset + words * 2).ok_or_else(err)
    }

    /// One register as an unsigned word.
    pub fn u16(&self, reg: u8) -> Result<u16, RegisterError> {
        let b = self.bytes(reg, 1)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    /// One register as a signed word.
    pub fn i16(&self, reg: u8) -> Result<i16, RegisterError> {
        self.u16(reg).map(|w| w as i16)
    }

    /// Two registers as a 32-bit value (`reg` holds the low word, §6.4).
    pub fn u32(&self, reg: u8) -> Result<u32, RegisterError> {
        let lo = self.u16(reg)?;
        let hi = self.u16(reg.checked_add(1).ok_or(RegisterError::NotCovered {
            reg,
            words: 2,
            attr: self.attr,
            bytes: self.payload.len(),
        })?)?;
        Ok(u32::from(lo) | u32::from(hi) << 16)
    }

    /// `words` registers as ASCII text, first character first, trailing NULs and spaces
    /// removed; bytes outside printable ASCII become `?`.
    pub fn ascii(&self, reg: u8, words: usize) -> Result<String, RegisterError> {
        let b = self.bytes(reg, words)?;
        let text: String = b
            .iter()
            .map(|&c| {
                if c.is_ascii_graphic() || c == b' ' || c == 0 {
                    char::from(c)
                } else {
                    '?'
                }
            })
            .collect();
        Ok(text.trim_end_matches(['\0', ' ']).to_owned())
    }
}
