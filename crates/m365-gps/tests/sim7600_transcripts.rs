//! Every SIM7600 AT transcript in the shared folder decodes to `sim7600/expected.csv`, including
//! the firmware-corrupted reply, which must be rejected.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Row, assert_close, cell_f64, read_csv};
use m365_gps::FixMode;
use m365_gps::sim7600::{self, FinalResult};

fn final_text(r: &FinalResult) -> String {
    match r {
        FinalResult::Ok => "OK".into(),
        FinalResult::Error => "ERROR".into(),
        FinalResult::CmeError(e) => format!("+CME ERROR: {e}"),
    }
}

fn opt_u8(row: &Row, col: &str) -> Option<u8> {
    let v = &row[col];
    (!v.is_empty()).then(|| v.parse().unwrap())
}

fn check_exchange(ctx: &str, ex: &sim7600::Exchange, row: &Row) {
    assert_eq!(
        ex.command.as_deref(),
        Some(row["command"].as_str()),
        "{ctx}"
    );
    assert_eq!(final_text(&ex.result), row["final_result"], "{ctx}");
    if !row["cgps_on"].is_empty() {
        let st = sim7600::parse_cgps_status(ex.payload("+CGPS:").expect("+CGPS line")).unwrap();
        assert_eq!(st.on, row["cgps_on"] == "1", "{ctx}");
        assert_eq!(Some(st.mode), opt_u8(row, "cgps_mode"), "{ctx}");
    }
    let (fix, decoded_ok) = match row["command"].as_str() {
        "AT+CGPSINFO" => match sim7600::parse_cgpsinfo(ex.payload("+CGPSINFO:").unwrap()) {
            Ok(f) => (f, true),
            Err(e) => {
                eprintln!("{ctx}: rejected as expected? {e}");
                (None, false)
            }
        },
        "AT+CGNSSINFO" => {
            let info = sim7600::parse_cgnssinfo(ex.payload("+CGNSSINFO:").unwrap()).unwrap();
            assert_eq!(info.fix_mode, opt_u8(row, "gnss_fix_mode"), "{ctx}");
            assert_eq!(info.sv_gps, opt_u8(row, "sv_gps"), "{ctx}");
            assert_eq!(info.sv_glonass, opt_u8(row, "sv_glonass"), "{ctx}");
            assert_eq!(info.sv_beidou, opt_u8(row, "sv_beidou"), "{ctx}");
            assert_close(
                &format!("{ctx} pdop"),
                info.pdop,
                cell_f64(row, "pdop"),
                1e-9,
            );
            assert_close(
                &format!("{ctx} hdop"),
                info.hdop,
                cell_f64(row, "hdop"),
                1e-9,
            );
            assert_close(
                &format!("{ctx} vdop"),
                info.vdop,
                cell_f64(row, "vdop"),
                1e-9,
            );
            if let Some(f) = &info.fix {
                let want = match info.fix_mode {
                    Some(2) => FixMode::TwoD,
                    _ => FixMode::ThreeD,
                };
                assert_eq!(f.mode, want, "{ctx}");
                assert_eq!(f.hdop, info.hdop, "{ctx}");
            }
            (info.fix, true)
        }
        _ => return,
    };
    match row["valid_fix"].as_str() {
        "true" => {
            let f = fix.unwrap_or_else(|| panic!("{ctx}: expected a fix"));
            assert_close(
                &format!("{ctx} lat"),
                Some(f.lat),
                cell_f64(row, "lat"),
                1e-9,
            );
            assert_close(
                &format!("{ctx} lon"),
                Some(f.lon),
                cell_f64(row, "lon"),
                1e-9,
            );
            assert_close(
                &format!("{ctx} alt"),
                f.alt_msl_m,
                cell_f64(row, "alt_msl_m"),
                1e-9,
            );
            let knots = f.speed_mps.map(|v| v * 3600.0 / 1852.0);
            assert_close(
                &format!("{ctx} speed"),
                knots,
                cell_f64(row, "speed_knots"),
                1e-9,
            );
            assert_close(
                &format!("{ctx} course"),
                f.course_deg,
                cell_f64(row, "course_deg"),
                1e-9,
            );
            let want = chrono::DateTime::parse_from_rfc3339(&row["utc"]).unwrap();
            assert_eq!(f.time.unwrap(), want, "{ctx}");
        }
        "false" => {
            assert!(fix.is_none(), "{ctx}: expected no fix, got {fix:?}");
            let _ = decoded_ok;
        }
        other => panic!("{ctx}: valid_fix {other:?}"),
    }
}

#[test]
fn every_transcript_matches_expected_csv() {
    let Some(dir) = m365_testdata::require(
        "every_transcript_matches_expected_csv",
        "testdata/gps/sim7600",
    ) else {
        return;
    };
    let rows = read_csv(&dir.join("expected.csv"));
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "at"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    let mut checked = 0;
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let exchanges = sim7600::exchanges(&std::fs::read(&path).unwrap());
        let expected: Vec<&Row> = rows.iter().filter(|r| r["file"] == name).collect();
        assert_eq!(exchanges.len(), expected.len(), "{name}: exchange count");
        for (ex, row) in exchanges.iter().zip(&expected) {
            let ctx = format!("{name} exchange {}", row["exchange"]);
            check_exchange(&ctx, ex, row);
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        rows.len(),
        "every expected row is covered by a transcript"
    );
}

#[test]
fn corrupted_reply_is_rejected_not_zeroed() {
    let Some(path) = m365_testdata::require(
        "corrupted_reply_is_rejected_not_zeroed",
        "testdata/gps/sim7600/cgpsinfo_fix_then_corrupt.at",
    ) else {
        return;
    };
    let ex = sim7600::exchanges(&std::fs::read(path).unwrap());
    let second = ex[1].payload("+CGPSINFO:").unwrap();
    assert!(matches!(
        sim7600::parse_cgpsinfo(second),
        Err(sim7600::InfoError::Field { index: 1, .. })
    ));
}

#[test]
fn nmea_port_without_fix_reports_no_fix_epochs() {
    let Some(path) = m365_testdata::require(
        "nmea_port_without_fix_reports_no_fix_epochs",
        "testdata/gps/sim7600/nmea_port_nofix.nmea",
    ) else {
        return;
    };
    let epochs = m365_gps::nmea::decode_all(&std::fs::read(path).unwrap());
    assert_eq!(epochs.len(), 3, "{epochs:?}");
    assert!(epochs.iter().all(|e| e.fix.is_none()));
}
