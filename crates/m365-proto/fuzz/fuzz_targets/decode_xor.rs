//! Decrypts arbitrary bytes as a XOR 55 AB frame with a keystream taken from the input, and
//! tries them as a key-recovery answer: no panic, and what decrypts re-encrypts to the same
//! bytes when the padding was zero.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use m365_proto::xor::Keystream;

fuzz_target!(|data: &[u8]| {
    let Some((&key_len, rest)) = data.split_first() else {
        return;
    };
    let (key, wire) = rest.split_at(usize::from(key_len).min(rest.len()));
    let keystream = Keystream::new(key.to_vec());
    if let Ok(frame) = keystream.decrypt(wire) {
        let again = keystream.encrypt(&frame);
        assert_eq!(again.len(), wire.len());
        assert_eq!(keystream.decrypt(&again), Ok(frame));
    }
    let mut growing = keystream.clone();
    if let Ok(added) = growing.extend_from_zero_read(wire) {
        assert_eq!(growing.len(), keystream.len() + added);
    }
});
