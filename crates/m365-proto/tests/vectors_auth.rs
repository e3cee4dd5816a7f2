//! Runs every Mi-auth vector of `../shared/testdata/vectors.json` (categories `ecdh`,
//! `hkdf_sha256`, `hmac_sha256`, `did_encryption`, `registration`, `login`, `derived_parcels`)
//! against the crate. Entries are iterated, so a vector added to the file is tested without a code
//! change, and every field an entry carries must be checked: an unknown field fails the test
//! instead of being silently skipped.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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

/// Plays the device's side of one parcel into a client machine: announce, then (after the
/// client's `RCV_RDY`) all chunks. Returns everything the client wrote meanwhile.
fn play_parcel(
    feed: &mut dyn FnMut(&[u8]) -> Vec<Vec<u8>>,
    kind: m365_proto::parcel::ParcelType,
    payload: &[u8],
) -> Vec<Vec<u8>> {
    let mut sender = Sender::new(kind, payload.to_vec()).expect("payload fits");
    let announce = sender.poll_transmit().expect("announce");
    let mut written = feed(&announce);
    assert_eq!(
        written.first(),
        Some(&vec![0, 0, 1, 1]),
        "client answers RCV_RDY"
    );
    sender.handle_ack(Ack::Ready).expect("ready");
    while let Some(chunk) = sender.poll_transmit() {
        written.extend(feed(&chunk));
    }
    written
}

/// Answers a parcel the client announced (`RCV_RDY`, then `RCV_OK`); returns its payload and
/// what the client wrote after the `RCV_OK`.
fn take_parcel(
    feed: &mut dyn FnMut(&[u8]) -> Vec<Vec<u8>>,
    announce: &[u8],
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let Ok(Message::Announce { count, .. }) = Message::parse(announce) else {
        panic!("expected an announce, got {announce:02x?}");
    };
    let chunks = feed(&[0, 0, 1, 1]);
    assert_eq!(chunks.len(), usize::from(count), "all chunks back to back");
    let payload = chunks.iter().flat_map(|c| c[2..].to_vec()).collect();
    (payload, feed(&[0, 0, 1, 0]))
}

#[test]
fn registration_replayed_through_the_client_machine() {
    use m365_proto::gatt::Char;
    use m365_proto::pairing::{ClientConfig, ClientEvent, ClientPairing};
    use m365_proto::parcel::ParcelType;

    let Some(v) = common::vectors("registration_replayed_through_the_client_machine") else {
        return;
    };
    for value in common::category(&v, "registration") {
        let name = common::name(value);
        let hex32 = |k: &str| -> [u8; 32] { common::hex_field(value, k).try_into().expect("32") };
        let pair = KeyPair::from_private_bytes(&hex32("client_private_key_hex")).expect("key");
        let now = Instant::now();
        let mut client =
            ClientPairing::with_key_pair(now, pair, Did([0; 20]), ClientConfig::default());
        let first: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].data, [0xA2, 0, 0, 0], "{name}: R1");

        let mut upnp = Vec::new();
        let mut feed = |data: &[u8]| -> Vec<Vec<u8>> {
            client.handle_notification(now, Char::Avdtp, data);
            std::iter::from_fn(|| client.poll_transmit())
                .filter_map(|t| match t.char {
                    Char::Avdtp => Some(t.data),
                    _ => {
                        upnp.push(t.data);
                        None
                    }
                })
                .collect()
        };
        let info = common::hex_field(value, "device_info_hex");
        let after_info = play_parcel(&mut feed, ParcelType::PASS_THROUGH, &info);
        assert_eq!(
            after_info[1..],
            [vec![0, 0, 1, 0], vec![0, 0, 0, 3, 4, 0]],
            "{name}: R5, R7"
        );
        let (client_key, after_key) = take_parcel(&mut feed, &after_info[2]);
        assert_eq!(
            client_key,
            common::hex_field(value, "client_public_key_xy_hex"),
            "{name}: R9"
        );
        assert!(
            after_key.is_empty(),
            "{name}: the client waits for the device key"
        );

        let device_key = common::hex_field(value, "device_public_key_xy_hex");
        let after_device_key = play_parcel(&mut feed, ParcelType::ECC_PUBKEY, &device_key);
        assert_eq!(
            after_device_key[1..],
            [vec![0, 0, 1, 0], vec![0, 0, 0, 0, 2, 0]],
            "{name}: R14, R15"
        );
        let (sealed, after_did) = take_parcel(&mut feed, &after_device_key[2]);
        assert_eq!(
            sealed,
            common::hex_field(value, "did_ciphertext_with_tag_hex"),
            "{name}: R17"
        );
        assert!(after_did.is_empty());
        assert_eq!(
            upnp,
            [vec![0x15, 0, 0, 0], vec![0x13, 0, 0, 0]],
            "{name}: R6, R19"
        );

        client.handle_notification(now, Char::Upnp, &[0x11, 0, 0, 0]);
        let Some(ClientEvent::Registered(registration)) = client.poll_event() else {
            panic!("{name}: no registration after 11");
        };
        assert_eq!(
            registration.token.0.to_vec(),
            common::hex_field(value, "token_hex")
        );
        assert_eq!(
            registration.bind_key.to_vec(),
            common::hex_field(value, "bind_key_hex")
        );
        assert_eq!(
            registration.did.0.to_vec(),
            common::hex_field(value, "did_plaintext_hex")
        );
        assert!(!registration.did_invented);
    }
}

#[test]
fn login_replayed_through_the_client_machine() {
    use m365_proto::gatt::Char;
    use m365_proto::login::{ClientEvent, ClientLogin, Config};
    use m365_proto::parcel::ParcelType;

    let Some(v) = common::vectors("login_replayed_through_the_client_machine") else {
        return;
    };
    for value in common::category(&v, "login") {
        let name = common::name(value);
        let hex = |k: &str| common::hex_field(value, k);
        let token = Token(hex("token_hex").try_into().expect("12-byte token"));
        let app_random: [u8; 16] = hex("app_random_hex").try_into().expect("16 bytes");
        let now = Instant::now();
        let mut client = ClientLogin::with_app_random(now, app_random, token, Config::default());
        let first: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit())
            .map(|t| t.data)
            .collect();
        assert_eq!(
            first,
            [vec![0x24, 0, 0, 0], vec![0, 0, 0, 0x0B, 1, 0]],
            "{name}: L1, L2"
        );

        let mut feed = |data: &[u8]| -> Vec<Vec<u8>> {
            client.handle_notification(now, Char::Avdtp, data);
            std::iter::from_fn(|| client.poll_transmit())
                .map(|t| t.data)
                .collect()
        };
        let (sent_random, _) = take_parcel(&mut feed, &first[1]);
        assert_eq!(sent_random, app_random, "{name}: L4");
        let after_random =
            play_parcel(&mut feed, ParcelType::DEV_RANDOM, &hex("device_random_hex"));
        assert_eq!(after_random[1..], [vec![0, 0, 1, 0]], "{name}: L9");
        let after_proof = play_parcel(
            &mut feed,
            ParcelType::DEV_CONFIRMATION,
            &hex("device_info_hmac_hex"),
        );
        assert_eq!(
            after_proof[1..],
            [vec![0, 0, 1, 0], vec![0, 0, 0, 0x0A, 2, 0]],
            "{name}: L13, L14"
        );
        let (app_proof, _) = take_parcel(&mut feed, &after_proof[2]);
        assert_eq!(app_proof, hex("app_info_hmac_hex"), "{name}: L16");

        client.handle_notification(now, Char::Upnp, &[0x21, 0, 0, 0]);
        let Some(ClientEvent::LoggedIn(keys)) = client.poll_event() else {
            panic!("{name}: not logged in after 21");
        };
        assert_eq!(keys.dev_key.to_vec(), hex("dev_key_hex"));
        assert_eq!(keys.app_key.to_vec(), hex("app_key_hex"));
        assert_eq!(keys.dev_iv.to_vec(), hex("dev_iv_hex"));
        assert_eq!(keys.app_iv.to_vec(), hex("app_iv_hex"));
    }
}
