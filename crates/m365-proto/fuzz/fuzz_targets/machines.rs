//! Feeds arbitrary writes and notifications, at arbitrary times, to all four Mi-auth machines
//! (client and device registration, client and device login) and to a bare parcel channel:
//! no panic, every write fits one ATT payload, and a finished client machine stays finished.
//!
//! Input layout, repeated: one selector byte (characteristic in the low 2 bits, a button press
//! in bit 2), one byte of milliseconds to advance, one length byte (mod 21), then that many bytes.
#![no_main]
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use m365_proto::gatt::{ATT_PAYLOAD, Char, Transmit};
use m365_proto::keys::Token;
use m365_proto::login::{self, ClientLogin, DeviceLogin};
use m365_proto::pairing::{ClientConfig, ClientPairing, DeviceConfig, DevicePairing};
use m365_proto::parcel::{Channel, ParcelType};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn small(t: Option<Transmit>) -> bool {
    match t {
        Some(t) => {
            assert!(t.data.len() <= ATT_PAYLOAD, "oversized write: {t:?}");
            true
        }
        None => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let token = Token([5; 12]);
    let mut cp = ClientPairing::new(t0, &mut StdRng::seed_from_u64(1), ClientConfig::default());
    let mut dp = DevicePairing::new(StdRng::seed_from_u64(2), None, DeviceConfig::default());
    let mut cl = ClientLogin::new(
        t0,
        &mut StdRng::seed_from_u64(3),
        token.clone(),
        login::Config::default(),
    );
    let mut dl = DeviceLogin::new(
        StdRng::seed_from_u64(4),
        Some(token),
        login::Config::default(),
    );
    let mut channel = Channel::new();
    channel.expect(t0, ParcelType::ECC_PUBKEY, 64);

    let mut now = t0;
    let mut rest = data;
    while let [selector, ms, len, tail @ ..] = rest {
        let n = usize::from(*len % 21).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let char = match selector & 3 {
            0 => Char::Upnp,
            1 => Char::Avdtp,
            2 => Char::UartWrite,
            _ => Char::UartNotify,
        };
        now += Duration::from_millis(u64::from(*ms) * 4);

        let (cp_done, cl_done) = (cp.is_done(), cl.is_done());
        cp.handle_notification(now, char, bytes);
        cl.handle_notification(now, char, bytes);
        dp.handle_write(now, char, bytes);
        dl.handle_write(now, char, bytes);
        if char == Char::Avdtp {
            let _ = channel.handle(now, bytes);
        }
        if selector & 4 != 0 {
            dp.press_button(now);
        }
        cp.handle_timeout(now);
        cl.handle_timeout(now);
        dp.handle_timeout(now);
        dl.handle_timeout(now);
        channel.handle_timeout(now);
        assert!(
            !cp_done || cp.is_done(),
            "a finished registration stays finished"
        );
        assert!(!cl_done || cl.is_done(), "a finished login stays finished");
        if cp.is_done() {
            assert_eq!(cp.poll_timeout(), None);
        }
        if cl.is_done() {
            assert_eq!(cl.poll_timeout(), None);
        }

        while small(cp.poll_transmit()) {}
        while small(cl.poll_transmit()) {}
        while small(dp.poll_transmit()) {}
        while small(dl.poll_transmit()) {}
        while let Some(m) = channel.poll_transmit() {
            assert!(m.len() <= ATT_PAYLOAD);
        }
        while cp.poll_event().is_some() {}
        while cl.poll_event().is_some() {}
        while dp.poll_event().is_some() {}
        while dl.poll_event().is_some() {}
    }
});
