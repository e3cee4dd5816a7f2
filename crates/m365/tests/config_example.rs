//! The shipped example (`packaging/martinete.toml`, printed by `m365 config example`) covers
//! every key, parses with no warning, and states the true defaults; the effective configuration
//! printed by `config check` reads back as the same configuration.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365::config::{self, Config};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Config {
    let (config, warnings) = config::parse("example", text, &no_env).expect("valid");
    assert!(warnings.is_empty(), "{warnings:?}");
    config
}

#[test]
fn the_example_has_no_warnings_and_matches_the_defaults() {
    assert_eq!(parse(config::EXAMPLE), parse(""));
}

/// Every key the example mentions, set or commented out (`key = …` or `# key = …`).
fn example_keys() -> Vec<String> {
    config::EXAMPLE
        .lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_owned()))
        .filter(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

#[test]
fn the_example_mentions_every_key() {
    let keys = example_keys();
    for key in [
        "mac",
        "token_file_path",
        "name_prefix",
        "protocol",
        "scan_timeout",
        "reconnect_window",
        "session_reuse",
        "request_timeout",
        "read_cells",
        "interval",
        "scooter_id",
        "source",
        "kind",
        "device",
        "baud",
        "gpsd",
        "broker",
        "client",
        "topic",
        "encoding",
        "legacy_no_fix",
        "availability_topic",
        "keep_alive",
        "reconnect_min",
        "reconnect_max",
        "in_flight",
        "username",
        "password",
        "password_file",
        "ca_file",
        "client_cert",
        "client_key",
        "system_roots",
        "path",
        "max_bytes",
        "max_age",
        "sync",
        "batch",
        "discovery",
        "prefix",
        "level",
        "format",
    ] {
        assert!(
            keys.iter().any(|k| k == key),
            "{key} missing from the example"
        );
    }
}

fn is_setting(line: &str) -> bool {
    line.split_once(" = ")
        .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
}

fn is_header(line: &str) -> bool {
    line.starts_with('[') && line.ends_with(']') && !line.contains(' ')
}

#[test]
fn the_commented_out_keys_are_valid_when_uncommented() {
    // Uncomment everything except the TLS block (it needs files and a TLS broker) and the
    // password_file line (password and password_file exclude each other).
    let text: String = config::EXAMPLE
        .lines()
        .map(|l| {
            let keep_commented = l.contains("password_file")
                || l.contains("[mqtt.tls]")
                || ["ca_file", "client_cert", "client_key", "system_roots"]
                    .iter()
                    .any(|k| l.starts_with(&format!("# {k} =")));
            match l.strip_prefix("# ") {
                Some(rest) if !keep_commented && (is_setting(rest) || is_header(rest)) => {
                    rest.to_owned()
                }
                _ => l.to_owned(),
            }
        })
        .map(|l| l + "\n")
        .collect();
    let config = parse(&text);
    assert_eq!(config.first().id, "my-scooter");
    assert_eq!(config.first().mqtt.topic, "m365/my-scooter/telemetry");
    assert_eq!(config.mqtt.topic, "m365/{id}/telemetry");
    assert_eq!(config.first().mqtt.mirror.len(), 1);
    assert_eq!(config.mqtt.username.as_deref(), Some("scooter"));
}

#[test]
fn the_rendered_configuration_reads_back_the_same() {
    for text in [
        config::EXAMPLE,
        "[scooter]\nmac = \"C7B8DC3BA1B2\"\n[telemetry]\ninterval = 0.3\n\
         [mqtt]\nbroker = \"mqtts://b.example\"\n[[mqtt.mirror]]\ntopic = \"x/{id}\"\n\
         encoding = \"compact\"\n[spool]\nmax_bytes = 1500000\nmax_age = 90\n",
    ] {
        let config = parse(text);
        let rendered = config::render(&config);
        assert_eq!(parse(&rendered), config, "{rendered}");
    }
}
