//! Every NMEA capture in the shared folder decodes to what gpsd reported for it, row by row.
//!
//! Captures are discovered by listing `../shared/testdata/gps/nmea/`, so a new capture with its
//! `.expected.csv` is tested without touching this file.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{assert_close, cell_f64, read_csv};
use m365_gps::FixMode;
use m365_gps::nmea::{Epoch, NmeaDecoder, decode_all};

fn captures(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("list nmea dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nmea"))
        .collect();
    v.sort();
    v
}

fn check_capture(path: &Path) -> (usize, usize) {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let csv = path.with_file_name(format!("{name}.expected.csv"));
    let rows = read_csv(&csv);
    let bytes = std::fs::read(path).unwrap();
    let epochs = decode_all(&bytes);
    let by_line: HashMap<u64, &Epoch> = epochs
        .iter()
        .filter_map(|e| e.rmc_line.map(|l| (l, e)))
        .collect();

    let mut fixes_checked = 0;
    let mut expected_fix_lines = Vec::new();
    for row in &rows {
        let line: u64 = row["rmc_line"].parse().unwrap();
        let ctx = format!("{name} line {line} ({})", row["rmc_utc_field"]);
        let epoch = by_line.get(&line);
        if let Some(e) = epoch {
            assert_eq!(e.utc_field, row["rmc_utc_field"], "{ctx}: epoch key");
        }
        let gpsd_has_fix = !row["lat"].is_empty();
        if !gpsd_has_fix {
            if row["rmc_status"] == "A" {
                // gpsd accepted this `A` RMC but emitted no report for its time (the haicom
                // capture's first fix epoch, see the README); it said nothing either way.
                continue;
            }
            let fix = epoch.and_then(|e| e.fix.as_ref());
            assert!(
                fix.is_none(),
                "{ctx}: gpsd reported no fix, we did: {fix:?}"
            );
            continue;
        }
        expected_fix_lines.push(line);
        let fix = epoch
            .and_then(|e| e.fix.as_ref())
            .unwrap_or_else(|| panic!("{ctx}: gpsd reported a fix, we have {epoch:?}"));
        assert_close(
            &format!("{ctx} lat"),
            Some(fix.lat),
            cell_f64(row, "lat"),
            1e-7,
        );
        assert_close(
            &format!("{ctx} lon"),
            Some(fix.lon),
            cell_f64(row, "lon"),
            1e-7,
        );
        assert_close(
            &format!("{ctx} alt"),
            fix.alt_msl_m,
            cell_f64(row, "alt_msl_m"),
            1e-3,
        );
        assert_close(
            &format!("{ctx} speed"),
            fix.speed_mps,
            cell_f64(row, "speed_mps"),
            1e-3,
        );
        assert_close(
            &format!("{ctx} course"),
            fix.course_deg,
            cell_f64(row, "track_deg"),
            1e-6,
        );
        let mode = match row["gpsd_mode"].as_str() {
            "2" => FixMode::TwoD,
            "3" => FixMode::ThreeD,
            other => panic!("{ctx}: gpsd mode {other} with a position"),
        };
        assert_eq!(fix.mode, mode, "{ctx}: mode");
        let time = fix.time.expect("fix has a time");
        let want_time = chrono::DateTime::parse_from_rfc3339(&row["gpsd_time"]).unwrap();
        assert_eq!(time, want_time, "{ctx}: time");
        match row["gpsd_status"].as_str() {
            "2" => assert_eq!(fix.quality, m365_gps::FixQuality::Dgps, "{ctx}"),
            "3" => assert_eq!(fix.quality, m365_gps::FixQuality::RtkFixed, "{ctx}"),
            _ => {}
        }
        fixes_checked += 1;
    }
    // And nothing extra: every fix we report is one gpsd reported (or the one gpsd skipped).
    for e in &epochs {
        if e.fix.is_none() {
            continue;
        }
        let line = e.rmc_line.expect("NMEA fixes come from an RMC here");
        let row = rows.iter().find(|r| r["rmc_line"] == line.to_string());
        let row = row.unwrap_or_else(|| panic!("{name}: fix at line {line} gpsd rejected"));
        assert_eq!(
            row["rmc_status"], "A",
            "{name}: fix from a V RMC at line {line}"
        );
    }
    assert!(
        fixes_checked == expected_fix_lines.len(),
        "{name}: all expected fixes checked"
    );
    (rows.len(), fixes_checked)
}

#[test]
fn every_capture_matches_gpsd() {
    let Some(dir) = m365_testdata::require("every_capture_matches_gpsd", "testdata/gps/nmea")
    else {
        return;
    };
    let files = captures(&dir);
    assert!(files.len() >= 6, "captures found: {files:?}");
    let mut total_fixes = 0;
    for f in &files {
        let (rows, fixes) = check_capture(f);
        eprintln!("{}: {rows} RMC rows, {fixes} fixes compared", f.display());
        total_fixes += fixes;
    }
    assert!(total_fixes > 200, "only {total_fixes} fixes compared");
}

#[test]
fn byte_by_byte_feeding_gives_the_same_epochs() {
    let Some(dir) = m365_testdata::require(
        "byte_by_byte_feeding_gives_the_same_epochs",
        "testdata/gps/nmea",
    ) else {
        return;
    };
    for f in captures(&dir) {
        let bytes = std::fs::read(&f).unwrap();
        let whole = decode_all(&bytes);
        let mut d = NmeaDecoder::new();
        let mut split = Vec::new();
        for chunk in bytes.chunks(7) {
            split.extend(d.push(chunk));
        }
        split.extend(d.flush());
        assert_eq!(whole, split, "{}", f.display());
    }
}

#[test]
fn corrupted_capture_counts_its_rejects() {
    let Some(path) = m365_testdata::require(
        "corrupted_capture_counts_its_rejects",
        "testdata/gps/nmea/gp320fw_coldboot_corrupted.nmea",
    ) else {
        return;
    };
    let mut d = NmeaDecoder::new();
    let bytes = std::fs::read(path).unwrap();
    let epochs = d.push(&bytes);
    let r = d.rejects();
    // The capture's notes count 24 checksum failures by line; glued lines split into more
    // sentences here. The NUL run is binary noise.
    assert!(r.bad_checksum >= 24, "{r:?}");
    assert!(r.binary >= 1, "{r:?}");
    assert_eq!(epochs.iter().filter(|e| e.fix.is_some()).count(), 1);
}

#[test]
fn leading_garbage_does_not_hide_the_first_sentence() {
    let Some(path) = m365_testdata::require(
        "leading_garbage_does_not_hide_the_first_sentence",
        "testdata/gps/nmea/ublox_m8_gn_baud_garbage.nmea",
    ) else {
        return;
    };
    let epochs = decode_all(&std::fs::read(path).unwrap());
    let first = &epochs[0];
    assert_eq!(first.rmc_line, Some(1));
    let fix = first.fix.as_ref().expect("the glued RMC is a fix");
    assert!(fix.lon < -121.0 && fix.lat > 44.0, "{fix:?}");
}
