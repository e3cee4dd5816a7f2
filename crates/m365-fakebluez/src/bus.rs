//! A private D-Bus daemon for the fake BlueZ: started from a generated minimal configuration,
//! listening on a unix socket in a temporary directory, and killed (directory removed) on drop
//! or when the process that started it dies, however it dies.
//!
//! It is a system-bus stand-in: clients such as btleplug find it through
//! `DBUS_SYSTEM_BUS_ADDRESS` (see [`SYSTEM_BUS_ENV`]). Nothing of the machine's own D-Bus set-up
//! is read: no includes, no service activation, and a policy that allows everything.
//!
//! # Dying with its owner
//! A `Drop` does not run when the owner is killed with SIGKILL (or aborts), and a daemon left
//! behind would outlive every test run. Linux's `PR_SET_PDEATHSIG` needs `unsafe` code in the
//! child between fork and exec, which this project forbids. Instead the daemon is started by a
//! small `sh` guard ([`GUARD_SCRIPT`]) whose stdin is a pipe from the owner: the guard starts the
//! daemon in the background and blocks reading that pipe. Nobody ever writes to it, so the read
//! returns only when the pipe's last write end closes, which the kernel does when the owner
//! exits for any reason (the write end is close-on-exec, so no other child holds it). The guard
//! then stops the daemon and removes the bus directory. An orderly drop closes the pipe the
//! same way and waits for the guard.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use tempfile::TempDir;
use tracing::{debug, warn};

/// The environment variable through which libdbus (and so btleplug) finds the system bus.
pub const SYSTEM_BUS_ENV: &str = "DBUS_SYSTEM_BUS_ADDRESS";

/// The daemon binary, looked up on `PATH`.
const DAEMON: &str = "dbus-daemon";

/// The guard that ties the daemon's life to the owner's (see the module documentation).
/// Arguments: the bus directory, then the daemon's command line. The daemon inherits the
/// guard's stdout (the address line) and stderr (the log); as a background job of a
/// non-interactive shell its stdin is `/dev/null`, so it never holds the guard pipe.
const GUARD_SCRIPT: &str = r#"dir=$1; shift
"$@" &
daemon=$!
read -r _ignored
kill -TERM "$daemon" 2>/dev/null
wait "$daemon"
rm -rf "$dir"
"#;

/// Why a private bus could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// `dbus-daemon` is not installed.
    #[error("`{DAEMON}` was not found on PATH; install it (Debian/Ubuntu: `apt-get install dbus`)")]
    DaemonMissing,
    /// Creating the temporary directory or configuration failed.
    #[error("cannot prepare the private bus directory: {0}")]
    Setup(#[source] std::io::Error),
    /// The daemon could not be started.
    #[error("cannot start `{DAEMON}`: {0}")]
    Spawn(#[source] std::io::Error),
    /// The daemon exited or printed no address.
    #[error("`{DAEMON}` did not report its address: {detail}")]
    NoAddress {
        /// What the daemon said on stderr, or how reading failed.
        detail: String,
    },
}

/// A running private `dbus-daemon`. Dropping it kills the daemon and removes its directory.
#[derive(Debug)]
pub struct PrivateBus {
    /// The `sh` guard; the daemon is its child.
    guard: Child,
    /// The write end of the guard's pipe: closing it (drop, or the owner's death) stops the bus.
    lifeline: Option<ChildStdin>,
    address: String,
    _stdout: Option<std::process::ChildStdout>,
    /// Holds the configuration (and, unless a socket path was given, the socket).
    _dir: TempDir,
}

impl PrivateBus {
    /// Starts a daemon listening on a fresh socket in a temporary directory.
    pub fn start() -> Result<Self, BusError> {
        let dir = tempfile::Builder::new()
            .prefix("m365-fakebluez-")
            .tempdir()
            .map_err(BusError::Setup)?;
        let socket = dir.path().join("system_bus_socket");
        Self::spawn(dir, &socket)
    }

    /// Starts a daemon listening on the given socket path, for a process that has been told the
    /// address before the bus exists (see [`crate::isolation`]).
    pub fn start_at(socket: &Path) -> Result<Self, BusError> {
        let dir = tempfile::Builder::new()
            .prefix("m365-fakebluez-")
            .tempdir()
            .map_err(BusError::Setup)?;
        Self::spawn(dir, socket)
    }

    fn spawn(dir: TempDir, socket: &Path) -> Result<Self, BusError> {
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config(socket)).map_err(BusError::Setup)?;
        // stderr goes to a file, not a pipe: a pipe nobody reads would kill the daemon with
        // SIGPIPE at its first warning ("Failed to set fd limit" and the like).
        let log_path = dir.path().join("bus.log");
        let log = std::fs::File::create(&log_path).map_err(BusError::Setup)?;
        if !on_path(DAEMON) {
            return Err(BusError::DaemonMissing);
        }
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .arg("m365-bus-guard")
            .arg(dir.path())
            .arg(DAEMON)
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(BusError::Spawn)?;
        let lifeline = guard.stdin.take();
        // The daemon prints its address once it listens, so a read of the first line is also
        // the readiness check.
        let mut line = String::new();
        let mut reader = guard.stdout.take().map(BufReader::new);
        let read = match reader.as_mut() {
            Some(r) => r.read_line(&mut line),
            None => Ok(0),
        };
        let address = line.trim().to_owned();
        if !matches!(read, Ok(n) if n > 0) || address.is_empty() {
            let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
            // Closing the lifeline makes the guard stop whatever is left and exit.
            drop(lifeline);
            let _ = guard.wait();
            let detail = match read {
                Err(e) => e.to_string(),
                Ok(_) if stderr.trim().is_empty() => "it exited without output".to_owned(),
                Ok(_) => stderr.trim().to_owned(),
            };
            return Err(BusError::NoAddress { detail });
        }
        debug!(%address, "private bus started");
        Ok(PrivateBus {
            guard,
            lifeline,
            address,
            // Keep the read end of stdout open for the daemon's lifetime, for the same reason.
            _stdout: reader.map(BufReader::into_inner),
            _dir: dir,
        })
    }

    /// The bus address, e.g. `unix:path=<temporary directory>/system_bus_socket,guid=...`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Points a child process at this bus as its system bus (sets [`SYSTEM_BUS_ENV`]).
    pub fn configure(&self, command: &mut Command) {
        command.env(SYSTEM_BUS_ENV, &self.address);
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        // The guard stops the daemon when its pipe closes, and exits once the daemon is gone.
        drop(self.lifeline.take());
        if let Err(e) = self.guard.wait() {
            warn!("cannot stop the private bus: {e}");
        }
    }
}

/// Whether `program` is an executable file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The socket path of a `unix:path=...` address, if it is one.
pub fn unix_socket_path(address: &str) -> Option<PathBuf> {
    address
        .split(';')
        .next()?
        .strip_prefix("unix:")?
        .split(',')
        .find_map(|kv| kv.strip_prefix("path="))
        .map(PathBuf::from)
}

/// A minimal bus configuration: one unix listener, EXTERNAL auth, everything allowed.
fn config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"#,
        xml_escape(&socket.display().to_string())
    )
}

/// Escapes the characters XML does not allow in text.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_socket_paths() {
        assert_eq!(
            unix_socket_path("unix:path=/run/x/bus,guid=00ff"),
            Some(PathBuf::from("/run/x/bus"))
        );
        assert_eq!(
            unix_socket_path("unix:guid=1,path=/a;tcp:host=127.0.0.1"),
            Some(PathBuf::from("/a"))
        );
        assert_eq!(unix_socket_path("tcp:host=127.0.0.1,port=1"), None);
        assert_eq!(unix_socket_path("unix:abstract=/x"), None);
    }

    #[test]
    fn starts_and_stops_a_daemon() {
        let bus = PrivateBus::start().expect("dbus-daemon is installed");
        let socket = unix_socket_path(bus.address()).expect("unix address");
        assert!(socket.exists(), "socket {socket:?} missing");
        let dir = socket.parent().map(Path::to_path_buf);
        drop(bus);
        assert!(
            !dir.is_some_and(|d| d.exists()),
            "temporary directory left behind"
        );
    }

    #[test]
    fn config_escapes_the_socket_path() {
        let text = config(Path::new("dir/a&b/<s>"));
        assert!(text.contains("<listen>unix:path=dir/a&amp;b/&lt;s&gt;</listen>"));
    }
}
