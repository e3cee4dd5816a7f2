//! Arbitrary lines as gpsd JSON: no panic, and any fix accepted is a real coordinate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m365_gps::gpsd::{GpsdDecoder, GpsdMessage};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut decoder = GpsdDecoder::new();
    for line in text.lines() {
        if let Ok(GpsdMessage::Tpv(Some(fix))) = decoder.push_line(line) {
            assert!(fix.lat.is_finite() && fix.lat.abs() <= 90.0, "{fix:?}");
            assert!(fix.lon.is_finite() && fix.lon.abs() <= 180.0, "{fix:?}");
        }
    }
});
