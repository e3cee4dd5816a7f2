//! One private bus per process, for test binaries (and benchmarks or demos).
//!
//! libdbus (under btleplug) reads `DBUS_SYSTEM_BUS_ADDRESS` once per process, and a process
//! cannot safely set its own environment while threads run (`std::env::set_var` is `unsafe`,
//! and every crate here forbids unsafe code). So a test re-runs itself: the first call, in the
//! test harness, picks a socket path, starts the *same test* in a child process of the same
//! binary with `DBUS_SYSTEM_BUS_ADDRESS` pointing there, and checks that it passed. In the
//! child, the call starts the daemon at that path and hands it to the test body.
//!
//! ```no_run
//! #[tokio::test]
//! async fn scan_finds_scooters() {
//!     let Some(bus) = m365_fakebluez::isolation::isolated_bus("scan_finds_scooters") else {
//!         return; // the test ran, and passed, in a child process
//!     };
//!     let fake = m365_fakebluez::FakeBluez::start(bus.address()).await.unwrap();
//!     // ... btleplug::platform::Manager::new() now talks to `fake` ...
//! }
//! ```

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bus::{BusError, PrivateBus, SYSTEM_BUS_ENV, unix_socket_path};

/// Set in the child process; its value is the test name.
const CHILD_ENV: &str = "M365_FAKEBLUEZ_ISOLATED_TEST";

/// Set in a re-executed program (see [`reexec_with_private_bus`]).
const REEXEC_ENV: &str = "M365_FAKEBLUEZ_REEXEC";

/// Whether `dbus-daemon` is on `PATH`.
pub fn daemon_available() -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("dbus-daemon").is_file())
    })
}

/// For a whole program that drives btleplug against the fake (a benchmark, a demo): the first
/// call re-runs the current executable with the same arguments and `DBUS_SYSTEM_BUS_ADDRESS`
/// set, waits for it and exits with its status; in that child it starts the bus and returns
/// it. Call it first thing in `main`, before any thread or runtime exists.
pub fn reexec_with_private_bus() -> Result<PrivateBus, BusError> {
    if std::env::var_os(REEXEC_ENV).is_some() {
        let address = std::env::var(SYSTEM_BUS_ENV).unwrap_or_default();
        let socket = unix_socket_path(&address).ok_or_else(|| BusError::NoAddress {
            detail: format!("{SYSTEM_BUS_ENV}={address} is not a unix socket address"),
        })?;
        return PrivateBus::start_at(&socket);
    }
    if !daemon_available() {
        return Err(BusError::DaemonMissing);
    }
    let dir = tempfile::Builder::new()
        .prefix("m365-fakebluez-")
        .tempdir()
        .map_err(BusError::Setup)?;
    let socket = dir.path().join("system_bus_socket");
    let exe = std::env::current_exe().map_err(BusError::Spawn)?;
    let status = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_ENV, "1")
        .env(SYSTEM_BUS_ENV, format!("unix:path={}", socket.display()))
        .status()
        .map_err(BusError::Spawn)?;
    drop(dir);
    std::process::exit(status.code().unwrap_or(1));
}

/// A child test that runs longer than this is killed and fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(300);

/// In the child process: the private bus the parent chose, now running. In the parent: `None`,
/// after the test `test_name` (its full path within the test binary, e.g. `scan` or
/// `module::scan`) ran in a child process and passed.
///
/// Without `dbus-daemon` on `PATH` the test is skipped with a notice (it returns `None` at
/// once), unless the environment variable `CI` is set: then it fails.
///
/// # Panics
/// It is meant for tests: it panics (failing the test) when the child test fails, is not
/// found, times out, or the bus cannot be started.
pub fn isolated_bus(test_name: &str) -> Option<PrivateBus> {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        assert_eq!(
            name, test_name,
            "isolated_bus called with a different test name"
        );
        let address = std::env::var(SYSTEM_BUS_ENV)
            .unwrap_or_else(|_| panic!("{SYSTEM_BUS_ENV} is not set in the child"));
        let socket = unix_socket_path(&address)
            .unwrap_or_else(|| panic!("{SYSTEM_BUS_ENV}={address} is not a unix path"));
        let bus = PrivateBus::start_at(&socket).unwrap_or_else(|e| panic!("{e}"));
        return Some(bus);
    }
    if !daemon_available() {
        // The same policy as the shared test data: a user's machine skips, CI fails.
        assert!(
            std::env::var_os("CI").is_none(),
            "{test_name}: dbus-daemon is not installed (Debian: apt-get install dbus-daemon)"
        );
        eprintln!("skipping {test_name}: dbus-daemon is not installed");
        return None;
    }
    run_child(test_name);
    None
}

fn run_child(test_name: &str) {
    let dir = tempfile::Builder::new()
        .prefix("m365-fakebluez-test-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
    let socket: PathBuf = dir.path().join("system_bus_socket");
    let out_path = dir.path().join("output");
    let out = std::fs::File::create(&out_path).unwrap_or_else(|e| panic!("{e}"));
    let err = out.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let mut child = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test_name)
        .env(SYSTEM_BUS_ENV, format!("unix:path={}", socket.display()))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot re-run the test binary: {e}"));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{test_name} did not finish within {CHILD_TIMEOUT:?}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("cannot wait for the child test: {e}"),
        }
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    // Shown by the harness when the test fails or runs with --nocapture.
    println!("---- {test_name} (isolated child) ----\n{output}");
    assert!(
        status.success(),
        "{test_name} failed in its isolated child: {status}"
    );
    assert!(
        output.contains("test result: ok. 1 passed"),
        "the isolated child did not run {test_name}: is the name right?"
    );
}
