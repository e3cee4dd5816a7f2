//! `m365 gps` as a process: replaying the shared captures, reading an emulated receiver, and
//! failing clearly on bad input.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn m365(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_m365"))
        .args(args)
        .output()
        .expect("run m365")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn sorted_files(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn replay_json_matches_the_library_for_every_capture() {
    let Some(dir) = m365_testdata::require(
        "replay_json_matches_the_library_for_every_capture",
        "testdata/gps/nmea",
    ) else {
        return;
    };
    for path in sorted_files(&dir, "nmea") {
        let out = m365(&["gps", "--replay", path.to_str().unwrap(), "--json"]);
        assert!(out.status.success(), "{}: {out:?}", path.display());
        let lines = json_lines(&out);
        let expected = m365_gps::nmea::decode_all(&std::fs::read(&path).unwrap());
        assert_eq!(lines.len(), expected.len(), "{}", path.display());
        for (line, epoch) in lines.iter().zip(&expected) {
            match &epoch.fix {
                None => {
                    assert_eq!(line["fix"], false, "{line}");
                    assert!(line.get("lat").is_none(), "no-fix lines carry no position");
                }
                Some(fix) => {
                    assert_eq!(line["fix"], true);
                    // JSON text round-trips floats to within an ulp or so.
                    let close = |key: &str, want: Option<f64>| match (line[key].as_f64(), want) {
                        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{key}: {line}"),
                        (g, w) => assert_eq!(g, w, "{key}: {line}"),
                    };
                    close("lat", Some(fix.lat));
                    close("lon", Some(fix.lon));
                    close("alt", fix.alt_msl_m);
                    close("speed_mps", fix.speed_mps);
                    close("course", fix.course_deg);
                    for key in ["time", "mode", "sats", "hdop"] {
                        assert!(line.get(key).is_some(), "{key} missing in {line}");
                    }
                }
            }
        }
    }
}

#[test]
fn replay_of_the_rtk_capture_reports_its_first_fix() {
    let Some(path) = m365_testdata::require(
        "replay_of_the_rtk_capture_reports_its_first_fix",
        "testdata/gps/nmea/trimble_rtk_moving_gn_west.nmea",
    ) else {
        return;
    };
    let out = m365(&["gps", "--replay", path.to_str().unwrap(), "--json"]);
    let lines = json_lines(&out);
    let first = &lines[0];
    assert_eq!(first["time"], "2020-03-18T13:28:19.600Z");
    assert!((first["lat"].as_f64().unwrap() - 41.57496591).abs() < 1e-7);
    assert!((first["lon"].as_f64().unwrap() + 93.750571901).abs() < 1e-7);
    assert_eq!(first["mode"], "3d");
    assert_eq!(first["sats"], 10);
    assert_eq!(first["quality"], "dgps");
}

#[test]
fn replay_detects_at_transcripts() {
    let Some(path) = m365_testdata::require(
        "replay_detects_at_transcripts",
        "testdata/gps/sim7600/cgpsinfo_fix_then_corrupt.at",
    ) else {
        return;
    };
    let out = m365(&["gps", "--replay", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    // The second, corrupted reply is rejected, not printed as a position.
    assert_eq!(lines.len(), 1);
    assert!((lines[0]["lat"].as_f64().unwrap() - 48.91070705).abs() < 1e-9);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SIM7600 AT") && stderr.contains("1 rejected"),
        "{stderr}"
    );
}

#[test]
fn replay_text_output_says_no_fix() {
    let Some(path) = m365_testdata::require(
        "replay_text_output_says_no_fix",
        "testdata/gps/sim7600/nmea_port_nofix.nmea",
    ) else {
        return;
    };
    let out = m365(&["gps", "--replay", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["no fix", "no fix", "no fix"]
    );
}

#[test]
fn missing_device_fails_with_a_clear_message() {
    let dir = tempfile_dir();
    let missing = dir.join("ttyUSB9");
    let out = m365(&["gps", "--device", missing.to_str().unwrap()]);
    // EX_IOERR: the GPS device is missing.
    assert_eq!(out.status.code(), Some(74));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_file_that_is_not_a_serial_port_fails_clearly() {
    let dir = tempfile_dir();
    let file = dir.join("not-a-tty");
    std::fs::write(&file, b"").unwrap();
    let out = m365(&["gps", "--device", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(74));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open") && stderr.contains("not-a-tty"),
        "{stderr}"
    );
}

#[test]
fn missing_capture_and_bad_arguments_fail() {
    let out = m365(&["gps", "--replay", "/nonexistent/capture.nmea"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read capture"));
    let out = m365(&["gps"]);
    assert!(!out.status.success(), "a source is required");
    let out = m365(&["gps", "--gpsd", "not an address"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--gpsd"));
}

#[test]
fn empty_capture_is_an_error() {
    let dir = tempfile_dir();
    let empty = dir.join("empty.nmea");
    std::fs::write(&empty, b"hello\r\n").unwrap();
    let out = m365(&["gps", "--replay", empty.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no NMEA epochs"));
}

#[test]
fn live_device_prints_epochs_from_an_emulated_receiver() {
    use m365_gps::emulate::{self, NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let start = RoutePoint {
        time: "2026-06-01T10:00:00Z".parse().unwrap(),
        lat: 52.52,
        lon: 13.405,
        alt_m: 34.0,
        speed_mps: 5.5,
        course_deg: 45.0,
    };
    let points = emulate::straight_line(start, m365_gps::chrono::Duration::seconds(1));
    let emu = emulate::nmea_receiver::spawn(NmeaReceiverConfig::new(
        NmeaFeed::Route(Box::new(points)),
        Pace::Accelerated(20.0),
    ))
    .unwrap();
    let path = emu.path().unwrap();
    let out = m365(&[
        "gps",
        "--device",
        path.to_str().unwrap(),
        "--json",
        "--count",
        "3",
    ]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["fix"], true);
        assert!((l["lat"].as_f64().unwrap() - 52.52).abs() < 0.01, "{l}");
        assert!((l["speed_mps"].as_f64().unwrap() - 5.5).abs() < 1e-3, "{l}");
        assert_eq!(l["source"], "nmea");
    }
    emu.stop();
}

/// A fresh directory under the target dir (the m365 crate has no tempfile dependency).
fn tempfile_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "gps_cli_{}_{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
