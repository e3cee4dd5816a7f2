//! The binary's command line and exit codes: an invalid file names file:line:column and exits
//! 78, `--check` accepts the packaged example, a database that does not exist exits 78.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_m365-ingest");

#[test]
fn an_invalid_configuration_exits_78_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.toml");
    std::fs::write(
        &path,
        "[mqtt]\nin_flight = 0\n[database]\nurl = \"postgresql://h/db\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2:13: [mqtt] in_flight: ", path.display())),
        "{err}"
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[test]
fn check_accepts_the_packaged_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/ingest.toml");
    let out = Command::new(BIN)
        .args(["--check", "--config", example, "--client-id", "w-7"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("worker (client id): w-7"), "{text}");
}

#[tokio::test]
async fn a_database_that_does_not_exist_exits_78() {
    // Only to learn whether PostgreSQL is there (and to skip, or fail under CI, when not).
    let Some(db) = common::TestDb::create("cli").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.toml");
    let url = format!("{}_does_not_exist", db.url());
    std::fs::write(
        &path,
        format!("[mqtt]\nbroker = \"tcp://127.0.0.1:1\"\n[database]\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
