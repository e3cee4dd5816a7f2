//! Generation B: the XOR-obfuscated `55 AB` frame of classic m365 BLE firmware 081 and later
//! (protocol.md §5.4).
//!
//! ```text
//! 55 AB | LEN | X = (DIR RW ATTR PAYLOAD 00 00 00 00) XOR keystream | CK_lo CK_hi
//! ```
//!
//! The frame is LEN + 10 bytes. Byte `i` of the body is XORed with keystream byte `i`, and with 0
//! past the keystream's end. The keystream starts with the value of the KEY characteristic
//! (FE95 / 0x0014) and is extended by reading BMS 0x50..0x5F, which is all zeros: whatever
//! comes back in the payload beyond the known keystream is the keystream itself.

use crate::checksum::{self, ChecksumMismatch};
use crate::frame::{DIR_BMS, DIR_BMS_REPLY, Frame, HEADER_0, HEADER_ENCRYPTED, RW_READ};

/// A XOR frame is LEN + this many bytes: header 2, LEN 1, DIR 1, padding 4, checksum 2.
pub const OVERHEAD: usize = 10;
/// Bytes the sender appends to the body before XOR (zeros from a client, anything from a
/// scooter).
pub const PAD_LEN: usize = 4;
/// BMS register that starts the all-zero range used for key recovery.
pub const RECOVERY_REGISTER: u8 = 0x50;
/// Bytes read for key recovery (registers 0x50..0x5F).
pub const RECOVERY_LEN: u8 = 0x20;

/// Total wire length of a XOR frame with this LEN byte.
pub const fn wire_len(len: u8) -> usize {
    len as usize + OVERHEAD
}

/// Why a XOR frame, or a key-recovery answer, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XorError {
    /// The first two bytes are not `55 AB`.
    #[error("bad header {found:02x?}, expected 55 ab")]
    BadHeader {
        /// The bytes found.
        found: Vec<u8>,
    },
    /// The byte count is not LEN + 10, or LEN is below 2.
    #[error("LEN {len:#04x} implies a {expected}-byte frame, got {found} bytes")]
    LenMismatch {
        /// The LEN byte (0 when absent).
        len: u8,
        /// LEN + 10.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The checksum does not match.
    #[error(transparent)]
    BadChecksum(#[from] ChecksumMismatch),
    /// The frame given for key recovery is not the answer to the recovery read, or its
    /// payload does not decrypt to zeros where the keystream is already known.
    #[error("not an all-zero answer to the BMS 0x50 read: {0}")]
    NotRecoveryAnswer(&'static str),
}

/// The generation-B XOR keystream.
#[derive(Clone, PartialEq, Eq)]
pub struct Keystream(Vec<u8>);

impl core::fmt::Debug for Keystream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The keystream is a secret of the link; only its length is useful in logs.
        write!(f, "Keystream({} bytes)", self.0.len())
    }
}

impl Keystream {
    /// A keystream with known bytes, e.g. the value read from the KEY characteristic.
    pub fn new(bytes: Vec<u8>) -> Keystream {
        Keystream(bytes)
    }

    /// The known keystream bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of known bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no byte is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// XORs `data` in place with the keystream starting at body offset 0.
    fn apply(&self, data: &mut [u8]) {
        for (d, k) in data.iter_mut().zip(&self.0) {
            *d ^= k;
        }
    }

    /// Encrypts `frame` into a full `55 AB` wire frame with 4 zero padding bytes.
    pub fn encrypt(&self, frame: &Frame) -> Vec<u8> {
        let len = frame.len_byte();
        let mut out = Vec::with_capacity(wire_len(len));
        out.extend_from_slice(&[HEADER_0, HEADER_ENCRYPTED, len]);
        frame.write_body(&mut out);
        out.extend_from_slice(&[0; PAD_LEN]);
        if let Some(body) = out.get_mut(3..) {
            self.apply(body);
        }
        let ck = checksum::checksum_le(out.get(2..).unwrap_or_default());
        out.extend_from_slice(&ck);
        out
    }

    /// Checks and decrypts one complete wire frame, dropping the padding.
    pub fn decrypt(&self, wire: &[u8]) -> Result<Frame, XorError> {
        let (len, mut body) = split(wire)?;
        self.apply(&mut body);
        body.truncate(usize::from(len) + 1);
        Frame::from_body(len, &body).map_err(|_| len_err(wire))
    }

    /// The request whose answer extends the keystream: a XOR-framed BMS read of
    /// [`RECOVERY_LEN`] bytes at [`RECOVERY_REGISTER`].
    pub fn recovery_request(&self) -> Vec<u8> {
        self.encrypt(&Frame {
            dir: DIR_BMS,
            rw: RW_READ,
            attr: RECOVERY_REGISTER,
            payload: vec![RECOVERY_LEN],
        })
    }

    /// Extends the keystream from the answer to [`Keystream::recovery_request`].
    ///
    /// The answer's payload is zeros, so each payload byte on the wire is the keystream byte
    /// at its position. The known part must decrypt to `25 01 50` followed by zeros; bytes past
    /// the payload (the scooter's padding) are not zeros and are never used. Returns the number
    /// of bytes added.
    pub fn extend_from_zero_read(&mut self, wire: &[u8]) -> Result<usize, XorError> {
        let (len, body) = split(wire)?;
        let payload_end = usize::from(len) + 1;
        let zero_start = 3;
        let head = [DIR_BMS_REPLY, RW_READ, RECOVERY_REGISTER];
        for (i, &x) in body.iter().enumerate().take(payload_end) {
            let Some(&k) = self.0.get(i) else { break };
            let expected = head.get(i).copied().unwrap_or(0);
            if x ^ k != expected {
                return Err(XorError::NotRecoveryAnswer(if i < zero_start {
                    "header does not decrypt to 25 01 50"
                } else {
                    "payload does not decrypt to zeros"
                }));
            }
        }
        if self.0.len() < zero_start {
            return Err(XorError::NotRecoveryAnswer(
                "keystream too short to check the header",
            ));
        }
        let before = self.0.len();
        if let Some(new) = body.get(before..payload_end) {
            self.0.extend_from_slice(new);
        }
        Ok(self.0.len() - before)
    }
}

fn len_err(wire: &[u8]) -> XorError {
    let len = wire.get(2).copied().unwrap_or(0);
    XorError::LenMismatch {
        len,
        expected: wire_len(len),
        found: wire.len(),
    }
}

/// Header, length and checksum checks; returns LEN and the still-XORed body (with padding).
fn split(wire: &[u8]) -> Result<(u8, Vec<u8>), XorError> {
    let header = wire.get(..2).unwrap_or(wire);
    if header != [HEADER_0, HEADER_ENCRYPTED] {
        return Err(XorError::BadHeader {
            found: header.to_vec(),
        });
    }
    let len = wire.get(2).copied().ok_or_else(|| len_err(wire))?;
    if len < 2 || wire.len() != wire_len(len) {
        return Err(len_err(wire));
    }
    checksum::verify_framed(wire)?;
    let body = wire
        .get(3..wire.len() - 2)
        .ok_or_else(|| len_err(wire))?
        .to_vec();
    Ok((len, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::DIR_ESC;

    fn key() -> Keystream {
        Keystream::new((1..=12).map(|i| i * 17).collect())
    }

    /// What a generation-B scooter sends for the recovery read with `full` as its keystream.
    fn scooter_answer(full: &Keystream) -> Vec<u8> {
        let reply = Frame::new(DIR_BMS_REPLY, RW_READ, 0x50, vec![0; 32]).unwrap();
        let mut wire = full.encrypt(&reply);
        // The scooter's padding is not zero: garble it and fix the checksum.
        let n = wire.len();
        for b in &mut wire[n - 6..n - 2] {
            *b ^= 0x5A;
        }
        let ck = checksum::checksum_le(&wire[2..n - 2]);
        wire[n - 2..].copy_from_slice(&ck);
        wire
    }

    #[test]
    fn round_trip_and_length() {
        let f = Frame::new(DIR_ESC, RW_READ, 0x10, vec![0x0E]).unwrap();
        let wire = key().encrypt(&f);
        assert_eq!(wire.len(), 13);
        assert_eq!(key().decrypt(&wire).unwrap(), f);
        // Past the keystream, bytes go in clear.
        let long = Frame::new(DIR_ESC, RW_READ, 0x10, vec![0xEE; 20]).unwrap();
        let wire = key().encrypt(&long);
        assert_eq!(wire[3 + 15], 0xEE);
        assert_eq!(key().decrypt(&wire).unwrap(), long);
    }

    #[test]
    fn recovery_extends_to_35_bytes() {
        let full = Keystream::new((0..35u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect());
        let mut known = Keystream::new(full.as_bytes()[..12].to_vec());
        let req = known.recovery_request();
        assert_eq!(
            known.decrypt(&req).unwrap(),
            Frame::new(DIR_BMS, RW_READ, 0x50, vec![0x20]).unwrap()
        );
        assert_eq!(known.extend_from_zero_read(&scooter_answer(&full)), Ok(23));
        assert_eq!(known, full);
        // A second answer adds nothing and still checks.
        assert_eq!(known.extend_from_zero_read(&scooter_answer(&full)), Ok(0));
    }

    #[test]
    fn recovery_refuses_other_answers() {
        let full = Keystream::new((0..35u8).collect());
        let mut wrong = Keystream::new(vec![9; 12]);
        assert!(matches!(
            wrong.extend_from_zero_read(&scooter_answer(&full)),
            Err(XorError::NotRecoveryAnswer(_))
        ));
        let mut tiny = Keystream::new(vec![]);
        assert!(matches!(
            tiny.extend_from_zero_read(&scooter_answer(&full)),
            Err(XorError::NotRecoveryAnswer(_))
        ));
        assert!(tiny.is_empty());
    }
}
