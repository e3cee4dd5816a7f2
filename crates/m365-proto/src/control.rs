//! The Mi-auth control words on the UPNP characteristic (protocol.md §3.1): short commands from
//! the client (`A2`, `15`, `13`, `24`, …) and results from the device (`11`, `12`, `21`, `23`,
//! `E0`–`E3`). On the wire each is a 32-bit little-endian opcode, e.g. `A2 00 00 00`.
//!
//! Any 4-byte word parses: words this crate does not know are kept as [`Control::Unknown`], so a
//! peer can never make the parser fail on content, only on length.

use crate::gatt::{Char, Transmit};

/// Length of a control word on the wire.
pub const CONTROL_LEN: usize = 4;

/// One control word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// `A2`: start registration, ask for the device info parcel (client).
    GetInfo,
    /// `15`: the key exchange follows (client).
    SetKey,
    /// `13`: ask the device to verify the DID ciphertext (client).
    Auth,
    /// `14`: registration verification failed; defined by Xiaomi's library, sent by no client.
    VerifyFail,
    /// `24`: start login (client).
    Login,
    /// `11`: registration succeeded (device).
    AuthOk,
    /// `12`: registration failed (device).
    AuthErr,
    /// `21`: login succeeded, encrypted UART enabled (device).
    LoginOk,
    /// `22`: stored token invalid; defined by the library, not seen from scooters.
    InvalidToken,
    /// `23`: login failed (device).
    LoginErr,
    /// `E0`–`E3`: authentication refused (device).
    Refused(Refusal),
    /// Any other word, kept as its 32-bit value.
    Unknown(u32),
}

/// Why a device refused (`E0`–`E3`, Xiaomi library names in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    /// `E0` (*ERR_NOT_REGISTERED*): the scooter holds no binding.
    #[error("the scooter is not registered (E0): run the registration (pairing) first")]
    NotRegistered,
    /// `E1` (*ERR_REGISTERED*): the scooter is already bound.
    #[error(
        "the scooter is already registered (E1): restart the registration and press the power \
         button when it beeps"
    )]
    AlreadyRegistered,
    /// `E2` (*ERR_REPEAT_LOGIN*): this connection is already logged in.
    #[error(
        "this connection is already logged in (E2): keep using it, or reconnect to log in again"
    )]
    RepeatLogin,
    /// `E3` (*ERR_INVALID_OOB*): the out-of-band (button) confirmation is invalid.
    #[error(
        "the button confirmation was not accepted (E3): restart the registration and press the \
         power button when it beeps"
    )]
    InvalidOob,
}

impl Refusal {
    /// The opcode byte (`E0`–`E3`).
    pub const fn code(self) -> u8 {
        match self {
            Refusal::NotRegistered => 0xE0,
            Refusal::AlreadyRegistered => 0xE1,
            Refusal::RepeatLogin => 0xE2,
            Refusal::InvalidOob => 0xE3,
        }
    }
}

/// A UPNP message that is not 4 bytes long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("control word: expected {CONTROL_LEN} bytes, got {found}")]
pub struct ControlError {
    /// Bytes received.
    pub found: usize,
}

impl Control {
    /// Parses a UPNP write or notification.
    pub fn parse(bytes: &[u8]) -> Result<Control, ControlError> {
        let word: [u8; CONTROL_LEN] = bytes
            .try_into()
            .map_err(|_| ControlError { found: bytes.len() })?;
        Ok(Control::from_u32(u32::from_le_bytes(word)))
    }

    /// The control word of a 32-bit opcode.
    pub const fn from_u32(word: u32) -> Control {
        match word {
            0xA2 => Control::GetInfo,
            0x15 => Control::SetKey,
            0x13 => Control::Auth,
            0x14 => Control::VerifyFail,
            0x24 => Control::Login,
            0x11 => Control::AuthOk,
            0x12 => Control::AuthErr,
            0x21 => Control::LoginOk,
            0x22 => Control::InvalidToken,
            0x23 => Control::LoginErr,
            0xE0 => Control::Refused(Refusal::NotRegistered),
            0xE1 => Control::Refused(Refusal::AlreadyRegistered),
            0xE2 => Control::Refused(Refusal::RepeatLogin),
            0xE3 => Control::Refused(Refusal::InvalidOob),
            other => Control::Unknown(other),
        }
    }

    /// The 32-bit opcode.
    pub const fn to_u32(self) -> u32 {
        match self {
            Control::GetInfo => 0xA2,
            Control::SetKey => 0x15,
            Control::Auth => 0x13,
            Control::VerifyFail => 0x14,
            Control::Login => 0x24,
            Control::AuthOk => 0x11,
            Control::AuthErr => 0x12,
            Control::LoginOk => 0x21,
            Control::InvalidToken => 0x22,
            Control::LoginErr => 0x23,
            Control::Refused(r) => r.code() as u32,
            Control::Unknown(word) => word,
        }
    }

    /// The 4 wire bytes.
    pub const fn to_bytes(self) -> [u8; CONTROL_LEN] {
        self.to_u32().to_le_bytes()
    }

    /// The word as a write or notification on UPNP.
    pub fn transmit(self) -> Transmit {
        Transmit {
            char: Char::Upnp,
            data: self.to_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_word_round_trips() {
        for byte in [
            0xA2, 0x15, 0x13, 0x14, 0x24, 0x11, 0x12, 0x21, 0x22, 0x23, 0xE0, 0xE1, 0xE2, 0xE3,
        ] {
            let parsed = Control::parse(&[byte, 0, 0, 0]);
            assert!(!matches!(parsed, Ok(Control::Unknown(_))), "{byte:02x}");
            assert_eq!(parsed.map(Control::to_bytes), Ok([byte, 0, 0, 0]));
        }
    }

    #[test]
    fn documented_bytes() {
        assert_eq!(Control::GetInfo.to_bytes(), [0xA2, 0, 0, 0]);
        assert_eq!(
            Control::parse(&[0xE2, 0, 0, 0]),
            Ok(Control::Refused(Refusal::RepeatLogin))
        );
    }

    #[test]
    fn unknown_words_and_bad_lengths_are_typed() {
        assert_eq!(
            Control::parse(&[0x11, 0, 0, 1]),
            Ok(Control::Unknown(0x0100_0011))
        );
        assert_eq!(Control::Unknown(0x99).to_bytes(), [0x99, 0, 0, 0]);
        assert_eq!(Control::parse(&[0x11]), Err(ControlError { found: 1 }));
        assert_eq!(Control::parse(&[]), Err(ControlError { found: 0 }));
    }
}
