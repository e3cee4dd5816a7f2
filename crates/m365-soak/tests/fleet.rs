//! A small fleet load test end to end (6 scooters, 2 `m365 run` processes, 10 s): the real
//! binaries, a real mosquitto, every record delivered, and the report's last line as documented.
//!
//! It needs `m365` and `m365-sim` built next to `m365-soak` (`cargo test --workspace` builds
//! them; alone: `cargo build -p m365 -p m365-sim` first), `mosquitto` and `dbus-daemon`. Without
//! them it says so and passes, except under `CI`, where it fails: CI never goes green on a
//! test that did not run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_m365-soak");

/// Whether `CI` asks for strictness (set, and not empty, `0` or `false`), as the workspace's
/// test kit reads it.
fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")))
}

fn on_path(tool: &str) -> bool {
    Path::new("/usr/sbin").join(tool).is_file()
        || std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// What the run needs that is missing, in words.
fn missing() -> Vec<String> {
    let here = Path::new(BIN)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut missing: Vec<String> = ["m365", "m365-sim"]
        .iter()
        .map(|b| here.join(b))
        .filter(|p: &PathBuf| !p.is_file())
        .map(|p| format!("{} (cargo build -p m365 -p m365-sim)", p.display()))
        .collect();
    missing.extend(
        ["mosquitto", "dbus-daemon"]
            .iter()
            .filter(|t| !on_path(t))
            .map(|t| format!("{t} (apt-get install mosquitto dbus-daemon)")),
    );
    missing
}

#[test]
fn a_small_fleet_delivers_every_record_and_reports_each_process() {
    let missing = missing();
    if !missing.is_empty() {
        assert!(!in_ci(), "the fleet test cannot run: {missing:?}");
        eprintln!("skipped: the fleet test needs {missing:?}");
        return;
    }
    let out = Command::new(BIN)
        .args([
            "fleet",
            "--scooters",
            "6",
            "--per-process",
            "3",
            "--duration",
            "10s",
        ])
        .output()
        .expect("m365-soak runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for row in ["m365 run #0", "m365 run #1", "mosquitto", "problems: none"] {
        assert!(stdout.contains(row), "{row} in\n{stdout}");
    }
    let last = stdout.lines().last().expect("a last line");
    assert!(
        last.starts_with("fleet: scooters=6 processes=2 records=") && last.contains(" lost=0 "),
        "{last}"
    );
    // At 1 Hz for at least the 10 s measured, every scooter published: 60 records or more.
    let records: u64 = last
        .split_whitespace()
        .find_map(|w| w.strip_prefix("records="))
        .and_then(|n| n.parse().ok())
        .expect("records=N");
    assert!(records >= 60, "{last}");
}

#[test]
fn a_process_larger_than_a_simulator_is_refused() {
    let out = Command::new(BIN)
        .args(["fleet", "--per-process", "65"])
        .output()
        .expect("m365-soak runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--per-process"));
}
