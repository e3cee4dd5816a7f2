//! The device side of login (protocol.md §3.4), as the simulated scooter plays it:
//! [`DeviceLogin`] answers `24` (or refuses it with `E0`–`E3`), proves it holds the token, checks
//! the client's proof and reports the session keys.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::{Config, LoginError};
use crate::control::{Control, Refusal};
use crate::crypto::{LOGIN_RANDOM_LEN, LoginRandoms, PROOF_LEN};
use crate::gatt::{Char, Transmit};
use crate::keys::{SessionKeys, Token};
use crate::parcel::{Channel, ParcelError, ParcelType, Progress};

/// What [`DeviceLogin`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// `21` sent: switch the UART to encrypted mode with these keys.
    LoggedIn(SessionKeys),
    /// `E0`–`E3` sent to a `24`.
    Refused(Refusal),
    /// The login attempt failed (`23` sent, or the client went silent).
    Failed(LoginError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeviceStep {
    Idle,
    AppRandom,
    DevRandomSent,
    DevProofSent,
    AppProof,
    LoggedIn,
}

impl DeviceStep {
    fn waiting_for(self) -> &'static str {
        match self {
            DeviceStep::AppRandom => "the app random",
            DeviceStep::DevRandomSent => "RCV_OK for the device random",
            DeviceStep::DevProofSent => "RCV_OK for the device proof",
            DeviceStep::AppProof => "the app proof",
            DeviceStep::Idle | DeviceStep::LoggedIn => "nothing",
        }
    }
}

/// The device side of login. It lives as long as the simulated scooter (like
/// [`crate::pairing::DevicePairing`]); call [`DeviceLogin::disconnected`] when a link drops and
/// [`DeviceLogin::set_token`] after a registration.
pub struct DeviceLogin<R> {
    rng: R,
    config: Config,
    token: Option<Token>,
    step: DeviceStep,
    randoms: Option<LoginRandoms>,
    keys: Option<SessionKeys>,
    started: Option<Instant>,
    channel: Channel,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DeviceEvent>,
}

impl<R> core::fmt::Debug for DeviceLogin<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceLogin")
            .field("has_token", &self.token.is_some())
            .field("step", &self.step)
            .finish_non_exhaustive()
    }
}

impl<R: RngCore + CryptoRng> DeviceLogin<R> {
    /// A scooter holding `token` (`None`: never registered, every `24` gets `E0`).
    /// Each attempt draws its dev_random from `rng`.
    pub fn new(rng: R, token: Option<Token>, config: Config) -> Self {
        DeviceLogin {
            rng,
            config,
            token,
            step: DeviceStep::Idle,
            randoms: None,
            keys: None,
            started: None,
            channel: Channel::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Replaces the stored token (after a registration); takes effect at the next `24`.
    pub fn set_token(&mut self, token: Option<Token>) {
        self.token = token;
    }

    /// Whether this connection is logged in.
    pub fn is_logged_in(&self) -> bool {
        self.step == DeviceStep::LoggedIn
    }

    /// The link dropped: the session ends, the next connection must log in again (§3.7).
    pub fn disconnected(&mut self) {
        self.reset();
        self.channel = Channel::new();
        self.transmits.clear();
    }

    fn reset(&mut self) {
        self.step = DeviceStep::Idle;
        self.randoms = None;
        self.keys = None;
        self.channel.reset();
    }

    /// Feeds a write from the client. Writes that belong to other exchanges are ignored.
    pub fn handle_write(&mut self, now: Instant, char: Char, data: &[u8]) {
        match char {
            Char::Upnp => {
                if let Ok(Control::Login) = Control::parse(data) {
                    self.on_login(now);
                }
            }
            // Also while idle: an app-random announce that overtook its `24` waits in the
            // channel as pending and is answered once `24` arms the receiver. Registration
            // traffic meets an unarmed receiver and no sender, so it changes nothing.
            Char::Avdtp => match self.handle_avdtp(now, data) {
                Ok(Some(progress)) => self.on_progress(now, progress),
                Ok(None) => {}
                Err(e) if e.is_fatal() => self.fail(LoginError::Parcel(e), true),
                Err(e) => tracing::debug!(error = %e, "dropped a malformed AVDTP message"),
            },
            _ => {}
        }
        self.flush();
    }

    fn on_login(&mut self, now: Instant) {
        let refusal = if self.token.is_none() {
            Some(Refusal::NotRegistered)
        } else if self.step == DeviceStep::LoggedIn {
            Some(Refusal::RepeatLogin)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.transmits
                .push_back(Control::Refused(refusal).transmit());
            self.events.push_back(DeviceEvent::Refused(refusal));
            return;
        }
        // A `24` during an unfinished login restarts it. The channel is kept, so that an
        // announce which came before this `24` is answered by `expect` below; a stale sender in
        // it is replaced by the next parcel this login sends.
        self.step = DeviceStep::Idle;
        self.randoms = None;
        self.keys = None;
        self.started = Some(now);
        self.step = DeviceStep::AppRandom;
        self.channel
            .expect(now, ParcelType::APP_RANDOM, LOGIN_RANDOM_LEN);
    }

    fn on_progress(&mut self, now: Instant, progress: Progress) {
        match (self.step, progress) {
            (DeviceStep::AppRandom, Progress::Received(ParcelType::APP_RANDOM, payload)) => {
                let Ok(app) = <[u8; LOGIN_RANDOM_LEN]>::try_from(payload.as_slice()) else {
                    return self.fail(
                        LoginError::BadLength {
                            what: "app random",
                            expected: LOGIN_RANDOM_LEN,
                            found: payload.len(),
                        },
                        true,
                    );
                };
                let Some(token) = self.token.as_ref() else {
                    return;
                };
                let mut dev = [0u8; LOGIN_RANDOM_LEN];
                self.rng.fill_bytes(&mut dev);
                let randoms = LoginRandoms { app, dev };
                self.keys = Some(randoms.session_keys(token));
                self.randoms = Some(randoms);
                self.send(ParcelType::DEV_RANDOM, dev.to_vec());
                self.step = DeviceStep::DevRandomSent;
            }
            (DeviceStep::DevRandomSent, Progress::Sent(ParcelType::DEV_RANDOM)) => {
                let (Some(randoms), Some(keys)) = (self.randoms, self.keys.as_ref()) else {
                    return;
                };
                let proof = randoms.device_proof(keys);
                self.send(ParcelType::DEV_CONFIRMATION, proof.to_vec());
                self.step = DeviceStep::DevProofSent;
            }
            (DeviceStep::DevProofSent, Progress::Sent(ParcelType::DEV_CONFIRMATION)) => {
                self.channel
                    .expect(now, ParcelType::APP_CONFIRMATION, PROOF_LEN);
                self.step = DeviceStep::AppProof;
            }
            (DeviceStep::AppProof, Progress::Received(ParcelType::APP_CONFIRMATION, proof)) => {
                let (Some(randoms), Some(keys)) = (self.randoms, self.keys.take()) else {
                    return;
                };
                if randoms.verify_app_proof(&keys, &proof) {
                    self.transmits.push_back(Control::LoginOk.transmit());
                    self.events.push_back(DeviceEvent::LoggedIn(keys));
                    self.randoms = None;
                    self.step = DeviceStep::LoggedIn;
                } else {
                    self.fail(LoginError::ProofMismatch, true);
                }
            }
            _ => {}
        }
    }

    fn send(&mut self, kind: ParcelType, payload: Vec<u8>) {
        if let Err(e) = self.channel.send(kind, payload) {
            self.fail(LoginError::Parcel(e), true);
        }
    }

    fn fail(&mut self, error: LoginError, answer: bool) {
        tracing::debug!(%error, "login attempt failed");
        if answer {
            self.transmits.push_back(Control::LoginErr.transmit());
        }
        self.events.push_back(DeviceEvent::Failed(error));
        self.reset();
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

    fn deadline(&self) -> Option<Instant> {
        match self.step {
            DeviceStep::Idle | DeviceStep::LoggedIn => None,
            _ => self.started.map(|t| t + self.config.timeout),
        }
    }

    /// Fires the deadlines that passed: the lost-chunk timer, and the login timeout, after which
    /// the attempt is dropped silently (the client has given up too).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.deadline()
            && now >= deadline
        {
            let error = LoginError::Timeout {
                waiting_for: self.step.waiting_for(),
                waited: self
                    .started
                    .map_or(Duration::ZERO, |s| now.saturating_duration_since(s)),
            };
            self.fail(error, false);
        } else {
            self.channel.handle_timeout(now);
        }
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

    /// When [`DeviceLogin::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.deadline(), self.channel.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
