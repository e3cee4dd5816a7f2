//! Runs every Mi-auth vector of `../shared/testdata/vectors.json` (categories `ecdh`,
//! `hkdf_sha256`, `hmac_sha256`, `did_encryption`, `registration`, `login`, `derived_parcels`)
//! against the crate. Entries are iterated, so a vector added to the file is tested without a code
//! change, and every field an entry carries must be checked: an unknown field fails the test
//! instead of being silently skipped.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use m365_proto::crypto::{
    self, DID_AAD, DID_NONCE, DID_TAG_LEN, KeyPair, LOGIN_INFO, LoginRandoms, PublicKey,
    RegistrationKeys, SETUP_INFO, SharedSecret,
};
use m365_proto::keys::Token;
use m365_proto::pairing::Did;
use m365_proto::parcel::{Ack, Message, Receiver, Sender};
use serde_json::Value;

/// Fields that describe an entry rather than carry data to check.
const DESCRIPTIVE: &[&str] = &[
    "name",
    "source",
    "note",
    "verified",
    "expected",
    "salt_note",
    "device_info_definition",
    "app_info_definition",
];

/// An entry whose field reads are recorded, so `finish` can insist that all were used.
struct Entry<'a> {
    value: &'a Value,
    used: BTreeSet<String>,
}

impl<'a> Entry<'a> {
    fn new(value: &'a Value) -> Self {
        Entry {
            value,
            used: BTreeSet::new(),
        }
    }

    fn name(&self) -> &'a str {
        common::name(self.value)
    }

    fn has(&self, key: &str) -> bool {
        self.value.get(key).is_some()
    }

    fn hex(&mut self, key: &str) -> Vec<u8> {
        self.used.insert(key.to_owned());
        common::hex_field(self.value, key)
    }

    fn hex_n<const N: usize>(&mut self, key: &str) -> [u8; N] {
        let bytes = self.hex(key);
        bytes.as_slice().try_into().unwrap_or_else(|_| {
            panic!(
                "{}: {key} has {} bytes, expected {N}",
                self.name(),
                bytes.len()
            )
        })
    }

    fn str(&mut self, key: &str) -> &'a str {
        self.used.insert(key.to_owned());
        common::str_field(self.value, key)
    }

    fn raw(&mut self, key: &str) -> &'a Value {
        self.used.insert(key.to_owned());
        self.value
            .get(key)
            .unwrap_or_else(|| panic!("{}: missing field {key}", self.name()))
    }

    fn finish(self) {
        let name = self.name();
        assert!(
            !common::is_exceptional(self.value),
            "{name}: marked unverified/NONSTANDARD; decide how this category treats it"
        );
        let fields = self.value.as_object().expect("entries are objects");
        for key in fields.keys() {
            assert!(
                self.used.contains(key) || DESCRIPTIVE.contains(&key.as_str()),
                "{name}: field {key:?} is not checked by this test"
            );
        }
    }
}

/// A decimal string as a 32-byte big-endian integer (the vectors give private keys both ways).
fn decimal_to_be32(decimal: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for digit in decimal.bytes() {
        assert!(digit.is_ascii_digit(), "not a decimal number: {decimal}");
        let mut carry = u32::from(digit - b'0');
        for byte in out.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xFF) as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "decimal does not fit in 32 bytes: {decimal}");
    }
    out
}

/// The private key of an entry, checking that the hex and decimal forms agree when both exist.
fn private_key(entry: &mut Entry<'_>, prefix: &str) -> KeyPair {
    let hex_key = format!("{prefix}private_key_hex");
    let dec_key = format!("{prefix}private_key_decimal");
    let bytes: [u8; 32] = entry.hex_n(&hex_key);
    if entry.has(&dec_key) {
        let decimal = entry.str(&dec_key);
        assert_eq!(
            decimal_to_be32(decimal),
            bytes,
            "{}: hex and decimal differ",
            entry.name()
        );
    }
    KeyPair::from_private_bytes(&bytes).unwrap_or_else(|e| panic!("{}: {e}", entry.name()))
}

#[test]
fn ecdh() {
    let Some(v) = common::vectors("ecdh") else {
        return;
    };
    for value in common::category(&v, "ecdh") {
        let mut e = Entry::new(value);
        if e.has("curve") {
            assert!(e.str("curve").starts_with("P-256"), "{}", e.name());
        }
        if e.has("private_key_hex") {
            let pair = private_key(&mut e, "");
            if e.has("public_key_xy_hex") {
                let public = e.hex("public_key_xy_hex");
                assert_eq!(pair.public_key().to_wire().to_vec(), public, "{}", e.name());
            }
            if e.has("peer_public_key_xy_hex") {
                let peer = PublicKey::from_wire(&e.hex("peer_public_key_xy_hex"))
                    .unwrap_or_else(|err| panic!("{}: {err}", e.name()));
                let secret: [u8; 32] = e.hex_n("shared_secret_hex");
                assert_eq!(
                    pair.shared_secret(&peer),
                    SharedSecret(secret),
                    "{}",
                    e.name()
                );
            }
        } else {
            // A bare point: it must parse and re-encode to the same 64 bytes.
            let wire = e.hex("public_key_xy_hex");
            let key =
                PublicKey::from_wire(&wire).unwrap_or_else(|err| panic!("{}: {err}", e.name()));
            assert_eq!(key.to_wire().to_vec(), wire, "{}", e.name());
        }
        e.finish();
    }
}

#[test]
fn hkdf_sha256() {
    let Some(v) = common::vectors("hkdf_sha256") else {
        return;
    };
    for value in common::category(&v, "hkdf_sha256") {
        let mut e = Entry::new(value);
        let ikm = e.hex("ikm_hex");
        let salt = match e.raw("salt_hex") {
            Value::Null => None,
            _ => Some(e.hex("salt_hex")),
        };
        let info = e.str("info_ascii");
        let length = e.raw("length").as_u64();
        assert_eq!(
            length,
            Some(64),
            "{}: this crate derives 64 bytes",
            e.name()
        );
        let okm = crypto::hkdf_sha256(&ikm, salt.as_deref(), info.as_bytes());
        assert_eq!(okm.to_vec(), e.hex("okm_hex"), "{}", e.name());
        e.finish();
    }
}

#[test]
fn hmac_sha256() {
    let Some(v) = common::vectors("hmac_sha256") else {
        return;
    };
    for value in common::category(&v, "hmac_sha256") {
        let mut e = Entry::new(value);
        let mac = crypto::hmac_sha256(&e.hex("key_hex"), &e.hex("data_hex"));
        assert_eq!(mac.to_vec(), e.hex("mac_hex"), "{}", e.name());
        e.finish();
    }
}

#[test]
fn did_encryption() {
    let Some(v) = common::vectors("did_encryption") else {
        return;
    };
    for value in common::category(&v, "did_encryption") {
        let mut e = Entry::new(value);
        assert_eq!(e.hex("nonce_hex"), DID_NONCE, "{}", e.name());
        assert_eq!(e.str("aad_ascii").as_bytes(), DID_AAD, "{}", e.name());
        assert_eq!(e.raw("tag_length").as_u64(), Some(DID_TAG_LEN as u64));
        let key: [u8; 16] = e.hex_n("key_hex");
        let plain = e.hex("plaintext_hex");
        let sealed = e.hex("ciphertext_with_tag_hex");
        assert_eq!(
            crypto::did_encrypt(&key, &plain).as_ref(),
            Ok(&sealed),
            "{}",
            e.name()
        );
        assert_eq!(
            crypto::did_decrypt(&key, &sealed),
            Ok(plain),
            "{}",
            e.name()
        );
        e.finish();
    }
}

#[test]
fn registration() {
    let Some(v) = common::vectors("registration") else {
        return;
    };
    for value in common::category(&v, "registration") {
        let mut e = Entry::new(value);
        let name = e.name();
        let client = private_key(&mut e, "client_");
        assert_eq!(
            client.public_key().to_wire().to_vec(),
            e.hex("client_public_key_xy_hex"),
            "{name}: client public key"
        );
        let device = PublicKey::from_wire(&e.hex("device_public_key_xy_hex"))
            .unwrap_or_else(|err| panic!("{name}: {err}"));

        // The DID as the client takes it from the device info parcel.
        let info = e.hex("device_info_hex");
        let did_plain: [u8; 20] = e.hex_n("did_plaintext_hex");
        assert_eq!(
            info.get(4..),
            Some(&did_plain[..]),
            "{name}: info bytes 4..24"
        );
        assert_eq!(
            Did(did_plain).to_string(),
            e.str("did_ascii_after_leading_zero")
        );

        let secret = client.shared_secret(&device);
        assert_eq!(secret.0, e.hex_n::<32>("shared_secret_hex"), "{name}: ECDH");
        assert_eq!(e.str("hkdf_info_ascii").as_bytes(), SETUP_INFO);
        assert_eq!(
            e.raw("hkdf_salt"),
            &Value::Null,
            "{name}: setup HKDF has no salt"
        );
        let okm = crypto::hkdf_sha256(&secret.0, None, SETUP_INFO);
        assert_eq!(okm.to_vec(), e.hex("okm_hex"), "{name}: okm");

        let keys = RegistrationKeys::derive(&secret);
        assert_eq!(keys.token, Token(e.hex_n("token_hex")), "{name}: token");
        assert_eq!(
            keys.bind_key,
            e.hex_n::<16>("bind_key_hex"),
            "{name}: bind key"
        );
        assert_eq!(
            keys.did_key,
            e.hex_n::<16>("did_key_a_hex"),
            "{name}: key A"
        );
        let sealed = e.hex("did_ciphertext_with_tag_hex");
        assert_eq!(
            keys.encrypt_did(&did_plain).to_vec(),
            sealed,
            "{name}: DID ciphertext"
        );
        // The device side: same keys from the same secret, the tag verifies, the DID comes back.
        assert_eq!(
            keys.decrypt_did(&sealed),
            Ok(did_plain),
            "{name}: device decrypts"
        );
        e.finish();
    }
}

#[test]
fn login() {
    let Some(v) = common::vectors("login") else {
        return;
    };
    for value in common::category(&v, "login") {
        let mut e = Entry::new(value);
        let name = e.name();
        let token = Token(e.hex_n("token_hex"));
        let randoms = LoginRandoms {
            app: e.hex_n("app_random_hex"),
            dev: e.hex_n("device_random_hex"),
        };
        assert_eq!(randoms.salt().to_vec(), e.hex("salt_hex"), "{name}: salt");
        assert_eq!(
            randoms.salt_inv().to_vec(),
            e.hex("salt_inv_hex"),
            "{name}: salt_inv"
        );
        assert_eq!(e.str("hkdf_info_ascii").as_bytes(), LOGIN_INFO);
        let okm = crypto::hkdf_sha256(token.as_bytes(), Some(&randoms.salt()), LOGIN_INFO);
        assert_eq!(okm.to_vec(), e.hex("okm_hex"), "{name}: okm");

        let keys = randoms.session_keys(&token);
        assert_eq!(
            keys.dev_key,
            e.hex_n::<16>("dev_key_hex"),
            "{name}: dev_key"
        );
        assert_eq!(
            keys.app_key,
            e.hex_n::<16>("app_key_hex"),
            "{name}: app_key"
        );
        assert_eq!(keys.dev_iv, e.hex_n::<4>("dev_iv_hex"), "{name}: dev_iv");
        assert_eq!(keys.app_iv, e.hex_n::<4>("app_iv_hex"), "{name}: app_iv");

        let dev_proof = e.hex("device_info_hmac_hex");
        let app_proof = e.hex("app_info_hmac_hex");
        assert_eq!(
            randoms.device_proof(&keys).to_vec(),
            dev_proof,
            "{name}: dev_info"
        );
        assert_eq!(
            randoms.app_proof(&keys).to_vec(),
            app_proof,
            "{name}: app_info"
        );
        assert!(randoms.verify_device_proof(&keys, &dev_proof), "{name}");
        assert!(randoms.verify_app_proof(&keys, &app_proof), "{name}");
        // The two proofs are not interchangeable, and one flipped bit fails the check.
        assert!(!randoms.verify_device_proof(&keys, &app_proof), "{name}");
        let mut altered = dev_proof.clone();
        altered[31] ^= 1;
        assert!(!randoms.verify_device_proof(&keys, &altered), "{name}");
        e.finish();
    }
}

#[test]
fn derived_parcels() {
    let Some(v) = common::vectors("derived_parcels") else {
        return;
    };
    for value in common::category(&v, "derived_parcels") {
        let mut e = Entry::new(value);
        let name = e.name();
        let announce = e.hex("announce_hex");
        let chunks: Vec<Vec<u8>> = e
            .raw("chunks_hex")
            .as_array()
            .unwrap_or_else(|| panic!("{name}: chunks_hex is not an array"))
            .iter()
            .map(|c| hex::decode(c.as_str().expect("hex string")).expect("hex"))
            .collect();
        let Ok(Message::Announce { kind, count }) = Message::parse(&announce) else {
            panic!("{name}: announce does not parse as one");
        };
        assert_eq!(usize::from(count), chunks.len(), "{name}: count");
        let payload: Vec<u8> = chunks.iter().flat_map(|c| c[2..].to_vec()).collect();

        // Our sender produces exactly the announce and the chunks.
        let mut sender = Sender::new(kind, payload.clone()).expect("payload fits");
        assert_eq!(
            sender.poll_transmit(),
            Some(announce.clone()),
            "{name}: announce"
        );
        assert_eq!(sender.handle_ack(Ack::Ready), Ok(false));
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| sender.poll_transmit()).collect();
        assert_eq!(sent, chunks, "{name}: chunks");

        // Our receiver rebuilds the payload from them and confirms.
        let now = Instant::now();
        let mut receiver = Receiver::new();
        receiver.expect(now, kind, payload.len());
        assert_eq!(
            receiver.handle(now, &Message::parse(&announce).expect("announce")),
            None
        );
        assert_eq!(
            receiver.poll_transmit(),
            Some(vec![0, 0, 1, 1]),
            "{name}: RCV_RDY"
        );
        let mut done = None;
        for chunk in &chunks {
            assert!(done.is_none(), "{name}: completed before the last chunk");
            done = receiver.handle(now, &Message::parse(chunk).expect("chunk"));
        }
        assert_eq!(done, Some((kind, payload)), "{name}: payload");
        assert_eq!(
            receiver.poll_transmit(),
            Some(vec![0, 0, 1, 0]),
            "{name}: RCV_OK"
        );
        e.finish();
    }
}
