//! gpsd as a source: many Raspberry Pi setups already run gpsd for their receiver, and it
//! handles receivers we do not. [`json`] decodes its reports, [`client`] talks to it.

pub mod client;
pub mod json;

pub use client::{DEFAULT_ADDR, GpsdClient, GpsdError};
pub use json::{GpsdDecoder, GpsdJsonError, GpsdMessage};
