//! Arbitrary bytes as a stored spool row body, decoded as the spool does
//! (`serde_json::from_slice::<Record>`): no panic. A record that decodes is then published, so it
//! must re-encode in every encoding without a panic (`encode`/`encode_with` for telemetry, alone
//! and in a compact batch; `encode_event` for events), each payload must read back with the
//! decoders of its encoding, and the record must store and decode again.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365_pipeline::encoding::compact;
use m365_pipeline::encoding::json::{JsonEventV1, JsonV1};
use m365_pipeline::encoding::legacy::{LegacyEvent, LegacyTelemetry, NoFix};
use m365_pipeline::{Encoding, Record};

const ENCODINGS: [Encoding; 3] = [Encoding::Legacy, Encoding::Json, Encoding::Compact];

fn reads_back(encoding: Encoding, payload: &[u8], event: bool) {
    let ok = match (encoding, event) {
        (Encoding::Legacy, false) => serde_json::from_slice::<LegacyTelemetry>(payload).is_ok(),
        (Encoding::Json, false) => serde_json::from_slice::<JsonV1>(payload).is_ok(),
        (Encoding::Compact, false) => compact::decode(payload).is_ok(),
        (Encoding::Legacy, true) => serde_json::from_slice::<LegacyEvent>(payload).is_ok(),
        (Encoding::Json, true) => serde_json::from_slice::<JsonEventV1>(payload).is_ok(),
        (Encoding::Compact, true) => compact::decode_event(payload).is_ok(),
    };
    assert!(
        ok,
        "{} {} does not read back: {}",
        encoding.name(),
        if event { "event" } else { "telemetry" },
        String::from_utf8_lossy(payload)
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(record) = serde_json::from_slice::<Record>(data) else {
        return;
    };
    if record.is_event() {
        for encoding in ENCODINGS {
            if let Ok(payload) = encoding.encode_event(&record) {
                reads_back(encoding, &payload, true);
            }
            assert!(encoding.encode(std::slice::from_ref(&record)).is_err());
        }
    } else {
        let mut next = record.clone();
        next.seq = next.seq.wrapping_add(1);
        let batch = [record.clone(), next];
        for encoding in ENCODINGS {
            for no_fix in [NoFix::Zeros, NoFix::Null] {
                if let Ok(payload) = encoding.encode_with(std::slice::from_ref(&record), no_fix) {
                    reads_back(encoding, &payload, false);
                }
            }
            if let Ok(payload) = encoding.encode(&batch) {
                reads_back(encoding, &payload, false);
            }
            assert!(encoding.encode_event(&record).is_err());
        }
    }
    // What the spool writes for this record, it must read back.
    let stored = serde_json::to_vec(&record).expect("a decoded record serialises");
    if let Err(e) = serde_json::from_slice::<Record>(&stored) {
        panic!(
            "a stored record does not decode again ({e}): {}",
            String::from_utf8_lossy(&stored)
        );
    }
});
