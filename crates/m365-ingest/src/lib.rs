//! The server side of `m365`: subscribes to the clients' topics over MQTT 5 (persistent session,
//! QoS 1, shared subscriptions so several workers split the load), decodes the three encodings,
//! writes to PostgreSQL in batches and acknowledges each message only after its rows are
//! committed. Inserts are idempotent on the record id, so a message redelivered after a crash
//! is stored once.
//!
//! Layout: [`config`] (the TOML file), [`topic`] (filters and scooter ids), [`decode`] (message
//! → records, a status event or a ride event), [`record`] (the decoded record), [`compat`] (rows of the earlier
//! server's tables), [`schema`] (migrations), [`store`] (batched, idempotent writes),
//! [`mqtt`] (the broker connection), [`service`] (the worker loop), [`error`]. Reconnect delays
//! follow the workspace's one policy, `m365-backoff`.
#![forbid(unsafe_code)]

pub mod compat;
pub mod config;
pub mod decode;
pub mod error;
pub mod mqtt;
pub mod record;
pub mod schema;
pub mod service;
pub mod store;
pub mod topic;

pub use config::{Config, ConfigError};
pub use error::{Disposition, StoreError};
pub use mqtt::LinkState;
pub use service::{RunError, Shutdown, ShutdownTrigger, Totals, run, run_observed};
