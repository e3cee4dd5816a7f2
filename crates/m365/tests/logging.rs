//! `[log]` decides what is logged and how; `RUST_LOG` overrides the level.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365::config::{LogConfig, LogFormat};
use m365::logging;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A writer that collects everything logged.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_with(config: &LogConfig, rust_log: Option<&str>) -> String {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber =
        logging::subscriber(config, rust_log, move || writer.clone(), false).expect("subscriber");
    tracing::subscriber::with_default(subscriber, || {
        tracing::debug!(target: "m365::test", "detail");
        tracing::info!(target: "m365::test", backlog = 3, "published");
    });
    let bytes = buffer.0.lock().expect("lock").clone();
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn the_configured_level_filters_and_text_is_plain() {
    let out = log_with(&LogConfig::default(), None);
    assert!(out.contains("published backlog=3"), "{out}");
    assert!(!out.contains("detail"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "no colour codes outside a terminal: {out:?}"
    );
}

#[test]
fn rust_log_overrides_the_level() {
    let out = log_with(&LogConfig::default(), Some("m365=debug"));
    assert!(out.contains("detail"), "{out}");
    let out = log_with(&LogConfig::default(), Some(""));
    assert!(
        !out.contains("detail"),
        "an empty RUST_LOG is ignored: {out}"
    );
}

#[test]
fn json_format_writes_one_object_per_line() {
    let config = LogConfig {
        level: "debug".into(),
        format: LogFormat::Json,
    };
    let out = log_with(&config, None);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[1]["fields"]["message"], "published");
    assert_eq!(lines[1]["fields"]["backlog"], 3);
    assert_eq!(lines[1]["level"], "INFO");
}

#[test]
fn a_bad_filter_is_an_error_naming_it() {
    let err = logging::filter(&LogConfig::default(), Some("m365=loud")).expect_err("bad filter");
    assert!(
        err.to_string()
            .starts_with("invalid log filter \"m365=loud\""),
        "{err}"
    );
}
