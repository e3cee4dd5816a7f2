//! Test support shared by the workspace's tests and benchmarks, so each crate's tests do not
//! carry a copy of their own.
//!
//! - [`broker`]: a real MQTT broker on a loopback port for one test (its own `mosquitto` when
//!   installed, otherwise an embedded `rumqttd`), and a subscriber that returns only once the
//!   broker acknowledged its subscription.
//! - [`net`]: loopback ports reserved without a bind-then-release race.
//! - [`wait`]: waiting for a condition with a deadline instead of sleeping.
//!
//! It is a development dependency only: nothing here is built into a shipped binary. Every
//! failure panics with a message saying what went wrong, which fails the calling test.
#![forbid(unsafe_code)]
// Test support: a failing `unwrap`/`expect` panics with its message, which fails the calling test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod broker;
pub mod net;
pub mod wait;

pub use m365_testdata::in_ci;
