//! The plain `55 AA` frame (protocol.md §5.1, §6.1): the wire format of generation A and the
//! inner format that generations B and D encrypt.
//!
//! ```text
//! 55 AA | LEN | DIR | RW | ATTR | PAYLOAD (LEN-2 bytes) | CK_lo CK_hi
//! ```
//!
//! LEN counts the payload plus 2 (the RW and ATTR bytes), so a frame is LEN + 6 bytes long and
//! the checksum covers LEN through the last payload byte.

use crate::checksum::{self, ChecksumMismatch};

/// First header byte of every Xiaomi UART framing.
pub const HEADER_0: u8 = 0x55;
/// Second header byte of a plain frame.
pub const HEADER_PLAIN: u8 = 0xAA;
/// Second header byte of both encrypted framings (XOR and Mi-auth).
pub const HEADER_ENCRYPTED: u8 = 0xAB;

/// Client → ESC (motor controller).
pub const DIR_ESC: u8 = 0x20;
/// Client → BLE module.
pub const DIR_BLE: u8 = 0x21;
/// Client → BMS (battery).
pub const DIR_BMS: u8 = 0x22;
/// ESC → client.
pub const DIR_ESC_REPLY: u8 = 0x23;
/// BLE module → client.
pub const DIR_BLE_REPLY: u8 = 0x24;
/// BMS → client.
pub const DIR_BMS_REPLY: u8 = 0x25;

/// Read request, and the read response (RW is echoed unchanged).
pub const RW_READ: u8 = 0x01;
/// Write with acknowledgement; the acknowledgement uses the same RW.
pub const RW_WRITE_ACK: u8 = 0x02;
/// Write without response.
pub const RW_WRITE: u8 = 0x03;

/// Bytes a frame adds around its payload: header 2, LEN 1, DIR/RW/ATTR 3, checksum 2.
pub const OVERHEAD: usize = 8;
/// Largest payload a LEN byte can describe (255 − 2).
pub const MAX_PAYLOAD: usize = 253;

/// Why bytes are not a plain frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes are not `55 AA`.
    #[error("bad header {found:02x?}, expected 55 aa")]
    BadHeader {
        /// The bytes found (fewer when the input was shorter).
        found: Vec<u8>,
    },
    /// Fewer bytes than the header and LEN promise.
    #[error("truncated frame: {found} bytes, need {needed}")]
    Truncated {
        /// Bytes required (LEN + 6, or 9 before LEN is known).
        needed: usize,
        /// Bytes present.
        found: usize,
    },
    /// More bytes than LEN allows, or a LEN too small to hold RW and ATTR.
    #[error("LEN {len:#04x} does not fit a {found}-byte frame (expected {expected} bytes)")]
    LenMismatch {
        /// The LEN byte.
        len: u8,
        /// Length LEN implies: of the frame, or of `DIR RW ATTR PAYLOAD` (LEN + 1) when the
        /// error comes from [`Frame::from_body`].
        expected: usize,
        /// Length present.
        found: usize,
    },
    /// The checksum does not match.
    #[error(transparent)]
    BadChecksum(#[from] ChecksumMismatch),
    /// A payload too long for the one-byte LEN.
    #[error("payload of {0} bytes is longer than {MAX_PAYLOAD}")]
    PayloadTooLong(usize),
}

/// One plain frame: `DIR RW ATTR PAYLOAD`. LEN is always `payload.len() + 2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Direction / address byte (`DIR_*`).
    pub dir: u8,
    /// Read / write kind (`RW_*`).
    pub rw: u8,
    /// Register (16-bit word index) or command.
    pub attr: u8,
    /// Data after ATTR; at most [`MAX_PAYLOAD`] bytes.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A frame, refusing a payload that LEN cannot describe.
    pub fn new(dir: u8, rw: u8, attr: u8, payload: Vec<u8>) -> Result<Frame, FrameError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(FrameError::PayloadTooLong(payload.len()));
        }
        Ok(Frame {
            dir,
            rw,
            attr,
            payload,
        })
    }

    /// The LEN byte: payload length + 2.
    ///
    /// The fields are public, so a caller can build a frame with a payload longer than
    /// [`MAX_PAYLOAD`]; every encoder in this crate then uses only the first `MAX_PAYLOAD`
    /// bytes, so the output is always a well-formed frame. [`Frame::new`] refuses such payloads.
    pub fn len_byte(&self) -> u8 {
        // Bounded by MAX_PAYLOAD + 2 = 255, so the cast cannot truncate.
        (self.body_payload().len() + 2) as u8
    }

    /// The payload as encoders see it (cut to [`MAX_PAYLOAD`]).
    pub(crate) fn body_payload(&self) -> &[u8] {
        self.payload.get(..MAX_PAYLOAD).unwrap_or(&self.payload)
    }

    /// `DIR RW ATTR PAYLOAD`: what the encrypted framings protect.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 3);
        self.write_body(&mut out);
        out
    }

    pub(crate) fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[self.dir, self.rw, self.attr]);
        out.extend_from_slice(self.body_payload());
    }

    /// Rebuilds a frame from LEN and `DIR RW ATTR PAYLOAD` as carried inside an encrypted frame.
    /// `body` must be exactly LEN + 1 bytes.
    pub fn from_body(len: u8, body: &[u8]) -> Result<Frame, FrameError> {
        let expected = usize::from(len) + 1;
        match body {
            [dir, rw, attr, payload @ ..] if len >= 2 && body.len() == expected => Ok(Frame {
                dir: *dir,
                rw: *rw,
                attr: *attr,
                payload: payload.to_vec(),
            }),
            _ => Err(FrameError::LenMismatch {
                len,
                expected,
                found: body.len(),
            }),
        }
    }

    /// Total wire length of this frame: LEN + 6.
    pub fn wire_len(&self) -> usize {
        usize::from(self.len_byte()) + 6
    }

    /// The full `55 AA … CK` wire frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the wire frame to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[HEADER_0, HEADER_PLAIN, self.len_byte()]);
        self.write_body(out);
        let ck = checksum::checksum_le(out.get(start + 2..).unwrap_or_default());
        out.extend_from_slice(&ck);
    }

    /// Decodes exactly one wire frame: header, LEN consistent with the byte count, checksum.
    pub fn decode(wire: &[u8]) -> Result<Frame, FrameError> {
        let header = wire.get(..2).unwrap_or(wire);
        if header != [HEADER_0, HEADER_PLAIN] {
            return Err(FrameError::BadHeader {
                found: header.to_vec(),
            });
        }
        let Some(&len) = wire.get(2) else {
            return Err(FrameError::Truncated {
                needed: 8,
                found: wire.len(),
            });
        };
        let expected = usize::from(len) + 6;
        if wire.len() < expected {
            return Err(FrameError::Truncated {
                needed: expected,
                found: wire.len(),
            });
        }
        if wire.len() > expected || len < 2 {
            return Err(FrameError::LenMismatch {
                len,
                expected,
                found: wire.len(),
            });
        }
        checksum::verify_framed(wire)?;
        let body = wire.get(3..expected - 2).unwrap_or_default();
        Frame::from_body(len, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_spec_request() {
        let f = Frame::new(DIR_ESC, RW_READ, 0xB0, vec![0x20]).unwrap();
        assert_eq!(
            f.encode(),
            [0x55, 0xAA, 0x03, 0x20, 0x01, 0xB0, 0x20, 0x0B, 0xFF]
        );
        assert_eq!(f.wire_len(), 9);
    }

    #[test]
    fn decode_errors_are_specific() {
        assert!(matches!(
            Frame::decode(&[0x55, 0xAB, 0x03]),
            Err(FrameError::BadHeader { .. })
        ));
        assert!(matches!(
            Frame::decode(&[0x55, 0xAA, 0x03, 0x20]),
            Err(FrameError::Truncated {
                needed: 9,
                found: 4
            })
        ));
        let mut long = Frame::new(DIR_ESC, RW_READ, 0x10, vec![0x0E])
            .unwrap()
            .encode();
        long.push(0);
        assert!(matches!(
            Frame::decode(&long),
            Err(FrameError::LenMismatch {
                len: 3,
                expected: 9,
                found: 10
            })
        ));
        let mut bad = Frame::new(DIR_ESC, RW_READ, 0x10, vec![0x0E])
            .unwrap()
            .encode();
        bad[8] ^= 1;
        assert!(matches!(
            Frame::decode(&bad),
            Err(FrameError::BadChecksum(ChecksumMismatch {
                expected: 0xFFBD,
                found: 0xFEBD
            }))
        ));
        // LEN 1 cannot hold RW and ATTR even when the checksum is right.
        assert!(matches!(
            Frame::decode(&[0x55, 0xAA, 0x01, 0x20, 0x01, 0xDD, 0xFF]),
            Err(FrameError::LenMismatch { len: 1, .. })
        ));
    }

    #[test]
    fn oversized_payload_is_refused_or_cut() {
        assert!(matches!(
            Frame::new(0, 0, 0, vec![0; 254]),
            Err(FrameError::PayloadTooLong(254))
        ));
        let f = Frame {
            dir: 0,
            rw: 0,
            attr: 0,
            payload: vec![7; 300],
        };
        let wire = f.encode();
        assert_eq!(wire.len(), 255 + 6);
        assert_eq!(Frame::decode(&wire).unwrap().payload.len(), MAX_PAYLOAD);
    }
}
