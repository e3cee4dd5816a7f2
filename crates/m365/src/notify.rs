//! Tells systemd how the service is doing (`Type=notify`): READY=1 once running, STATUS=… lines
//! for `systemctl status`, WATCHDOG=1 keep-alives, STOPPING=1 on shutdown.
//!
//! The protocol is one datagram per message to the socket named by `NOTIFY_SOCKET`, so it is
//! written here directly with std's Unix datagram socket rather than through a crate that reads
//! the environment on every call: a [`Notifier`] reads the environment once, and tests can aim
//! one at a socket of their own. Without `NOTIFY_SOCKET` every call is a no-op.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::Duration;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket file.
    Path(PathBuf),
    /// A Linux abstract socket (`NOTIFY_SOCKET=@name`).
    Abstract(Vec<u8>),
}

/// Sends service notifications to systemd.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier configured from `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Self {
        Self::from_vars(
            std::env::var_os("NOTIFY_SOCKET"),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        )
    }

    /// A notifier from the values of those variables, for a process with id `pid`. The
    /// watchdog is on when `WATCHDOG_USEC` is a positive number and `WATCHDOG_PID` is unset or
    /// equal to `pid` (systemd sets it so that children do not ping on the parent's behalf).
    pub fn from_vars(
        notify_socket: Option<OsString>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Self {
        let target = notify_socket.and_then(|s| {
            let bytes = s.into_encoded_bytes();
            match bytes.split_first() {
                None => None,
                Some((b'@', name)) => Some(Target::Abstract(name.to_vec())),
                Some(_) => Some(Target::Path(PathBuf::from(
                    // Always valid: the bytes came from an OsString.
                    String::from_utf8_lossy(&bytes).into_owned(),
                ))),
            }
        });
        let for_us = watchdog_pid.is_none_or(|p| p.trim().parse::<u32>() == Ok(pid));
        let watchdog = watchdog_usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|u| *u > 0 && for_us)
            .map(Duration::from_micros);
        Self { target, watchdog }
    }

    /// A notifier that sends to the socket file at `path` (tests, or an explicit socket).
    pub fn with_socket(path: impl Into<PathBuf>, watchdog: Option<Duration>) -> Self {
        Self {
            target: Some(Target::Path(path.into())),
            watchdog,
        }
    }

    /// A notifier that does nothing.
    pub fn disabled() -> Self {
        Self {
            target: None,
            watchdog: None,
        }
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// `READY=1`: start-up finished.
    pub fn ready(&self) -> io::Result<()> {
        self.send("READY=1")
    }

    /// `STATUS=…`: a one-line status for `systemctl status` (line breaks become spaces).
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.send(&format!("STATUS={}", one_line(status)))
    }

    /// `WATCHDOG=1`: still alive.
    pub fn watchdog(&self) -> io::Result<()> {
        self.send("WATCHDOG=1")
    }

    /// `STOPPING=1`: shutting down.
    pub fn stopping(&self) -> io::Result<()> {
        self.send("STOPPING=1")
    }

    /// The watchdog timeout systemd asked for (`WatchdogSec=`), if any.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// How often to send `WATCHDOG=1`: half the timeout, as sd_watchdog_enabled(3) advises, so
    /// one late tick never trips it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|t| t / 2)
    }

    /// A timer for the main loop's `select!` that fires every [`Self::watchdog_interval`];
    /// `None` when systemd runs no watchdog. Pinging from the main loop (not from a task of its
    /// own) is the point: if the loop hangs, the pings stop and systemd restarts the service.
    pub fn watchdog_timer(&self) -> Option<WatchdogTimer> {
        self.watchdog_interval().map(WatchdogTimer::new)
    }

    /// Sends one message; a no-op without a socket. Never waits: when the receiver's queue is
    /// full (systemd busy, or a socket nobody reads) the message is refused with `WouldBlock`
    /// rather than stalling the daemon's loop, and the caller logs it.
    pub fn send(&self, message: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        let sent = match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path)?,
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)?
            }
        };
        if sent == message.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification truncated",
            ))
        }
    }
}

fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fires every watchdog interval; the first tick comes one interval after creation.
#[derive(Debug)]
pub struct WatchdogTimer {
    interval: tokio::time::Interval,
}

impl WatchdogTimer {
    /// A timer with the given period.
    pub fn new(period: Duration) -> Self {
        let start = tokio::time::Instant::now() + period;
        let mut interval = tokio::time::interval_at(start, period);
        // After a stall, ping once and carry on at the normal pace rather than in a burst.
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { interval }
    }

    /// Waits for the next tick.
    pub async fn tick(&mut self) {
        self.interval.tick().await;
    }
}

/// What `STATUS=` says about the daemon: broker link, scooter link, and unsent backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonStatus {
    /// Connected to the MQTT broker.
    pub broker_connected: bool,
    /// The scooter link, in a few words ("scanning", "logged in", "reconnecting").
    pub scooter: String,
    /// Records in the spool not yet acknowledged by the broker.
    pub backlog: u64,
}

impl std::fmt::Display for DaemonStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let broker = if self.broker_connected {
            "connected"
        } else {
            "disconnected"
        };
        let plural = if self.backlog == 1 { "" } else { "s" };
        write!(
            f,
            "broker {broker}; scooter {}; backlog {} record{plural}",
            self.scooter, self.backlog
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_is_half_the_timeout_and_only_for_our_pid() {
        let n = Notifier::from_vars(Some("/run/x".into()), Some("10000000"), Some("42"), 42);
        assert_eq!(n.watchdog_timeout(), Some(Duration::from_secs(10)));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        let other = Notifier::from_vars(Some("/run/x".into()), Some("10000000"), Some("7"), 42);
        assert_eq!(other.watchdog_interval(), None);
        let no_pid = Notifier::from_vars(None, Some("2000000"), None, 42);
        assert_eq!(no_pid.watchdog_interval(), Some(Duration::from_secs(1)));
        assert_eq!(
            Notifier::from_vars(None, Some("0"), None, 1).watchdog_interval(),
            None
        );
        assert_eq!(
            Notifier::from_vars(None, Some("x"), None, 1).watchdog_interval(),
            None
        );
    }

    #[test]
    fn no_socket_means_no_op() {
        let n = Notifier::from_vars(None, None, None, 1);
        assert!(!n.is_enabled());
        assert!(n.ready().is_ok());
        assert!(!Notifier::from_vars(Some("".into()), None, None, 1).is_enabled());
    }

    #[test]
    fn status_line_wording() {
        let s = DaemonStatus {
            broker_connected: true,
            scooter: "logged in".into(),
            backlog: 1,
        };
        assert_eq!(
            s.to_string(),
            "broker connected; scooter logged in; backlog 1 record"
        );
        assert_eq!(one_line("a\nb\r\nc"), "a b c");
    }
}

#[cfg(test)]
mod full_socket {
    use super::*;

    #[test]
    fn a_socket_nobody_reads_never_blocks_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        // Bound and never read: its queue fills after a few messages.
        let _receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::with_socket(path, None);
        let mut refused = 0;
        for _ in 0..1_000 {
            if let Err(e) = notifier.watchdog() {
                assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
                refused += 1;
            }
        }
        assert!(refused > 0, "the queue filled up and sending went on");
    }
}
