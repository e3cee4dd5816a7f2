//! Arbitrary bytes as the command replay file `commands-seen.json` (`ReplayMemory::decode`,
//! what `ReplayFile::read` does with the file's contents): no panic, at a realistic start time
//! and at the epoch (where almost nothing has run out yet); a refusal formats as the damaged
//! file it reports; a memory that loads encodes (`ReplayMemory::encode`, what
//! `ReplayFile::save` writes) to a file that loads back as the same memory and encodes to the
//! same bytes, and loaded later it only forgets.
#![no_main]
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use m365::commands::replay::{REPLAY_FILE, RETENTION, ReplayFileError, ReplayMemory};

/// 2025-06-01T12:00:00Z.
const NOON: u64 = 1_748_779_200;

fn check(data: &[u8], now: SystemTime) {
    match ReplayMemory::decode(data, now) {
        Ok(memory) => {
            assert_eq!(memory.is_empty(), memory.len() == 0);
            let encoded = memory.encode();
            match ReplayMemory::decode(&encoded, now) {
                Ok(again) => {
                    assert_eq!(again, memory, "the saved memory reads back differently");
                    assert_eq!(
                        again.encode(),
                        encoded,
                        "the saved memory saves differently"
                    );
                }
                Err(e) => panic!(
                    "the saved memory does not read back: {e}\n{}",
                    String::from_utf8_lossy(&encoded)
                ),
            }
            let later = now + RETENTION;
            let after = ReplayMemory::decode(&encoded, later)
                .unwrap_or_else(|e| panic!("the saved memory does not read back later: {e}"));
            assert!(after.len() <= memory.len(), "a later start remembers more");
        }
        Err(reason) => {
            assert!(!reason.is_empty());
            let error = ReplayFileError::Damaged {
                path: REPLAY_FILE.into(),
                reason,
            };
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, SystemTime::UNIX_EPOCH + Duration::from_secs(NOON));
    check(data, SystemTime::UNIX_EPOCH);
});
