//! A private bus must not outlive the process that started it, even when that process is
//! killed with SIGKILL and no destructor runs.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use m365_fakebluez::{PrivateBus, unix_socket_path};

/// Set in the child process that holds the bus.
const HOLDER_ENV: &str = "M365_FAKEBLUEZ_BUS_HOLDER";
const TEST: &str = "daemon_dies_with_a_killed_owner";

/// How long the daemon may take to go after its owner is killed.
const GONE_WITHIN: Duration = Duration::from_secs(10);

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < GONE_WITHIN, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn daemon_dies_with_a_killed_owner() {
    if !m365_fakebluez::isolation::daemon_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "dbus-daemon is required under CI"
        );
        eprintln!("skipping {TEST}: dbus-daemon is not installed");
        return;
    }
    if std::env::var_os(HOLDER_ENV).is_some() {
        // The child: start a bus, say where it is, and wait to be killed.
        let bus = PrivateBus::start().expect("private bus");
        println!("BUS_ADDRESS={}", bus.address());
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(HOLDER_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child test runs");
    let stdout = child.stdout.take().expect("stdout");
    let address = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // The harness prints the test's name on the same line first.
        .find_map(|l| {
            l.split_once("BUS_ADDRESS=")
                .map(|(_, address)| address.trim().to_owned())
        })
        .expect("the child reports its bus");
    let socket: PathBuf = unix_socket_path(&address).expect("unix socket address");
    assert!(
        UnixStream::connect(&socket).is_ok(),
        "the bus answers while its owner lives"
    );

    let killed = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let _ = child.wait();

    wait_until("the daemon still accepts connections", || {
        UnixStream::connect(&socket).is_err()
    });
    let dir = socket
        .parent()
        .map(PathBuf::from)
        .expect("socket directory");
    wait_until("the bus directory was left behind", || !dir.exists());
}

#[test]
fn dropping_the_bus_stops_the_daemon_at_once() {
    if !m365_fakebluez::isolation::daemon_available() {
        return;
    }
    let bus = PrivateBus::start().expect("private bus");
    let socket = unix_socket_path(bus.address()).expect("unix socket address");
    assert!(UnixStream::connect(&socket).is_ok());
    drop(bus);
    // Drop waits for the guard, which waits for the daemon: nothing is left to poll for.
    assert!(UnixStream::connect(&socket).is_err());
    assert!(!socket.exists());
}
