//! Simulated scooters for the hardware-free world `m365` is built and proven against: each plays
//! the device side of the protocol (pairing, login, encrypted UART, register map) over a ride
//! with physics, faults on demand and a link timing model.
//!
//! Map of the crate (one concept per file):
//! - [`profile`]: model, generation, firmware, serials, advertisement and GATT layout.
//! - [`ride`], [`battery`], [`route`]: the deterministic physics behind the registers.
//! - [`registers`]: the ESC and BMS word memories and what writes to them do.
//! - [`faults`]: misbehaviour on demand or on a schedule, and counters of what the scooter saw.
//! - [`link`]: the BLE link timing model (connection events, 20-byte packets, link limit).
//! - [`state_file`]: the pairing a scooter remembers across restarts.
//! - [`config`], [`event`]: how a scooter is set up, and what it reports.
//! - [`scooter`]: the sans-IO scooter that ties it all together.
//! - [`bluez`]: serves a scooter on the fake BlueZ (D-Bus), driving its timers and physics.

#![forbid(unsafe_code)]

pub mod battery;
pub mod bluez;
pub mod config;
pub mod event;
pub mod faults;
pub mod link;
pub mod profile;
pub mod registers;
pub mod ride;
pub mod route;
pub mod scooter;
pub mod state_file;

pub use faults::{ConnectError, Counters, Fault, FaultSchedule};
pub use profile::{Generation, Model, Profile};
pub use ride::{LoopPlan, Ride, Script};
pub use scooter::{Scooter, ScooterConfig, ScooterEvent};
