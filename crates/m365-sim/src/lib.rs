//! Simulated scooters for the hardware-free world `m365` is built and proven against: each plays
//! the device side of the protocol (pairing, login, encrypted UART, register map) over a ride
//! with physics, faults on demand and a link timing model.
#![forbid(unsafe_code)]
