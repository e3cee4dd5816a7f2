//! An in-memory test bench: a [`Scooter`] and a client built from the `m365-proto` client-role
//! machines, stepping each other on a fake clock (the quinn `Pair` pattern). Whole
//! registrations, logins and UART exchanges run deterministically in microseconds.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use m365_proto::encrypted::UartCipher;
use m365_proto::frame::Frame;
use m365_proto::gatt::{ATT_PAYLOAD, CHAR_KEY, Char, Transmit};
use m365_proto::keys::{Role, SessionKeys, Token};
use m365_proto::login::{self, ClientLogin, LoginError};
use m365_proto::pairing::{self, ClientConfig, ClientPairing, PairingError, Registration};
use m365_proto::reassembly::Reassembler;
use m365_proto::registers::{Unit, read_unit};
use m365_proto::xor::Keystream;
use m365_sim::profile::Generation;
use m365_sim::{Scooter, ScooterConfig, ScooterEvent};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A client-role protocol machine the bench can drive.
pub(crate) trait ClientMachine {
    /// What it reports.
    type Event;
    /// A notification arrived.
    fn notify(&mut self, now: Instant, char: Char, data: &[u8]);
    /// Its deadline passed.
    fn timeout(&mut self, now: Instant);
    /// Next write.
    fn transmit(&mut self) -> Option<Transmit>;
    /// Next event.
    fn event(&mut self) -> Option<Self::Event>;
    /// Next deadline.
    fn deadline(&self) -> Option<Instant>;
}

impl ClientMachine for ClientPairing {
    type Event = pairing::ClientEvent;
    fn notify(&mut self, now: Instant, char: Char, data: &[u8]) {
        self.handle_notification(now, char, data);
    }
    fn timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<Self::Event> {
        self.poll_event()
    }
    fn deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
}

impl ClientMachine for ClientLogin {
    type Event = login::ClientEvent;
    fn notify(&mut self, now: Instant, char: Char, data: &[u8]) {
        self.handle_notification(now, char, data);
    }
    fn timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<Self::Event> {
        self.poll_event()
    }
    fn deadline(&self) -> Option<Instant> {
        self.poll_timeout()
    }
}

/// When the bench presses the scooter's power button after a beep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Button {
    /// Never.
    Never,
    /// This long after each beep.
    After(Duration),
}

/// The client's UART side for one connection.
#[derive(Debug)]
pub(crate) struct UartClient {
    pub generation: Generation,
    pub cipher: Option<UartCipher>,
    /// The session keys a Mi-auth client logged in with.
    pub keys: Option<SessionKeys>,
    pub keystream: Option<Keystream>,
    pub reassembler: Reassembler,
    pub rejected: u64,
}

impl UartClient {
    /// A client for `generation` with no keys yet.
    pub(crate) fn new(generation: Generation) -> UartClient {
        UartClient {
            generation,
            cipher: None,
            keys: None,
            keystream: None,
            reassembler: Reassembler::new(generation),
            rejected: 0,
        }
    }

    /// A Mi-auth client with the session keys of a login.
    pub(crate) fn miauth(keys: SessionKeys) -> UartClient {
        UartClient {
            cipher: Some(UartCipher::new(keys.clone(), Role::Client)),
            keys: Some(keys),
            ..UartClient::new(Generation::MiAuth)
        }
    }

    fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        match self.generation {
            Generation::MiAuth => match &mut self.cipher {
                Some(cipher) => cipher.seal(frame, [1, 2, 3, 4]),
                // Without keys a client can only send what an old scooter understands.
                None => frame.encode(),
            },
            Generation::Xor => match &self.keystream {
                Some(k) => k.encrypt(frame),
                None => frame.encode(),
            },
            Generation::Plain => frame.encode(),
        }
    }

    fn decode(&mut self, wire: &[u8]) -> Option<Frame> {
        let frame = match self.generation {
            Generation::MiAuth => self.cipher.as_mut().and_then(|c| c.open(wire).ok()),
            Generation::Xor => self.keystream.as_ref().and_then(|k| k.decrypt(wire).ok()),
            Generation::Plain => Frame::decode(wire).ok(),
        };
        if frame.is_none() {
            self.rejected += 1;
        }
        frame
    }
}

/// A scooter and a fake clock.
pub(crate) struct Bench {
    pub scooter: Scooter,
    pub start: Instant,
    pub now: Instant,
    pub button: Button,
    pub events: Vec<ScooterEvent>,
    /// Notifications taken from the scooter.
    pub received: u64,
    press_at: Option<Instant>,
    rng: StdRng,
}

impl Bench {
    /// A bench around a scooter built from `config`.
    pub(crate) fn new(config: ScooterConfig) -> Bench {
        let scooter = Scooter::new(config).unwrap_or_else(|e| panic!("scooter: {e}"));
        Bench::with_scooter(scooter)
    }

    /// A bench around an existing scooter.
    pub(crate) fn with_scooter(scooter: Scooter) -> Bench {
        let start = Instant::now();
        Bench {
            scooter,
            start,
            now: start,
            button: Button::Never,
            events: Vec::new(),
            received: 0,
            press_at: None,
            rng: StdRng::seed_from_u64(99),
        }
    }

    /// Connect, panicking on refusal.
    pub(crate) fn connect(&mut self) {
        let now = self.now;
        self.scooter
            .connect(now)
            .unwrap_or_else(|e| panic!("connect refused: {e}"));
        self.collect_events();
    }

    /// Disconnect.
    pub(crate) fn disconnect(&mut self) {
        let now = self.now;
        self.scooter.disconnect(now);
        self.collect_events();
    }

    /// The next notification the scooter sends, counted.
    fn take(&mut self) -> Option<Transmit> {
        let t = self.scooter.poll_transmit()?;
        self.received += 1;
        Some(t)
    }

    /// Put a fault into force now.
    pub(crate) fn fault(&mut self, fault: m365_sim::Fault) {
        let now = self.now;
        self.scooter.apply_fault(now, fault);
        self.collect_events();
    }

    /// Press the power button now.
    pub(crate) fn press(&mut self) {
        let now = self.now;
        self.scooter.press_button(now);
        self.collect_events();
    }

    /// Let `d` pass, firing every scooter deadline on the way (notifications that fall due are
    /// discarded: nobody listens).
    pub(crate) fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        // Every deadline is cleared by handling it; the bound only guards a broken machine.
        for _ in 0..100_000 {
            let next = [self.scooter.poll_timeout(), self.press_at]
                .into_iter()
                .flatten()
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            self.tick();
            while self.take().is_some() {}
        }
        self.now = end;
        self.tick();
    }

    fn tick(&mut self) {
        let now = self.now;
        if self.press_at.is_some_and(|t| t <= now) {
            self.press_at = None;
            self.scooter.press_button(now);
        }
        self.scooter.handle_timeout(now);
        self.collect_events();
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.scooter.poll_event() {
            if e == ScooterEvent::Beep
                && let Button::After(d) = self.button
            {
                self.press_at = Some(self.now + d);
            }
            self.events.push(e);
        }
    }

    /// Write one transmit to the scooter.
    pub(crate) fn write(&mut self, char: Char, data: &[u8]) {
        let now = self.now;
        self.scooter.handle_write(now, char, data);
        self.collect_events();
    }

    /// Drive `machine` against the scooter until it reports an event or `limit` passes.
    pub(crate) fn drive<M: ClientMachine>(
        &mut self,
        machine: &mut M,
        limit: Duration,
    ) -> Option<M::Event> {
        let end = self.now + limit;
        loop {
            let mut moved = false;
            while let Some(t) = machine.transmit() {
                self.write(t.char, &t.data);
                moved = true;
            }
            while let Some(t) = self.take() {
                assert!(
                    t.data.len() <= ATT_PAYLOAD,
                    "notification longer than 20 bytes"
                );
                machine.notify(self.now, t.char, &t.data);
                moved = true;
            }
            if let Some(e) = machine.event() {
                return Some(e);
            }
            if moved {
                continue;
            }
            let next = [
                machine.deadline(),
                self.scooter.poll_timeout(),
                self.press_at,
            ]
            .into_iter()
            .flatten()
            .min()?;
            if next > end {
                return None;
            }
            self.now = self.now.max(next);
            if machine.deadline().is_some_and(|t| t <= self.now) {
                machine.timeout(self.now);
            }
            self.tick();
        }
    }

    /// Run a whole registration.
    pub(crate) fn register(&mut self) -> Result<Registration, PairingError> {
        let mut client = ClientPairing::new(self.now, &mut self.rng, ClientConfig::default());
        loop {
            match self.drive(&mut client, Duration::from_secs(30)) {
                Some(pairing::ClientEvent::Registered(r)) => return Ok(r),
                Some(pairing::ClientEvent::Failed(e)) => return Err(e),
                Some(pairing::ClientEvent::DidInvented(_)) => continue,
                None => panic!("registration neither finished nor failed"),
            }
        }
    }

    /// Run a whole login with `token`.
    pub(crate) fn login(&mut self, token: &Token) -> Result<SessionKeys, LoginError> {
        let mut client = ClientLogin::new(
            self.now,
            &mut self.rng,
            token.clone(),
            login::Config::default(),
        );
        match self.drive(&mut client, Duration::from_secs(30)) {
            Some(login::ClientEvent::LoggedIn(keys)) => Ok(keys),
            Some(login::ClientEvent::Failed(e)) => Err(e),
            None => panic!("login neither finished nor failed"),
        }
    }

    /// Send `frame` over the UART and wait up to 2 s for one answer.
    pub(crate) fn request(&mut self, client: &mut UartClient, frame: &Frame) -> Option<Frame> {
        let wire = client.encode(frame);
        for chunk in wire.chunks(ATT_PAYLOAD) {
            self.write(Char::UartWrite, chunk);
        }
        self.await_answer(client, Duration::from_secs(2))
    }

    /// Collect UART notifications until one frame decodes or `limit` passes.
    pub(crate) fn await_answer(
        &mut self,
        client: &mut UartClient,
        limit: Duration,
    ) -> Option<Frame> {
        let end = self.now + limit;
        loop {
            while let Some(t) = self.take() {
                if t.char == Char::UartNotify {
                    client.reassembler.push(&t.data);
                }
            }
            while let Some(wire) = client.reassembler.next_frame() {
                if let Some(frame) = client.decode(&wire) {
                    return Some(frame);
                }
            }
            let next = [self.scooter.poll_timeout(), self.press_at]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.tick();
                }
                _ => {
                    self.now = end;
                    self.tick();
                    return None;
                }
            }
        }
    }

    /// Send `frame` over the UART and return the lengths of the UART notifications that came
    /// back within 1 s, in order (the frames are also fed to the client's reassembler).
    pub(crate) fn notification_lengths(
        &mut self,
        client: &mut UartClient,
        frame: &Frame,
    ) -> Vec<usize> {
        let wire = client.encode(frame);
        for chunk in wire.chunks(ATT_PAYLOAD) {
            self.write(Char::UartWrite, chunk);
        }
        let end = self.now + Duration::from_secs(1);
        let mut lengths = Vec::new();
        loop {
            while let Some(t) = self.take() {
                if t.char == Char::UartNotify {
                    lengths.push(t.data.len());
                    client.reassembler.push(&t.data);
                }
            }
            match self.scooter.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.tick();
                }
                _ => {
                    self.now = end;
                    self.tick();
                    while let Some(t) = self.take() {
                        if t.char == Char::UartNotify {
                            lengths.push(t.data.len());
                        }
                    }
                    return lengths;
                }
            }
        }
    }

    /// Read `len` bytes at `attr` of `unit`; the answer's payload.
    pub(crate) fn read(
        &mut self,
        client: &mut UartClient,
        unit: Unit,
        attr: u8,
        len: u8,
    ) -> Option<Frame> {
        self.request(client, &read_unit(unit, attr, len))
    }

    /// Register with the button pressed 1 s after the beep, then log in on a fresh
    /// connection; a ready Mi-auth UART client.
    pub(crate) fn paired_session(&mut self) -> (Token, UartClient) {
        self.button = Button::After(Duration::from_secs(1));
        self.connect();
        let registration = self.register().unwrap_or_else(|e| panic!("register: {e}"));
        self.disconnect();
        self.advance(Duration::from_secs(1));
        self.connect();
        let keys = self
            .login(&registration.token)
            .unwrap_or_else(|e| panic!("login: {e}"));
        (registration.token.clone(), UartClient::miauth(keys))
    }

    /// A generation-B client: KEY characteristic plus key recovery from BMS 0x50.
    pub(crate) fn xor_client(&mut self) -> UartClient {
        let key = self
            .scooter
            .read_characteristic(CHAR_KEY)
            .unwrap_or_else(|| panic!("no KEY characteristic"));
        let mut client = UartClient::new(Generation::Xor);
        let mut keystream = Keystream::new(key);
        let request = keystream.recovery_request();
        for chunk in request.chunks(ATT_PAYLOAD) {
            self.write(Char::UartWrite, chunk);
        }
        // The answer cannot be decoded yet: take its wire bytes.
        let end = self.now + Duration::from_secs(2);
        let wire = loop {
            while let Some(t) = self.take() {
                client.reassembler.push(&t.data);
            }
            if let Some(wire) = client.reassembler.next_frame() {
                break wire;
            }
            match self.scooter.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.tick();
                }
                _ => panic!("no answer to the key-recovery read"),
            }
        };
        keystream
            .extend_from_zero_read(&wire)
            .unwrap_or_else(|e| panic!("key recovery: {e}"));
        client.keystream = Some(keystream);
        client
    }
}

/// The little-endian word at byte offset `i` of `payload`.
pub(crate) fn word(payload: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([payload[i], payload[i + 1]])
}

/// A config with the link model off (answers leave at once) for tests about behaviour, not
/// timing.
pub(crate) fn instant_config(
    model: m365_sim::Model,
    generation: Generation,
    seed: u64,
) -> ScooterConfig {
    let mut c = ScooterConfig::new(model, seed).with_generation(generation);
    c.link = None;
    c.processing = m365_sim::scooter::Processing::NONE;
    c
}
