//! Location for the scooter: one [`Fix`] type, fed by NMEA receivers on a serial port, a SIM7600
//! modem's AT interface, or gpsd. Sources never block the telemetry sampler: it asks for the
//! latest fix and its age. "No fix" is the absence of a [`Fix`], never latitude 0 / longitude 0.
#![forbid(unsafe_code)]

pub mod fix;

pub use fix::{Fix, FixMode, FixQuality, FixSource};
