//! The command line as a user meets it, without running a soak: a seed prints the same schedule
//! every time, and that schedule covers every kind of fault.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_m365-soak");

fn schedule(seed: &str, duration: &str) -> String {
    let out = Command::new(BIN)
        .args(["--print-schedule", "--seed", seed, "--duration", duration])
        .output()
        .expect("m365-soak runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("text")
}

#[test]
fn a_seed_prints_the_same_schedule_and_how_to_replay_it() {
    let first = schedule("7", "120s");
    assert_eq!(first, schedule("7", "120s"));
    assert_ne!(first, schedule("8", "120s"));
    for kind in [
        "ble-drop",
        "power-cycle",
        "out-of-range",
        "corrupt",
        "extra-empty",
        "kill",
        "disk-full",
        "gps-unplug",
        "clock-jump",
        "broker-restart",
        "broker-outage",
    ] {
        assert!(first.contains(kind), "{kind} in\n{first}");
    }
    let replay = first.lines().last().expect("a last line");
    assert!(
        replay.starts_with("replay: m365-soak --seed 7 --duration 120s --scooters 3"),
        "{replay}"
    );
}

#[test]
fn a_bad_duration_is_refused() {
    let out = Command::new(BIN)
        .args(["--print-schedule", "--duration", "soon"])
        .output()
        .expect("m365-soak runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--duration"));
}
