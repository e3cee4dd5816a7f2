//! The part of `m365` that touches the scooter: the transport seam (btleplug for real BlueZ; the
//! simulator brings its own in-process one), the scanner, pairing, login, the encrypted request/response session with
//! pipelined reads, and the reconnection state machine users rely on.
//!
//! Map of the crate (one concept per file):
//! - [`transport`]: the async [`transport::Transport`] trait and [`transport::btleplug`].
//! - [`BdAddr`]: Bluetooth addresses as users write them.
//! - [`scanner`]: finding scooters and telling model and protocol from their advertisements.
//! - `generation`: which protocol generation to speak (§5.6), plain probe, XOR key recovery.
//! - [`pairing`]: registration with the power-button retry, writing `.mi-token`.
//! - [`token_file`]: reading and atomically writing the `.mi-token` file.
//! - `login`: Mi-auth login with errors that name the token file.
//! - [`session`]: framing, encryption, matching answers to pipelined requests.
//! - [`telemetry`] and [`info`]: what a sample and `m365 info` read, decoded.
//! - [`reconnect`]: the reconnection policy as a pure state machine.
//! - [`link`]: [`link::ScooterLink`], which ties it all together for the daemon.
//! - [`Counters`], [`error`].
#![forbid(unsafe_code)]

mod address;
mod counters;
pub mod error;
mod generation;
mod handshake;
pub mod info;
pub mod link;
mod login;
pub mod pairing;
pub mod reconnect;
pub mod scanner;
pub mod session;
pub mod telemetry;
pub mod token_file;
pub mod transport;

pub use address::{AddressError, BdAddr};
pub use counters::Counters;
pub use error::BleError;
pub use link::{LinkConfig, ScooterLink};
pub use telemetry::Telemetry;
pub use transport::Transport;
