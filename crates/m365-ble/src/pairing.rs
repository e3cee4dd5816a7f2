//! Registration ("pairing", protocol.md §3.3, §3.6) as the user lives it: connect, ask for the
//! power button when the scooter beeps, and when the first attempt stalls (it usually does: the
//! scooter only accepts the key exchange after the press) disconnect, count down 5 s, reconnect
//! and restart from R1. `E1` (already bound) and `E3` (confirmation invalid) get the same
//! treatment (§11a Q9). The token goes to the `.mi-token` file (12 bytes, mode 0600) and is
//! never printed or logged.
//!
//! Registration replaces the scooter's binding, so an existing token file is only replaced with
//! `force`: without it the scooter is not even contacted.

use std::path::PathBuf;
use std::time::Duration;

use m365_proto::control::Refusal;
use m365_proto::gatt::Char;
use m365_proto::model::{Generation, detect_from_gatt};
use m365_proto::pairing::{self, ClientConfig, ClientPairing, Did, PairingError};
use rand::rngs::OsRng;

use crate::address::BdAddr;
use crate::error::BleError;
use crate::generation::{Selection, select};
use crate::handshake::{drive, now};
use crate::scanner::{self, ScanFilter};
use crate::token_file::{self, TokenFileError};
use crate::transport::{CONNECT_TIMEOUT, Transport};

/// How to register.
#[derive(Debug, Clone)]
pub struct PairingOptions {
    /// Where the token goes.
    pub token_path: PathBuf,
    /// Replace an existing token file.
    pub force: bool,
    /// Attempts before giving up.
    pub attempts: u32,
    /// Pause between a stalled attempt and the next (the scooter needs it, §3.6).
    pub retry_wait: Duration,
    /// How long to look for the scooter.
    pub scan_timeout: Duration,
    /// Protocol forced by the configuration.
    pub protocol: Option<Generation>,
}

impl PairingOptions {
    /// Defaults for `token_path`: 6 attempts, 5 s between them, 30 s to find the scooter.
    pub fn new(token_path: PathBuf) -> PairingOptions {
        PairingOptions {
            token_path,
            force: false,
            attempts: 6,
            retry_wait: Duration::from_secs(5),
            scan_timeout: Duration::from_secs(30),
            protocol: None,
        }
    }
}

/// What the user should know while registration runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingProgress {
    /// Looking for the scooter.
    Scanning,
    /// Connected; attempt `attempt` starts. The scooter will beep: press the power button.
    Attempt {
        /// From 1.
        attempt: u32,
    },
    /// The scooter did not accept the attempt: the button was not pressed in time (no answer
    /// to the key announce), or it refused with `E1`/`E3`. The attempt is restarted.
    ButtonNotPressed,
    /// The link dropped during the attempt; it is retried.
    LinkLost,
    /// Seconds left before the next attempt.
    Countdown {
        /// Seconds.
        remaining: u64,
    },
    /// The scooter had no ID; this one was made up (Mi Home will not accept the scooter).
    DidInvented(String),
}

/// A successful registration (the token is in the file, not here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The scooter's ID (not secret).
    pub did: Did,
    /// Whether the ID was invented by this client.
    pub did_invented: bool,
    /// Attempts it took.
    pub attempts: u32,
    /// Where the token was written.
    pub token_path: PathBuf,
}

/// Registers with the scooter at `address`, writing the token to `options.token_path`.
pub async fn register<T: Transport>(
    transport: &mut T,
    address: BdAddr,
    options: &PairingOptions,
    progress: &mut (dyn FnMut(PairingProgress) + Send),
) -> Result<Registered, BleError> {
    match token_file::read(&options.token_path) {
        Ok(_) | Err(TokenFileError::WrongLength { .. }) if !options.force => {
            return Err(BleError::TokenExists {
                path: options.token_path.clone(),
            });
        }
        Ok(_) | Err(TokenFileError::Missing { .. } | TokenFileError::WrongLength { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let filter = ScanFilter {
        address: Some(address),
        ..ScanFilter::default()
    };
    progress(PairingProgress::Scanning);
    let found = scanner::find(transport, &filter, options.scan_timeout).await?;

    for attempt in 1..=options.attempts.max(1) {
        connect(transport, address, &filter, options.scan_timeout).await?;
        let chars = transport.discover().await?;
        let generation = match select(options.protocol, found.generation, detect_from_gatt(chars))?
        {
            Selection::Use(g) => g,
            Selection::Probe => Generation::Plain,
        };
        if generation != Generation::MiAuth {
            let _ = transport.disconnect().await;
            return Err(BleError::PairingNotNeeded(generation));
        }
        for char in [Char::Upnp, Char::Avdtp, Char::UartNotify] {
            transport.subscribe(char).await?;
        }
        progress(PairingProgress::Attempt { attempt });
        tracing::info!(%address, attempt, "registering: press the power button when the scooter beeps");
        let mut machine = ClientPairing::new(now(), &mut OsRng, ClientConfig::default());
        let outcome = loop {
            match drive(transport, &mut machine).await {
                Ok(pairing::ClientEvent::DidInvented(did)) => {
                    progress(PairingProgress::DidInvented(did.to_string()));
                }
                Ok(other) => break Some(other),
                // A radio hiccup costs the attempt, not the registration.
                Err(BleError::LinkLost) if attempt < options.attempts => break None,
                Err(e) => return Err(e),
            }
        };
        match outcome {
            Some(pairing::ClientEvent::Registered(registration)) => {
                token_file::write(&options.token_path, &registration.token, options.force)?;
                let _ = transport.disconnect().await;
                tracing::info!(%address, did = %registration.did, path = %options.token_path.display(), "registered; token saved");
                return Ok(Registered {
                    did: registration.did,
                    did_invented: registration.did_invented,
                    attempts: attempt,
                    token_path: options.token_path.clone(),
                });
            }
            // No RCV_RDY to the key announce, or `E1`/`E3` (already bound, confirmation
            // invalid): both mean the scooter wants the button press, so restart from R1 with
            // the prompt (§3.6, §11a Q9).
            Some(pairing::ClientEvent::Failed(
                e @ (PairingError::ButtonNotPressed { .. }
                | PairingError::Refused(Refusal::AlreadyRegistered | Refusal::InvalidOob)),
            )) => {
                tracing::info!(%address, attempt, reason = %e, "registration not accepted: press the power button when it beeps");
                progress(PairingProgress::ButtonNotPressed);
                let _ = transport.disconnect().await;
                if attempt < options.attempts {
                    countdown(options.retry_wait, progress).await;
                }
            }
            None => {
                tracing::info!(%address, attempt, "link lost during registration: retrying");
                progress(PairingProgress::LinkLost);
                let _ = transport.disconnect().await;
                countdown(options.retry_wait, progress).await;
            }
            Some(pairing::ClientEvent::Failed(e)) => {
                let _ = transport.disconnect().await;
                return Err(BleError::Pairing(e));
            }
            Some(pairing::ClientEvent::DidInvented(_)) => {}
        }
    }
    Err(BleError::ButtonNeverPressed {
        attempts: options.attempts.max(1),
    })
}

/// Waits `wait` between attempts, reporting the seconds left.
async fn countdown(wait: Duration, progress: &mut (dyn FnMut(PairingProgress) + Send)) {
    let mut left = wait;
    while !left.is_zero() {
        progress(PairingProgress::Countdown {
            remaining: left.as_secs_f64().ceil() as u64,
        });
        let step = left.min(Duration::from_secs(1));
        tokio::time::sleep(step).await;
        left -= step;
    }
}

/// Connects, clearing a stale BlueZ connection once if needed.
async fn connect<T: Transport>(
    transport: &mut T,
    address: BdAddr,
    filter: &ScanFilter,
    scan_timeout: Duration,
) -> Result<(), BleError> {
    match transport.connect(address, CONNECT_TIMEOUT).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_stale_connection() => {
            tracing::info!(%address, "stale connection in BlueZ: removing the device and retrying");
            transport.remove_device(address).await?;
            scanner::find(transport, filter, scan_timeout).await?;
            Ok(transport.connect(address, CONNECT_TIMEOUT).await?)
        }
        // BlueZ forgot the scooter (not heard for its temporary timeout): find it again.
        Err(crate::transport::TransportError::UnknownDevice(_)) => {
            scanner::find(transport, filter, scan_timeout).await?;
            Ok(transport.connect(address, CONNECT_TIMEOUT).await?)
        }
        Err(e) => Err(e.into()),
    }
}
