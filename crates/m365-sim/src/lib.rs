//! Simulated scooters for the hardware-free world `m365` is built and proven against: each plays
//! the device side of the protocol (pairing, login, encrypted UART, register map) over a ride
//! with physics, faults on demand and a link timing model.
//!
//! Map of the crate (one concept per file):
//! - [`profile`]: model, generation, firmware, serials, advertisement and GATT layout.
//! - [`ride`], `battery`, [`route`]: the deterministic physics behind the registers.
//! - `registers`: the ESC and BMS word memories and what writes to them do.
//! - [`faults`]: misbehaviour on demand or on a schedule, and counters of what the scooter saw.
//! - [`link_timing`]: when packets cross the BLE link (connection events, 20-byte packets) and
//!   the sample rate that allows (`link_limit`).
//! - [`state_file`]: the pairing a scooter remembers across restarts.
//! - [`ScooterConfig`], [`ScooterEvent`]: how a scooter is set up, and what it reports.
//! - [`scooter`]: the sans-IO scooter that ties it all together.
//! - [`bluez`]: serves a scooter on the fake BlueZ (D-Bus), driving its timers and physics.
//! - [`control`]: the D-Bus control interface of a running simulator (`m365-sim ctl`).
//! - [`in_process`]: `m365-ble`'s transport over simulated scooters, no D-Bus, for tests,
//!   benchmarks and the demo.
//!
//! # Driving a scooter by hand
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use m365_proto::frame::Frame;
//! use m365_proto::gatt::Char;
//! use m365_sim::{Generation, Model, Scooter, ScooterConfig};
//!
//! // A classic m365 speaking plain 55 AA, with the link model off.
//! let mut config = ScooterConfig::new(Model::M365, 1).with_generation(Generation::Plain);
//! config.link = None;
//! let mut scooter = Scooter::new(config)?;
//! let t0 = Instant::now();
//! scooter.connect(t0)?;
//! scooter.step_physics(Duration::from_secs(60));
//!
//! // Read the ESC firmware version (2 bytes at 0x1A).
//! let request = Frame { dir: 0x20, rw: 0x01, attr: 0x1A, payload: vec![2] };
//! scooter.handle_write(t0, Char::UartWrite, &request.encode());
//! let later = t0 + Duration::from_millis(50);
//! scooter.handle_timeout(later);
//! let answer = scooter.poll_transmit().expect("an answer");
//! let frame = Frame::decode(&answer.data)?;
//! assert_eq!(frame.payload, scooter.profile().firmware.esc.to_le_bytes());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod battery;
pub mod bluez;
mod config;
pub mod control;
mod event;
pub mod faults;
pub mod in_process;
pub mod link_timing;
pub mod profile;
mod registers;
pub mod ride;
pub mod route;
pub mod scooter;
pub mod state_file;

pub use battery::Pack;
pub use faults::{ConnectError, Counters, Fault, FaultSchedule};
pub use profile::{Generation, Model, Profile};
pub use registers::Registers;
pub use ride::{LoopPlan, Ride, Script};
pub use scooter::{Scooter, ScooterConfig, ScooterEvent};
