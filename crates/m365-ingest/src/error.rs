//! The library's errors, typed so the service can tell an outage (wait and retry, acknowledge
//! nothing) from bad data (dead-letter it and go on) and from a configuration that cannot work
//! (stop with an exit code).

use tokio_postgres::error::SqlState;

/// What the database side can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An error from the PostgreSQL client or server.
    #[error("database: {}", db_message(.0))]
    Db(#[from] tokio_postgres::Error),
    /// The schema cannot be brought up to date or is not what the ingest needs.
    #[error("schema: {0}")]
    Schema(String),
    /// The password file cannot be read.
    #[error("database password file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// How to react to a [`StoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The database is unreachable, restarting or refusing connections for now: keep the
    /// messages unacknowledged, reconnect with back-off and try again.
    Outage,
    /// A conflict between concurrent transactions: try again at once.
    Retry,
    /// The data of this batch is refused: store message by message, dead-letter what fails.
    BadData,
    /// Waiting cannot fix it (credentials, privileges, a missing database, a schema
    /// conflict): stop.
    Fatal,
}

impl StoreError {
    /// How the service should react.
    pub fn disposition(&self) -> Disposition {
        let e = match self {
            StoreError::Schema(_) | StoreError::PasswordFile { .. } => return Disposition::Fatal,
            StoreError::Db(e) => e,
        };
        let Some(code) = e.code() else {
            // No SQLSTATE: a value the client cannot convert is the data's fault; anything else
            // (I/O, a closed connection, a timeout) is an outage.
            let text = e.to_string();
            if !e.is_closed()
                && (text.starts_with("error serializing")
                    || text.starts_with("error deserializing"))
            {
                return Disposition::BadData;
            }
            return Disposition::Outage;
        };
        if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return Disposition::Retry;
        }
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            || *code == SqlState::INSUFFICIENT_PRIVILEGE
            || *code == SqlState::INVALID_CATALOG_NAME
        {
            return Disposition::Fatal;
        }
        match &code.code()[..2] {
            // Data exceptions, integrity constraint violations.
            "22" | "23" => Disposition::BadData,
            // Connection exceptions, insufficient resources, operator intervention (admin
            // shutdown, cannot connect now), object not in prerequisite state (the database
            // is not accepting connections), system errors.
            "08" | "53" | "57" | "55" | "58" | "XX" => Disposition::Outage,
            // Anything else is a defect of ours or a schema changed behind our back: stopping
            // would let systemd restart us after migrations, but losing nothing matters more,
            // so keep the messages and retry.
            _ => Disposition::Outage,
        }
    }
}

/// The server's message of a database error (with its SQLSTATE), or the error itself.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_errors_are_fatal() {
        assert_eq!(
            StoreError::Schema("x".into()).disposition(),
            Disposition::Fatal
        );
    }
}
