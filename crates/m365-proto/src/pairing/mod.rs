//! Registration ("pairing", protocol.md §3.3 and §3.6) as two sans-IO machines: [`ClientPairing`]
//! for `m365` and [`DevicePairing`] for the simulated scooter. Both create the 12-byte token.
//!
//! The machines follow quinn-proto: bytes that arrived go in with the current time
//! (`handle_notification` / `handle_write`), deadlines fire through `handle_timeout(now)`, and
//! the caller drains `poll_transmit`, `poll_event` and `poll_timeout` after every input.
//!
//! **The power button.** A scooter only answers the client's key announce (R7) after its power
//! button was pressed within 5 s of the beep it makes on `15`. A first attempt therefore often
//! stalls: [`ClientPairing`] reports [`PairingError::ButtonNotPressed`] when no `RCV_RDY` came
//! 3 s after the key announce. The driver then tells the user to press the power button when it
//! beeps, disconnects, waits 5 s, reconnects and starts a new `ClientPairing` from R1. Once the
//! button was pressed in time, the scooter accepts registrations for 30 s, so the retry passes.
//!
//! Where things are: the types both roles share (the [`Did`], the [`Registration`] a success
//! produces, [`PairingError`]) are here; the client machine is in `client.rs`, the device machine
//! in `device.rs`.

mod client;
mod device;

pub use client::{ClientConfig, ClientEvent, ClientPairing};
pub use device::{DeviceConfig, DeviceEvent, DevicePairing};

use std::time::Duration;

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::control::Refusal;
use crate::crypto::{CryptoError, DID_LEN};
use crate::keys::Token;
use crate::parcel::ParcelError;

/// The header of the device info parcel.
pub const INFO_HEADER: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Length of the device info parcel when the device holds a DID.
pub const INFO_LEN: usize = INFO_HEADER.len() + DID_LEN;

/// The 20-byte device ID ("BLE DID"), observed as `00` + 19 ASCII characters such as
/// `blt.4.18n58266kgg00`. It is not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Did(pub [u8; DID_LEN]);

impl Did {
    /// A new ID in the observed layout: `00` + `blt.4.` + 13 random lowercase letters and digits.
    ///
    /// The scooter adopts it, but the Mi cloud does not know it: Mi Home will then refuse the
    /// scooter ("standard verification error (-29)").
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Did {
        const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut did = [0u8; DID_LEN];
        did[1..7].copy_from_slice(b"blt.4.");
        for byte in &mut did[7..] {
            // Rejection sampling keeps the 36 symbols equally likely.
            *byte = loop {
                let r = (rng.next_u32() & 0xFF) as u8;
                if r < 252 {
                    break ALPHABET[usize::from(r % 36)];
                }
            };
        }
        Did(did)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; DID_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for Did {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Did({self})")
    }
}

impl core::fmt::Display for Did {
    /// The printable part, e.g. `blt.4.18n58266kgg00`; other bytes are shown as `\xNN`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let body = self.0.strip_prefix(&[0]).unwrap_or(&self.0);
        for &b in body {
            if b.is_ascii_graphic() {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// What a registration produced.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Registration {
    /// The token to store in `.mi-token`.
    #[zeroize(skip)]
    pub token: Token,
    /// The bind key (no known client uses it; kept for completeness).
    pub bind_key: [u8; 16],
    /// The DID the scooter now holds.
    #[zeroize(skip)]
    pub did: Did,
    /// Whether the DID was invented by this client because the scooter had none.
    #[zeroize(skip)]
    pub did_invented: bool,
}

impl core::fmt::Debug for Registration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.token)
            .field("bind_key", &"<redacted>")
            .field("did", &self.did)
            .field("did_invented", &self.did_invented)
            .finish()
    }
}

/// Why a registration failed, with what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// No `RCV_RDY` to the key announce in time: the scooter waits for its power button.
    #[error(
        "the scooter did not accept the key exchange within {waited:?}: press the power button \
         when it beeps, then registration is retried"
    )]
    ButtonNotPressed {
        /// How long the client waited.
        waited: Duration,
    },
    /// The peer went silent.
    #[error("registration timed out after {waited:?} waiting for {waiting_for}")]
    Timeout {
        /// The step that did not complete.
        waiting_for: &'static str,
        /// How long was waited.
        waited: Duration,
    },
    /// The device info parcel is neither the 4-byte header nor at least 24 bytes.
    #[error("device info: expected 4 or {INFO_LEN} bytes, got {found}")]
    BadDeviceInfo {
        /// Bytes received.
        found: usize,
    },
    /// The peer's public key was unusable.
    #[error("the peer's public key is unusable: {0}")]
    BadPublicKey(CryptoError),
    /// The device could not verify the DID ciphertext.
    #[error("the DID ciphertext did not verify: {0}")]
    BadDidCiphertext(CryptoError),
    /// `13` came before the DID ciphertext (or the client key) was complete.
    #[error("verification was requested before the {missing} arrived")]
    Incomplete {
        /// What had not arrived.
        missing: &'static str,
    },
    /// The device answered `12`: it could not verify our DID ciphertext.
    #[error(
        "the scooter rejected the registration (12 00 00 00): the key exchange did not match; \
         retry the registration"
    )]
    Rejected,
    /// The device answered `E0`–`E3`.
    #[error("the scooter refused: {0}")]
    Refused(Refusal),
    /// The parcel transport failed.
    #[error("parcel transport: {0}")]
    Parcel(ParcelError),
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(1);
            self.0
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next_u32() as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for Counter {}

    #[test]
    fn generated_did_has_the_observed_layout() {
        let did = Did::generate(&mut Counter(0));
        assert_eq!(did.0[0], 0);
        assert_eq!(&did.0[1..7], b"blt.4.");
        assert!(
            did.0[7..]
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(did.to_string().len(), 19);
    }

    #[test]
    fn did_display_escapes_unprintable_bytes() {
        let mut raw = [b'a'; 20];
        raw[0] = 0;
        raw[5] = 0x01;
        assert_eq!(Did(raw).to_string(), "aaaa\\x01aaaaaaaaaaaaaa");
    }

    #[test]
    fn registration_debug_redacts_secrets() {
        let r = Registration {
            token: Token([0x5A; 12]),
            bind_key: [0xC3; 16],
            did: Did([0x41; 20]),
            did_invented: false,
        };
        let text = format!("{r:?}");
        assert!(!text.contains("c3c3") && !text.contains("195"), "{text}");
    }
}
