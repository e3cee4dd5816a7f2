//! The `compact` decoders (`encoding::compact::decode` for telemetry batches, `decode_event` for
//! events) on arbitrary bytes as a payload, and on the input deflated first, so the JSON
//! document inside is fuzzed too (a mutated zlib stream rarely survives its checksum): no panic,
//! bounded inflation, and every column of a decoded batch reads (scale and deltas undone) without
//! a panic or overflow.
#![no_main]
#![forbid(unsafe_code)]

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use libfuzzer_sys::fuzz_target;
use m365_pipeline::encoding::compact;

fn check(payload: &[u8]) {
    if let Ok(batch) = compact::decode(payload) {
        for field in &batch.fields {
            // A header may name more fields than the document has columns.
            let Some(column) = batch.column(&field.name) else {
                assert!(batch.value(&field.name, 0).is_none());
                continue;
            };
            // `value` is quadratic over a column; the first entries and one past the end suffice.
            for index in (0..column.len().min(64)).chain([column.len(), usize::MAX]) {
                let value = batch.value(&field.name, index);
                if index < column.len() {
                    let same = match (value, column[index]) {
                        (Some(a), Some(b)) => a == b || (a.is_nan() && b.is_nan()),
                        (a, b) => a.is_none() == b.is_none(),
                    };
                    assert!(
                        same,
                        "{}[{index}]: {value:?} vs {:?}",
                        field.name, column[index]
                    );
                }
            }
        }
        let _ = batch.column("no such field");
    }
    if let Ok(event) = compact::decode_event(payload) {
        let _ = event.kind();
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
    z.write_all(data)
        .expect("deflating into memory cannot fail");
    check(&z.finish().expect("deflating into memory cannot fail"));
});
