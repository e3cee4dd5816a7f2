//! One MQTT message as the ingest decodes it (`decode::decode`): the first input byte picks the
//! topic kind (bits 0–1: telemetry, availability, status, ride event), whether the message
//! says `application/zlib` (bit 2) and whether the rest is deflated before decoding (bit 3, so
//! the JSON inside a `compact` message is reached past zlib's checksum); the rest is the
//! payload. No panic; decoded telemetry has at least one record, each with a scooter id, and
//! turns into the earlier server's rows (`compat::rows`) without a panic. The payload is also
//! taken as a received topic and matched against the default filters.
#![no_main]
#![forbid(unsafe_code)]

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use libfuzzer_sys::fuzz_target;
use m365_ingest::compat;
use m365_ingest::config::{
    DEFAULT_AVAILABILITY, DEFAULT_EVENTS, DEFAULT_STATUS, DEFAULT_TELEMETRY,
};
use m365_ingest::decode::{self, Decoded, ZLIB_CONTENT_TYPE};
use m365_ingest::topic::{self, TopicKind, TopicMatch};

const KINDS: [TopicKind; 4] = [
    TopicKind::Telemetry,
    TopicKind::Availability,
    TopicKind::Status,
    TopicKind::RideEvent,
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let topic = TopicMatch {
        kind: KINDS[usize::from(control & 0b11)],
        scooter_id: "scooter-1".to_owned(),
    };
    let content_type = (control & 0b100 != 0).then_some(ZLIB_CONTENT_TYPE);
    let deflated;
    let payload = if control & 0b1000 != 0 {
        let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
        z.write_all(rest)
            .expect("deflating into memory cannot fail");
        deflated = z.finish().expect("deflating into memory cannot fail");
        &deflated[..]
    } else {
        rest
    };
    match decode::decode(&topic, content_type, payload) {
        Ok(Decoded::Records(records)) => {
            assert_eq!(topic.kind, TopicKind::Telemetry);
            assert!(!records.is_empty());
            for record in &records {
                assert!(!record.scooter_id.is_empty());
                let _ = compat::rows(record);
            }
        }
        Ok(Decoded::Event(event)) => {
            assert!(matches!(
                topic.kind,
                TopicKind::Availability | TopicKind::Status
            ));
            assert_eq!(event.kind, topic.kind);
        }
        Ok(Decoded::RideEvent(event)) => {
            assert_eq!(topic.kind, TopicKind::RideEvent);
            assert!(!event.event.is_empty() && !event.scooter_id.is_empty());
        }
        Err(rejection) => {
            let _ = rejection.to_string();
        }
    }
    let _ = decode::sniff(content_type, payload);
    if let Ok(received) = std::str::from_utf8(rest) {
        for filter in [
            DEFAULT_TELEMETRY,
            DEFAULT_AVAILABILITY,
            DEFAULT_STATUS,
            DEFAULT_EVENTS,
        ] {
            if let Some(Some(level)) = topic::matches(filter, received) {
                assert!(!level.contains('/'));
            }
        }
    }
});
