//! The errors of the BLE side, each with what the user can do about it. The `m365` binary maps
//! them to its exit codes: [`BleError::NotFound`] (scooter not found), [`BleError::Lost`]
//! (scooter lost) and those for which [`BleError::needs_pairing`] holds (pairing needed).

use std::path::PathBuf;
use std::time::Duration;

use m365_proto::login::LoginError;
use m365_proto::model::Generation;
use m365_proto::pairing::PairingError;
use m365_proto::registers::RegisterError;

use crate::address::BdAddr;
use crate::token_file::TokenFileError;
use crate::transport::TransportError;

/// Why talking to the scooter failed.
#[derive(Debug, thiserror::Error)]
pub enum BleError {
    /// The initial scan found no matching scooter.
    #[error("no scooter found within {timeout:?} ({wanted}): is it switched on and in range?")]
    NotFound {
        /// How long was scanned.
        timeout: Duration,
        /// What was looked for, e.g. `address D5:01:…` or `name starting with MIScooter`.
        wanted: String,
    },
    /// The link was lost and the scooter did not come back in time.
    #[error("lost the scooter {address}: not reachable again within {window:?}")]
    Lost {
        /// The scooter.
        address: BdAddr,
        /// The reconnect window.
        window: Duration,
    },
    /// The token file is missing or unusable.
    #[error(transparent)]
    TokenFile(#[from] TokenFileError),
    /// The scooter did not accept our token.
    #[error(
        "the scooter rejected the token in {path}: it was registered with another app or \
         client since, or the file belongs to another scooter; pair again with \
         `m365 register <MAC>`"
    )]
    TokenRejected {
        /// The token file.
        path: PathBuf,
    },
    /// The scooter holds no pairing at all.
    #[error(
        "the scooter is not paired (it answered E0): pair with `m365 register <MAC>`, token file {path}"
    )]
    NotPaired {
        /// The token file that would be used.
        path: PathBuf,
    },
    /// Login failed for another reason.
    #[error("login failed: {0}")]
    Login(LoginError),
    /// Registration failed.
    #[error("registration failed: {0}")]
    Pairing(PairingError),
    /// The power button was not pressed in any of the attempts.
    #[error(
        "registration did not complete after {attempts} attempts: press the scooter's power \
         button once when it beeps, within 5 s"
    )]
    ButtonNeverPressed {
        /// Attempts made.
        attempts: u32,
    },
    /// A token file exists and replacing it was not asked for.
    #[error(
        "{path} already holds a token; registering again would replace the scooter's pairing \
         and make that token useless; add --force to replace it"
    )]
    TokenExists {
        /// The token file.
        path: PathBuf,
    },
    /// The scooter speaks a generation that needs no pairing.
    #[error("this scooter speaks {0} and needs no pairing: just use it")]
    PairingNotNeeded(Generation),
    /// The scooter speaks a protocol this client does not (NinebotCrypto).
    #[error("unsupported scooter: {0}")]
    Unsupported(String),
    /// A request got no valid answer.
    #[error("no answer to {what} within {after:?} ({attempts} attempts)")]
    Timeout {
        /// What was asked.
        what: String,
        /// Time waited per attempt.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The link went down during an operation that cannot be resumed transparently.
    #[error("the Bluetooth link went down")]
    LinkLost,
    /// A write was not reflected by the register read back.
    #[error(
        "write to register {reg:#04x} not confirmed: wrote {wanted:#06x}, read back {found:#06x}"
    )]
    WriteNotConfirmed {
        /// Register.
        reg: u8,
        /// Value written.
        wanted: u16,
        /// Value read back.
        found: u16,
    },
    /// An answer could not be decoded.
    #[error("undecodable answer: {0}")]
    Register(#[from] RegisterError),
    /// The radio failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl BleError {
    /// Whether only pairing again (`m365 register`) can fix this.
    pub fn needs_pairing(&self) -> bool {
        matches!(
            self,
            BleError::TokenRejected { .. }
                | BleError::NotPaired { .. }
                | BleError::TokenFile(TokenFileError::Missing { .. })
                | BleError::TokenFile(TokenFileError::WrongLength { .. })
        )
    }
}
