//! What real scooters send that a strict reading of the protocol would wrongly refuse, and what
//! a hostile peer could send to exhaust or confuse a machine. Each test names the situation it
//! covers; the fix it guards is described next to the code it tests.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use m365_proto::control::Control;
use m365_proto::encrypted::{self, UartCipher};
use m365_proto::frame::Frame;
use m365_proto::gatt::{COMPANY_ID, Char, Transmit};
use m365_proto::keys::{Role, SessionKeys, Token};
use m365_proto::login::{self, ClientLogin, LoginError};
use m365_proto::model::{Detected, Generation, ManufacturerData};
use m365_proto::pairing::{self, ClientConfig, ClientPairing};
use m365_proto::parcel::{Ack, MAX_RESENDS, Message, ParcelType, Receiver, Sender};
use m365_proto::reassembly::Reassembler;
use m365_proto::registers::request::Request;
use m365_proto::registers::write::{self, WriteAck, WriteMode};
use m365_proto::registers::{self, Unit, answer, esc};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn keys() -> SessionKeys {
    SessionKeys {
        dev_key: [0x3C; 16],
        app_key: [0x12; 16],
        dev_iv: [0xCD, 0x01, 0x60, 0x50],
        app_iv: [0xC8, 0x7D, 0xE6, 0xF1],
    }
}

fn drain(next: impl FnMut() -> Option<Transmit>) -> Vec<Transmit> {
    std::iter::from_fn(next).collect()
}

/// §9 and §4.6.6: a receiver accepts counter 0 or a larger one. A scooter whose counter
/// starts at 0 (it increments after use) must not lose its first answer.
#[test]
fn client_accepts_a_device_counting_from_zero() {
    let k = keys();
    let mut client = UartCipher::new(k.clone(), Role::Client);
    let answer = Frame::new(0x23, 0x01, 0x25, vec![0x26, 0x07]).expect("short payload");
    for counter in [0u32, 1, 2] {
        let wire = encrypted::seal_with_counter(&k.dev_key, &k.dev_iv, counter, &answer, [7; 4])
            .expect("4-byte IV");
        assert_eq!(client.open(&wire), Ok(answer.clone()), "counter {counter}");
    }
    assert_eq!(client.rx_window().last(), 2);
    // A replay of a non-zero counter is still refused.
    let again =
        encrypted::seal_with_counter(&k.dev_key, &k.dev_iv, 2, &answer, [7; 4]).expect("4-byte IV");
    assert!(matches!(
        client.open(&again),
        Err(encrypted::EncryptedError::Replay { counter: 2, .. })
    ));
}

/// §5.3: miauth's Java client matches answers by attribute and accepts RW 0x01 and 0x02.
#[test]
fn read_answer_with_another_rw_still_decodes() {
    let answer = Frame::new(0x23, 0x02, 0x25, vec![0x26, 0x07]).expect("short payload");
    assert_eq!(esc::decode_range_km(&answer), Ok(18.30));
    // The unit still has to be right.
    let bms = Frame::new(0x25, 0x01, 0x25, vec![0x26, 0x07]).expect("short payload");
    assert!(matches!(
        esc::decode_range_km(&bms),
        Err(registers::RegisterError::WrongDir { .. })
    ));
}

/// A scooter answering a read with more bytes than asked: the registers asked for decode.
#[test]
fn read_answer_with_more_bytes_decodes() {
    let answer = Frame::new(0x23, 0x01, 0x25, vec![0x26, 0x07, 0xAA, 0xBB]).expect("payload");
    assert_eq!(esc::decode_range_km(&answer), Ok(18.30));
}

/// Write acknowledgements with trailing bytes, or echoed with the read RW.
#[test]
fn write_ack_with_trailing_bytes_or_rw_01_decodes() {
    let long = Frame::new(0x23, 0x02, 0x7B, vec![0x01, 0x00]).expect("payload");
    let ack = WriteAck::decode(&long).expect("trailing byte ignored");
    assert!(ack.accepted());
    assert_eq!((ack.unit, ack.reg), (Unit::Esc, 0x7B));
    let as_read = Frame::new(0x25, 0x01, 0x18, vec![0x00]).expect("payload");
    let ack = WriteAck::decode(&as_read).expect("RW 0x01 with one result byte");
    assert!(!ack.accepted());
    assert_eq!(ack.unit, Unit::Bms);
    let empty = Frame::new(0x23, 0x02, 0x7B, vec![]).expect("payload");
    assert_eq!(
        WriteAck::decode(&empty),
        Err(registers::RegisterError::BadAck(0))
    );
}

/// The simulator side: a read request with bytes after its length still asks for that length.
#[test]
fn read_request_with_trailing_bytes_parses() {
    let req = Frame::new(0x20, 0x01, 0x10, vec![0x0E, 0x00]).expect("payload");
    assert_eq!(
        Request::parse(&req),
        Some(Request::Read {
            unit: Unit::Esc,
            attr: 0x10,
            len: 0x0E
        })
    );
}

/// Which frame answers which request, leniently (client side).
#[test]
fn answers_are_matched_by_unit_and_register() {
    let read = esc::read_range();
    let exact = Frame::new(0x23, 0x01, 0x25, vec![0x26, 0x07]).expect("payload");
    let other_rw = Frame::new(0x23, 0x02, 0x25, vec![0x26, 0x07]).expect("payload");
    let longer = Frame::new(0x23, 0x01, 0x25, vec![0; 4]).expect("payload");
    let other_reg = Frame::new(0x23, 0x01, 0x26, vec![0; 2]).expect("payload");
    let other_unit = Frame::new(0x25, 0x01, 0x25, vec![0; 2]).expect("payload");
    let empty = Frame::new(0x23, 0x01, 0x25, vec![]).expect("payload");
    assert!(answer::is_answer(&read, &exact));
    assert!(answer::is_exact_answer(&read, &exact));
    assert!(answer::is_answer(&read, &other_rw));
    assert!(!answer::is_exact_answer(&read, &other_rw));
    assert!(answer::is_answer(&read, &longer));
    assert!(!answer::is_exact_answer(&read, &longer));
    assert!(!answer::is_answer(&read, &other_reg));
    assert!(!answer::is_answer(&read, &other_unit));
    assert!(!answer::is_answer(&read, &empty));
    let ack_req = write::lock(WriteMode::Ack);
    let ack = WriteAck::answer(&ack_req, true);
    assert!(answer::is_exact_answer(&ack_req, &ack));
    // A write without acknowledgement is answered by nothing.
    assert!(!answer::is_answer(&write::lock(WriteMode::NoAck), &ack));
}

/// An announce padded with trailing bytes is still an announce.
#[test]
fn announce_with_trailing_bytes_is_an_announce() {
    assert_eq!(
        Message::parse(&[0, 0, 0, 0x03, 0x04, 0x00, 0x00, 0x00]),
        Ok(Message::Announce {
            kind: ParcelType::ECC_PUBKEY,
            count: 4
        })
    );
}

/// A receiver that asks for the same chunk forever must not keep the sender busy forever.
#[test]
fn sender_gives_up_on_endless_lost_acks() {
    let mut tx = Sender::new(ParcelType::ECC_PUBKEY, vec![1; 64]).expect("64 bytes");
    assert_eq!(tx.handle_ack(Ack::Ready), Ok(false));
    while tx.poll_transmit().is_some() {}
    let mut resent = 0usize;
    let mut outcome = Ok(false);
    for i in 0..10_000u32 {
        outcome = tx.handle_ack(Ack::Lost(1 + (i % 4) as u16));
        while tx.poll_transmit().is_some() {
            resent += 1;
        }
        if outcome.is_err() {
            break;
        }
    }
    let err = outcome.expect_err("the sender must give up");
    assert!(err.is_fatal(), "{err}");
    assert_eq!(resent, usize::from(MAX_RESENDS));
}

/// Hostile chunk indices and counts: nothing is allocated beyond the armed size, nothing panics,
/// and the real parcel still completes.
#[test]
fn receiver_survives_hostile_indices_and_counts() {
    let t0 = Instant::now();
    let mut rx = Receiver::new();
    rx.expect(t0, ParcelType::ECC_PUBKEY, 64);
    let huge = Message::Announce {
        kind: ParcelType::ECC_PUBKEY,
        count: u16::MAX,
    };
    assert_eq!(rx.handle(t0, &huge), None);
    assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 4]), "A_CANCEL");
    let announce = Message::Announce {
        kind: ParcelType::ECC_PUBKEY,
        count: 4,
    };
    assert_eq!(rx.handle(t0, &announce), None);
    assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 1]));
    for index in [u16::MAX, 5, 0x0100] {
        let stray = Message::Chunk {
            index,
            data: &[0xEE; 18],
        };
        assert_eq!(rx.handle(t0, &stray), None);
        assert_eq!(rx.poll_transmit(), None, "chunk {index:#x} is ignored");
    }
    let payload: Vec<u8> = (0..64).collect();
    let mut done = None;
    for (i, data) in payload.chunks(18).enumerate() {
        let index = u16::try_from(i + 1).expect("4 chunks");
        done = rx.handle(t0, &Message::Chunk { index, data });
    }
    assert_eq!(done, Some((ParcelType::ECC_PUBKEY, payload)));
}

/// Device info longer than 24 bytes: the DID is bytes 4..24, as on every scooter.
#[test]
fn client_pairing_accepts_device_info_with_trailing_bytes() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(3);
    let mut client = ClientPairing::new(t0, &mut rng, ClientConfig::default());
    assert_eq!(
        drain(|| client.poll_transmit()),
        [Control::GetInfo.transmit()]
    );
    let mut info = vec![1, 0, 0, 0];
    info.extend_from_slice(b"\0blt.4.18n58266kgg00");
    info.extend_from_slice(&[0xFF, 0xFF]);
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 0, 0, 2, 0]);
    for (i, data) in info.chunks(18).enumerate() {
        let mut chunk = vec![u8::try_from(i + 1).expect("2 chunks"), 0];
        chunk.extend_from_slice(data);
        client.handle_notification(t0, Char::Avdtp, &chunk);
    }
    assert_eq!(client.poll_event(), None, "no failure");
    let sent = drain(|| client.poll_transmit());
    assert!(sent.contains(&Control::SetKey.transmit()), "{sent:?}");
    assert!(
        sent.iter()
            .any(|t| t.char == Char::Avdtp && t.data == [0, 0, 0, 3, 4, 0]),
        "the key announce follows: {sent:?}"
    );
    assert!(!client.is_done());
    // A 3-byte info is still refused with its length.
    let mut short = ClientPairing::new(t0, &mut rng, ClientConfig::default());
    short.handle_notification(t0, Char::Avdtp, &[0, 0, 0, 0, 1, 0]);
    short.handle_notification(t0, Char::Avdtp, &[1, 0, 1, 0, 0]);
    assert_eq!(
        short.poll_event(),
        Some(pairing::ClientEvent::Failed(
            pairing::PairingError::BadDeviceInfo { found: 3 }
        ))
    );
}

/// `22` (*LOG_INVALID_LTMK*, "stored token invalid") ends the login at once instead of
/// waiting for the timeout.
#[test]
fn client_login_stops_at_once_on_22() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(4);
    let mut client = ClientLogin::new(t0, &mut rng, Token([1; 12]), login::Config::default());
    let _ = drain(|| client.poll_transmit());
    client.handle_notification(t0 + Duration::from_millis(50), Char::Upnp, &[0x22, 0, 0, 0]);
    assert_eq!(
        client.poll_event(),
        Some(login::ClientEvent::Failed(LoginError::InvalidToken))
    );
    assert!(client.is_done());
    assert_eq!(client.poll_timeout(), None);
}

/// An unknown model code with generation byte 2 may be an Essential (Mi-auth, no known code)
/// as well as a Ninebot model: the advertisement alone does not decide.
#[test]
fn unknown_model_with_generation_2_is_undecided() {
    let d = ManufacturerData::parse(COMPANY_ID, &[0x30, 2, 0, 0, 0, 0xCD]).expect("6 bytes");
    assert_eq!(d.model(), None);
    assert_eq!(d.detected(), None);
    let pro2 = ManufacturerData::parse(COMPANY_ID, &[0x28, 2, 0, 0, 0, 0xD5]).expect("6 bytes");
    assert_eq!(
        pro2.detected(),
        Some(Detected::Generation(Generation::MiAuth))
    );
}

/// A frame header cut across two notifications at any point, for every framing.
#[test]
fn header_split_across_notifications_at_every_offset() {
    let frame = Frame::new(0x23, 0x01, 0xB0, (0..32).collect()).expect("payload");
    let mut device = UartCipher::new(keys(), Role::Device);
    let xor = m365_proto::xor::Keystream::new((1..=20).collect());
    let wires = [
        (Generation::Plain, frame.encode()),
        (Generation::Xor, xor.encrypt(&frame)),
        (Generation::MiAuth, device.seal(&frame, [1, 2, 3, 4])),
    ];
    for (generation, wire) in wires {
        for cut in 1..wire.len() {
            let mut r = Reassembler::new(generation);
            r.push(&wire[..cut]);
            assert_eq!(r.next_frame(), None);
            r.push(&wire[cut..]);
            assert_eq!(
                r.next_frame(),
                Some(wire.clone()),
                "{generation} cut at {cut}"
            );
            assert_eq!(r.rejects().frames(), 0);
            assert_eq!(r.buffered(), 0);
        }
    }
}

/// Every captured frame streamed back to back in 20-byte notifications: the anonymised frame
/// (bad checksum) and the malformed one (one byte beyond LEN) are dropped and counted, and no
/// other frame is lost because of them.
#[test]
fn captured_stream_with_anomalies_loses_no_good_frame() {
    let Some(v) = common::vectors("captured_stream_with_anomalies_loses_no_good_frame") else {
        return;
    };
    let mut stream = Vec::new();
    let mut good = Vec::new();
    for e in common::category(&v, "legacy_55aa_frames") {
        let wire = common::hex_field(e, "frame_hex");
        let name = common::name(e);
        if !name.contains("ANONYMISED") && !name.contains("MALFORMED") {
            good.push(wire.clone());
        }
        stream.extend_from_slice(&wire);
    }
    let mut r = Reassembler::new(Generation::Plain);
    let mut out = Vec::new();
    for n in stream.chunks(20) {
        r.push(n);
        out.extend(std::iter::from_fn(|| r.next_frame()));
    }
    assert_eq!(out, good);
    assert_eq!(r.rejects().bad_checksum, 2, "{:?}", r.rejects());
    assert_eq!(r.buffered(), 0);
}

/// A sender that did not hear `RCV_RDY` announces again: it gets `RCV_RDY` again, and the chunks
/// already received are kept.
#[test]
fn repeated_announce_is_answered_again_without_losing_chunks() {
    let t0 = Instant::now();
    let mut rx = Receiver::new();
    rx.expect(t0, ParcelType::DEV_CONFIRMATION, 32);
    let announce = Message::Announce {
        kind: ParcelType::DEV_CONFIRMATION,
        count: 2,
    };
    assert_eq!(rx.handle(t0, &announce), None);
    assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 1]));
    let first = [1u8; 18];
    assert_eq!(
        rx.handle(
            t0,
            &Message::Chunk {
                index: 1,
                data: &first
            }
        ),
        None
    );
    assert_eq!(rx.handle(t0, &announce), None);
    assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 1]), "RCV_RDY again");
    let done = rx.handle(
        t0,
        &Message::Chunk {
            index: 2,
            data: &[2; 14],
        },
    );
    let mut expected = first.to_vec();
    expected.extend([2; 14]);
    assert_eq!(done, Some((ParcelType::DEV_CONFIRMATION, expected)));
}

/// A last chunk padded to the full 18 bytes: the parcel is cut to the length its type carries,
/// so the proof, key or random inside still verifies.
#[test]
fn padded_last_chunk_is_cut_to_the_parcel_length() {
    let t0 = Instant::now();
    let mut rx = Receiver::new();
    rx.expect(t0, ParcelType::DEV_CONFIRMATION, 32);
    let announce = Message::Announce {
        kind: ParcelType::DEV_CONFIRMATION,
        count: 2,
    };
    rx.handle(t0, &announce);
    let proof: Vec<u8> = (0..32).collect();
    let mut last = proof[18..].to_vec();
    last.extend([0; 4]);
    rx.handle(
        t0,
        &Message::Chunk {
            index: 1,
            data: &proof[..18],
        },
    );
    let done = rx.handle(
        t0,
        &Message::Chunk {
            index: 2,
            data: &last,
        },
    );
    assert_eq!(done, Some((ParcelType::DEV_CONFIRMATION, proof)));
}

/// A module without an ID that still sends the 20-byte field, empty (zeros) or erased flash
/// (0xFF): the client treats it as no DID and sends one of the observed layout (§11a Q10).
#[test]
fn empty_did_field_counts_as_no_did() {
    for fill in [0x00u8, 0xFF] {
        let t0 = Instant::now();
        let mut rng = StdRng::seed_from_u64(5);
        let mut client = ClientPairing::new(t0, &mut rng, ClientConfig::default());
        let _ = drain(|| client.poll_transmit());
        let mut info = vec![1, 0, 0, 0];
        info.extend([fill; 20]);
        client.handle_notification(t0, Char::Avdtp, &[0, 0, 0, 0, 2, 0]);
        for (i, data) in info.chunks(18).enumerate() {
            let mut chunk = vec![u8::try_from(i + 1).expect("2 chunks"), 0];
            chunk.extend_from_slice(data);
            client.handle_notification(t0, Char::Avdtp, &chunk);
        }
        match client.poll_event() {
            Some(pairing::ClientEvent::DidInvented(did)) => {
                assert_eq!(&did.as_bytes()[..7], b"\0blt.4.", "{fill:#x}");
            }
            other => panic!("{fill:#x}: expected an invented DID, got {other:?}"),
        }
    }
}

/// The scooter's `RCV_OK` for our key (R10) is lost, but its own key announce (R11) arrives: the
/// announce implies that our key was received, so the registration goes on.
#[test]
fn device_key_announce_stands_in_for_a_lost_rcv_ok() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(6);
    let mut client = ClientPairing::new(t0, &mut rng, ClientConfig::default());
    let _ = drain(|| client.poll_transmit());
    let mut info = vec![1, 0, 0, 0];
    info.extend_from_slice(b"\0blt.4.18n58266kgg00");
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 0, 0, 2, 0]);
    for (i, data) in info.chunks(18).enumerate() {
        let mut chunk = vec![u8::try_from(i + 1).expect("2 chunks"), 0];
        chunk.extend_from_slice(data);
        client.handle_notification(t0, Char::Avdtp, &chunk);
    }
    let _ = drain(|| client.poll_transmit());
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 1, 1]);
    let chunks = drain(|| client.poll_transmit());
    assert_eq!(chunks.len(), 4, "our key in 4 chunks");
    // No RCV_OK: the device announces its key straight away.
    let device = m365_proto::crypto::KeyPair::from_private_bytes(&[0x42; 32]).expect("scalar");
    let key = device.public_key().to_wire();
    client.handle_notification(t0, Char::Avdtp, &[0, 0, 0, 3, 4, 0]);
    assert_eq!(
        drain(|| client.poll_transmit()),
        [Transmit {
            char: Char::Avdtp,
            data: vec![0, 0, 1, 1]
        }]
    );
    for (i, data) in key.chunks(18).enumerate() {
        let mut chunk = vec![u8::try_from(i + 1).expect("4 chunks"), 0];
        chunk.extend_from_slice(data);
        client.handle_notification(t0, Char::Avdtp, &chunk);
    }
    let sent = drain(|| client.poll_transmit());
    assert!(
        sent.iter().any(|t| t.data == [0, 0, 0, 0, 2, 0]),
        "the DID ciphertext is announced: {sent:?}"
    );
    assert_eq!(client.poll_event(), None);
}

/// A client that writes the app-random announce (L2) before `24` (L1) reaches the scooter, as
/// writes to two characteristics may cross: the announce is answered once `24` came, like the
/// key announce before `15` in registration (§3.3).
#[test]
fn device_login_answers_an_announce_that_came_before_24() {
    let t0 = Instant::now();
    let mut device = login::DeviceLogin::new(
        StdRng::seed_from_u64(11),
        Some(Token([3; 12])),
        login::Config::default(),
    );
    device.handle_write(t0, Char::Avdtp, &[0, 0, 0, 0x0B, 1, 0]);
    assert_eq!(drain(|| device.poll_transmit()), []);
    device.handle_write(t0, Char::Upnp, &[0x24, 0, 0, 0]);
    assert_eq!(
        drain(|| device.poll_transmit()),
        [Transmit {
            char: Char::Avdtp,
            data: vec![0, 0, 1, 1]
        }]
    );
    let mut chunk = vec![1, 0];
    chunk.extend([0xA5; 16]);
    device.handle_write(t0, Char::Avdtp, &chunk);
    let sent: Vec<Vec<u8>> = drain(|| device.poll_transmit())
        .into_iter()
        .map(|t| t.data)
        .collect();
    assert_eq!(sent, [vec![0, 0, 1, 0], vec![0, 0, 0, 0x0D, 1, 0]]);
}
