//! Arbitrary bytes as an MQTT command payload (`commands::message::parse`): no panic, at a
//! realistic arrival time and at one near the end of representable time (where a `ttl` must not
//! overflow); an accepted command has a valid id, and every refusal formats and carries its id
//! only when the id is valid.
#![no_main]
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use m365::commands::message::{self, MAX_ID_CHARS, MAX_PAYLOAD};
use m365::commands::{CommandId, Refusal};

/// 2025-06-01T12:00:00Z.
const NOON: u64 = 1_748_779_200;

fn check_id(id: &CommandId) {
    let s = id.as_str();
    assert!(!s.is_empty() && s.chars().count() <= MAX_ID_CHARS, "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
}

fn check(data: &[u8], received: SystemTime) {
    match message::parse(data, received) {
        Ok(command) => {
            assert!(data.len() <= MAX_PAYLOAD);
            check_id(&command.id);
            let _ = command.action.to_string();
            let _ = command.action.name().as_str();
        }
        Err(malformed) => {
            if let Some(id) = &malformed.id {
                check_id(id);
            }
            let refusal = Refusal::Malformed(malformed.error);
            assert_eq!(refusal.code(), "malformed");
            let _ = refusal.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, SystemTime::UNIX_EPOCH + Duration::from_secs(NOON));
    // Linux represents times up to i64::MAX seconds after the epoch.
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 - 1);
    check(data, far);
});
