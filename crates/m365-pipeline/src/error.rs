//! Typed errors of the pipeline, one enum per concern, each message saying what to fix.

use std::path::PathBuf;

/// A configuration value that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Sampling interval outside 0.1 s ..= 1 day.
    #[error("sample interval {0} s is invalid: use a number of seconds between 0.1 and 86400")]
    SampleInterval(f64),
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
    #[error("{0} outputs configured; at most {max} are supported", max = crate::spool::MAX_OUTPUTS)]
    TooManyOutputs(usize),
    /// Only one of client certificate / key given.
    #[error("client_cert and client_key must be given together")]
    ClientAuth,
    /// Broker URL.
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

/// A spool failure.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The folder that should hold the spool file does not exist and cannot be created.
    #[error(
        "cannot create the spool folder {dir}: {source} (set [spool] path to a writable place)"
    )]
    Directory {
        /// The folder.
        dir: PathBuf,
        /// Why it could not be created.
        #[source]
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("spool {path}: {source}")]
    Sqlite {
        /// Spool file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was unreadable or corrupt and could not even be moved aside.
    #[error("spool {path} is unusable and could not be moved aside: {reason}")]
    Unrecoverable {
        /// Spool file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The spool file turned out corrupt while running: it was moved aside and a fresh one
    /// started. Records that were only in the old file are in the moved file, not published.
    #[error("spool {path} was corrupt ({reason}); moved it to {moved_to} and started a fresh one")]
    Recovered {
        /// Spool file (now fresh).
        path: PathBuf,
        /// Where the corrupt file went.
        moved_to: PathBuf,
        /// What SQLite reported.
        reason: String,
    },
    /// A stored record could not be decoded.
    #[error("spool {path}: stored record {row} is not valid: {reason}")]
    BadRow {
        /// Spool file.
        path: PathBuf,
        /// Row id.
        row: i64,
        /// Decoder message.
        reason: String,
    },
    /// The spool was configured with more outputs than it can track.
    #[error("spool supports at most {max} outputs, {got} configured", max = crate::spool::MAX_OUTPUTS)]
    TooManyOutputs {
        /// Outputs configured.
        got: usize,
    },
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
}
