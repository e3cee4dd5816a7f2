//! Data flows one way: sample → record → durable spool → MQTT. This crate holds the record, the
//! spool that commits every record before it is offered to the broker and deletes it only after
//! the broker acknowledged it, the encodings, and the MQTT publisher.
//!
//! Layout: [`record`] (what a sample becomes), [`spool`] (SQLite, durable, bounded),
//! [`window`] (pure publish-window state), [`backoff`], [`encoding`] (`legacy`, `json`,
//! `compact`), [`mqtt`] (URL, TLS, one connection), [`publisher`] (the driver task),
//! [`health`] (counters), [`secret`] (a password that never prints), [`failure`] (the latest failure, typed), [`config`], `synthetic` (feature `synthetic`: a generator of
//! plausible samples for tests, benchmarks and the demo).
#![forbid(unsafe_code)]

pub mod backoff;
pub mod config;
pub mod encoding;
pub mod error;
pub mod failure;
pub mod health;
pub mod mqtt;
pub mod publisher;
pub mod record;
pub mod secret;
pub mod spool;
#[cfg(feature = "synthetic")]
pub mod synthetic;
pub mod window;

pub use config::{
    MqttConfig, MqttProtocol, OutputConfig, PasswordSource, PipelineConfig, SampleInterval,
    SpoolConfig, SyncPolicy,
};
pub use encoding::Encoding;
pub use failure::{ErrorKind, LastError, RefusalReason};
pub use health::{BrokerState, HealthSnapshot};
pub use publisher::{HealthMonitor, PipelineError, PipelineHandle, SubmitError, spawn};
pub use record::{BatteryReadings, GpsReading, Record, Sample, ScooterReadings, TimeSource};
pub use secret::Secret;
pub use spool::{Spool, SpoolStats, StoredRecord};
