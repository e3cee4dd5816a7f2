//! The 16-bit checksum shared by every UART framing (protocol.md §4.6.4, §5.2).
//!
//! It is the one's complement of the byte sum, sent little-endian. The sum is accumulated in a
//! `u32` and masked, so it cannot overflow whatever the input length: one of the source clients
//! summed into a signed 16-bit integer, which panics in debug builds past 32 767 (§4.7).

/// The checksum of `bytes`: `0xFFFF ^ (sum of bytes mod 0x10000)`.
pub fn checksum(bytes: &[u8]) -> u16 {
    // A u32 cannot overflow before 16 MiB of 0xFF bytes; wrapping_add keeps even that defined.
    let sum = bytes
        .iter()
        .fold(0u32, |acc, &b| acc.wrapping_add(u32::from(b)));
    0xFFFF ^ (sum & 0xFFFF) as u16
}

/// The checksum of `bytes` as it goes on the wire (low byte first).
pub fn checksum_le(bytes: &[u8]) -> [u8; 2] {
    checksum(bytes).to_le_bytes()
}

/// The checksum a frame carries did not match its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("checksum mismatch: computed {expected:#06x}, frame carries {found:#06x}")]
pub struct ChecksumMismatch {
    /// What the bytes sum to.
    pub expected: u16,
    /// What the frame carried.
    pub found: u16,
}

/// Checks that `wire` (two little-endian bytes) is the checksum of `covered`.
pub fn verify(covered: &[u8], wire: [u8; 2]) -> Result<(), ChecksumMismatch> {
    let expected = checksum(covered);
    let found = u16::from_le_bytes(wire);
    if expected == found {
        Ok(())
    } else {
        Err(ChecksumMismatch { expected, found })
    }
}

/// Checks a whole frame whose checksum covers everything between a 2-byte header and the
/// 2-byte trailer (all three framings). A frame too short to hold both fails with `found = 0`.
pub(crate) fn verify_framed(frame: &[u8]) -> Result<(), ChecksumMismatch> {
    match frame.get(2..).and_then(|rest| rest.split_last_chunk::<2>()) {
        Some((covered, wire)) => verify(covered, *wire),
        None => Err(ChecksumMismatch {
            expected: checksum(&[]),
            found: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        // §5.2: 55 AA 03 20 01 10 0E → sum 0x42 → BD FF.
        assert_eq!(checksum_le(&[0x03, 0x20, 0x01, 0x10, 0x0E]), [0xBD, 0xFF]);
    }

    #[test]
    fn long_input_of_ff_does_not_overflow() {
        // 300 × 0xFF = 76 500 = 0x12AD4; masked to 0x2AD4; complement 0xD52B.
        assert_eq!(checksum(&[0xFF; 300]), 0xD52B);
    }

    #[test]
    fn verify_reports_both_values() {
        let err = verify(&[1, 2, 3], [0, 0]).unwrap_err();
        assert_eq!(err.expected, 0xFFF9);
        assert_eq!(err.found, 0);
        assert!(verify(&[1, 2, 3], [0xF9, 0xFF]).is_ok());
    }
}
