//! The Xiaomi scooter protocol (m365, Lite 1S, 1S, Pro, Pro 2, Pro 3, Essential) as pure code.
//!
//! Nothing here touches Bluetooth, a file, a clock, a runtime or a global random source. Bytes that
//! arrived go in, bytes to send and events come out; time and randomness are arguments. The
//! client (`m365`) and the scooter simulator (`m365-sim`) drive the same machines, so both roles
//! are always checked against each other.
//!
//! Map of the crate (one concept per file):
//! - [`gatt`]: service and characteristic UUIDs, the characteristic names the machines speak of.
//! - [`keys`]: the token and the per-session keys, with redacting `Debug`. Storing the token in
//!   a file is the client's business (`m365-ble`), not this crate's.
//! - [`crypto`]: P-256 ECDH, HKDF splits, DID encryption and login proofs (protocol.md §4).
//! - [`control`] and [`parcel`]: UPNP control words and the AVDTP parcel transport (§3.1–3.2).
//! - [`pairing`] and [`login`]: registration and login for both roles (§3.3–3.6).
//! - [`checksum`], [`frame`], [`encrypted`], [`xor`], [`reassembly`]: UART framings (§4.6, §5).
//! - [`uart`]: the one UART codec of a session, for both roles.
//! - [`exchange`]: one pipelined request/response exchange (matching, retries, deadlines).
//! - [`registers`]: request builders and typed decoders for the ESC and BMS maps (§6).
//! - [`model`]: model facts and protocol-generation detection (§7, §5.6).
#![forbid(unsafe_code)]

pub mod checksum;
pub mod control;
pub mod crypto;
pub mod encrypted;
pub mod exchange;
pub mod frame;
pub mod gatt;
pub mod keys;
pub mod login;
pub mod model;
pub mod pairing;
pub mod parcel;
pub mod reassembly;
pub mod registers;
pub mod uart;
pub mod xor;
