//! One simulated scooter as a sans-IO machine: the device side of every exchange a client has
//! with a real scooter, driven by explicit calls and an explicit clock.
//!
//! A driver (the in-memory test harness, the fake BlueZ adapter) moves bytes and time:
//! [`Scooter::connect`] / [`Scooter::disconnect`] when the link changes,
//! [`Scooter::handle_write`] for every client write, [`Scooter::handle_timeout`] at
//! [`Scooter::poll_timeout`], then drains [`Scooter::poll_transmit`] (notifications of at most 20
//! bytes) and [`Scooter::poll_event`]. [`Scooter::step_physics`] advances the ride.
//!
//! Inside, the scooter owns its [`Profile`], [`Ride`], the pairing it remembers (persisted in a
//! state directory), the power button, faults and counters, and per connection the protocol of
//! its generation: Mi-auth registration and login (from `m365-proto`, device role) and then the
//! encrypted UART (D), the XOR UART (B) or the plain UART (A).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use m365_proto::control::Control;
use m365_proto::encrypted::UartCipher;
use m365_proto::frame::{Frame, HEADER_0, HEADER_PLAIN, RW_READ, RW_WRITE, RW_WRITE_ACK};
use m365_proto::gatt::{ATT_PAYLOAD, CHAR_KEY, CHAR_VERSION, Char, Transmit};
use m365_proto::keys::{Role, Token};
use m365_proto::login::{self, DeviceLogin};
use m365_proto::pairing::{self, DevicePairing, Did};
use m365_proto::uart::{Codec, UartCodec};
use m365_proto::xor::Keystream;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

pub use crate::config::{DEFAULT_SESSION_GRACE, Processing, ScooterConfig};
pub use crate::event::ScooterEvent;
use crate::faults::{ConnectError, Counters, Fate, Fault, FaultAction, FaultSchedule, FaultState};
use crate::link_timing::LinkClock;
use crate::profile::{Advertisement, Generation, Profile};
use crate::registers::{Command, Registers, Unit, decode_write, unit_of_request};

/// The register an unsolicited ("rogue") frame answers: the ESC frame temperature.
const ROGUE_REGISTER: u8 = 0x3E;
use crate::ride::Ride;
use crate::state_file::{self, PairingState, StateError};

/// A notification waiting for its time on the link.
#[derive(Debug)]
struct Pending {
    due: Instant,
    transmit: Transmit,
}

/// One simulated scooter.
pub struct Scooter {
    config: ScooterConfig,
    profile: Profile,
    ride: Ride,
    pin: [u8; 6],
    pairing_state: PairingState,
    state_path: Option<PathBuf>,
    pairing: DevicePairing<StdRng>,
    login: DeviceLogin<StdRng>,
    rng: StdRng,
    now: Option<Instant>,
    connected: bool,
    /// The UART codec of the current connection (the client uses the same one).
    uart: UartCodec,
    stash: Option<(Box<UartCipher>, Instant)>,
    /// When the internal serial bus (BLE module, ESC, BMS) finishes the answer in progress.
    uart_free_at: Option<Instant>,
    link: Option<LinkClock>,
    outbox: VecDeque<Pending>,
    events: VecDeque<ScooterEvent>,
    auto_press_at: Option<Instant>,
    /// Switched off (0x79, a power cycle): the rider switches it on again then.
    power_on_at: Option<Instant>,
    faults: FaultState,
    schedule: Option<(Instant, FaultSchedule)>,
    counters: Counters,
    adv_counter: u8,
}

impl std::fmt::Debug for Scooter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pairing holds the token: only say whether there is one.
        f.debug_struct("Scooter")
            .field("name", &self.profile.name())
            .field("generation", &self.profile.generation)
            .field("paired", &self.pairing_state.token.is_some())
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl Scooter {
    /// A scooter as configured. With a state directory, a pairing saved by an earlier run is
    /// restored; a state file that cannot be read is an error, never silently ignored.
    pub fn new(config: ScooterConfig) -> Result<Scooter, StateError> {
        let profile = Profile::new(config.model, config.generation, config.seed);
        let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5c00_7e25);
        let state_path = config
            .state_dir
            .as_deref()
            .map(|dir| state_file::path_for(dir, &profile.address));
        let mut pairing_state = match &state_path {
            Some(path) => state_file::load(path)?,
            None => PairingState::default(),
        };
        if pairing_state.did.is_none() && config.activated {
            pairing_state.did = Some(Did::generate(&mut rng));
        }
        let pairing = DevicePairing::new(
            StdRng::seed_from_u64(rng.next_u64()),
            pairing_state.did,
            config.button.clone(),
        );
        let login = DeviceLogin::new(
            StdRng::seed_from_u64(rng.next_u64()),
            pairing_state.token.clone(),
            config.login.clone(),
        );
        let ride = Ride::new(&profile, config.script.clone(), config.seed);
        let uart = UartCodec::new(fresh_codec(&profile));
        Ok(Scooter {
            pin: profile.pin,
            config,
            profile,
            ride,
            pairing_state,
            state_path,
            pairing,
            login,
            rng,
            now: None,
            connected: false,
            uart,
            stash: None,
            uart_free_at: None,
            link: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            auto_press_at: None,
            power_on_at: None,
            faults: FaultState::default(),
            schedule: None,
            counters: Counters::default(),
            adv_counter: 0,
        })
    }

    // ----- identity and observation -----

    /// The fixed identity.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The physical state.
    pub fn ride(&self) -> &Ride {
        &self.ride
    }

    /// The physical state, for tests and scripts that change it directly (charger, errors).
    pub fn ride_mut(&mut self) -> &mut Ride {
        &mut self.ride
    }

    /// The register memories as a read would see them now.
    pub fn registers(&self) -> Registers {
        Registers::snapshot(&self.profile, &self.pin, &self.ride)
    }

    /// What the scooter saw so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Faults in force.
    pub fn faults(&self) -> &FaultState {
        &self.faults
    }

    /// Faults in force, to lift one of them (e.g. end a muted UART) without healing the rest
    /// as [`Fault::ClearAll`] does.
    pub fn faults_mut(&mut self) -> &mut FaultState {
        &mut self.faults
    }

    /// Whether a client is connected.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the scooter holds a token.
    pub fn is_paired(&self) -> bool {
        self.pairing_state.token.is_some()
    }

    /// Whether the current connection has a session (logged in, or resumed).
    pub fn has_session(&self) -> bool {
        match self.uart.generation() {
            Generation::MiAuth => self.uart.has_session(),
            Generation::Xor | Generation::Plain => self.connected,
        }
    }

    /// The DID the BLE module holds.
    pub fn did(&self) -> Option<Did> {
        self.pairing.did()
    }

    /// The advertisement at this moment, or `None` while the scooter is off or out of range.
    /// Each call advances the FE95 frame counter, as consecutive advertisements do.
    pub fn advertisement(&mut self, now: Instant) -> Option<Advertisement> {
        if !self.ride.powered() || !self.faults.advertising(now) {
            return None;
        }
        self.adv_counter = self.adv_counter.wrapping_add(1);
        Some(self.profile.advertisement(self.adv_counter))
    }

    /// Whether a connection could be established at `now` (switched on, advertising, no fade).
    pub fn reachable(&self, now: Instant) -> bool {
        self.ride.powered() && self.faults.reachable(now)
    }

    /// When the scooter can be connected again, if it cannot be at `now` and that time is known
    /// (a fault or a power cycle ends then).
    pub fn reachable_again(&self, now: Instant) -> Option<Instant> {
        if self.reachable(now) {
            return None;
        }
        let fault = self.faults.reachable_again(now);
        let power = self.power_on_at.filter(|_| !self.ride.powered());
        match (fault, power) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Until when the scooter stays switched off, when it was switched off with a time to come
    /// back (ESC 0x79, a power cycle).
    pub fn off_until(&self) -> Option<Instant> {
        self.power_on_at.filter(|_| !self.ride.powered())
    }

    /// The value of a readable characteristic: the FE95 version string (D) or the KEY
    /// characteristic (B). `None` for characteristics that are not readable.
    pub fn read_characteristic(&self, uuid: u128) -> Option<Vec<u8>> {
        match (uuid, self.profile.generation) {
            (CHAR_VERSION, Generation::MiAuth) => Some(self.profile.version_string().into_bytes()),
            (CHAR_KEY, Generation::Xor) => Some(self.profile.key_char().to_vec()),
            _ => None,
        }
    }

    // ----- the link -----

    /// A client connects at `now`. Fails while the scooter is off, out of range, or when a fault
    /// says so, with the error BlueZ would report.
    pub fn connect(&mut self, now: Instant) -> Result<(), ConnectError> {
        self.advance(now);
        let admitted = if self.connected {
            Err(ConnectError::AlreadyConnected)
        } else if !self.ride.powered() {
            Err(ConnectError::Failed)
        } else {
            self.faults.admit_connect(now)
        };
        if let Err(e) = admitted {
            self.counters.connect_failures += 1;
            tracing::debug!(scooter = %self.profile.name(), error = %e, "connection refused");
            return Err(e);
        }
        self.connected = true;
        self.counters.connects += 1;
        self.link = self.config.link.map(|t| LinkClock::new(t, now));
        self.uart = UartCodec::new(fresh_codec(&self.profile));
        self.events.push_back(ScooterEvent::Connected);
        if let Some((cipher, until)) = self.stash.take()
            && now < until
        {
            self.uart.set_cipher(Some(cipher));
            self.events.push_back(ScooterEvent::SessionResumed);
            tracing::debug!(scooter = %self.profile.name(), "session resumed");
        }
        Ok(())
    }

    /// The link ended at `now` (either side). The session keys are dropped, or kept for the
    /// configured grace period.
    pub fn disconnect(&mut self, now: Instant) {
        self.advance(now);
        if !self.connected {
            return;
        }
        self.connected = false;
        self.counters.disconnects += 1;
        if let Some(cipher) = self.uart.set_cipher(None)
            && !self.config.session_grace.is_zero()
        {
            self.stash = Some((cipher, now + self.config.session_grace));
        }
        self.uart = UartCodec::new(fresh_codec(&self.profile));
        self.pairing.disconnected();
        self.login.disconnected();
        self.outbox.clear();
        self.link = None;
        self.events.push_back(ScooterEvent::Disconnected);
    }

    // ----- input -----

    /// A client wrote `data` to `char` at `now` (with or without response: both are accepted).
    pub fn handle_write(&mut self, now: Instant, char: Char, data: &[u8]) {
        self.advance(now);
        if !self.connected {
            return;
        }
        if self.profile.generation == Generation::MiAuth {
            self.handle_auth_write(now, char, data);
        }
        if char == Char::UartWrite {
            self.handle_uart_bytes(now, data);
        }
    }

    /// Deadlines that passed: faults due, the auto-press, parcel and login timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        if self.auto_press_at.is_some_and(|t| now >= t) {
            self.auto_press_at = None;
            self.press_button(now);
        }

        if self.connected && self.profile.generation == Generation::MiAuth {
            self.pairing.handle_timeout(now);
            self.login.handle_timeout(now);
            self.drain_machines(now);
        }
    }

    /// The user presses the power button: turns a powered-off scooter on, and otherwise counts
    /// as the registration confirmation when it comes within the allowed time after a beep.
    pub fn press_button(&mut self, now: Instant) {
        self.advance(now);
        self.counters.button_presses += 1;
        if !self.ride.powered() {
            // Switched on before the time it was due back: it advertises again now.
            if let Some(due) = self.power_on_at.take()
                && self.faults.hidden_until == Some(due)
            {
                self.faults.hidden_until = None;
            }
            self.switch_on();
            return;
        }
        self.pairing.press_button(now);
        self.drain_machines(now);
    }

    /// Advance the ride by `dt`.
    pub fn step_physics(&mut self, dt: Duration) {
        self.ride.step(dt);
    }

    /// Put `fault` into force at `now`.
    pub fn apply_fault(&mut self, now: Instant, fault: Fault) {
        self.advance(now);
        self.apply_fault_now(now, fault);
    }

    /// Apply the entries of `schedule` at their offsets from `start`.
    pub fn set_fault_schedule(&mut self, start: Instant, schedule: FaultSchedule) {
        self.schedule = Some((start, schedule));
    }

    // ----- output -----

    /// The next notification whose time on the link has come (at most 20 bytes).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let now = self.now?;
        let i = self.outbox.iter().position(|p| p.due <= now)?;
        let pending = self.outbox.remove(i)?;
        self.counters.notifications_sent += 1;
        Some(pending.transmit)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ScooterEvent> {
        self.events.pop_front()
    }

    /// When [`Scooter::handle_timeout`] should be called next (or when a queued notification
    /// becomes due, after which [`Scooter::poll_transmit`] yields it).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.outbox.iter().map(|p| p.due).min());
        consider(self.auto_press_at);
        consider(self.power_on_at);
        consider(
            self.schedule
                .as_ref()
                .and_then(|(start, s)| s.next_deadline(*start)),
        );
        if self.connected && self.profile.generation == Generation::MiAuth {
            consider(self.pairing.poll_timeout());
            consider(self.login.poll_timeout());
        }
        next
    }

    // ----- internals -----

    /// Move the scooter's notion of time forward, switch it on again when that is due, and
    /// apply scheduled faults that fell due.
    fn advance(&mut self, now: Instant) {
        if self.now.is_none_or(|t| now > t) {
            self.now = Some(now);
        }
        // Whatever comes first (a connect, a write, a timer) sees the scooter on again: the
        // rider pressed the button when it was due.
        if self.power_on_at.is_some_and(|t| now >= t) && !self.ride.powered() {
            self.power_on_at = None;
            self.counters.button_presses += 1;
            self.switch_on();
        }
        if let Some((start, schedule)) = &mut self.schedule {
            let due = schedule.due(*start, now);
            for fault in due {
                self.apply_fault_now(now, fault);
            }
        }
    }

    fn apply_fault_now(&mut self, now: Instant, fault: Fault) {
        tracing::debug!(scooter = %self.profile.name(), ?fault, "fault");
        if fault == Fault::ClearAll && !self.ride.powered() && self.power_on_at.take().is_some() {
            // Healing ends a power cycle too: the scooter is on again now.
            self.switch_on();
        }
        match self.faults.apply(now, fault) {
            FaultAction::None => {}
            FaultAction::Disconnect => {
                if self.connected {
                    // To the BLE module a lost link is a supervision timeout, indistinguishable
                    // from a central that went away: the session ends (or is kept for the
                    // configured grace) like after any disconnect.
                    self.events.push_back(ScooterEvent::DropLink);
                    self.disconnect(now);
                }
            }
            FaultAction::ExpireSession => self.expire_session(),
            FaultAction::PowerCycle(off_for) => self.switch_off(now, off_for),
        }
    }

    fn switch_on(&mut self) {
        self.ride.power_on();
        self.events.push_back(ScooterEvent::PoweredOn);
    }

    /// The scooter goes off now and comes back on after `off_for`: the link drops, nothing
    /// advertises, and the BLE module restarts, so no session survives.
    fn switch_off(&mut self, now: Instant, off_for: Duration) {
        self.ride.power_off();
        self.events.push_back(ScooterEvent::PoweredOff);
        let until = now + off_for;
        self.power_on_at = Some(until);
        self.faults.hidden_until = Some(self.faults.hidden_until.map_or(until, |t| t.max(until)));
        self.stash = None;
        self.uart.set_cipher(None);
        if self.connected {
            self.events.push_back(ScooterEvent::DropLink);
            self.disconnect(now);
        }
    }

    fn expire_session(&mut self) {
        self.stash = None;
        if self.uart.set_cipher(None).is_some() {
            // Forget the logged-in state too, so the next `24` is a fresh login, not an E2.
            self.login.disconnected();
            self.events.push_back(ScooterEvent::SessionExpired);
        }
    }

    fn handle_auth_write(&mut self, now: Instant, char: Char, data: &[u8]) {
        let control = (char == Char::Upnp)
            .then(|| Control::parse(data).ok())
            .flatten();
        match control {
            Some(Control::GetInfo) => self.counters.registration_attempts += 1,
            Some(Control::Login) if self.faults.refuse_login => {
                // The fault answers for the login machine, which never sees this `24`.
                self.counters.login_failures += 1;
                self.queue(now, Control::LoginErr.transmit());
                self.events
                    .push_back(ScooterEvent::LoginFailed("login refused (fault)".into()));
                return;
            }
            _ => {}
        }
        self.pairing.handle_write(now, char, data);
        self.login.handle_write(now, char, data);
        self.drain_machines(now);
    }

    /// Move transmits and events out of the pairing and login machines.
    fn drain_machines(&mut self, now: Instant) {
        while let Some(t) = self.pairing.poll_transmit() {
            self.queue(now, t);
        }
        while let Some(t) = self.login.poll_transmit() {
            self.queue(now, t);
        }
        while let Some(event) = self.pairing.poll_event() {
            self.on_pairing_event(now, event);
        }
        while let Some(event) = self.login.poll_event() {
            self.on_login_event(event);
        }
    }

    fn on_pairing_event(&mut self, now: Instant, event: pairing::DeviceEvent) {
        match event {
            pairing::DeviceEvent::Beep => {
                self.counters.beeps += 1;
                tracing::info!(scooter = %self.profile.name(), "beep: press the power button");
                if let Some(delay) = self.config.auto_press {
                    self.auto_press_at = Some(now + delay);
                }
                self.events.push_back(ScooterEvent::Beep);
            }
            pairing::DeviceEvent::WindowOpened { until } => {
                self.counters.windows_opened += 1;
                self.events.push_back(ScooterEvent::WindowOpened { until });
            }
            pairing::DeviceEvent::Registered { token, did } => {
                self.counters.registrations += 1;
                tracing::info!(scooter = %self.profile.name(), %did, "registered");
                self.login.set_token(Some(token.clone()));
                self.pairing_state = PairingState {
                    token: Some(token),
                    did: Some(did),
                };
                self.persist();
                self.events.push_back(ScooterEvent::Registered);
            }
            pairing::DeviceEvent::Rejected(e) => {
                self.counters.registration_failures += 1;
                self.events
                    .push_back(ScooterEvent::RegistrationRejected(e.to_string()));
            }
        }
    }

    fn persist(&mut self) {
        let Some(path) = &self.state_path else {
            return;
        };
        if let Err(e) = state_file::save(path, &self.pairing_state) {
            tracing::warn!(error = %e, "pairing not saved");
            self.events
                .push_back(ScooterEvent::StateNotSaved(e.to_string()));
        }
    }

    fn on_login_event(&mut self, event: login::DeviceEvent) {
        match event {
            login::DeviceEvent::LoggedIn(keys) => {
                self.counters.logins += 1;
                self.stash = None;
                self.uart = UartCodec::new(Codec::MiAuth(Some(Box::new(UartCipher::new(
                    keys,
                    Role::Device,
                )))));
                self.events.push_back(ScooterEvent::LoggedIn);
            }
            login::DeviceEvent::Refused(refusal) => {
                self.counters.login_failures += 1;
                self.events.push_back(ScooterEvent::LoginRefused(refusal));
            }
            login::DeviceEvent::Failed(e) => {
                self.counters.login_failures += 1;
                self.events
                    .push_back(ScooterEvent::LoginFailed(e.to_string()));
            }
        }
    }

    fn handle_uart_bytes(&mut self, now: Instant, data: &[u8]) {
        // Only a write that starts a frame can be a plain frame: a later slice of an
        // encrypted frame may begin with the same two bytes.
        let plain_start =
            self.uart.buffered() == 0 && data.get(..2) == Some(&[HEADER_0, HEADER_PLAIN][..]);
        if self.profile.generation == Generation::MiAuth && plain_start {
            // Mi-auth firmware ignores plain frames, before and after login (§3.6, §8.7).
            self.counters.rejected_frames += 1;
            return;
        }
        // The codec keeps a running total of rejected frames; what a request does may replace
        // the codec (a power-off ends the connection), so count step by step.
        let mut seen = self.uart.rejected_frames();
        self.uart.push(data);
        loop {
            let next = self.uart.next_frame();
            let rejected = self.uart.rejected_frames();
            self.counters.rejected_frames += rejected.saturating_sub(seen);
            seen = rejected;
            match next {
                None => break,
                Some(Ok(frame)) => {
                    self.dispatch(now, frame);
                    seen = self.uart.rejected_frames();
                }
                // Counted above: bad checksum, tag or counter, or no session yet.
                Some(Err(_)) => {}
            }
        }
    }

    /// Answer one decoded request frame.
    fn dispatch(&mut self, now: Instant, frame: Frame) {
        if self.faults.mute_uart {
            return;
        }
        let Some(unit) = unit_of_request(frame.dir) else {
            self.counters.rejected_frames += 1;
            return;
        };
        let reply = match frame.rw {
            RW_READ => {
                let Some(&len) = frame.payload.first() else {
                    self.counters.rejected_frames += 1;
                    return;
                };
                // LEN = n + 2 must fit one byte.
                if len == 0 || len > 253 {
                    self.counters.rejected_frames += 1;
                    return;
                }
                self.counters.reads += 1;
                let data = self.registers().read(unit, frame.attr, len);
                Some((RW_READ, data))
            }
            RW_WRITE_ACK | RW_WRITE => {
                self.counters.writes += 1;
                let result = decode_write(unit, frame.attr, &frame.payload);
                let ok = match result {
                    Ok(commands) => {
                        for command in commands {
                            self.execute(now, command);
                        }
                        true
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "write refused");
                        false
                    }
                };
                (frame.rw == RW_WRITE_ACK).then(|| (RW_WRITE_ACK, vec![u8::from(ok)]))
            }
            _ => {
                self.counters.rejected_frames += 1;
                None
            }
        };
        if let Some((rw, payload)) = reply {
            let answer = Frame {
                dir: unit.reply_dir(),
                rw,
                attr: frame.attr,
                payload,
            };
            // The BLE module relays every request to one half-duplex serial bus shared by the
            // ESC and the BMS: a controller starts on a request only once the bus is free, so
            // pipelined requests are answered one after another, never in parallel.
            let start = self.uart_free_at.map_or(now, |free| free.max(now));
            let ready = start + self.config.processing.delay(unit);
            self.uart_free_at = Some(ready);
            self.send_uart(ready, &answer);
            if self.faults.rogue(&mut self.rng) {
                // A frame nobody asked for, right behind the answer (protocol.md §4.6.5).
                self.counters.rogue_frames += 1;
                let rogue = Frame {
                    dir: Unit::Esc.reply_dir(),
                    rw: RW_READ,
                    attr: ROGUE_REGISTER,
                    payload: self.registers().read(Unit::Esc, ROGUE_REGISTER, 2),
                };
                self.send_uart(ready, &rogue);
            }
        }
    }

    fn execute(&mut self, now: Instant, command: Command) {
        match command {
            Command::Lock => self.ride.lock(),
            Command::Unlock => self.ride.unlock(),
            Command::Reboot => {
                self.ride.reboot();
                self.events.push_back(ScooterEvent::Rebooted);
            }
            Command::PowerOff => self.switch_off(now, self.config.power_off_hold),
            Command::SpeedMode(mode) => self.ride.set_speed_mode(mode),
            Command::Kers(level) => self.ride.set_kers(level),
            Command::Cruise(on) => self.ride.set_cruise(on),
            Command::LightFlags(flags) => self.ride.set_light_flags(flags),
            Command::PinWord { word, bytes } => {
                if let Some(slot) = self.pin.get_mut(word * 2..word * 2 + 2) {
                    slot.copy_from_slice(&bytes);
                }
            }
            Command::Ignored => {}
        }
    }

    /// Frame, encrypt if needed and queue an answer ready at `ready`.
    fn send_uart(&mut self, ready: Instant, frame: &Frame) {
        if !self.connected {
            return;
        }
        // Only Mi-auth frames carry random bytes: draw them only then, so the scooter's
        // random sequence (faults, noise) is the same for every generation.
        let mut random = [0u8; 4];
        if self.uart.generation() == Generation::MiAuth && self.uart.has_session() {
            self.rng.fill(&mut random);
        }
        let Some(wire) = self.uart.seal(frame, random) else {
            return;
        };
        for chunk in wire.chunks(ATT_PAYLOAD) {
            self.queue(
                ready,
                Transmit {
                    char: Char::UartNotify,
                    data: chunk.to_vec(),
                },
            );
        }
        // The BLE module ends a frame whose last notification is full with an empty one
        // (protocol.md §2.3): clients that count notifications per answer wait for it.
        if self.config.empty_terminator && wire.len().is_multiple_of(ATT_PAYLOAD) {
            self.counters.empty_notifications += 1;
            self.queue(
                ready,
                Transmit {
                    char: Char::UartNotify,
                    data: Vec::new(),
                },
            );
        }
    }

    /// Queue one notification ready at `ready`: the link model decides when it leaves, faults
    /// may drop, corrupt or delay it.
    fn queue(&mut self, ready: Instant, mut transmit: Transmit) {
        if !self.connected {
            return;
        }
        if !transmit.data.is_empty() && self.faults.extra_empty(&mut self.rng) {
            self.counters.empty_notifications += 1;
            self.queue(
                ready,
                Transmit {
                    char: transmit.char,
                    data: Vec::new(),
                },
            );
        }
        let mut due = match &mut self.link {
            Some(clock) => clock.schedule(ready),
            None => ready,
        };
        match self.faults.fate(&mut self.rng, transmit.data.len()) {
            Fate::Send => {}
            Fate::Drop => {
                self.counters.notifications_dropped += 1;
                return;
            }
            Fate::Corrupt(i) => {
                if let Some(b) = transmit.data.get_mut(i) {
                    *b ^= 0xFF;
                }
                self.counters.notifications_corrupted += 1;
            }
            Fate::Delay(d) => {
                due += d;
                self.counters.notifications_delayed += 1;
            }
        }
        // Keep the outbox in departure order; equal times keep their queueing order.
        let at = self.outbox.partition_point(|p| p.due <= due);
        self.outbox.insert(at, Pending { due, transmit });
    }

    /// The token the scooter holds, for tests that compare it with the client's. The simulator
    /// never logs it.
    pub fn stored_token(&self) -> Option<&Token> {
        self.pairing_state.token.as_ref()
    }
}

/// The codec a new connection starts with: Mi-auth without keys until login.
fn fresh_codec(profile: &Profile) -> Codec {
    match profile.generation {
        Generation::MiAuth => Codec::MiAuth(None),
        Generation::Xor => Codec::Xor(Keystream::new(profile.xor_key.clone())),
        Generation::Plain => Codec::Plain,
    }
}
