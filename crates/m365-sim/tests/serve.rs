//! The `m365-sim serve` contract scripts rely on: the announcement lines on stdout, before
//! anything else, then `READY`; a clean exit on SIGTERM; one clear message for bad arguments.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_m365-sim");

fn dbus_available() -> bool {
    if m365_fakebluez::isolation::daemon_available() {
        return true;
    }
    assert!(
        !m365_testdata::in_ci(),
        "dbus-daemon is required under CI (Debian package `dbus`)"
    );
    eprintln!("skipped: dbus-daemon not installed");
    false
}

#[test]
fn serve_announces_bus_gps_and_scooters_then_ready_and_stops_on_sigterm() {
    if !dbus_available() {
        return;
    }
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--scooters",
            "2",
            "--model",
            "1s",
            "--protocol",
            "xor",
        ])
        .args(["--gps", "sim7600", "--conn-interval-ms", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("m365-sim runs");
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<String> = BufReader::new(stdout)
        .lines()
        .map(|l| l.expect("utf-8 line"))
        .take_while(|l| l != "READY")
        .collect();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("m365-sim exits");

    assert_eq!(lines.len(), 4, "{lines:?}");
    let bus = lines[0]
        .strip_prefix("DBUS_SYSTEM_BUS_ADDRESS=unix:path=")
        .unwrap_or_else(|| panic!("first line: {}", lines[0]));
    assert!(!bus.is_empty());
    let gps = lines[1]
        .strip_prefix("M365_SIM_GPS=")
        .unwrap_or_else(|| panic!("second line: {}", lines[1]));
    assert!(gps.starts_with("/dev/pts/"), "{gps}");
    let mut macs = Vec::new();
    for line in &lines[2..] {
        let fields: Vec<&str> = line
            .strip_prefix("M365_SIM_SCOOTER=")
            .unwrap_or_else(|| panic!("scooter line: {line}"))
            .split(' ')
            .collect();
        let [mac, name, model, protocol] = fields[..] else {
            panic!("four fields expected: {line}");
        };
        assert_eq!(mac.len(), 17);
        assert!(mac.split(':').all(|b| u8::from_str_radix(b, 16).is_ok()));
        assert!(name.starts_with("MIScooter") && name.len() == 13, "{name}");
        assert_eq!((model, protocol), ("1s", "xor"));
        macs.push(mac.to_owned());
    }
    assert_ne!(macs[0], macs[1], "each scooter has its own address");
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn bad_arguments_get_one_clear_message() {
    let out = Command::new(BIN)
        .args(["serve", "--protocol", "ninebot"])
        .output()
        .expect("m365-sim runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown protocol \"ninebot\""), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout for scripts to misread"
    );

    let out = Command::new(BIN)
        .args(["serve", "--model", "pro9"])
        .output()
        .expect("m365-sim runs");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model"));

    // Checked before any bus is started.
    let out = Command::new(BIN)
        .args(["serve", "--conn-interval-ms", "5"])
        .output()
        .expect("m365-sim runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside 7.5–100 ms"), "{err}");
    assert!(out.stdout.is_empty());
}
