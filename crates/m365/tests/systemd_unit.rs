//! The shipped systemd unit is valid for `systemd-analyze verify`, and its
//! `RestartPreventExitStatus=` lists exactly the exit codes that a restart cannot fix; every
//! exit code is documented in `docs/exit-codes.md`.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365::exit::ExitStatus;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

fn unit() -> String {
    std::fs::read_to_string(repo_file("packaging/systemd/m365.service")).expect("unit file")
}

/// The values of every `key=` line of the unit.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED systemd_analyze_verify_accepts_the_unit: systemd-analyze not found");
        return;
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("m365.service");
    let text = unit().replace(
        "ExecStart=/usr/bin/m365 ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_m365")),
    );
    assert!(
        text.contains(env!("CARGO_BIN_EXE_m365")),
        "ExecStart was not rewritten"
    );
    std::fs::write(&path, text).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 even for unknown keys and bad values, and only prints them: any line about
    // our file is a failure.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&*path.to_string_lossy()) || l.contains("m365.service"))
        .collect();
    assert!(out.status.success(), "{stderr}");
    assert!(complaints.is_empty(), "{complaints:#?}");
}

#[test]
fn restart_prevention_matches_the_exit_codes() {
    let listed: BTreeSet<u8> = values(&unit(), "RestartPreventExitStatus")
        .iter()
        .flat_map(|v| {
            v.split_whitespace()
                .map(|c| c.parse::<u8>().expect("a code"))
        })
        .collect();
    let expected: BTreeSet<u8> = ExitStatus::ALL
        .into_iter()
        .filter(|s| s.prevents_restart())
        .map(ExitStatus::code)
        .collect();
    assert_eq!(listed, expected);
    assert!(expected.contains(&78) && expected.contains(&77));
    assert!(!expected.contains(&ExitStatus::ScooterLost.code()));
}

#[test]
fn the_unit_runs_as_a_notify_service_with_a_watchdog_and_hardening() {
    let unit = unit();
    for (key, value) in [
        ("Type", "notify"),
        ("Restart", "always"),
        ("StartLimitIntervalSec", "0"),
        ("User", "m365"),
        ("StateDirectory", "m365"),
        ("ConfigurationDirectory", "m365"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("DevicePolicy", "closed"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6 AF_BLUETOOTH",
        ),
        (
            "ExecStart",
            "/usr/bin/m365 run --config /etc/m365/martinete.toml",
        ),
    ] {
        assert_eq!(values(&unit, key), [value], "{key}");
    }
    assert_eq!(values(&unit, "SupplementaryGroups"), ["bluetooth dialout"]);
    assert!(!values(&unit, "WatchdogSec").is_empty());
    assert!(
        values(&unit, "DeviceAllow")
            .iter()
            .any(|d| d.starts_with("char-ttyUSB"))
    );
}

#[test]
fn every_exit_code_is_documented() {
    let doc = std::fs::read_to_string(repo_file("docs/exit-codes.md")).expect("docs/exit-codes.md");
    for status in ExitStatus::ALL {
        let row = format!("| {} |", status.code());
        let line = doc
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("{status} is not in docs/exit-codes.md"));
        let restart = if status.prevents_restart() {
            "no"
        } else {
            "yes"
        };
        assert!(
            line.trim_end().ends_with(&format!("| {restart} |")),
            "restart column of {line}"
        );
    }
}
