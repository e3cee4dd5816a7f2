//! The device side of registration (protocol.md §3.3, §3.6), as the simulated scooter plays it:
//! [`DevicePairing`] answers the client's writes and models the power button (beep, press
//! window, registration window).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::{Did, INFO_HEADER, PairingError};
use crate::control::Control;
use crate::crypto::{DID_CIPHERTEXT_LEN, KeyPair, PUBLIC_KEY_LEN, PublicKey, RegistrationKeys};
use crate::gatt::{Char, Transmit};
use crate::keys::Token;
use crate::parcel::{Channel, ParcelError, ParcelType, Progress};

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
