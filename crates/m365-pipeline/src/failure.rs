//! The publisher's latest failure, typed, so callers decide on its kind (a daemon gives up on
//! refused credentials, keeps waiting on a network outage) instead of matching message text.

use serde::{Deserialize, Serialize};

/// Why the broker refused a connection (its CONNACK reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Bad user name or password.
    BadCredentials,
    /// The credentials are valid but not allowed to connect.
    NotAuthorized,
    /// Any other refusal (client id rejected, server unavailable, banned, …).
    Other,
}

impl RefusalReason {
    /// Whether waiting cannot help: the configured credentials are wrong or not allowed.
    pub fn is_credentials(self) -> bool {
        matches!(
            self,
            RefusalReason::BadCredentials | RefusalReason::NotAuthorized
        )
    }
}

/// What kind of failure the latest error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The broker answered and refused the connection.
    Refused(RefusalReason),
    /// The TLS handshake failed.
    Tls,
    /// TCP-level failure: refused, unreachable, reset, timed out.
    Network,
    /// The password file or environment variable could not be read.
    Password,
    /// Any other connection failure (protocol errors, a dead request queue).
    Connection,
    /// The spool failed (including a corrupt file moved aside).
    Spool,
}

/// The latest failure: its kind and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LastError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for logs and status lines. Never holds a secret.
    pub message: String,
}

impl LastError {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LastError {
            kind,
            message: message.into(),
        }
    }

    /// Whether the broker refused the configured credentials.
    pub fn is_credentials_refused(&self) -> bool {
        matches!(self.kind, ErrorKind::Refused(r) if r.is_credentials())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_credential_refusals_count_as_such() {
        let bad = LastError::new(
            ErrorKind::Refused(RefusalReason::BadCredentials),
            "broker refused the credentials: bad user name or password",
        );
        assert!(bad.is_credentials_refused());
        assert_eq!(bad.to_string(), bad.message);
        assert!(
            LastError::new(ErrorKind::Refused(RefusalReason::NotAuthorized), "x")
                .is_credentials_refused()
        );
        for kind in [
            ErrorKind::Refused(RefusalReason::Other),
            ErrorKind::Network,
            ErrorKind::Tls,
            ErrorKind::Password,
        ] {
            assert!(
                !LastError::new(kind, "x").is_credentials_refused(),
                "{kind:?}"
            );
        }
    }
}
