//! Location for the scooter: one [`Fix`] type, fed by NMEA receivers on a serial port, a SIM7600
//! modem's AT interface, or gpsd. Sources never block the telemetry sampler: it asks for the
//! latest fix and its age. "No fix" is the absence of a [`Fix`], never latitude 0 / longitude 0.
//!
//! - [`nmea`]: sentence reader, strict decoding and gpsd-compatible epoch combination.
//! - [`sim7600`]: the SIM7600 AT byte stream, `+CGPSINFO`/`+CGNSSINFO`, and an async driver.
//! - [`gpsd`]: a gpsd JSON client.
//! - [`source`]: each source as a tokio task that keeps the latest fix ([`source::GpsHandle`]).
//! - [`capture`]: decoding recorded captures (NMEA or AT transcripts), for `m365 gps --replay`.
//! - `emulate` (feature `emulate`): an NMEA receiver and a SIM7600 modem on pseudo-terminals, for
//!   the simulator, the demo and tests.
//!
//! Reading a receiver from a sampler loop:
//!
//! ```no_run
//! use std::time::Duration;
//! use m365_gps::source::{GpsHandle, SourceConfig};
//!
//! # async fn sample() {
//! let gps = GpsHandle::spawn(SourceConfig::Nmea {
//!     path: "/dev/ttyACM0".into(),
//!     baud: 9600,
//! });
//! // Never waits: the task keeps the latest fix, the sampler takes it with its age.
//! match gps.latest() {
//!     Some((fix, age)) if age < Duration::from_secs(5) => println!("{} {}", fix.lat, fix.lon),
//!     Some((_, age)) => println!("last fix is stale ({age:?} old)"),
//!     None => println!("no fix yet"),
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod capture;
#[cfg(feature = "emulate")]
pub mod emulate;
mod fields;
mod fix;
pub mod gpsd;
pub mod nmea;
pub mod sim7600;
pub mod source;

pub use fields::FieldError;
pub use fix::{Fix, FixMode, FixQuality, FixSource};

/// The date/time crate of [`Fix::time`], re-exported so users need not depend on a matching
/// version.
pub use chrono;
