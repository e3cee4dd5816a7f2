//! Registration and login end to end: the client machines against the device machines over the
//! in-memory [`support::Pair`], with seeded random sources and a fake clock. Covers the happy
//! path (same token, same session keys, deterministic transcript), every failure path the
//! protocol documents, the encrypted UART over the derived keys, and property tests that no
//! byte sequence makes a machine panic.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use m365_proto::control::Refusal;
use m365_proto::crypto::{CryptoError, LoginRandoms};
use m365_proto::encrypted::UartCipher;
use m365_proto::frame::Frame;
use m365_proto::gatt::{Char, Transmit};
use m365_proto::keys::{Role, SessionKeys, Token};
use m365_proto::login::{self, ClientLogin, DeviceLogin, LoginError};
use m365_proto::pairing::{
    self, ClientConfig, ClientPairing, DeviceConfig, DevicePairing, Did, PairingError, Registration,
};
use m365_proto::parcel::{Ack, Channel, Message, ParcelType, Progress};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{Fate, Pair, Record};

const DID: &[u8; 20] = b"\0blt.4.18n58266kgg00";

type Registering = Pair<ClientPairing, DevicePairing<StdRng>>;
type LoggingIn = Pair<ClientLogin, DeviceLogin<StdRng>>;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn device(seed: u64, did: Option<Did>) -> DevicePairing<StdRng> {
    DevicePairing::new(rng(seed ^ 0xD), did, DeviceConfig::default())
}

fn registering(seed: u64, now: Instant, device: DevicePairing<StdRng>) -> Registering {
    let client = ClientPairing::new(now, &mut rng(seed), ClientConfig::default());
    Pair::new(client, device, now)
}

fn beeped(pair: &Registering) -> bool {
    pair.device_events
        .iter()
        .any(|e| matches!(e, pairing::DeviceEvent::Beep))
}

/// Runs a registration, pressing the button 1 s after the beep.
fn register(pair: &mut Registering) {
    if pair.run_until(Duration::from_secs(60), beeped) {
        pair.now += Duration::from_secs(1);
        pair.device.press_button(pair.now);
    }
    pair.run();
}

fn registered(pair: &Registering) -> (Registration, Token, Did) {
    let client = pair.client_events.iter().find_map(|e| match e {
        pairing::ClientEvent::Registered(r) => Some(r.clone()),
        _ => None,
    });
    let device = pair.device_events.iter().find_map(|e| match e {
        pairing::DeviceEvent::Registered { token, did } => Some((token.clone(), *did)),
        _ => None,
    });
    match (client, device) {
        (Some(c), Some((token, did))) => (c, token, did),
        other => panic!(
            "registration did not complete: {other:?}\nclient: {:?}\ndevice: {:?}",
            pair.client_events, pair.device_events
        ),
    }
}

fn logging_in(
    seed: u64,
    now: Instant,
    client_token: Token,
    device_token: Option<Token>,
) -> LoggingIn {
    let client = ClientLogin::new(
        now,
        &mut rng(seed ^ 0x10),
        client_token,
        login::Config::default(),
    );
    let device = DeviceLogin::new(rng(seed ^ 0x20), device_token, login::Config::default());
    Pair::new(client, device, now)
}

fn logged_in(pair: &LoggingIn) -> (SessionKeys, SessionKeys) {
    let client = pair.client_events.iter().find_map(|e| match e {
        login::ClientEvent::LoggedIn(k) => Some(k.clone()),
        _ => None,
    });
    let device = pair.device_events.iter().find_map(|e| match e {
        login::DeviceEvent::LoggedIn(k) => Some(k.clone()),
        _ => None,
    });
    match (client, device) {
        (Some(c), Some(d)) => (c, d),
        other => panic!(
            "login did not complete: {other:?}\nclient: {:?}\ndevice: {:?}",
            pair.client_events, pair.device_events
        ),
    }
}

fn client_failure(pair: &Registering) -> Option<PairingError> {
    pair.client_events.iter().find_map(|e| match e {
        pairing::ClientEvent::Failed(err) => Some(err.clone()),
        _ => None,
    })
}

fn login_failure(pair: &LoggingIn) -> Option<LoginError> {
    pair.client_events.iter().find_map(|e| match e {
        login::ClientEvent::Failed(err) => Some(err.clone()),
        _ => None,
    })
}

/// Registration then login for one seed: returns both transcripts and the session keys.
fn full_handshake(seed: u64) -> (Vec<Record>, Vec<Record>, SessionKeys) {
    let t0 = Instant::now();
    let mut reg = registering(seed, t0, device(seed, Some(Did(*DID))));
    register(&mut reg);
    let (registration, device_token, device_did) = registered(&reg);
    assert_eq!(
        registration.token, device_token,
        "both sides hold the same token"
    );
    assert_eq!(device_did, Did(*DID));
    assert_eq!(registration.did, Did(*DID));
    assert!(!registration.did_invented);

    let mut log = logging_in(
        seed,
        reg.now,
        registration.token.clone(),
        Some(device_token),
    );
    log.run();
    let (client_keys, device_keys) = logged_in(&log);
    assert_eq!(
        client_keys, device_keys,
        "both sides derive the same session keys"
    );
    (reg.transcript, log.transcript, client_keys)
}

#[test]
fn registration_and_login_agree_and_are_deterministic() {
    let (reg_a, log_a, keys_a) = full_handshake(7);
    let (reg_b, log_b, keys_b) = full_handshake(7);
    assert_eq!(reg_a, reg_b, "same seed, same registration transcript");
    assert_eq!(log_a, log_b, "same seed, same login transcript");
    assert_eq!(keys_a, keys_b);
    let (reg_c, _, keys_c) = full_handshake(8);
    assert_ne!(reg_a, reg_c, "another seed, other key pairs");
    assert_ne!(keys_a, keys_c);

    // The documented message sequence (§3.3): R1, R3, R5, R6, R7 from the client ...
    let client: Vec<Vec<u8>> = reg_a
        .iter()
        .filter(|r| r.from == Role::Client)
        .map(|r| r.transmit.data.clone())
        .collect();
    assert_eq!(client[0], [0xA2, 0, 0, 0]);
    assert_eq!(client[1], [0, 0, 1, 1]);
    assert_eq!(client[2], [0, 0, 1, 0]);
    assert_eq!(client[3], [0x15, 0, 0, 0]);
    assert_eq!(client[4], [0, 0, 0, 3, 4, 0]);
    assert_eq!(client.last().map(Vec::as_slice), Some(&[0x13, 0, 0, 0][..]));
    // ... and the device's info parcel carries its DID, its last word is 11.
    let device: Vec<Vec<u8>> = reg_a
        .iter()
        .filter(|r| r.from == Role::Device)
        .map(|r| r.transmit.data.clone())
        .collect();
    assert_eq!(device[0], [0, 0, 0, 0, 2, 0]);
    assert_eq!(device[1][2..6], [1, 0, 0, 0]);
    assert_eq!(device[1][6..], DID[..14]);
    assert_eq!(device.last().map(Vec::as_slice), Some(&[0x11, 0, 0, 0][..]));
    // Login ends with 21 on UPNP.
    let last = log_a.last().expect("login transcript");
    assert_eq!((last.from, last.transmit.char), (Role::Device, Char::Upnp));
    assert_eq!(last.transmit.data, [0x21, 0, 0, 0]);
}

#[test]
fn device_without_did_gets_an_invented_one_and_stores_it() {
    let t0 = Instant::now();
    let mut pair = registering(3, t0, device(3, None));
    register(&mut pair);
    let (registration, _, device_did) = registered(&pair);
    assert!(registration.did_invented);
    assert_eq!(
        registration.did, device_did,
        "the device adopts the client's DID"
    );
    assert!(registration.did.to_string().starts_with("blt.4."));
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, pairing::ClientEvent::DidInvented(d) if *d == registration.did))
    );
    // The info parcel was the 4-byte header only.
    assert_eq!(
        pair.sent_by(Role::Device)[..2],
        [vec![0, 0, 0, 0, 1, 0], vec![1, 0, 1, 0, 0, 0]]
    );
    let (_, device, _) = pair.into_parts();
    assert_eq!(device.did(), Some(device_did));
}

#[test]
fn button_never_pressed_then_retry_after_press_succeeds() {
    let t0 = Instant::now();
    let mut pair = registering(11, t0, device(11, Some(Did(*DID))));
    pair.run();
    assert!(beeped(&pair));
    let err = client_failure(&pair).expect("client gives up");
    assert!(
        matches!(err, PairingError::ButtonNotPressed { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("press the power button"), "{err}");
    // The client gave up exactly 3 s after the key announce, which went out at t0.
    assert_eq!(pair.now - t0, Duration::from_secs(3));
    assert!(
        !pair.sent_by(Role::Device).contains(&vec![0, 0, 1, 1]),
        "the device never answered the key announce"
    );

    // The driver disconnects; the user presses 1 s later (4 s after the beep); 5 s pass.
    let (_, mut device, now) = pair.into_parts();
    device.disconnected();
    device.press_button(now + Duration::from_secs(1));
    let retry_at = now + Duration::from_secs(6);
    let mut retry = registering(12, retry_at, device);
    retry.run();
    assert!(
        !beeped(&retry),
        "the open window lets the retry through without a beep"
    );
    let (registration, token, _) = registered(&retry);
    assert_eq!(registration.token, token);
}

#[test]
fn a_press_too_long_after_the_beep_does_not_count() {
    let t0 = Instant::now();
    let mut pair = registering(13, t0, device(13, Some(Did(*DID))));
    pair.run();
    let (_, mut device, now) = pair.into_parts();
    device.disconnected();
    // The beep was at t0; 3 s of waiting plus 3 s is beyond the 5 s allowed.
    device.press_button(now + Duration::from_secs(3));
    let mut retry = registering(14, now + Duration::from_secs(5), device);
    retry.run();
    assert!(beeped(&retry), "still locked: it beeps again");
    assert!(matches!(
        client_failure(&retry),
        Some(PairingError::ButtonNotPressed { .. })
    ));
}

#[test]
fn press_while_the_key_announce_is_pending_answers_it() {
    let t0 = Instant::now();
    let mut pair = registering(15, t0, device(15, Some(Did(*DID))));
    assert!(pair.run_until(Duration::from_secs(60), beeped));
    pair.now += Duration::from_millis(2500);
    pair.device.press_button(pair.now);
    pair.run();
    let (registration, token, _) = registered(&pair);
    assert_eq!(registration.token, token);
    assert!(client_failure(&pair).is_none());
}

#[test]
fn altered_did_ciphertext_is_rejected_with_12() {
    let t0 = Instant::now();
    let mut did_announced = false;
    let mut pair = registering(21, t0, device(21, Some(Did(*DID)))).with_filter(move |from, t| {
        if from == Role::Client && t.char == Char::Avdtp {
            if t.data == [0, 0, 0, 0, 2, 0] {
                did_announced = true;
            } else if did_announced && t.data.first() == Some(&2) {
                // Flip a bit of the tag in chunk 2 of the DID ciphertext.
                if let Some(last) = t.data.last_mut() {
                    *last ^= 0x01;
                }
            }
        }
        Fate::Deliver
    });
    register(&mut pair);
    assert_eq!(
        pair.sent_by(Role::Device).last().map(Vec::as_slice),
        Some(&[0x12, 0, 0, 0][..])
    );
    assert_eq!(client_failure(&pair), Some(PairingError::Rejected));
    assert!(pair.device_events.iter().any(|e| matches!(
        e,
        pairing::DeviceEvent::Rejected(PairingError::BadDidCiphertext(CryptoError::DidTagMismatch))
    )));
    assert!(
        !pair
            .device_events
            .iter()
            .any(|e| matches!(e, pairing::DeviceEvent::Registered { .. }))
    );
}

#[test]
fn dropped_chunk_is_named_lost_and_resent() {
    let t0 = Instant::now();
    let mut dropped = false;
    let mut pair = registering(31, t0, device(31, Some(Did(*DID)))).with_filter(move |from, t| {
        // The first chunk 1 of the client's public key (the client's first chunk of all).
        if from == Role::Client && !dropped && t.data.starts_with(&[1, 0]) && t.data.len() == 20 {
            dropped = true;
            return Fate::Drop;
        }
        Fate::Deliver
    });
    register(&mut pair);
    let (registration, token, _) = registered(&pair);
    assert_eq!(registration.token, token);
    let device_sent = pair.sent_by(Role::Device);
    assert!(
        device_sent.contains(&vec![0, 0, 1, 5, 1, 0]),
        "A_LOST for chunk 1"
    );
    let resent = pair
        .transcript
        .iter()
        .filter(|r| {
            r.from == Role::Client
                && r.transmit.data.starts_with(&[1, 0])
                && r.transmit.data.len() == 20
        })
        .count();
    assert!(resent >= 2, "chunk 1 was sent again");
}

#[test]
fn dropped_chunk_during_login_is_requested_by_the_client() {
    let t0 = Instant::now();
    let token = Token([0x42; 12]);
    let mut dropped = false;
    let mut pair = logging_in(41, t0, token.clone(), Some(token)).with_filter(move |from, t| {
        // Chunk 2 of the device proof (the only chunk 2 the device sends in a login).
        if from == Role::Device && !dropped && t.data.starts_with(&[2, 0]) {
            dropped = true;
            return Fate::Drop;
        }
        Fate::Deliver
    });
    pair.run();
    let (client, device) = logged_in(&pair);
    assert_eq!(client, device);
    assert!(pair.sent_by(Role::Client).contains(&vec![0, 0, 1, 5, 2, 0]));
}

#[test]
fn wrong_token_at_login_makes_the_client_abort() {
    let t0 = Instant::now();
    let mut pair = logging_in(51, t0, Token([1; 12]), Some(Token([2; 12])));
    pair.run();
    let err = login_failure(&pair).expect("client fails");
    assert_eq!(err, LoginError::TokenRejected);
    assert!(err.to_string().contains("register again"), "{err}");
    // After the device proof the client sent its RCV_OK and nothing else: no app proof.
    let client = pair.sent_by(Role::Client);
    assert!(
        !client.contains(&vec![0, 0, 0, 0x0A, 2, 0]),
        "no app proof announce"
    );
    assert_eq!(client.last().map(Vec::as_slice), Some(&[0, 0, 1, 0][..]));
    // The device gives up at its own deadline.
    assert!(
        pair.device_events
            .iter()
            .any(|e| matches!(e, login::DeviceEvent::Failed(LoginError::Timeout { .. })))
    );
}

#[test]
fn device_without_token_answers_e0() {
    let mut pair = logging_in(61, Instant::now(), Token([1; 12]), None);
    pair.run();
    assert_eq!(
        pair.sent_by(Role::Device).first().map(Vec::as_slice),
        Some(&[0xE0, 0, 0, 0][..])
    );
    assert_eq!(
        login_failure(&pair),
        Some(LoginError::Refused(Refusal::NotRegistered))
    );
    assert!(
        pair.device_events
            .contains(&login::DeviceEvent::Refused(Refusal::NotRegistered))
    );
}

#[test]
fn second_login_on_the_same_connection_gets_e2_and_reconnecting_clears_it() {
    let t0 = Instant::now();
    let token = Token([9; 12]);
    let mut first = logging_in(71, t0, token.clone(), Some(token.clone()));
    first.run();
    let (keys_first, _) = logged_in(&first);
    let (_, device, now) = first.into_parts();

    let client = ClientLogin::new(now, &mut rng(72), token.clone(), login::Config::default());
    let mut second = Pair::new(client, device, now);
    second.run();
    assert_eq!(
        login_failure(&second),
        Some(LoginError::Refused(Refusal::RepeatLogin))
    );
    let (_, mut device, now) = second.into_parts();
    assert!(device.is_logged_in());

    device.disconnected();
    let client = ClientLogin::new(now, &mut rng(73), token, login::Config::default());
    let mut third = Pair::new(client, device, now);
    third.run();
    let (keys_third, device_keys) = logged_in(&third);
    assert_eq!(keys_third, device_keys);
    assert_ne!(keys_first, keys_third, "fresh randoms, fresh keys");
}

#[test]
fn login_times_out_when_the_device_is_silent() {
    let t0 = Instant::now();
    let mut client = ClientLogin::new(t0, &mut rng(81), Token([3; 12]), login::Config::default());
    while client.poll_transmit().is_some() {}
    assert_eq!(client.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    client.handle_timeout(t0 + Duration::from_secs(10));
    assert!(matches!(
        client.poll_event(),
        Some(login::ClientEvent::Failed(LoginError::Timeout {
            waiting_for: "the device random",
            ..
        }))
    ));
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn encrypted_uart_works_both_ways_over_the_derived_keys() {
    let (_, _, keys) = full_handshake(91);
    let mut client = UartCipher::new(keys.clone(), Role::Client);
    let mut device = UartCipher::new(keys, Role::Device);
    let mut r = rng(92);
    for i in 0..1000 {
        let len = r.gen_range(0..=60);
        let payload: Vec<u8> = (0..len).map(|_| r.r#gen()).collect();
        let request =
            Frame::new(0x20, r.gen_range(1..=3), r.r#gen(), payload).expect("short payload");
        let wire = client.seal(&request, r.r#gen());
        assert_eq!(device.open(&wire).as_ref(), Ok(&request), "request {i}");

        let len = r.gen_range(0..=60);
        let payload: Vec<u8> = (0..len).map(|_| r.r#gen()).collect();
        let response = Frame::new(0x23, 0x01, request.attr, payload).expect("short payload");
        let wire = device.seal(&response, r.r#gen());
        assert_eq!(client.open(&wire).as_ref(), Ok(&response), "response {i}");
    }
}

/// Drains a machine's transmits as raw bytes.
fn drain(next: impl FnMut() -> Option<Transmit>) -> Vec<Vec<u8>> {
    std::iter::from_fn(next).map(|t| t.data).collect()
}

#[test]
fn key_announce_before_set_key_is_answered_once_the_button_allows() {
    let now = Instant::now();
    let mut device = device(101, Some(Did(*DID)));
    device.handle_write(now, Char::Upnp, &[0xA2, 0, 0, 0]);
    device.handle_write(now, Char::Avdtp, &[0, 0, 1, 1]);
    device.handle_write(now, Char::Avdtp, &[0, 0, 1, 0]);
    let info = drain(|| device.poll_transmit());
    assert_eq!(info.len(), 3, "announce and two chunks: {info:?}");
    // R7 before R6, as miauth's Java client may send them.
    device.handle_write(now, Char::Avdtp, &[0, 0, 0, 3, 4, 0]);
    assert!(
        drain(|| device.poll_transmit()).is_empty(),
        "no RCV_RDY before 15"
    );
    device.handle_write(now, Char::Upnp, &[0x15, 0, 0, 0]);
    assert_eq!(device.poll_event(), Some(pairing::DeviceEvent::Beep));
    assert!(
        drain(|| device.poll_transmit()).is_empty(),
        "no RCV_RDY before the button"
    );
    device.press_button(now + Duration::from_secs(4));
    assert!(matches!(
        device.poll_event(),
        Some(pairing::DeviceEvent::WindowOpened { .. })
    ));
    assert_eq!(drain(|| device.poll_transmit()), [vec![0, 0, 1, 1]]);
}

#[test]
fn an_open_window_skips_the_beep() {
    let now = Instant::now();
    let mut device = device(102, Some(Did(*DID)));
    device.handle_write(now, Char::Upnp, &[0x15, 0, 0, 0]);
    assert_eq!(device.poll_event(), Some(pairing::DeviceEvent::Beep));
    device.press_button(now + Duration::from_secs(1));
    device.disconnected();
    // 29 s after the press the window is still open; 31 s after, it is closed again.
    device.handle_write(now + Duration::from_secs(30), Char::Upnp, &[0x15, 0, 0, 0]);
    device.handle_write(
        now + Duration::from_secs(30),
        Char::Avdtp,
        &[0, 0, 0, 3, 4, 0],
    );
    assert!(matches!(
        device.poll_event(),
        Some(pairing::DeviceEvent::WindowOpened { .. })
    ));
    assert_eq!(device.poll_event(), None, "no beep inside the window");
    assert_eq!(drain(|| device.poll_transmit()), [vec![0, 0, 1, 1]]);
    device.disconnected();
    device.handle_write(now + Duration::from_secs(32), Char::Upnp, &[0x15, 0, 0, 0]);
    assert_eq!(device.poll_event(), Some(pairing::DeviceEvent::Beep));
}

#[test]
fn client_reports_refusals_and_silence_with_their_meaning() {
    let t0 = Instant::now();
    let mut client = ClientPairing::new(t0, &mut rng(103), ClientConfig::default());
    assert_eq!(drain(|| client.poll_transmit()), [vec![0xA2, 0, 0, 0]]);
    client.handle_notification(t0, Char::Upnp, &[0xE1, 0, 0, 0]);
    let Some(pairing::ClientEvent::Failed(err)) = client.poll_event() else {
        panic!("E1 must end the attempt");
    };
    assert_eq!(err, PairingError::Refused(Refusal::AlreadyRegistered));
    assert!(err.to_string().contains("press the"), "{err}");

    let mut client = ClientPairing::new(t0, &mut rng(104), ClientConfig::default());
    let deadline = client.poll_timeout().expect("a deadline");
    assert_eq!(deadline, t0 + Duration::from_secs(5));
    client.handle_timeout(deadline);
    assert_eq!(
        client.poll_event(),
        Some(pairing::ClientEvent::Failed(PairingError::Timeout {
            waiting_for: "the device info parcel",
            waited: Duration::from_secs(5),
        }))
    );
}

#[test]
fn altered_app_proof_gets_23() {
    let t0 = Instant::now();
    let token = Token([0x33; 12]);
    let mut announced = false;
    let mut pair = logging_in(105, t0, token.clone(), Some(token)).with_filter(move |from, t| {
        if from == Role::Client {
            if t.data == [0, 0, 0, 0x0A, 2, 0] {
                announced = true;
            } else if announced && t.data.starts_with(&[1, 0]) {
                t.data[2] ^= 0x80;
            }
        }
        Fate::Deliver
    });
    pair.run();
    assert_eq!(
        pair.sent_by(Role::Device).last().map(Vec::as_slice),
        Some(&[0x23, 0, 0, 0][..])
    );
    assert_eq!(login_failure(&pair), Some(LoginError::Rejected));
    assert!(
        pair.device_events
            .contains(&login::DeviceEvent::Failed(LoginError::ProofMismatch))
    );
}

#[test]
fn client_login_accepts_the_inline_device_random() {
    let t0 = Instant::now();
    let token = Token([0x44; 12]);
    let mut client = ClientLogin::new(t0, &mut rng(106), token.clone(), login::Config::default());
    assert_eq!(
        drain(|| client.poll_transmit()),
        [vec![0x24, 0, 0, 0], vec![0, 0, 0, 0x0B, 1, 0]]
    );
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 1, 1]);
    let chunk = drain(|| client.poll_transmit());
    let app: [u8; 16] = chunk[0][2..].try_into().expect("16-byte app random");
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 1, 0]);

    // The official app's variant: one notification instead of L6–L9.
    let dev = [0x5Cu8; 16];
    let mut inline = vec![0, 0, 2, 0x0D];
    inline.extend_from_slice(&dev);
    client.handle_notification(t0, Char::Avdtp, &inline);
    assert_eq!(drain(|| client.poll_transmit()), [vec![0, 0, 3, 0]]);

    let randoms = LoginRandoms { app, dev };
    let keys = randoms.session_keys(&token);
    let proof = randoms.device_proof(&keys);
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 0, 0x0C, 2, 0]);
    let mut first = vec![1, 0];
    first.extend_from_slice(&proof[..18]);
    let mut second = vec![2, 0];
    second.extend_from_slice(&proof[18..]);
    client.handle_notification(t0, Char::Avdtp, &first);
    client.handle_notification(t0, Char::Avdtp, &second);
    assert_eq!(
        drain(|| client.poll_transmit()),
        [
            vec![0, 0, 1, 1],
            vec![0, 0, 1, 0],
            vec![0, 0, 0, 0x0A, 2, 0]
        ]
    );
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 1, 1]);
    let sent: Vec<u8> = drain(|| client.poll_transmit())
        .iter()
        .flat_map(|c| c[2..].to_vec())
        .collect();
    assert_eq!(sent, randoms.app_proof(&keys));
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 1, 0]);
    client.handle_notification(t0, Char::Upnp, &[0x21, 0, 0, 0]);
    assert_eq!(
        client.poll_event(),
        Some(login::ClientEvent::LoggedIn(keys))
    );
}

/// Delivers a parcel through a link that duplicates and reorders, until the sender is done.
fn parcel_round_trip(payload: Vec<u8>, seed: u64) -> Option<Vec<u8>> {
    let t0 = Instant::now();
    let mut now = t0;
    let mut net = rng(seed);
    let mut sender = Channel::new();
    let mut receiver = Channel::new();
    let kind = ParcelType::PASS_THROUGH;
    receiver.expect(now, kind, 600);
    sender.send(kind, payload).ok()?;
    let mut in_flight: Vec<Vec<u8>> = Vec::new();
    let mut received = None;
    let mut sent = false;
    for _ in 0..10_000 {
        while let Some(m) = sender.poll_transmit() {
            // Reorder: insert anywhere; duplicate one in four.
            let at = net.gen_range(0..=in_flight.len());
            in_flight.insert(at, m.clone());
            if net.gen_ratio(1, 4) {
                let at = net.gen_range(0..=in_flight.len());
                in_flight.insert(at, m);
            }
        }
        if let Some(m) = in_flight.pop() {
            if let Ok(Some(Progress::Received(_, p))) = receiver.handle(now, &m) {
                received = Some(p);
            }
            while let Some(ack) = receiver.poll_transmit() {
                if let Ok(Some(Progress::Sent(_))) = sender.handle(now, &ack) {
                    sent = true;
                }
            }
            continue;
        }
        if sent {
            return received;
        }
        match receiver.poll_timeout() {
            Some(t) => {
                now = now.max(t);
                receiver.handle_timeout(now);
                while let Some(ack) = receiver.poll_transmit() {
                    if let Ok(Some(Progress::Sent(_))) = sender.handle(now, &ack) {
                        sent = true;
                    }
                }
            }
            None => return received,
        }
    }
    None
}

fn arbitrary_char() -> impl Strategy<Value = Char> {
    prop_oneof![
        4 => Just(Char::Avdtp),
        4 => Just(Char::Upnp),
        1 => Just(Char::UartWrite),
        1 => Just(Char::UartNotify),
    ]
}

fn arbitrary_input() -> impl Strategy<Value = Vec<(Char, Vec<u8>, u16)>> {
    // Half of the messages start like control messages so the parsers go deep.
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        prop::collection::vec(0u8..6, 0..24),
        (0u8..4, prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(b, mut v)| {
            let mut m = vec![0, 0, b];
            m.append(&mut v);
            m
        }),
    ];
    prop::collection::vec((arbitrary_char(), bytes, 0u16..400), 0..60)
}

fn assert_small(t: Option<Transmit>) -> bool {
    match t {
        Some(t) => {
            assert!(t.data.len() <= 20, "oversized write: {:?}", t);
            true
        }
        None => false,
    }
}

proptest! {
    #[test]
    fn parcels_survive_duplicates_and_reordering(
        payload in prop::collection::vec(any::<u8>(), 0..600),
        seed in any::<u64>(),
    ) {
        let got = parcel_round_trip(payload.clone(), seed);
        prop_assert_eq!(got, Some(payload));
    }

    #[test]
    fn machines_never_panic_on_arbitrary_bytes(input in arbitrary_input(), seed in any::<u64>()) {
        let t0 = Instant::now();
        let mut cp = ClientPairing::new(t0, &mut rng(seed), ClientConfig::default());
        let mut dp = device(seed, None);
        let mut cl = ClientLogin::new(t0, &mut rng(seed), Token([5; 12]), login::Config::default());
        let mut dl = DeviceLogin::new(rng(seed), Some(Token([5; 12])), login::Config::default());
        let mut now = t0;
        for (char, data, ms) in &input {
            now += Duration::from_millis(u64::from(*ms));
            cp.handle_notification(now, *char, data);
            dp.handle_write(now, *char, data);
            cl.handle_notification(now, *char, data);
            dl.handle_write(now, *char, data);
            if *ms % 7 == 0 {
                dp.press_button(now);
            }
            cp.handle_timeout(now);
            dp.handle_timeout(now);
            cl.handle_timeout(now);
            dl.handle_timeout(now);
            while assert_small(cp.poll_transmit()) {}
            while assert_small(dp.poll_transmit()) {}
            while assert_small(cl.poll_transmit()) {}
            while assert_small(dl.poll_transmit()) {}
            while cp.poll_event().is_some() {}
            while dp.poll_event().is_some() {}
            while cl.poll_event().is_some() {}
            while dl.poll_event().is_some() {}
        }
    }
}

fn arbitrary_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (any::<u8>(), any::<u16>()).prop_map(|(kind, count)| {
            Message::Announce {
                kind: ParcelType(kind),
                count,
            }
            .encode()
        }),
        (1u16.., prop::collection::vec(any::<u8>(), 0..=18))
            .prop_map(|(index, data)| { Message::Chunk { index, data: &data }.encode() }),
        any::<u16>().prop_map(|i| { Message::Ack(Ack::Lost(i)).encode() }),
        (0u8..=4).prop_map(|code| vec![0, 0, 1, code]),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(kind, data)| {
            Message::InlineData {
                kind: ParcelType(kind),
                data: &data,
            }
            .encode()
        }),
    ]
}

proptest! {
    #[test]
    fn parcel_messages_round_trip(bytes in arbitrary_message()) {
        let parsed = Message::parse(&bytes);
        prop_assert!(parsed.is_ok(), "{:?}: {:?}", bytes, parsed);
        prop_assert_eq!(parsed.map(|m| m.encode()), Ok(bytes));
    }
}

/// Drops each data chunk (index ≠ 0) with probability `percent`/100, decided by `seed`.
fn lossy(seed: u64, percent: u32) -> impl FnMut(Role, &mut Transmit) -> Fate {
    let mut r = rng(seed);
    move |_, t| {
        let is_chunk = t.char == Char::Avdtp && t.data.get(..2).is_some_and(|i| i != [0, 0]);
        if is_chunk && r.gen_ratio(percent, 100) {
            Fate::Drop
        } else {
            Fate::Deliver
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn handshake_survives_lost_chunks(seed in any::<u64>(), percent in 0u32..30) {
        let t0 = Instant::now();
        let mut reg = registering(seed, t0, device(seed, Some(Did(*DID))))
            .with_filter(lossy(seed, percent));
        register(&mut reg);
        let (registration, device_token, _) = registered(&reg);
        prop_assert_eq!(&registration.token, &device_token);
        // Every loss was repaired by an A_LOST naming the chunk.
        let lost = |records: &[Record]| {
            let dropped = records.iter().filter(|r| !r.delivered).count();
            let asked = records.iter().filter(|r| r.transmit.data.starts_with(&[0, 0, 1, 5])).count();
            (dropped, asked)
        };
        let (dropped, asked) = lost(&reg.transcript);
        prop_assert!(asked >= dropped.min(1), "{} dropped, {} A_LOST", dropped, asked);

        let mut log = logging_in(seed, reg.now, registration.token.clone(), Some(device_token))
            .with_filter(lossy(!seed, percent));
        log.run();
        let (client_keys, device_keys) = logged_in(&log);
        prop_assert_eq!(client_keys, device_keys);
        let (dropped, asked) = lost(&log.transcript);
        prop_assert!(asked >= dropped.min(1), "{} dropped, {} A_LOST", dropped, asked);
    }
}
