//! Arbitrary text as `ingest.toml` (`config::parse`): no panic; every error names the file and a
//! line and column that exist in the text (computed from byte offsets into it, the last line's
//! end included) as `file:line:column: message`; a configuration that parses passes the checks
//! across keys (reconnect delays, keep-alive, credentials, TLS files, something to subscribe to)
//! and formats, the database password redacted.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365_ingest::config::{self, Config, ConfigError};

fn check_config(c: &Config) {
    let m = &c.mqtt;
    assert!(!m.reconnect_min.0.is_zero() && m.reconnect_min.0 <= m.reconnect_max.0);
    assert!((5..=u64::from(u16::MAX)).contains(&m.keep_alive.0.as_secs()));
    assert!(m.session_expiry.0.as_secs() <= u64::from(u32::MAX));
    assert!(!m.client_id.is_empty());
    assert!(!(m.password.is_some() && m.password_file.is_some()));
    assert_eq!(m.client_cert.is_some(), m.client_key.is_some());
    assert!(m.broker.tls || (m.ca_file.is_none() && m.client_cert.is_none()));
    assert!(
        !(m.telemetry.is_empty()
            && m.availability.is_empty()
            && m.status.is_empty()
            && m.events.is_empty())
    );
    assert!(m.in_flight.0 > 0);
    assert!((1..=100_000).contains(&c.batch.size.0));
    let db = &c.database;
    assert!(!db.reconnect_min.0.is_zero() && db.reconnect_min.0 <= db.reconnect_max.0);
    let _ = m.broker.to_string();
    let _ = db.url.redacted();
    let _ = format!("{c:?}");
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match config::parse("f.toml", &text) {
        Ok(c) => check_config(&c),
        Err(e) => {
            let shown = e.to_string();
            match &e {
                ConfigError::Invalid {
                    file,
                    line,
                    column,
                    message: _,
                } => {
                    assert_eq!(file, "f.toml");
                    assert!(
                        shown.starts_with(&format!("f.toml:{line}:{column}: ")),
                        "{shown}"
                    );
                    let lines: Vec<&str> = text.split('\n').collect();
                    assert!(
                        (1..=lines.len()).contains(line),
                        "line {line} of {}: {shown}",
                        lines.len()
                    );
                    let width = lines[line - 1].chars().count();
                    assert!(
                        (1..=width + 1).contains(column),
                        "column {column} of a line of {width} characters: {shown}"
                    );
                }
                ConfigError::Read { .. } => panic!("parse reads no file: {shown}"),
            }
        }
    }
});
