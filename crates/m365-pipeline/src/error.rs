//! Typed errors shared by several modules of the pipeline, each message saying what to fix:
//! unusable settings ([`ConfigError`], from the configuration, the broker URL, TLS and the
//! password) and encoding failures ([`EncodeError`]). The spool's own errors live with the spool
//! ([`SpoolError`], re-exported here).

use std::path::PathBuf;

pub use crate::spool::SpoolError;

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reconnect bounds.
    #[error("reconnect_min ({min} s) must be > 0 and not above reconnect_max ({max} s)")]
    Reconnect {
        /// Configured minimum.
        min: f64,
        /// Configured maximum.
        max: f64,
    },
    /// Shutdown grace period.
    #[error("shutdown_grace {0} s is invalid: use a number of seconds between 0 and 3600")]
    ShutdownGrace(f64),
    /// In-flight window.
    #[error(
        "max_in_flight ({max_in_flight}) must be > 0 and larger than live_reserved ({live_reserved})"
    )]
    Window {
        /// Configured window.
        max_in_flight: u16,
        /// Configured live reservation.
        live_reserved: u16,
    },
    /// Too many topics for the spool's per-output acknowledgement bits.
    #[error("{got} outputs configured; at most {max} are supported")]
    TooManyOutputs {
        /// Outputs configured.
        got: usize,
        /// The most the spool tracks.
        max: usize,
    },
    /// Only one of client certificate / key given.
    #[error("client_cert and client_key must be given together")]
    ClientAuth,
    /// Broker URL ([`crate::mqtt::BrokerUrlError`] says what is wrong).
    #[error("broker URL {url:?}: {reason}")]
    BrokerUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A credential or certificate file.
    #[error("cannot read {what} from {path}: {reason}")]
    File {
        /// What the file holds.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// Password environment variable missing.
    #[error("password environment variable {0} is not set")]
    PasswordEnv(String),
    /// TLS setup.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// An encoding failure.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// JSON serialisation failed.
    #[error("JSON encoding: {0}")]
    Json(#[from] serde_json::Error),
    /// Compression failed.
    #[error("compression: {0}")]
    Compress(#[from] std::io::Error),
    /// Nothing to encode.
    #[error("no records to encode")]
    Empty,
    /// An event record among telemetry: events are encoded one per message.
    #[error("an event record cannot be encoded as telemetry")]
    EventInTelemetry,
    /// A telemetry record given as an event.
    #[error("the record carries no event")]
    NotAnEvent,
}
