//! The exit codes of `m365`, one per way the daemon can give up, so systemd (and a person
//! reading `systemctl status`) can tell them apart. Values follow BSD `sysexits.h` where one fits;
//! the two MQTT-specific codes sit just above that range. `docs/exit-codes.md` documents them
//! and `packaging/systemd/m365.service` lists the ones that must not be restarted.

use std::fmt;
use std::process::ExitCode;

/// Why `m365` exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// Finished normally (or stopped by a signal and shut down cleanly).
    Success,
    /// The command line was wrong (`EX_USAGE`).
    Usage,
    /// No scooter found before `[scooter] scan_timeout` (`EX_UNAVAILABLE`): it may be off or out
    /// of range; restarting is right.
    ScooterNotFound,
    /// A bug or an unexpected failure (`EX_SOFTWARE`).
    Internal,
    /// The spool database cannot be created or opened (`EX_CANTCREAT`).
    SpoolUnusable,
    /// The GPS serial device is missing or cannot be opened (`EX_IOERR`), e.g. a USB modem that
    /// has not enumerated yet.
    GpsDeviceMissing,
    /// The scooter was connected, then not reachable again within `[scooter] reconnect_window`
    /// (`EX_TEMPFAIL`).
    ScooterLost,
    /// The token file is missing, or the scooter rejected the token (`EX_NOPERM`): pair again
    /// with `m365 register`.
    NeedsPairing,
    /// The configuration is invalid (`EX_CONFIG`).
    Config,
    /// The broker refused the user name or password.
    BrokerAuth,
    /// The TLS files are unusable (bad PEM, key not matching the certificate, …).
    TlsConfig,
}

impl ExitStatus {
    /// Every status, in code order.
    pub const ALL: [ExitStatus; 11] = [
        ExitStatus::Success,
        ExitStatus::Usage,
        ExitStatus::ScooterNotFound,
        ExitStatus::Internal,
        ExitStatus::SpoolUnusable,
        ExitStatus::GpsDeviceMissing,
        ExitStatus::ScooterLost,
        ExitStatus::NeedsPairing,
        ExitStatus::Config,
        ExitStatus::BrokerAuth,
        ExitStatus::TlsConfig,
    ];

    /// The numeric exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Usage => 64,
            ExitStatus::ScooterNotFound => 69,
            ExitStatus::Internal => 70,
            ExitStatus::SpoolUnusable => 73,
            ExitStatus::GpsDeviceMissing => 74,
            ExitStatus::ScooterLost => 75,
            ExitStatus::NeedsPairing => 77,
            ExitStatus::Config => 78,
            ExitStatus::BrokerAuth => 79,
            ExitStatus::TlsConfig => 80,
        }
    }

    /// The status with this code, if it is one of ours.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Whether restarting cannot help until a person acts (fix the file, pair again, change
    /// the password): these are listed in the unit's `RestartPreventExitStatus=`, so a broken
    /// setup does not spin in a restart loop that hides the first, telling error in the journal.
    pub fn prevents_restart(self) -> bool {
        matches!(
            self,
            ExitStatus::Usage
                | ExitStatus::NeedsPairing
                | ExitStatus::Config
                | ExitStatus::BrokerAuth
                | ExitStatus::TlsConfig
        )
    }

    /// One line for the user.
    pub fn describe(self) -> &'static str {
        match self {
            ExitStatus::Success => "finished",
            ExitStatus::Usage => "invalid command line",
            ExitStatus::ScooterNotFound => "scooter not found (is it on and in range?)",
            ExitStatus::Internal => "internal error",
            ExitStatus::SpoolUnusable => "the spool database cannot be used",
            ExitStatus::GpsDeviceMissing => "the GPS device is missing",
            ExitStatus::ScooterLost => "lost the scooter and could not reconnect in time",
            ExitStatus::NeedsPairing => "pairing needed: run `m365 register <MAC>`",
            ExitStatus::Config => "invalid configuration",
            ExitStatus::BrokerAuth => "the MQTT broker refused the credentials",
            ExitStatus::TlsConfig => "the TLS certificate or key files are unusable",
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.describe())
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        ExitCode::from(status.code())
    }
}

/// An error that decides the exit status. Wrap a failure in it (see [`ResultExt::exit_with`])
/// where its meaning is known; [`status_of`] finds it again in an `anyhow` chain.
#[derive(Debug, thiserror::Error)]
#[error("{error:#}")]
pub struct Fatal {
    /// The exit status this failure maps to.
    pub status: ExitStatus,
    /// What went wrong.
    pub error: anyhow::Error,
}

/// Attaches an exit status to the error of a `Result`.
pub trait ResultExt<T> {
    /// On error, exit with `status`.
    fn exit_with(self, status: ExitStatus) -> Result<T, Fatal>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn exit_with(self, status: ExitStatus) -> Result<T, Fatal> {
        self.map_err(|e| Fatal {
            status,
            error: e.into(),
        })
    }
}

/// The exit status for `error`: from a [`Fatal`] anywhere in its chain, [`ExitStatus::Config`]
/// for a configuration error, else [`ExitStatus::Internal`].
pub fn status_of(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if let Some(fatal) = cause.downcast_ref::<Fatal>() {
            return fatal.status;
        }
        if cause.downcast_ref::<crate::config::ConfigError>().is_some() {
            return ExitStatus::Config;
        }
    }
    ExitStatus::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for status in ExitStatus::ALL {
            assert_eq!(ExitStatus::from_code(status.code()), Some(status));
        }
        let mut codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        codes.dedup();
        assert_eq!(
            codes.len(),
            ExitStatus::ALL.len(),
            "ALL must be sorted and unique"
        );
        assert_eq!(ExitStatus::Config.code(), 78, "EX_CONFIG");
    }

    #[test]
    fn the_status_is_found_through_context() {
        let failure: Result<(), _> =
            Err(std::io::Error::other("no token")).exit_with(ExitStatus::NeedsPairing);
        let error = anyhow::Error::from(failure.unwrap_err()).context("logging in");
        assert_eq!(status_of(&error), ExitStatus::NeedsPairing);
        assert_eq!(status_of(&anyhow::anyhow!("boom")), ExitStatus::Internal);
        let config = crate::config::ConfigError::NotFound { searched: vec![] };
        assert_eq!(
            status_of(&anyhow::Error::from(config).context("x")),
            ExitStatus::Config
        );
    }
}
