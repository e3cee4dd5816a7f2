//! Generation D: the Mi-auth encrypted `55 AB` frame (protocol.md §4.6).
//!
//! ```text
//! 55 AB | LEN | CTR_lo CTR_hi | CCM(DIR RW ATTR PAYLOAD R0 R1 R2 R3) | tag (4) | CK_lo CK_hi
//! ```
//!
//! AES-128-CCM with a 4-byte tag, no associated data and the nonce
//! `IV(4) ‖ 00 00 00 00 ‖ le32(counter)`. The frame is LEN + 16 bytes long. The sender appends 4
//! random bytes to the plaintext; the receiver drops them.
//!
//! Counters (§4.6.6, §11a Q5/Q6) are 32-bit per direction and reset at login; only the low 16
//! bits travel. The client's first frame carries 0, the device increments before use so its
//! first frame carries 1. Each receiver rebuilds the 32-bit value with [`extend_counter`] and
//! accepts a frame when the rebuilt counter is greater than the last accepted one, or is 0
//! (§4.6.6, §9). The scooter's library makes that exception because some clients send every
//! frame with 0; the client makes it too, so a scooter that counts from 0 (incrementing after
//! use) does not lose its first answer. A frame with counter 0 is still authenticated by its
//! tag, and accepting it leaves the window where it was.
//!
//! [`UartCipher`] is the session object. [`seal_with_counter`] and [`open_with_counter`] expose
//! the construction with an explicit counter for test vectors, including the 2-byte IV (10-byte
//! nonce) that one source's tests use; real sessions always have a 4-byte IV.

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U4, U10, U12};

use crate::checksum::{self, ChecksumMismatch};
use crate::frame::{Frame, HEADER_0, HEADER_ENCRYPTED};
use crate::keys::{Role, SessionKeys};

/// A Mi-auth frame is LEN + this many bytes: header 2, LEN 1, counter 2, DIR 1 (LEN already
/// counts RW and ATTR), random 4, tag 4, checksum 2.
pub const OVERHEAD: usize = 16;
/// Random bytes the sender appends to the plaintext.
pub const RANDOM_LEN: usize = 4;
/// CCM tag length.
pub const TAG_LEN: usize = 4;

type Ccm12 = Ccm<Aes128, U4, U12>;
type Ccm10 = Ccm<Aes128, U4, U10>;

/// Total wire length of a Mi-auth frame with this LEN byte.
pub const fn wire_len(len: u8) -> usize {
    len as usize + OVERHEAD
}

/// Why a Mi-auth frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptedError {
    /// The first two bytes are not `55 AB`.
    #[error("bad header {found:02x?}, expected 55 ab")]
    BadHeader {
        /// The bytes found.
        found: Vec<u8>,
    },
    /// The byte count is not LEN + 16, or LEN is below 2.
    #[error("LEN {len:#04x} implies a {expected}-byte frame, got {found} bytes")]
    LenMismatch {
        /// The LEN byte (0 when the frame was too short to carry one).
        len: u8,
        /// LEN + 16.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// The checksum does not match.
    #[error(transparent)]
    BadChecksum(#[from] ChecksumMismatch),
    /// The rebuilt counter is not newer than the last accepted one.
    #[error("counter {counter:#x} replayed or stale (last accepted {last:#x})")]
    Replay {
        /// The rebuilt 32-bit counter.
        counter: u32,
        /// The last counter accepted in this direction.
        last: u32,
    },
    /// CCM authentication failed: wrong key, wrong counter or altered bytes.
    #[error("authentication tag mismatch at counter {counter:#x}")]
    BadTag {
        /// The counter the nonce was built from.
        counter: u32,
    },
    /// An IV of a length other than 4 (or 2 in the explicit-counter functions).
    #[error("unsupported IV length {0}")]
    UnsupportedIv(usize),
}

/// Rebuilds a 32-bit counter from the 16-bit wire value (§4.6.6): when the last accepted
/// counter's low half is above 0x7FFF and the wire value is below 0x8000, the upper half is
/// carried by one.
pub fn extend_counter(last: u32, wire: u16) -> u32 {
    let mut high = last & 0xFFFF_0000;
    if last & 0xFFFF > 0x7FFF && wire < 0x8000 {
        high = high.wrapping_add(0x1_0000);
    }
    high | u32::from(wire)
}

/// Replay window of one receiving direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxCounter {
    last: u32,
}

impl RxCounter {
    /// A fresh window for the receiving `role` (reset at login). Both roles accept counter 0 at
    /// any time (§9); the role is kept in the signature so a caller states which side it is.
    pub fn new(receiver: Role) -> RxCounter {
        let _ = receiver;
        RxCounter { last: 0 }
    }

    /// A window that resumes after `last` was accepted.
    pub fn with_last(receiver: Role, last: u32) -> RxCounter {
        let _ = receiver;
        RxCounter { last }
    }

    /// The last accepted counter.
    pub fn last(&self) -> u32 {
        self.last
    }

    /// The 32-bit counter for `wire`, if a frame carrying it may be accepted.
    pub fn check(&self, wire: u16) -> Result<u32, EncryptedError> {
        let counter = extend_counter(self.last, wire);
        if counter > self.last || counter == 0 {
            Ok(counter)
        } else {
            Err(EncryptedError::Replay {
                counter,
                last: self.last,
            })
        }
    }

    /// Records an authenticated frame. Counter 0 (accepted by the exception) leaves the window
    /// where it was, so the extension of later counters is unaffected.
    pub fn accept(&mut self, counter: u32) {
        self.last = self.last.max(counter);
    }
}

/// One direction's cipher: key schedule plus IV.
struct Direction {
    ccm: Ccm12,
    iv: [u8; 4],
}

impl Direction {
    fn new(key: &[u8; 16], iv: &[u8; 4]) -> Direction {
        Direction {
            ccm: Ccm12::new(GenericArray::from_slice(key)),
            iv: *iv,
        }
    }
}

/// The session's UART cipher for one role: seals outgoing frames with the role's sending key
/// and counter, opens incoming frames with the other key and the replay window.
pub struct UartCipher {
    tx: Direction,
    rx: Direction,
    /// Counter of the next sealed frame.
    next_tx: u32,
    window: RxCounter,
}

impl core::fmt::Debug for UartCipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Keys and IVs stay out of logs.
        f.debug_struct("UartCipher")
            .field("next_tx", &self.next_tx)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl UartCipher {
    /// A cipher as it is right after login: the client sends from counter 0, the device from 1.
    pub fn new(keys: SessionKeys, role: Role) -> Self {
        let first = match role {
            Role::Client => 0,
            // The device increments before each frame, so its first frame carries 1.
            Role::Device => 1,
        };
        Self::with_counters(keys, role, first, RxCounter::new(role))
    }

    /// A cipher whose next outgoing frame carries `next_tx` and whose replay window is
    /// `window`: resumes counters, and lets tests start next to the 16-bit wrap.
    pub fn with_counters(keys: SessionKeys, role: Role, next_tx: u32, window: RxCounter) -> Self {
        let (tk, tiv) = keys.sending(role);
        let (rk, riv) = keys.receiving(role);
        UartCipher {
            tx: Direction::new(tk, tiv),
            rx: Direction::new(rk, riv),
            next_tx,
            window,
        }
    }

    /// Counter the next sealed frame will carry.
    pub fn next_tx_counter(&self) -> u32 {
        self.next_tx
    }

    /// The receiving direction's replay window.
    pub fn rx_window(&self) -> RxCounter {
        self.window
    }

    /// Encrypts `frame` into a full `55 AB` wire frame with the next counter. `random` must be
    /// fresh for each frame (§4.7: one source reused a single value).
    pub fn seal(&mut self, frame: &Frame, random: [u8; 4]) -> Vec<u8> {
        let counter = self.next_tx;
        // Past 2^32 frames the counter would repeat; no session lives that long.
        self.next_tx = self.next_tx.wrapping_add(1);
        seal_with(&self.tx.ccm, &self.tx.iv, counter, frame, random)
    }

    /// Checks and decrypts one complete wire frame, enforcing the replay window. The window
    /// only moves after the tag has verified, so a forged frame cannot advance it.
    pub fn open(&mut self, wire: &[u8]) -> Result<Frame, EncryptedError> {
        let parts = split(wire)?;
        let counter = self.window.check(parts.wire_counter)?;
        let pt = open_with(&self.rx.ccm, &self.rx.iv, counter, &parts)?;
        let (frame, _random) = finish(parts.len, pt, wire)?;
        self.window.accept(counter);
        Ok(frame)
    }
}

/// Nonce `iv ‖ 00 00 00 00 ‖ le32(counter)` (12 bytes for a 4-byte IV, 10 for a 2-byte IV).
pub fn nonce(iv: &[u8], counter: u32) -> Vec<u8> {
    let mut n = Vec::with_capacity(iv.len() + 8);
    n.extend_from_slice(iv);
    n.extend_from_slice(&[0; 4]);
    n.extend_from_slice(&counter.to_le_bytes());
    n
}

/// Plaintext `DIR RW ATTR PAYLOAD R0..R3`.
fn plaintext(frame: &Frame, random: [u8; 4]) -> Vec<u8> {
    let mut pt = Vec::with_capacity(frame.payload.len() + 3 + RANDOM_LEN + TAG_LEN);
    frame.write_body(&mut pt);
    pt.extend_from_slice(&random);
    pt
}

/// Wraps the encrypted plaintext and tag into the wire frame.
fn assemble(len: u8, counter: u32, ct: &[u8], tag: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire_len(len));
    out.extend_from_slice(&[HEADER_0, HEADER_ENCRYPTED, len]);
    out.extend_from_slice(&counter.to_le_bytes()[..2]);
    out.extend_from_slice(ct);
    out.extend_from_slice(tag);
    let ck = checksum::checksum_le(out.get(2..).unwrap_or_default());
    out.extend_from_slice(&ck);
    out
}

/// Encrypts with any CCM variant; `iv` has the length that makes the variant's nonce.
// Sealing cannot fail: see the comment at the `expect`.
#[allow(clippy::expect_used)]
fn seal_with<A: AeadInPlace>(
    aead: &A,
    iv: &[u8],
    counter: u32,
    frame: &Frame,
    random: [u8; 4],
) -> Vec<u8> {
    let mut buf = plaintext(frame, random);
    let n = nonce(iv, counter);
    // CCM refuses only messages longer than its length field allows (2^24 bytes for a 12-byte
    // nonce); the plaintext is at most 253 + 7 bytes, so this cannot fail. The nonce length
    // matches the variant because every caller pairs a 4-byte IV with `Ccm12` and a 2-byte IV
    // with `Ccm10`.
    let tag = aead
        .encrypt_in_place_detached(GenericArray::from_slice(&n), &[], &mut buf)
        .expect("CCM accepts any frame-sized plaintext");
    assemble(frame.len_byte(), counter, &buf, &tag)
}

/// Decrypts the parts with any CCM variant, returning the full plaintext (with the random
/// bytes).
fn open_with<A: AeadInPlace>(
    aead: &A,
    iv: &[u8],
    counter: u32,
    parts: &Parts<'_>,
) -> Result<Vec<u8>, EncryptedError> {
    let mut buf = parts.ct.to_vec();
    let n = nonce(iv, counter);
    aead.decrypt_in_place_detached(
        GenericArray::from_slice(&n),
        &[],
        &mut buf,
        GenericArray::from_slice(parts.tag),
    )
    .map_err(|_| EncryptedError::BadTag { counter })?;
    Ok(buf)
}

/// Splits a decrypted plaintext into the frame and the sender's random bytes.
fn finish(len: u8, mut pt: Vec<u8>, wire: &[u8]) -> Result<(Frame, [u8; 4]), EncryptedError> {
    let random_at = pt.len().saturating_sub(RANDOM_LEN);
    let random = pt
        .get(random_at..)
        .and_then(|r| <[u8; 4]>::try_from(r).ok())
        .ok_or_else(|| len_err(wire))?;
    pt.truncate(random_at);
    let frame = Frame::from_body(len, &pt).map_err(|_| len_err(wire))?;
    Ok((frame, random))
}

/// A checked wire frame, split into its fields.
struct Parts<'a> {
    len: u8,
    wire_counter: u16,
    ct: &'a [u8],
    tag: &'a [u8],
}

fn len_err(wire: &[u8]) -> EncryptedError {
    let len = wire.get(2).copied().unwrap_or(0);
    EncryptedError::LenMismatch {
        len,
        expected: wire_len(len),
        found: wire.len(),
    }
}

/// Header, length and checksum checks shared by every opener.
fn split(wire: &[u8]) -> Result<Parts<'_>, EncryptedError> {
    let header = wire.get(..2).unwrap_or(wire);
    if header != [HEADER_0, HEADER_ENCRYPTED] {
        return Err(EncryptedError::BadHeader {
            found: header.to_vec(),
        });
    }
    let len = wire.get(2).copied().ok_or_else(|| len_err(wire))?;
    if len < 2 || wire.len() != wire_len(len) {
        return Err(len_err(wire));
    }
    checksum::verify_framed(wire)?;
    // Lengths are now fixed by LEN, so these ranges exist.
    let ct_len = usize::from(len) + 1 + RANDOM_LEN;
    let wire_counter = u16::from_le_bytes([
        wire.get(3).copied().unwrap_or(0),
        wire.get(4).copied().unwrap_or(0),
    ]);
    let ct = wire.get(5..5 + ct_len).ok_or_else(|| len_err(wire))?;
    let tag = wire
        .get(5 + ct_len..5 + ct_len + TAG_LEN)
        .ok_or_else(|| len_err(wire))?;
    Ok(Parts {
        len,
        wire_counter,
        ct,
        tag,
    })
}

/// Seals `frame` with an explicit key, IV and counter. A 4-byte IV is the real construction;
/// a 2-byte IV gives the 10-byte nonce of one source's test vectors. Other IV lengths are
/// refused.
pub fn seal_with_counter(
    key: &[u8; 16],
    iv: &[u8],
    counter: u32,
    frame: &Frame,
    random: [u8; 4],
) -> Result<Vec<u8>, EncryptedError> {
    let key = GenericArray::from_slice(key);
    match iv.len() {
        4 => Ok(seal_with(&Ccm12::new(key), iv, counter, frame, random)),
        2 => Ok(seal_with(&Ccm10::new(key), iv, counter, frame, random)),
        n => Err(EncryptedError::UnsupportedIv(n)),
    }
}

/// Opens one wire frame with an explicit key, IV and 32-bit counter (no replay window: the
/// caller chose the counter). Returns the frame and the 4 random bytes the sender appended.
pub fn open_with_counter(
    key: &[u8; 16],
    iv: &[u8],
    counter: u32,
    wire: &[u8],
) -> Result<(Frame, [u8; 4]), EncryptedError> {
    let parts = split(wire)?;
    let key = GenericArray::from_slice(key);
    let pt = match iv.len() {
        4 => open_with(&Ccm12::new(key), iv, counter, &parts)?,
        2 => open_with(&Ccm10::new(key), iv, counter, &parts)?,
        n => return Err(EncryptedError::UnsupportedIv(n)),
    };
    finish(parts.len, pt, wire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{DIR_ESC, DIR_ESC_REPLY, RW_READ};

    fn keys() -> SessionKeys {
        SessionKeys {
            dev_key: [0x3c; 16],
            app_key: [0x12; 16],
            dev_iv: [0xcd, 0x01, 0x60, 0x50],
            app_iv: [0xc8, 0x7d, 0xe6, 0xf1],
        }
    }

    fn request(attr: u8) -> Frame {
        Frame::new(DIR_ESC, RW_READ, attr, vec![0x02]).unwrap()
    }

    fn reply(attr: u8, n: u16) -> Frame {
        Frame::new(DIR_ESC_REPLY, RW_READ, attr, n.to_le_bytes().to_vec()).unwrap()
    }

    /// Re-computes the checksum after a test altered a byte, so only the tag can catch it.
    fn fix_checksum(wire: &mut [u8]) {
        let n = wire.len();
        let ck = checksum::checksum_le(&wire[2..n - 2]);
        wire[n - 2..].copy_from_slice(&ck);
    }

    #[test]
    fn client_and_device_talk_both_ways() {
        let mut client = UartCipher::new(keys(), Role::Client);
        let mut device = UartCipher::new(keys(), Role::Device);
        for i in 0..50u16 {
            let wire = client.seal(&request(i as u8), [i as u8, 1, 2, 3]);
            assert_eq!(wire.len(), wire_len(wire[2]));
            assert_eq!(
                u16::from_le_bytes([wire[3], wire[4]]),
                i,
                "client counts from 0"
            );
            assert_eq!(device.open(&wire).unwrap(), request(i as u8));
            let back = device.seal(&reply(i as u8, i), [9, 9, 9, i as u8]);
            assert_eq!(
                u16::from_le_bytes([back[3], back[4]]),
                i + 1,
                "device counts from 1"
            );
            assert_eq!(client.open(&back).unwrap(), reply(i as u8, i));
        }
        assert_eq!(device.rx_window().last(), 49);
        assert_eq!(client.rx_window().last(), 50);
    }

    #[test]
    fn counters_cross_the_16_bit_wrap() {
        let start = 0xFFF0;
        let mut client =
            UartCipher::with_counters(keys(), Role::Client, start, RxCounter::new(Role::Client));
        let mut device = UartCipher::with_counters(
            keys(),
            Role::Device,
            start + 1,
            RxCounter::with_last(Role::Device, start - 1),
        );
        for i in 0..40u32 {
            let wire = client.seal(&request(0xB0), [0; 4]);
            device.open(&wire).unwrap();
            assert_eq!(device.rx_window().last(), start + i);
            let back = device.seal(&reply(0xB0, 7), [0; 4]);
            client.open(&back).unwrap();
            assert_eq!(client.rx_window().last(), start + 1 + i);
        }
        assert!(device.rx_window().last() > 0x1_0000);
        assert!(client.rx_window().last() > 0x1_0000);
    }

    #[test]
    fn replayed_frame_is_rejected() {
        let mut client = UartCipher::new(keys(), Role::Client);
        let mut device = UartCipher::new(keys(), Role::Device);
        client.seal(&request(1), [0; 4]);
        let second = client.seal(&request(2), [0; 4]);
        device.open(&second).unwrap();
        assert_eq!(
            device.open(&second),
            Err(EncryptedError::Replay {
                counter: 1,
                last: 1
            })
        );
        let back = device.seal(&reply(2, 0), [0; 4]);
        client.open(&back).unwrap();
        assert!(matches!(
            client.open(&back),
            Err(EncryptedError::Replay {
                counter: 1,
                last: 1
            })
        ));
    }

    #[test]
    fn both_receivers_accept_counter_zero_without_moving_the_window() {
        let mut device = UartCipher::new(keys(), Role::Device);
        let mut client = UartCipher::new(keys(), Role::Client);
        for _ in 0..5 {
            client.seal(&request(0), [0; 4]);
        }
        device.open(&client.seal(&request(5), [0; 4])).unwrap();
        // A client that sends every frame with counter 0 (a fresh cipher each time).
        for attr in 0..3 {
            let mut zero = UartCipher::new(keys(), Role::Client);
            let wire = zero.seal(&request(attr), [attr; 4]);
            assert_eq!(device.open(&wire).unwrap(), request(attr));
        }
        assert_eq!(
            device.rx_window().last(),
            5,
            "counter 0 leaves the window alone"
        );

        let (key, iv) = (keys().dev_key, keys().dev_iv);
        client.open(&device.seal(&reply(1, 1), [0; 4])).unwrap();
        let zero_from_device = seal_with_counter(&key, &iv, 0, &reply(1, 1), [0; 4]).unwrap();
        assert_eq!(client.open(&zero_from_device), Ok(reply(1, 1)));
        assert_eq!(client.rx_window().last(), 1);
    }

    #[test]
    fn bad_tag_is_rejected_and_does_not_move_the_window() {
        let mut client = UartCipher::new(keys(), Role::Client);
        let mut device = UartCipher::new(keys(), Role::Device);
        client.seal(&request(0), [0; 4]);
        let good = client.seal(&request(1), [0; 4]);
        let mut bad = good.clone();
        bad[6] ^= 0x40;
        fix_checksum(&mut bad);
        assert_eq!(
            device.open(&bad),
            Err(EncryptedError::BadTag { counter: 1 })
        );
        assert_eq!(device.rx_window().last(), 0);
        assert_eq!(device.open(&good).unwrap(), request(1));
        // A frame sealed with the client's key does not open with the device's key.
        let mut other_client = UartCipher::new(keys(), Role::Client);
        other_client.seal(&request(2), [0; 4]);
        let own = other_client.seal(&request(3), [0; 4]);
        let mut wrong_direction = UartCipher::new(keys(), Role::Client);
        assert_eq!(
            wrong_direction.open(&own),
            Err(EncryptedError::BadTag { counter: 1 })
        );
    }

    #[test]
    fn framing_errors_come_before_crypto() {
        let mut device = UartCipher::new(keys(), Role::Device);
        let mut client = UartCipher::new(keys(), Role::Client);
        let wire = client.seal(&request(0), [0; 4]);
        assert!(matches!(
            device.open(&wire[..wire.len() - 1]),
            Err(EncryptedError::LenMismatch {
                len: 3,
                expected: 19,
                found: 18
            })
        ));
        let mut ck = wire.clone();
        ck[7] ^= 1;
        assert!(matches!(
            device.open(&ck),
            Err(EncryptedError::BadChecksum(_))
        ));
        let mut plain = wire.clone();
        plain[1] = 0xAA;
        assert!(matches!(
            device.open(&plain),
            Err(EncryptedError::BadHeader { .. })
        ));
        assert!(matches!(
            device.open(&[0x55]),
            Err(EncryptedError::BadHeader { .. })
        ));
        assert!(matches!(
            device.open(&[0x55, 0xAB]),
            Err(EncryptedError::LenMismatch { .. })
        ));
    }

    #[test]
    fn extension_rule() {
        assert_eq!(extend_counter(0, 1), 1);
        assert_eq!(extend_counter(0x7FFF, 0x0001), 0x0001);
        assert_eq!(extend_counter(0x8000, 0x0001), 0x1_0001);
        assert_eq!(extend_counter(0xFFFF, 0x0000), 0x1_0000);
        assert_eq!(extend_counter(0x1_FFFF, 0x8001), 0x1_8001);
        assert_eq!(extend_counter(0x1_0002, 0x0003), 0x1_0003);
    }

    #[test]
    fn iv_lengths_other_than_2_and_4_are_refused() {
        assert_eq!(
            seal_with_counter(&[0; 16], &[0; 3], 0, &request(0), [0; 4]),
            Err(EncryptedError::UnsupportedIv(3))
        );
    }
}
