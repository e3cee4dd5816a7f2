//! The client side of login (protocol.md §3.4, L1 to L18), as `m365` plays it on every new
//! connection: [`ClientLogin`] announces its random, checks the scooter's proof against the token,
//! sends its own and reports the session keys (or why the login failed).

use std::collections::VecDeque;
use std::time::Instant;

use rand_core::{CryptoRng, RngCore};

use super::{Config, LoginError};
use crate::control::Control;
use crate::crypto::{LOGIN_RANDOM_LEN, LoginRandoms, PROOF_LEN};
use crate::gatt::{Char, Transmit};
use crate::keys::{SessionKeys, Token};
use crate::parcel::{Channel, ParcelError, ParcelType, Progress};

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
