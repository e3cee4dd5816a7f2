//! Arbitrary bytes, in arbitrary chunks, through the sentence reader and the whole NMEA decoder:
//! no panic, bounded sentences, only checksum-valid output, only sane fixes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use m365_gps::nmea::{reader::MAX_SENTENCE_LEN as MAX, NmeaDecoder, ReaderItem, SentenceReader};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so chunk boundaries are fuzzed too.
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 32) + 1;

    let mut reader = SentenceReader::new();
    for part in rest.chunks(chunk) {
        for item in reader.push(part) {
            if let ReaderItem::Sentence(s) = item {
                assert!(s.body.len() <= MAX, "sentence longer than the bound");
                assert!(s.body.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            }
        }
    }

    let mut decoder = NmeaDecoder::new();
    let mut epochs = Vec::new();
    for part in rest.chunks(chunk) {
        epochs.extend(decoder.push(part));
    }
    epochs.extend(decoder.flush());
    for fix in epochs.iter().filter_map(|e| e.fix.as_ref()) {
        assert!(fix.lat.is_finite() && fix.lat.abs() <= 90.0, "{fix:?}");
        assert!(fix.lon.is_finite() && fix.lon.abs() <= 180.0, "{fix:?}");
        assert_ne!(fix.mode, m365_gps::FixMode::NoFix);
    }
});
