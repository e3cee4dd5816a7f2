//! Feeds arbitrary bytes, cut at arbitrary points, to a MiAuth reassembler: it must never panic,
//! keep its buffer bounded, and only hand out frames whose length and checksum are right.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365_proto::model::Generation;
use m365_proto::reassembly::{DEFAULT_MAX_LEN, Reassembler};

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(Generation::MiAuth);
    // The first byte chooses the chunk size, so notification boundaries vary too.
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    for chunk in rest.chunks(usize::from(size % 40) + 1) {
        r.push(chunk);
        assert!(r.buffered() <= usize::from(DEFAULT_MAX_LEN) + 16 + 64);
        while let Some(frame) = r.next_frame() {
            let len = frame.get(2).copied().expect("a frame has a LEN byte");
            assert_eq!(frame.len(), r.frame_len(len));
        }
    }
    r.reset();
    assert_eq!(r.buffered(), 0);
});
