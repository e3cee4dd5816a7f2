//! Runs a whole registration and login between the client and device machines over a link whose
//! faults the input chooses: each write or notification is delivered, dropped, delivered twice,
//! or (on AVDTP) delivered with one bit flipped. No machine may panic or stall (every run ends
//! within the machines' own deadlines), and when both sides report success they agree on the
//! token and on the session keys.
//!
//! UPNP words are not corrupted: they carry no integrity check of their own (the link layer's
//! CRC protects them on a real radio), so a flipped `23` reads as `21` by design.
#![no_main]
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use m365_proto::gatt::{ATT_PAYLOAD, Char, Transmit};
use m365_proto::login::{self, ClientLogin, DeviceLogin};
use m365_proto::pairing::{self, ClientConfig, ClientPairing, DeviceConfig, DevicePairing};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The fault of the next message, taken from the input (delivered once when it runs out).
struct Faults<'a>(&'a [u8]);

impl Faults<'_> {
    fn next(&mut self, t: &Transmit) -> Vec<Transmit> {
        assert!(t.data.len() <= ATT_PAYLOAD, "oversized write: {t:?}");
        let Some((&b, rest)) = self.0.split_first() else {
            return vec![t.clone()];
        };
        self.0 = rest;
        match b % 8 {
            0 => Vec::new(),
            1 => vec![t.clone(), t.clone()],
            2 if t.char == Char::Avdtp => {
                let mut bad = t.clone();
                if let Some(byte) = bad.data.get_mut(usize::from(b >> 3) % t.data.len().max(1)) {
                    *byte ^= 1 << (b % 7);
                }
                vec![bad]
            }
            _ => vec![t.clone()],
        }
    }
}

/// One step of simulated time between deliveries.
const TICK: Duration = Duration::from_millis(10);
/// No run may last longer than this (every machine has its own deadline well inside it).
const LIMIT: Duration = Duration::from_secs(120);
/// Nor take more steps than this: messages must not ping-pong without time passing.
const MAX_STEPS: u32 = 100_000;

fuzz_target!(|data: &[u8]| {
    let mut faults = Faults(data);
    let t0 = Instant::now();
    let mut now = t0;

    // Registration, with the button pressed at the first beep.
    let mut client =
        ClientPairing::new(now, &mut StdRng::seed_from_u64(7), ClientConfig::default());
    let mut device = DevicePairing::new(StdRng::seed_from_u64(8), None, DeviceConfig::default());
    let mut to_device: VecDeque<Transmit> = VecDeque::new();
    let mut to_client: VecDeque<Transmit> = VecDeque::new();
    let (mut client_reg, mut device_reg) = (None, None);
    let mut steps = 0u32;
    while !client.is_done() {
        steps += 1;
        assert!(
            now - t0 < LIMIT && steps < MAX_STEPS,
            "registration stalled"
        );
        while let Some(t) = client.poll_transmit() {
            to_device.extend(faults.next(&t));
        }
        while let Some(t) = device.poll_transmit() {
            to_client.extend(faults.next(&t));
        }
        while let Some(e) = device.poll_event() {
            match e {
                pairing::DeviceEvent::Beep => device.press_button(now),
                pairing::DeviceEvent::Registered { token, .. } => device_reg = Some(token),
                _ => {}
            }
        }
        if let Some(t) = to_device.pop_front() {
            device.handle_write(now, t.char, &t.data);
        } else if let Some(t) = to_client.pop_front() {
            client.handle_notification(now, t.char, &t.data);
        } else {
            now += TICK;
            client.handle_timeout(now);
            device.handle_timeout(now);
        }
        while let Some(e) = client.poll_event() {
            if let pairing::ClientEvent::Registered(r) = e {
                client_reg = Some(r.token.clone());
            }
        }
    }
    // Let the device hear what was still on the way (the client's last word is `13`).
    while let Some(t) = to_device.pop_front() {
        device.handle_write(now, t.char, &t.data);
        while device.poll_transmit().is_some() {}
    }
    while let Some(e) = device.poll_event() {
        if let pairing::DeviceEvent::Registered { token, .. } = e {
            device_reg = Some(token);
        }
    }
    let Some(token) = client_reg else { return };
    assert_eq!(
        device_reg.as_ref(),
        Some(&token),
        "both sides hold the same token"
    );

    // Login with that token.
    let mut client = ClientLogin::new(
        now,
        &mut StdRng::seed_from_u64(9),
        token.clone(),
        login::Config::default(),
    );
    let mut device = DeviceLogin::new(
        StdRng::seed_from_u64(10),
        Some(token),
        login::Config::default(),
    );
    let start = now;
    to_device.clear();
    to_client.clear();
    let (mut client_keys, mut device_keys) = (None, None);
    steps = 0;
    while !client.is_done() {
        steps += 1;
        assert!(now - start < LIMIT && steps < MAX_STEPS, "login stalled");
        while let Some(t) = client.poll_transmit() {
            to_device.extend(faults.next(&t));
        }
        while let Some(t) = device.poll_transmit() {
            to_client.extend(faults.next(&t));
        }
        if let Some(t) = to_device.pop_front() {
            device.handle_write(now, t.char, &t.data);
        } else if let Some(t) = to_client.pop_front() {
            client.handle_notification(now, t.char, &t.data);
        } else {
            now += TICK;
            client.handle_timeout(now);
            device.handle_timeout(now);
        }
        while let Some(e) = device.poll_event() {
            if let login::DeviceEvent::LoggedIn(k) = e {
                device_keys = Some(k);
            }
        }
        while let Some(e) = client.poll_event() {
            if let login::ClientEvent::LoggedIn(k) = e {
                client_keys = Some(k);
            }
        }
    }
    if let Some(keys) = client_keys {
        // The client logs in only on `21`, which the device sends with its keys.
        assert_eq!(
            device_keys,
            Some(keys),
            "both sides derived the same session keys"
        );
    }
});
