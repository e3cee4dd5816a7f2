//! The client side of registration (protocol.md §3.3, R1 to R20), as `m365` plays it:
//! [`ClientPairing`] asks for the device info, exchanges public keys, sends the encrypted DID and
//! reports the [`Registration`] (or why it failed, [`PairingError::ButtonNotPressed`] included).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::{Did, INFO_HEADER, INFO_LEN, PairingError, Registration};
use crate::control::Control;
use crate::crypto::{DID_LEN, KeyPair, PUBLIC_KEY_LEN, PublicKey, RegistrationKeys};
use crate::gatt::{Char, Transmit};
use crate::parcel::{Channel, ParcelError, ParcelType, Progress};

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
