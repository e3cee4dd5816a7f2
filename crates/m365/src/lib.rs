//! The `m365` daemon and command-line tool, as a library so integration tests can drive it.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
mod demo;
pub mod exit;
pub mod homeassistant;
pub mod logging;
pub mod notify;
