//! Arbitrary bytes as a SIM7600 AT-port stream, and arbitrary text as reply payloads: no panic,
//! and any position accepted is a real coordinate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m365_gps::sim7600::{ExchangeReader, parse_cgnssinfo, parse_cgps_status, parse_cgpsinfo};

fn check(fix: Option<&m365_gps::Fix>) {
    if let Some(fix) = fix {
        assert!(fix.lat.is_finite() && fix.lat.abs() <= 90.0, "{fix:?}");
        assert!(fix.lon.is_finite() && fix.lon.abs() <= 180.0, "{fix:?}");
        assert!(fix.time.is_some(), "a SIM7600 fix always has its time");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut reader = ExchangeReader::new();
    for part in data.chunks(17) {
        for ex in reader.push(part) {
            if let Some(p) = ex.payload("+CGPSINFO:") {
                if let Ok(fix) = parse_cgpsinfo(p) {
                    check(fix.as_ref());
                }
            }
            if let Some(p) = ex.payload("+CGNSSINFO:") {
                if let Ok(info) = parse_cgnssinfo(p) {
                    check(info.fix.as_ref());
                }
            }
            if let Some(p) = ex.payload("+CGPS:") {
                let _ = parse_cgps_status(p);
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(fix) = parse_cgpsinfo(&text) {
        check(fix.as_ref());
    }
    if let Ok(info) = parse_cgnssinfo(&text) {
        check(info.fix.as_ref());
    }
});
