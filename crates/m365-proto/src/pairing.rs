//! Registration ("pairing", protocol.md §3.3 and §3.6) as two sans-IO machines: [`ClientPairing`]
//! for `m365` and [`DevicePairing`] for the simulated scooter. Both create the 12-byte token.
//!
//! The machines follow quinn-proto: bytes that arrived go in with the current time
//! (`handle_notification` / `handle_write`), deadlines fire through `handle_timeout(now)`, and
//! the caller drains `poll_transmit`, `poll_event` and `poll_timeout` after every input.
//!
//! **The power button.** A scooter only answers the client's key announce (R7) after its power
//! button was pressed within 5 s of the beep it makes on `15`. A first attempt therefore often
//! stalls: [`ClientPairing`] reports [`PairingError::ButtonNotPressed`] when no `RCV_RDY` came
//! 3 s after the key announce. The driver then tells the user to press the power button when it
//! beeps, disconnects, waits 5 s, reconnects and starts a new `ClientPairing` from R1. Once the
//! button was pressed in time, the scooter accepts registrations for 30 s, so the retry passes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::control::{Control, Refusal};
use crate::crypto::{
    CryptoError, DID_CIPHERTEXT_LEN, DID_LEN, KeyPair, PUBLIC_KEY_LEN, PublicKey, RegistrationKeys,
};
use crate::gatt::{Char, Transmit};
use crate::keys::Token;
use crate::parcel::{Channel, ParcelError, ParcelType, Progress};

/// The header of the device info parcel.
pub const INFO_HEADER: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// Length of the device info parcel when the device holds a DID.
pub const INFO_LEN: usize = INFO_HEADER.len() + DID_LEN;

/// The 20-byte device ID ("BLE DID"), observed as `00` + 19 ASCII characters such as
/// `blt.4.18n58266kgg00`. It is not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Did(pub [u8; DID_LEN]);

impl Did {
    /// A new ID in the observed layout: `00` + `blt.4.` + 13 random lowercase letters and digits.
    ///
    /// The scooter adopts it, but the Mi cloud does not know it: Mi Home will then refuse the
    /// scooter ("standard verification error (-29)").
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Did {
        const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut did = [0u8; DID_LEN];
        did[1..7].copy_from_slice(b"blt.4.");
        for byte in &mut did[7..] {
            // Rejection sampling keeps the 36 symbols equally likely.
            *byte = loop {
                let r = (rng.next_u32() & 0xFF) as u8;
                if r < 252 {
                    break ALPHABET[usize::from(r % 36)];
                }
            };
        }
        Did(did)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; DID_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for Did {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Did({self})")
    }
}

impl core::fmt::Display for Did {
    /// The printable part, e.g. `blt.4.18n58266kgg00`; other bytes are shown as `\xNN`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let body = self.0.strip_prefix(&[0]).unwrap_or(&self.0);
        for &b in body {
            if b.is_ascii_graphic() {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// What a registration produced.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Registration {
    /// The token to store in `.mi-token`.
    #[zeroize(skip)]
    pub token: Token,
    /// The bind key (no known client uses it; kept for completeness).
    pub bind_key: [u8; 16],
    /// The DID the scooter now holds.
    #[zeroize(skip)]
    pub did: Did,
    /// Whether the DID was invented by this client because the scooter had none.
    #[zeroize(skip)]
    pub did_invented: bool,
}

impl core::fmt::Debug for Registration {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.token)
            .field("bind_key", &"<redacted>")
            .field("did", &self.did)
            .field("did_invented", &self.did_invented)
            .finish()
    }
}

/// Why a registration failed, with what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    /// No `RCV_RDY` to the key announce in time: the scooter waits for its power button.
    #[error(
        "the scooter did not accept the key exchange within {waited:?}: press the power button \
         when it beeps, then registration is retried"
    )]
    ButtonNotPressed {
        /// How long the client waited.
        waited: Duration,
    },
    /// The peer went silent.
    #[error("registration timed out after {waited:?} waiting for {waiting_for}")]
    Timeout {
        /// The step that did not complete.
        waiting_for: &'static str,
        /// How long was waited.
        waited: Duration,
    },
    /// The device info parcel is neither the 4-byte header nor at least 24 bytes.
    #[error("device info: expected 4 or {INFO_LEN} bytes, got {found}")]
    BadDeviceInfo {
        /// Bytes received.
        found: usize,
    },
    /// The peer's public key was unusable.
    #[error("the peer's public key is unusable: {0}")]
    BadPublicKey(CryptoError),
    /// The device could not verify the DID ciphertext.
    #[error("the DID ciphertext did not verify: {0}")]
    BadDidCiphertext(CryptoError),
    /// `13` came before the DID ciphertext (or the client key) was complete.
    #[error("verification was requested before the {missing} arrived")]
    Incomplete {
        /// What had not arrived.
        missing: &'static str,
    },
    /// The device answered `12`: it could not verify our DID ciphertext.
    #[error(
        "the scooter rejected the registration (12 00 00 00): the key exchange did not match; \
         retry the registration"
    )]
    Rejected,
    /// The device answered `E0`–`E3`.
    #[error("the scooter refused: {0}")]
    Refused(Refusal),
    /// The parcel transport failed.
    #[error("parcel transport: {0}")]
    Parcel(ParcelError),
}

/// Timeouts of [`ClientPairing`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// How long to wait for `RCV_RDY` after the key announce before asking for the button (3 s,
    /// as miauth's Python client).
    pub key_ready_timeout: Duration,
    /// How long to wait for each other reply.
    pub step_timeout: Duration,
    /// The DID to send when the scooter has none; `None` generates one with [`Did::generate`].
    pub fallback_did: Option<Did>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            key_ready_timeout: Duration::from_secs(3),
            step_timeout: Duration::from_secs(5),
            fallback_did: None,
        }
    }
}

/// What [`ClientPairing`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The scooter had no DID; this one was invented. The scooter will work with `m365`, but Mi
    /// Home will not accept the scooter with an ID the Mi cloud does not know.
    DidInvented(Did),
    /// Registration succeeded: store the token.
    Registered(Registration),
    /// Registration failed; the machine is finished.
    Failed(PairingError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientStep {
    Info,
    KeyReady,
    KeySent,
    DeviceKey,
    DidSent,
    Result,
    Done,
}

impl ClientStep {
    fn waiting_for(self) -> &'static str {
        match self {
            ClientStep::Info => "the device info parcel",
            ClientStep::KeyReady => "RCV_RDY to the key announce",
            ClientStep::KeySent => "RCV_OK for our public key",
            ClientStep::DeviceKey => "the device public key",
            ClientStep::DidSent => "RCV_OK for the DID ciphertext",
            ClientStep::Result => "the registration result (11/12)",
            ClientStep::Done => "nothing",
        }
    }
}

/// The client side of registration, R1 to R20. One instance per attempt.
pub struct ClientPairing {
    config: ClientConfig,
    key_pair: KeyPair,
    fallback_did: Did,
    did: Option<(Did, bool)>,
    keys: Option<RegistrationKeys>,
    channel: Channel,
    step: ClientStep,
    step_started: Instant,
    deadline: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl core::fmt::Debug for ClientPairing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientPairing")
            .field("step", &self.step)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl ClientPairing {
    /// Starts a registration attempt at `now`: the first transmit is `A2` (R1). The key pair
    /// (and a fallback DID) are drawn from `rng` here.
    pub fn new<R: RngCore + CryptoRng>(now: Instant, rng: &mut R, config: ClientConfig) -> Self {
        let key_pair = KeyPair::generate(rng);
        let fallback_did = config.fallback_did.unwrap_or_else(|| Did::generate(rng));
        Self::with_key_pair(now, key_pair, fallback_did, config)
    }

    /// Like [`ClientPairing::new`] with the randomness given as values: the key pair of this
    /// attempt and the DID to send if the scooter has none (`config.fallback_did` is ignored).
    /// Replaying recorded exchanges needs this.
    pub fn with_key_pair(
        now: Instant,
        key_pair: KeyPair,
        fallback_did: Did,
        config: ClientConfig,
    ) -> Self {
        let mut channel = Channel::new();
        channel.expect(now, ParcelType::PASS_THROUGH, INFO_LEN);
        let mut this = ClientPairing {
            deadline: now + config.step_timeout,
            config,
            key_pair,
            fallback_did,
            did: None,
            keys: None,
            channel,
            step: ClientStep::Info,
            step_started: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        this.transmits.push_back(Control::GetInfo.transmit());
        this
    }

    /// Feeds a notification from the scooter.
    pub fn handle_notification(&mut self, now: Instant, char: Char, data: &[u8]) {
        if self.step == ClientStep::Done {
            return;
        }
        match char {
            Char::Upnp => self.on_control(data),
            Char::Avdtp => match self.handle_avdtp(now, data) {
                Ok(Some(progress)) => self.on_progress(now, progress),
                Ok(None) => {}
                Err(e) if e.is_fatal() => self.fail(PairingError::Parcel(e)),
                // One malformed message is dropped; the deadlines cover a peer that is broken.
                Err(e) => tracing::debug!(error = %e, "dropped a malformed AVDTP message"),
            },
            _ => {}
        }
        self.flush();
    }

    fn on_control(&mut self, data: &[u8]) {
        match Control::parse(data) {
            Ok(Control::AuthOk) if self.step == ClientStep::Result => {
                let (Some(keys), Some((did, did_invented))) = (self.keys.as_ref(), self.did) else {
                    return;
                };
                let registration = Registration {
                    token: keys.token.clone(),
                    bind_key: keys.bind_key,
                    did,
                    did_invented,
                };
                self.step = ClientStep::Done;
                self.events.push_back(ClientEvent::Registered(registration));
            }
            Ok(Control::AuthErr) => self.fail(PairingError::Rejected),
            Ok(Control::Refused(refusal)) => self.fail(PairingError::Refused(refusal)),
            _ => {} // other words belong to other exchanges
        }
    }

    fn on_progress(&mut self, now: Instant, progress: Progress) {
        match (self.step, progress) {
            (ClientStep::Info, Progress::Received(ParcelType::PASS_THROUGH, info)) => {
                // Bytes 4..24 are the DID; anything after them is ignored. A field of only
                // zeros or only 0xFF (erased flash) holds no ID: it is treated like the 4-byte
                // info of a module that was never activated (§11a Q10).
                let field = info
                    .get(INFO_HEADER.len()..INFO_LEN)
                    .filter(|f| !f.iter().all(|&b| b == 0x00) && !f.iter().all(|&b| b == 0xFF));
                let did = match (info.len(), field) {
                    (n, Some(field)) if n >= INFO_LEN => {
                        let mut did = [0u8; DID_LEN];
                        did.copy_from_slice(field);
                        (Did(did), false)
                    }
                    (n, _) if n == INFO_HEADER.len() || n >= INFO_LEN => {
                        self.events
                            .push_back(ClientEvent::DidInvented(self.fallback_did));
                        (self.fallback_did, true)
                    }
                    (found, _) => return self.fail(PairingError::BadDeviceInfo { found }),
                };
                self.did = Some(did);
                // R6 then R7, in the order miauth and macbury use.
                self.transmits.push_back(Control::SetKey.transmit());
                let key = self.key_pair.public_key().to_wire().to_vec();
                self.start_send(ParcelType::ECC_PUBKEY, key);
                self.enter(now, ClientStep::KeyReady, self.config.key_ready_timeout);
            }
            (ClientStep::KeyReady, Progress::Accepted(ParcelType::ECC_PUBKEY)) => {
                // Armed for the device key already: its announce (R11) follows our RCV_OK
                // (R10), and if that RCV_OK is lost the announce shows that our key arrived.
                self.channel
                    .expect(now, ParcelType::ECC_PUBKEY, PUBLIC_KEY_LEN);
                self.enter(now, ClientStep::KeySent, self.config.step_timeout);
            }
            (ClientStep::KeySent, Progress::Sent(ParcelType::ECC_PUBKEY)) => {
                self.enter(now, ClientStep::DeviceKey, self.config.step_timeout);
            }
            (
                ClientStep::KeySent | ClientStep::DeviceKey,
                Progress::Received(ParcelType::ECC_PUBKEY, key),
            ) => {
                let peer = match PublicKey::from_wire(&key) {
                    Ok(peer) => peer,
                    Err(e) => return self.fail(PairingError::BadPublicKey(e)),
                };
                let keys = RegistrationKeys::derive(&self.key_pair.shared_secret(&peer));
                let Some((did, _)) = self.did else { return };
                let ciphertext = keys.encrypt_did(did.as_bytes());
                self.keys = Some(keys);
                self.start_send(ParcelType::PASS_THROUGH, ciphertext.to_vec());
                self.enter(now, ClientStep::DidSent, self.config.step_timeout);
            }
            (ClientStep::DidSent, Progress::Sent(ParcelType::PASS_THROUGH)) => {
                self.transmits.push_back(Control::Auth.transmit());
                self.enter(now, ClientStep::Result, self.config.step_timeout);
            }
            _ => {}
        }
    }

    fn start_send(&mut self, kind: ParcelType, payload: Vec<u8>) {
        if let Err(e) = self.channel.send(kind, payload) {
            self.fail(PairingError::Parcel(e));
        }
    }

    fn enter(&mut self, now: Instant, step: ClientStep, timeout: Duration) {
        if self.step == ClientStep::Done {
            return;
        }
        self.step = step;
        self.step_started = now;
        self.deadline = now + timeout;
    }

    fn fail(&mut self, error: PairingError) {
        if self.step != ClientStep::Done {
            tracing::debug!(%error, "registration failed");
            self.step = ClientStep::Done;
            self.channel.reset();
            self.events.push_back(ClientEvent::Failed(error));
        }
    }

    /// Feeds the channel and queues its answer at once, so that an acknowledge goes out before
    /// anything the completed step triggers (e.g. `RCV_OK` before `15`).
    fn handle_avdtp(&mut self, now: Instant, data: &[u8]) -> Result<Option<Progress>, ParcelError> {
        let result = self.channel.handle(now, data);
        self.flush();
        result
    }

    fn flush(&mut self) {
        while let Some(data) = self.channel.poll_transmit() {
            self.transmits.push_back(Transmit {
                char: Char::Avdtp,
                data,
            });
        }
    }

    /// Fires the deadlines that passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.step == ClientStep::Done {
            return;
        }
        if now >= self.deadline {
            let waited = now.saturating_duration_since(self.step_started);
            let error = match self.step {
                // The announce itself got no answer: the device waits for the button.
                ClientStep::KeyReady => PairingError::ButtonNotPressed { waited },
                step => PairingError::Timeout {
                    waiting_for: step.waiting_for(),
                    waited,
                },
            };
            self.fail(error);
        } else {
            self.channel.handle_timeout(now);
        }
        self.flush();
    }

    /// The next write to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`ClientPairing::handle_timeout`] should be called next; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.step == ClientStep::Done {
            return None;
        }
        Some(match self.channel.poll_timeout() {
            Some(t) => t.min(self.deadline),
            None => self.deadline,
        })
    }

    /// Whether the attempt has ended (registered or failed).
    pub fn is_done(&self) -> bool {
        self.step == ClientStep::Done
    }

    /// The public key of this attempt.
    pub fn public_key(&self) -> &PublicKey {
        self.key_pair.public_key()
    }
}

/// Timing of the simulated power button (both are the simulator model of §3.6, not
/// measured on scooters).
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// A press counts only this long after the beep (5 s).
    pub press_within: Duration,
    /// A counted press allows registrations for this long (30 s).
    pub window: Duration,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            press_within: Duration::from_secs(5),
            window: Duration::from_secs(30),
        }
    }
}

/// What [`DevicePairing`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The scooter beeps: a client wants to register and no button window is open.
    Beep,
    /// A button press within the allowed time opened the registration window.
    WindowOpened {
        /// When it closes.
        until: Instant,
    },
    /// A registration succeeded (`11` sent). Store the token and the DID.
    Registered {
        /// The new token; it replaces any older one.
        token: Token,
        /// The DID the client sent; it replaces the stored one.
        did: Did,
    },
    /// A registration failed (`12` sent).
    Rejected(PairingError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceStep {
    /// Nothing asked, or the last attempt ended.
    Idle,
    /// `15` came, the button window is closed: the key announce stays unanswered.
    AwaitButton,
    /// Receiving the client key.
    ClientKey,
    /// Our key is being sent / the DID ciphertext expected.
    DidCiphertext,
}

/// The device side of registration. Unlike the other machines it lives as long as the simulated
/// scooter, because the button window outlasts a connection (the client disconnects, the user
/// presses, the client comes back); call [`DevicePairing::disconnected`] when a link drops.
///
/// Button model (§3.6): `15` outside an open window beeps ([`DeviceEvent::Beep`]) and leaves the
/// key announce unanswered; [`DevicePairing::press_button`] within `press_within` of the beep
/// opens a window of `window` and answers a waiting announce at once. A successful registration
/// closes the window, so the next one needs a new press.
pub struct DevicePairing<R> {
    rng: R,
    config: DeviceConfig,
    did: Option<Did>,
    beep_at: Option<Instant>,
    window_until: Option<Instant>,
    step: DeviceStep,
    key_pair: Option<KeyPair>,
    keys: Result<RegistrationKeys, PairingError>,
    ciphertext: Option<Vec<u8>>,
    channel: Channel,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DeviceEvent>,
}

impl<R> core::fmt::Debug for DevicePairing<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DevicePairing")
            .field("did", &self.did)
            .field("step", &self.step)
            .field("window_until", &self.window_until)
            .finish_non_exhaustive()
    }
}

impl<R: RngCore + CryptoRng> DevicePairing<R> {
    /// A scooter holding `did` (`None`: never activated, the info parcel is the header only).
    /// Each attempt draws a fresh key pair from `rng`.
    pub fn new(rng: R, did: Option<Did>, config: DeviceConfig) -> Self {
        DevicePairing {
            rng,
            config,
            did,
            beep_at: None,
            window_until: None,
            step: DeviceStep::Idle,
            key_pair: None,
            keys: Err(PairingError::Incomplete {
                missing: "client public key",
            }),
            ciphertext: None,
            channel: Channel::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The DID the scooter holds now.
    pub fn did(&self) -> Option<Did> {
        self.did
    }

    /// Feeds a write from the client. Writes that belong to other exchanges (login, UART) are
    /// ignored, so a driver may feed every write to every machine.
    pub fn handle_write(&mut self, now: Instant, char: Char, data: &[u8]) {
        match char {
            Char::Upnp => match Control::parse(data) {
                Ok(Control::GetInfo) => self.on_get_info(),
                Ok(Control::SetKey) => self.on_set_key(now),
                Ok(Control::Auth) => self.on_auth(),
                _ => {}
            },
            Char::Avdtp => match self.handle_avdtp(now, data) {
                Ok(Some(Progress::Received(kind, payload))) => self.on_parcel(now, kind, payload),
                Ok(_) => {}
                Err(e) if e.is_fatal() => self.reject(PairingError::Parcel(e)),
                Err(e) => tracing::debug!(error = %e, "dropped a malformed AVDTP message"),
            },
            _ => {}
        }
        self.flush();
    }

    /// The user pressed the power button.
    pub fn press_button(&mut self, now: Instant) {
        let counted = self
            .beep_at
            .is_some_and(|beep| now.saturating_duration_since(beep) <= self.config.press_within);
        if !counted {
            return;
        }
        self.beep_at = None;
        let until = now + self.config.window;
        self.window_until = Some(until);
        self.events.push_back(DeviceEvent::WindowOpened { until });
        if self.step == DeviceStep::AwaitButton {
            // The key announce may already be waiting: the receiver answers it now.
            self.start_key_exchange(now);
        }
        self.flush();
    }

    /// The link dropped: the attempt in progress ends, the button window stays.
    pub fn disconnected(&mut self) {
        self.reset_attempt();
        self.channel = Channel::new();
        self.transmits.clear();
    }

    fn reset_attempt(&mut self) {
        self.step = DeviceStep::Idle;
        self.key_pair = None;
        self.keys = Err(PairingError::Incomplete {
            missing: "client public key",
        });
        self.ciphertext = None;
        self.channel.reset();
    }

    fn on_get_info(&mut self) {
        self.reset_attempt();
        let mut info = INFO_HEADER.to_vec();
        if let Some(did) = self.did {
            info.extend_from_slice(did.as_bytes());
        }
        // 4 or 24 bytes always fit in a parcel.
        let _ = self.channel.send(ParcelType::PASS_THROUGH, info);
    }

    fn on_set_key(&mut self, now: Instant) {
        let open = self.window_until.is_some_and(|until| now < until);
        if open {
            self.start_key_exchange(now);
        } else {
            self.step = DeviceStep::AwaitButton;
            self.beep_at = Some(now);
            self.events.push_back(DeviceEvent::Beep);
        }
    }

    fn start_key_exchange(&mut self, now: Instant) {
        self.key_pair = Some(KeyPair::generate(&mut self.rng));
        self.keys = Err(PairingError::Incomplete {
            missing: "client public key",
        });
        self.ciphertext = None;
        self.step = DeviceStep::ClientKey;
        self.channel
            .expect(now, ParcelType::ECC_PUBKEY, PUBLIC_KEY_LEN);
    }

    fn on_parcel(&mut self, now: Instant, kind: ParcelType, payload: Vec<u8>) {
        match (self.step, kind) {
            (DeviceStep::ClientKey, ParcelType::ECC_PUBKEY) => {
                let Some(pair) = self.key_pair.as_ref() else {
                    return;
                };
                // A bad key is reported on `13` with `12`, as the scooter can answer nothing else.
                self.keys = PublicKey::from_wire(&payload)
                    .map(|peer| RegistrationKeys::derive(&pair.shared_secret(&peer)))
                    .map_err(PairingError::BadPublicKey);
                let own = pair.public_key().to_wire().to_vec();
                let _ = self.channel.send(ParcelType::ECC_PUBKEY, own);
                self.channel
                    .expect(now, ParcelType::PASS_THROUGH, DID_CIPHERTEXT_LEN);
                self.step = DeviceStep::DidCiphertext;
            }
            (DeviceStep::DidCiphertext, ParcelType::PASS_THROUGH) => {
                self.ciphertext = Some(payload);
            }
            _ => {}
        }
    }

    fn on_auth(&mut self) {
        let outcome = match (&self.keys, &self.ciphertext) {
            (Err(e), _) => Err(e.clone()),
            (Ok(_), None) => Err(PairingError::Incomplete {
                missing: "DID ciphertext",
            }),
            (Ok(keys), Some(ct)) => keys
                .decrypt_did(ct)
                .map(|did| (keys.token.clone(), Did(did)))
                .map_err(PairingError::BadDidCiphertext),
        };
        match outcome {
            Ok((token, did)) => {
                self.did = Some(did);
                // The window served its registration; a new one needs a new press.
                self.window_until = None;
                self.transmits.push_back(Control::AuthOk.transmit());
                self.events
                    .push_back(DeviceEvent::Registered { token, did });
                self.reset_attempt();
            }
            Err(e) => self.reject(e),
        }
    }

    fn reject(&mut self, error: PairingError) {
        tracing::debug!(%error, "rejecting the registration");
        self.transmits.push_back(Control::AuthErr.transmit());
        self.events.push_back(DeviceEvent::Rejected(error));
        self.reset_attempt();
    }

    /// Feeds the channel and queues its answer at once, so that an acknowledge goes out before
    /// anything the completed step triggers (e.g. `RCV_OK` before `15`).
    fn handle_avdtp(&mut self, now: Instant, data: &[u8]) -> Result<Option<Progress>, ParcelError> {
        let result = self.channel.handle(now, data);
        self.flush();
        result
    }

    fn flush(&mut self) {
        while let Some(data) = self.channel.poll_transmit() {
            self.transmits.push_back(Transmit {
                char: Char::Avdtp,
                data,
            });
        }
    }

    /// Fires the lost-chunk timer of the parcel being received.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.channel.handle_timeout(now);
        self.flush();
    }

    /// The next notification to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// When [`DevicePairing::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channel.poll_timeout()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(1);
            self.0
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next_u32() as u8;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for Counter {}

    #[test]
    fn generated_did_has_the_observed_layout() {
        let did = Did::generate(&mut Counter(0));
        assert_eq!(did.0[0], 0);
        assert_eq!(&did.0[1..7], b"blt.4.");
        assert!(
            did.0[7..]
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(did.to_string().len(), 19);
    }

    #[test]
    fn did_display_escapes_unprintable_bytes() {
        let mut raw = [b'a'; 20];
        raw[0] = 0;
        raw[5] = 0x01;
        assert_eq!(Did(raw).to_string(), "aaaa\\x01aaaaaaaaaaaaaa");
    }

    #[test]
    fn registration_debug_redacts_secrets() {
        let r = Registration {
            token: Token([0x5A; 12]),
            bind_key: [0xC3; 16],
            did: Did([0x41; 20]),
            did_invented: false,
        };
        let text = format!("{r:?}");
        assert!(!text.contains("c3c3") && !text.contains("195"), "{text}");
    }
}
