//! Login (protocol.md §3.4), run on every new connection: both sides prove they hold the token
//! and derive the per-connection [`SessionKeys`]. [`ClientLogin`] plays `m365` (L1–L18),
//! [`DeviceLogin`] the simulated scooter.
//!
//! Same driving contract as the pairing machines (quinn-style): feed bytes with the current time,
//! call `handle_timeout(now)` at `poll_timeout()`, drain `poll_transmit` and `poll_event`. The
//! whole login has one deadline (10 s by default, miauth Java's value).
//!
//! Where things are: what both roles share (the [`Config`] and [`LoginError`]) is here; the
//! client machine is in `client.rs`, the device machine in `device.rs`.

mod client;
mod device;

pub use client::{ClientEvent, ClientLogin};
pub use device::{DeviceEvent, DeviceLogin};

use std::time::Duration;

use crate::control::Refusal;
use crate::parcel::ParcelError;

/// Timeouts of a login, either side.
#[derive(Debug, Clone)]
pub struct Config {
    /// The whole exchange must finish within this time after it started.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a login failed, with what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The scooter's proof does not match our token (client side; we sent nothing more).
    #[error(
        "token rejected: the scooter's login proof does not match the stored token (it was \
         registered again since, or the token belongs to another scooter); register again"
    )]
    TokenRejected,
    /// The client's proof does not match the stored token (device side; `23` sent).
    #[error("the client's login proof does not match the stored token (23 00 00 00 sent)")]
    ProofMismatch,
    /// The scooter answered `23` to our proof.
    #[error("the scooter rejected the login (23 00 00 00): register again")]
    Rejected,
    /// The scooter answered `22` (*LOG_INVALID_LTMK*): it holds no valid token for us.
    #[error("the scooter reports the stored token as invalid (22 00 00 00): register (pair) again")]
    InvalidToken,
    /// The scooter answered `E0`–`E3`.
    #[error("the scooter refused the login: {0}")]
    Refused(Refusal),
    /// The login did not finish in time.
    #[error("login timed out after {waited:?} waiting for {waiting_for}")]
    Timeout {
        /// The step that did not complete.
        waiting_for: &'static str,
        /// How long the whole login took so far.
        waited: Duration,
    },
    /// A parcel of the wrong length.
    #[error("login {what}: expected {expected} bytes, got {found}")]
    BadLength {
        /// Which parcel.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Bytes received.
        found: usize,
    },
    /// The parcel transport failed.
    #[error("parcel transport: {0}")]
    Parcel(ParcelError),
}
