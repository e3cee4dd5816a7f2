//! Login (protocol.md §3.4), run on every new connection: both sides prove they hold the token
//! and derive the per-connection [`SessionKeys`]. [`ClientLogin`] plays `m365` (L1–L18),
//! [`DeviceLogin`] the simulated scooter.
//!
//! Same driving contract as the pairing machines (quinn-style): feed bytes with the current time,
//! call `handle_timeout(now)` at `poll_timeout()`, drain `poll_transmit` and `poll_event`. The
//! whole login has one deadline (10 s by default, miauth Java's value).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use crate::control::{Control, Refusal};
use crate::crypto::{LOGIN_RANDOM_LEN, LoginRandoms, PROOF_LEN};
use crate::gatt::{Char, Transmit};
use crate::keys::{SessionKeys, Token};
use crate::parcel::{Channel, ParcelError, ParcelType, Progress};

/// Timeouts of a login, either side.
#[derive(Debug, Clone)]
pub struct Config {
    /// The whole exchange must finish within this time after it started.
    pub timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a login failed, with what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// The scooter's proof does not match our token (client side; we sent nothing more).
    #[error(
        "token rejected: the scooter's login proof does not match the stored token (it was \
         registered again since, or the token belongs to another scooter); register again"
    )]
    TokenRejected,
    /// The client's proof does not match the stored token (device side; `23` sent).
    #[error("the client's login proof does not match the stored token (23 00 00 00 sent)")]
    ProofMismatch,
    /// The scooter answered `23` to our proof.
    #[error("the scooter rejected the login (23 00 00 00): register again")]
    Rejected,
    /// The scooter answered `22` (*LOG_INVALID_LTMK*): it holds no valid token for us.
    #[error("the scooter reports the stored token as invalid (22 00 00 00): register (pair) again")]
    InvalidToken,
    /// The scooter answered `E0`–`E3`.
    #[error("the scooter refused the login: {0}")]
    Refused(Refusal),
    /// The login did not finish in time.
    #[error("login timed out after {waited:?} waiting for {waiting_for}")]
    Timeout {
        /// The step that did not complete.
        waiting_for: &'static str,
        /// How long the whole login took so far.
        waited: Duration,
    },
    /// A parcel of the wrong length.
    #[error("login {what}: expected {expected} bytes, got {found}")]
    BadLength {
        /// Which parcel.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Bytes received.
        found: usize,
    },
    /// The parcel transport failed.
    #[error("parcel transport: {0}")]
    Parcel(ParcelError),
}

/// What [`ClientLogin`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// `21` came: the encrypted UART may start with these keys.
    LoggedIn(SessionKeys),
    /// The login failed; the machine is finished.
    Failed(LoginError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientStep {
    DevRandom,
    DevProof,
    ProofSent,
    Done,
}

impl ClientStep {
    fn waiting_for(self) -> &'static str {
        match self {
            ClientStep::DevRandom => "the device random",
            ClientStep::DevProof => "the device proof",
            ClientStep::ProofSent => "the login result (21/23)",
            ClientStep::Done => "nothing",
        }
    }
}

/// The client side of login. One instance per connection.
pub struct ClientLogin {
    token: Token,
    app_random: [u8; LOGIN_RANDOM_LEN],
    randoms: Option<LoginRandoms>,
    keys: Option<SessionKeys>,
    channel: Channel,
    step: ClientStep,
    started: Instant,
    deadline: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ClientEvent>,
}

impl core::fmt::Debug for ClientLogin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ClientLogin")
            .field("step", &self.step)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl ClientLogin {
    /// Starts a login with `token`: the first transmits are `24` (L1) and the app random
    /// announce (L2). app_random is drawn from `rng`.
    pub fn new<R: RngCore + CryptoRng>(
        now: Instant,
        rng: &mut R,
        token: Token,
        config: Config,
    ) -> Self {
        let mut app_random = [0u8; LOGIN_RANDOM_LEN];
        rng.fill_bytes(&mut app_random);
        Self::with_app_random(now, app_random, token, config)
    }

    /// Like [`ClientLogin::new`] with app_random given as a value (for replaying recorded
    /// exchanges; it must be fresh for every real login).
    pub fn with_app_random(
        now: Instant,
        app_random: [u8; LOGIN_RANDOM_LEN],
        token: Token,
        config: Config,
    ) -> Self {
        let mut this = ClientLogin {
            token,
            app_random,
            randoms: None,
            keys: None,
            channel: Channel::new(),
            step: ClientStep::DevRandom,
            started: now,
            deadline: now + config.timeout,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        this.transmits.push_back(Control::Login.transmit());
        // Armed from the start, so the inline variant (§3.5) and an early announce both work.
        this.channel
            .expect(now, ParcelType::DEV_RANDOM, LOGIN_RANDOM_LEN);
        this.send(ParcelType::APP_RANDOM, app_random.to_vec());
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
                Ok(Some(Progress::Received(kind, payload))) => self.on_parcel(now, kind, &payload),
                Ok(_) => {}
                Err(e) if e.is_fatal() => self.fail(LoginError::Parcel(e)),
                Err(e) => tracing::debug!(error = %e, "dropped a malformed AVDTP message"),
            },
            _ => {}
        }
        self.flush();
    }

    fn on_control(&mut self, data: &[u8]) {
        match Control::parse(data) {
            Ok(Control::LoginOk) if self.step == ClientStep::ProofSent => {
                if let Some(keys) = self.keys.take() {
                    self.step = ClientStep::Done;
                    self.events.push_back(ClientEvent::LoggedIn(keys));
                }
            }
            Ok(Control::LoginErr) => self.fail(LoginError::Rejected),
            // Defined by Xiaomi's library though not seen from scooters: ending the login here
            // beats waiting for the timeout with no chance of success.
            Ok(Control::InvalidToken) => self.fail(LoginError::InvalidToken),
            Ok(Control::Refused(refusal)) => self.fail(LoginError::Refused(refusal)),
            _ => {}
        }
    }

    fn on_parcel(&mut self, now: Instant, kind: ParcelType, payload: &[u8]) {
        match (self.step, kind) {
            (ClientStep::DevRandom, ParcelType::DEV_RANDOM) => {
                let Ok(dev) = <[u8; LOGIN_RANDOM_LEN]>::try_from(payload) else {
                    return self.fail(LoginError::BadLength {
                        what: "device random",
                        expected: LOGIN_RANDOM_LEN,
                        found: payload.len(),
                    });
                };
                self.randoms = Some(LoginRandoms {
                    app: self.app_random,
                    dev,
                });
                self.channel
                    .expect(now, ParcelType::DEV_CONFIRMATION, PROOF_LEN);
                self.step = ClientStep::DevProof;
            }
            (ClientStep::DevProof, ParcelType::DEV_CONFIRMATION) => {
                let Some(randoms) = self.randoms else { return };
                if payload.len() != PROOF_LEN {
                    return self.fail(LoginError::BadLength {
                        what: "device proof",
                        expected: PROOF_LEN,
                        found: payload.len(),
                    });
                }
                let keys = randoms.session_keys(&self.token);
                if !randoms.verify_device_proof(&keys, payload) {
                    // Abort without a word: a proof made with a stale token must not be answered.
                    return self.fail(LoginError::TokenRejected);
                }
                let proof = randoms.app_proof(&keys);
                self.keys = Some(keys);
                self.send(ParcelType::APP_CONFIRMATION, proof.to_vec());
                self.step = ClientStep::ProofSent;
            }
            _ => {}
        }
    }

    fn send(&mut self, kind: ParcelType, payload: Vec<u8>) {
        if let Err(e) = self.channel.send(kind, payload) {
            self.fail(LoginError::Parcel(e));
        }
        self.flush();
    }

    fn fail(&mut self, error: LoginError) {
        if self.step != ClientStep::Done {
            tracing::debug!(%error, "login failed");
            self.step = ClientStep::Done;
            self.keys = None;
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
            self.fail(LoginError::Timeout {
                waiting_for: self.step.waiting_for(),
                waited: now.saturating_duration_since(self.started),
            });
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

    /// When [`ClientLogin::handle_timeout`] should be called next; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.step == ClientStep::Done {
            return None;
        }
        Some(match self.channel.poll_timeout() {
            Some(t) => t.min(self.deadline),
            None => self.deadline,
        })
    }

    /// Whether the login has ended (logged in or failed).
    pub fn is_done(&self) -> bool {
        self.step == ClientStep::Done
    }
}

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
