//! The hardware-free world `m365` is built and proven against: simulated scooters that play the
//! device side of the protocol, a fake BlueZ on a private D-Bus so the real btleplug path runs
//! without a radio, and GPS receivers / SIM7600 modems on pseudo-terminals.
#![forbid(unsafe_code)]

pub mod bluez;
pub mod gps;
