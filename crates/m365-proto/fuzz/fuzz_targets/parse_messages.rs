//! Parses arbitrary bytes as an AVDTP message (`parcel::Message::parse`) and as a UPNP control
//! word (`control::Control::parse`): no panic, and whatever parses re-encodes to bytes that parse
//! back to the same value (trailing bytes a peer may add are the only thing dropped).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365_proto::control::Control;
use m365_proto::parcel::{CHUNK_DATA_LEN, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse(data) {
        let encoded = message.encode();
        assert!(
            encoded.len() <= data.len(),
            "encoding never grows a message"
        );
        assert_eq!(Message::parse(&encoded), Ok(message));
        if let Message::Chunk { index, data } = message {
            assert_ne!(index, 0);
            assert!(data.len() <= CHUNK_DATA_LEN);
        }
    }
    match Control::parse(data) {
        Ok(word) => {
            assert_eq!(word.to_bytes().as_slice(), data);
            assert_eq!(Control::from_u32(word.to_u32()), word);
        }
        Err(e) => assert_eq!(e.found, data.len()),
    }
});
