//! Data flows one way: sample → record → durable spool → MQTT. This crate holds the record, the
//! spool that commits every record before it is offered to the broker and deletes it only after
//! the broker acknowledged it, the encodings, and the MQTT publisher.
//!
//! Layout: `record` (what a sample becomes: [`Record`]), `event` (ride events a record may
//! carry instead of telemetry: [`EventKind`], published on their own topic), [`spool`] (SQLite,
//! durable, bounded, with its settings and errors), `window` (pure publish-window state),
//! [`encoding`] (`legacy`, `json`, `compact`), [`mqtt`] (URL, TLS, credentials, one connection,
//! which also subscribes), `config` (the settings, [`PipelineConfig`], and the one way from them
//! to a broker connection), `publisher` (the driver task started by [`spawn`], which reconnects
//! with the workspace's back-off, `m365-backoff`), `health` (counters: [`HealthSnapshot`]),
//! `secret` (a password that never prints: [`Secret`]), `failure` (the latest failure, typed:
//! [`LastError`]), [`error`] (errors shared by several modules), `synthetic` (feature
//! `synthetic`: a generator of plausible samples for tests, benchmarks and the demo).
#![forbid(unsafe_code)]

mod config;
pub mod encoding;
pub mod error;
mod event;
mod failure;
mod health;
pub mod mqtt;
mod publisher;
mod record;
mod secret;
pub mod spool;
#[cfg(feature = "synthetic")]
pub mod synthetic;
mod window;

pub use config::{MqttConfig, OutputConfig, PipelineConfig};
pub use encoding::Encoding;
pub use event::{EventKind, MoveEvidence};
pub use failure::{ErrorKind, LastError, RefusalReason};
pub use health::{BrokerState, HealthSnapshot};
pub use mqtt::{BrokerUrl, MqttProtocol, PasswordSource};
pub use publisher::{HealthMonitor, PipelineError, PipelineHandle, SubmitError, spawn};
pub use record::{BatteryReadings, GpsReading, Record, Sample, ScooterReadings, TimeSource};
pub use secret::Secret;
pub use spool::{Spool, SpoolConfig, SpoolStats, StoredRecord, SyncPolicy};
