//! `m365 config check` and `m365 config example`, run as a user would run them: output,
//! masking of secrets, and exit codes.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn m365(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_m365"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("M365_MQTT_PASSWORD")
        .env_remove("M365_MQTT_USERNAME")
        .env_remove("M365_CONFIG")
        .env_remove("STATE_DIRECTORY");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run m365")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_the_effective_config_with_the_password_masked() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("martinete.toml"),
        "[mqtt]\nbroker = \"tcp://b.lan:1883\"\nusername = \"rider\"\npassword = \"hunter2\"\nkeepalive = 5\n",
    )
    .expect("write");
    let out = m365(dir.path(), &["config", "check"], &[]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("password = \"****\"\n"), "{stdout}");
    assert!(stdout.contains("username = \"rider\"\n"), "{stdout}");
    assert!(
        stdout.contains("broker = \"tcp://b.lan:1883\"\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("interval = \"5s\"\n"),
        "defaults are filled in: {stdout}"
    );
    assert!(!stdout.contains("hunter2") && !stderr.contains("hunter2"));
    assert!(
        stderr.contains(
            "warning: martinete.toml:5:1: [mqtt] keepalive: unknown key, ignored (did you mean `keep_alive`?)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("martinete.toml: valid, 1 warning"),
        "{stderr}"
    );
}

#[test]
fn check_masks_a_password_from_the_environment_and_says_where_it_came_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custom.toml");
    std::fs::write(&path, "[mqtt]\npassword = \"from-file\"\n").expect("write");
    let path = path.to_str().expect("utf-8 path");
    let out = m365(
        dir.path(),
        &["--config", path, "config", "check"],
        &[("M365_MQTT_PASSWORD", "from-env")],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("password = \"****\"\n# (password from M365_MQTT_PASSWORD)\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("from-env") && !stdout.contains("from-file"));
}

#[test]
fn an_invalid_config_exits_78_with_located_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[mqtt]\nkeep_alive = \"abc\"\n[scooter]\nmac = \"12:34\"\n",
    )
    .expect("write");
    let out = m365(dir.path(), &["config", "check", "bad.toml"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains(
            "error: bad.toml:2:14: [mqtt] keep_alive: expected a duration, found \"abc\"\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: bad.toml:4:7: [scooter] mac: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("m365: invalid configuration: 2 errors"),
        "{stderr}"
    );
}

#[test]
fn a_missing_file_exits_78() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = m365(dir.path(), &["config", "check", "absent.toml"], &[]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: absent.toml: cannot read the configuration: no such file"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("no such file").count(),
        1,
        "said once: {stderr}"
    );
    assert!(!stderr.contains("os error"), "{stderr}");
}

#[test]
fn without_a_local_file_the_system_file_is_used_or_its_absence_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = m365(dir.path(), &["config", "check"], &[]);
    let system = Path::new("/etc/m365/martinete.toml");
    if system.exists() {
        // A machine with m365 installed: the working directory has no file, so the system one
        // is read.
        assert!(
            text(&out.stdout).contains("read from /etc/m365/martinete.toml"),
            "{}",
            text(&out.stdout)
        );
    } else {
        assert_eq!(out.status.code(), Some(78));
        assert_eq!(
            text(&out.stderr),
            "error: no configuration file found (looked for martinete.toml, \
             /etc/m365/martinete.toml); pass --config PATH\n"
        );
    }
}

#[test]
fn example_prints_the_shipped_example_which_checks_clean() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = m365(dir.path(), &["config", "example"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), m365::config::EXAMPLE);
    std::fs::write(dir.path().join("martinete.toml"), &out.stdout).expect("write");
    let check = m365(dir.path(), &["config", "check"], &[]);
    assert_eq!(check.status.code(), Some(0));
    assert!(text(&check.stderr).contains("valid, 0 warnings"));
}

#[test]
fn a_wrong_command_line_exits_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = m365(dir.path(), &["config", "frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let help = m365(dir.path(), &["--help"], &[]);
    assert_eq!(help.status.code(), Some(0));
}

#[test]
fn check_validates_the_token_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("martinete.toml"),
        "[scooter]\ntoken_file_path = \"token\"\n",
    )
    .expect("write");
    let token = dir.path().join("token");

    // Not paired yet: a note, still a valid configuration.
    let out = m365(dir.path(), &["config", "check"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("note: [scooter] token_file_path: no token file at token yet"),
        "{stderr}"
    );

    // Three bytes: `m365 run` could not use it.
    std::fs::write(&token, b"abc").expect("write");
    set_mode(&token, 0o600);
    let out = m365(dir.path(), &["config", "check"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(
            "error: [scooter] token_file_path: token holds 3 bytes, a token is exactly 12"
        ),
        "{stderr}"
    );

    // Twelve bytes, but readable by everyone.
    std::fs::write(&token, [7u8; 12]).expect("write");
    set_mode(&token, 0o644);
    let out = m365(dir.path(), &["config", "check"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("can be read by others (mode 644)"),
        "{stderr}"
    );
    assert!(stderr.contains("chmod 600 token"), "{stderr}");

    set_mode(&token, 0o600);
    let out = m365(dir.path(), &["config", "check"], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("token_file_path"), "{stderr}");

    // A scooter forced to a protocol without pairing needs no token.
    std::fs::write(
        dir.path().join("martinete.toml"),
        "[scooter]\ntoken_file_path = \"absent\"\nprotocol = \"plain\"\n",
    )
    .expect("write");
    let out = m365(dir.path(), &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!text(&out.stderr).contains("token_file_path"));
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
