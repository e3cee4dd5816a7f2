//! The chaos soak of `m365`: several simulated scooters behind the fake BlueZ, GPS receivers on
//! ptys, a real mosquitto and the real `m365 run` processes (restarted the way systemd
//! restarts the packaged unit), under a seeded random schedule of faults, while a checker
//! subscribed to the broker verifies that nothing sampled is lost. See `docs/soak.md`.
//!
//! - [`schedule`]: the seeded fault schedule (pure).
//! - [`checker`]: the delivery checks (pure).
//! - [`resources`]: RSS and descriptors from `/proc`, and the flatness check.
//! - [`broker`]: the soak's mosquitto; [`subscriber`]: the checker's MQTT session.
//! - [`sim`]: `m365-sim serve` and `ctl`; [`gps`]: the receivers; [`client`]: one supervised
//!   `m365 run` with its small disk and its clock.
//! - [`soak`]: the run itself, from start to summary.
#![forbid(unsafe_code)]

pub mod broker;
pub mod checker;
pub mod client;
pub mod gps;
pub mod process;
pub mod resources;
pub mod schedule;
pub mod sim;
pub mod soak;
pub mod subscriber;
