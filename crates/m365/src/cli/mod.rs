//! One file per subcommand of the `m365` binary.

pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod gps;
pub mod info;
pub mod register;
pub mod run;
pub mod scan;
