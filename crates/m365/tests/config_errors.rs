//! Every way a value can be wrong yields one message naming `file:line:column`, the section
//! and key, and what is wrong; unknown keys are warnings with a suggestion when one is close.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365::config::{self, ConfigError, Warning};

fn no_env(_: &str) -> Option<String> {
    None
}

/// The error lines for `text` (which must be invalid).
fn errors(text: &str) -> Vec<String> {
    match config::parse("martinete.toml", text, &no_env) {
        Ok(_) => panic!("expected an invalid configuration:\n{text}"),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}

fn warnings(text: &str) -> Vec<String> {
    let (_, warnings) = config::parse("martinete.toml", text, &no_env).expect("valid");
    warnings.iter().map(Warning::to_string).collect()
}

#[test]
fn a_bad_duration_names_file_line_column_and_key() {
    let text = "[mqtt]\nbroker = \"tcp://b:1883\"\nkeep_alive = \"abc\"\n";
    assert_eq!(
        errors(text),
        ["martinete.toml:3:14: [mqtt] keep_alive: expected a duration, found \"abc\""]
    );
}

#[test]
fn a_bad_mac_address() {
    let text = "[scooter]\n  mac = \"XXXXXXXXXXX\"\n";
    assert_eq!(
        errors(text),
        [
            "martinete.toml:2:9: [scooter] mac: expected a Bluetooth address such as \
             \"AA:BB:CC:DD:EE:FF\" (colons, dashes or no separator), found \"XXXXXXXXXXX\""
        ]
    );
}

#[test]
fn a_broker_with_an_unsupported_scheme() {
    assert_eq!(
        errors("[mqtt]\nbroker = \"ws://b:80\"\n"),
        [
            "martinete.toml:2:10: [mqtt] broker: unsupported scheme \"ws://\": use tcp:// or \
             mqtt:// (plain), mqtts://, ssl:// or tls:// (TLS)"
        ]
    );
    assert_eq!(
        errors("[mqtt]\nbroker = \"b:1883\"\n"),
        [
            "martinete.toml:2:10: [mqtt] broker: expected a URL such as \
             \"tcp://broker.example:1883\" or \"mqtts://broker.example:8883\", found \"b:1883\""
        ]
    );
}

#[test]
fn an_interval_out_of_range() {
    assert_eq!(
        errors("[telemetry]\ninterval = 0.05\n"),
        ["martinete.toml:2:12: [telemetry] interval: must be between 100ms and 1h, found 50ms"]
    );
    assert_eq!(
        errors("[mqtt]\nsend_interval = 0\n"),
        ["martinete.toml:2:17: [mqtt] send_interval: must be between 100ms and 1h, found 0s"]
    );
}

#[test]
fn wrong_types_say_what_was_expected_and_what_was_found() {
    assert_eq!(
        errors("[mqtt]\nin_flight = \"ten\"\n"),
        ["martinete.toml:2:13: [mqtt] in_flight: expected a whole number, found \"ten\""]
    );
    assert_eq!(
        errors("[scooter]\nread_cells = \"yes\"\n"),
        ["martinete.toml:2:14: [scooter] read_cells: expected true or false, found \"yes\""]
    );
    assert_eq!(
        errors("mqtt = 5\n"),
        ["martinete.toml:1:8: mqtt: expected a table, found 5"]
    );
}

#[test]
fn a_word_outside_the_allowed_choices() {
    assert_eq!(
        errors("[scooter]\nprotocol = \"bluetooth\"\n"),
        [
            "martinete.toml:2:12: [scooter] protocol: expected one of \"auto\", \"miauth\", \
             \"xor\", \"plain\", found \"bluetooth\""
        ]
    );
    assert_eq!(
        errors("[mqtt]\nprotocol = \"3\"\n"),
        ["martinete.toml:2:12: [mqtt] protocol: expected \"3.1.1\" or \"5\", found \"3\""]
    );
}

#[test]
fn checks_across_keys_point_at_the_second_key() {
    assert_eq!(
        errors("[mqtt]\nreconnect_min = \"10s\"\nreconnect_max = 5\n"),
        ["martinete.toml:3:17: [mqtt] reconnect_max: must not be shorter than reconnect_min (10s)"]
    );
    assert_eq!(
        errors("[telemetry]\ninterval = 2\n[mqtt]\nsend_interval = 5\n"),
        [
            "martinete.toml:4:17: [mqtt] send_interval: both [telemetry] interval and this \
             earlier-format key are set; keep only interval"
        ]
    );
    assert_eq!(
        errors("[gps]\nsource = \"gpsd\"\n[serial]\nserial_port = \"/dev/ttyUSB2\"\n"),
        [
            "martinete.toml:4:15: [serial] serial_port: both [serial] (earlier format) and \
             [gps] source are set; keep only [gps]"
        ]
    );
}

#[test]
fn files_that_must_be_readable_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.pem");
    let text = format!(
        "[mqtt]\nbroker = \"mqtts://b\"\n[mqtt.tls]\nca_file = \"{}\"\n",
        missing.display()
    );
    let lines = errors(&text);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(&format!(
            "martinete.toml:4:11: [mqtt.tls] ca_file: cannot read {}: ",
            missing.display()
        )),
        "{lines:?}"
    );

    let text = format!("[mqtt]\npassword_file = \"{}\"\n", missing.display());
    let lines = errors(&text);
    assert!(
        lines[0].starts_with("martinete.toml:2:17: [mqtt] password_file: cannot read "),
        "{lines:?}"
    );
}

#[test]
fn tls_settings_with_a_plain_broker_are_refused() {
    let lines = errors("[mqtt]\nbroker = \"tcp://b:1883\"\n[mqtt.tls]\nsystem_roots = true\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("martinete.toml:3:1: [mqtt] tls: TLS settings need a TLS broker URL"),
        "{lines:?}"
    );
}

#[test]
fn password_and_password_file_together_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").expect("write");
    let text = format!(
        "[mqtt]\npassword = \"a\"\npassword_file = \"{}\"\n",
        file.display()
    );
    assert_eq!(
        errors(&text),
        [
            "martinete.toml:3:17: [mqtt] password_file: set either password or password_file, not both"
        ]
    );
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = "[scooter]\nscan_timeout = \"forever\"\n[mqtt]\nkeep_alive = -1\n";
    assert_eq!(
        errors(text),
        [
            "martinete.toml:2:16: [scooter] scan_timeout: expected a duration, found \"forever\"",
            "martinete.toml:4:14: [mqtt] keep_alive: expected a duration, found -1",
        ]
    );
}

#[test]
fn invalid_toml_names_the_position() {
    let err = config::parse("martinete.toml", "[mqtt]\nbroker = tcp://b\n", &no_env)
        .expect_err("not TOML");
    let ConfigError::Syntax { location, .. } = &err else {
        panic!("expected a syntax error, got {err}");
    };
    assert_eq!((location.line, location.column), (2, 10), "{err}");
    assert!(
        err.to_string()
            .starts_with("martinete.toml:2:10: invalid TOML: "),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_warnings_with_suggestions() {
    let text = "[mqtt]\nkeepalive = 10\ncolour = \"red\"\n\n[scoter]\nmac = \"C7B8DC3BA1B2\"\n";
    assert_eq!(
        warnings(text),
        [
            "martinete.toml:2:1: [mqtt] keepalive: unknown key, ignored (did you mean `keep_alive`?)",
            "martinete.toml:3:1: [mqtt] colour: unknown key, ignored",
            "martinete.toml:5:2: [scoter]: unknown section, ignored (did you mean `scooter`?)",
        ]
    );
}

#[test]
fn unknown_keys_are_still_reported_next_to_errors() {
    let text = "[log]\nlevl = \"debug\"\nformat = \"xml\"\n";
    match config::parse("martinete.toml", text, &no_env) {
        Err(ConfigError::Invalid { problems, warnings }) => {
            assert_eq!(problems.len(), 1);
            assert_eq!(
                problems[0].to_string(),
                "martinete.toml:3:10: [log] format: expected one of \"text\", \"json\", found \"xml\""
            );
            assert_eq!(warnings.len(), 1);
            assert_eq!(warnings[0].suggestion.as_deref(), Some("level"));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn incomplete_sections_point_at_their_header() {
    assert_eq!(
        errors("[mqtt]\n[[mqtt.mirror]]\nencoding = \"json\"\n"),
        ["martinete.toml:2:1: [mqtt.mirror] topic: every [[mqtt.mirror]] needs a topic"]
    );
    assert_eq!(
        errors("[serial]\nbaudrate = 9600\n"),
        ["martinete.toml:1:1: [serial] serial_port: [serial] needs serial_port (or use [gps])"]
    );
}
