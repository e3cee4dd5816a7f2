//! [`ScooterLink`]: one scooter, kept reachable. It finds the scooter, connects, picks the
//! protocol, logs in, answers register reads and writes, and when the link drops reconnects
//! under the [`Reconnect`] policy, reusing the session when the link came back quickly. Reuse
//! is probed and given up at the first sign that the scooter dropped the session (real
//! scooters do, protocol.md §3.7), so it can cost one short wait but never strand the link. The
//! daemon calls [`ScooterLink::sample`] at its pace and only sees an error when the scooter is
//! really gone ([`BleError::Lost`]) or something needs a person (token, configuration).

use std::path::PathBuf;

use m365_proto::control::Refusal;
use m365_proto::encrypted::UartCipher;
use m365_proto::frame::Frame;
use m365_proto::gatt::Char;
use m365_proto::keys::{Role, Token};
use m365_proto::login::LoginError;
use m365_proto::model::{Generation, Model, detect_from_gatt};
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::settings::{KersLevel, Settings};
use m365_proto::registers::write::{self, WriteAck, WriteMode};
use m365_proto::registers::{esc, esc::REG_LOCK, esc::REG_UNLOCK};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::address::BdAddr;
use crate::counters::Counters;
use crate::error::BleError;
use crate::generation::{Selection, probe_plain, recover_keystream, select};
use crate::info::{self, Info};
use crate::login::login;
use crate::reconnect::{GiveUp, Phase, Reconnect, ReconnectConfig, Resume, Retry};
use crate::scanner::{self, Discovered, ScanFilter};
use crate::session::{Codec, ExchangeConfig, ExchangeError, Uart, exchange};
use crate::telemetry::{self, Telemetry};
use crate::token_file;
use crate::transport::{CONNECT_TIMEOUT, Transport, TransportError};

/// Exchanges in a row without any answer after which the link is rebuilt.
pub const SILENT_LIMIT: u32 = 2;

/// The shortest wait given to a connect, even at the very end of a window: a connection takes
/// a few connection events to set up.
const MIN_CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// How to reach and read the scooter.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Which scooter.
    pub filter: ScanFilter,
    /// Protocol forced by the configuration (`None`: detect).
    pub protocol: Option<Generation>,
    /// The `.mi-token` file (Mi-auth scooters).
    pub token_path: PathBuf,
    /// Scan, reconnect and session-reuse timing.
    pub reconnect: ReconnectConfig,
    /// Per-request timeout and retries.
    pub exchange: ExchangeConfig,
    /// Read the cell voltages in every sample.
    pub read_cells: bool,
    /// How writes (lock, cruise, KERS, tail light) are sent: RW 0x03 (default) or RW 0x02 with
    /// its acknowledgement; both are confirmed by reading the register back (§11a Q7).
    pub write_mode: WriteMode,
}

impl LinkConfig {
    /// Defaults: any `MIScooter`, detected protocol, `.mi-token`.
    pub fn new(token_path: PathBuf) -> LinkConfig {
        LinkConfig {
            filter: ScanFilter::default(),
            protocol: None,
            token_path,
            reconnect: ReconnectConfig::default(),
            exchange: ExchangeConfig::default(),
            read_cells: true,
            write_mode: WriteMode::NoAck,
        }
    }
}

/// A scooter kept reachable over `T`.
#[derive(Debug)]
pub struct ScooterLink<T: Transport> {
    transport: T,
    config: LinkConfig,
    found: Discovered,
    token: Option<Token>,
    generation: Option<Generation>,
    uart: Option<Uart>,
    online: bool,
    /// The session was reused after a reconnect and has not answered yet.
    unverified: bool,
    /// Exchanges in a row that got no answer at all.
    silent: u32,
    /// Whether a quick reconnect may reuse the session; off once a reused session failed.
    reuse_sessions: bool,
    policy: Reconnect,
    counters: Counters,
    rng: StdRng,
    /// Whether the link is up (connected and logged in), for those who watch it
    /// ([`ScooterLink::online_watch`]).
    up: tokio::sync::watch::Sender<bool>,
}

impl<T: Transport> ScooterLink<T> {
    /// Finds the scooter (for at most `scan_timeout`), connects and opens a session.
    pub async fn open(mut transport: T, config: LinkConfig) -> Result<ScooterLink<T>, BleError> {
        let mut policy = Reconnect::new(config.reconnect, Instant::now().into_std());
        let found = match scanner::find(
            &mut transport,
            &config.filter,
            config.reconnect.scan_timeout,
        )
        .await
        {
            Ok(found) => found,
            Err(e @ BleError::NotFound { .. }) => {
                policy.exhausted();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        tracing::info!(address = %found.address, name = ?found.name, model = ?found.model, "scooter found");
        let mut link = ScooterLink {
            transport,
            config,
            found,
            token: None,
            generation: None,
            uart: None,
            online: false,
            unverified: false,
            silent: 0,
            reuse_sessions: true,
            policy,
            counters: Counters::default(),
            rng: StdRng::from_entropy(),
            up: tokio::sync::watch::Sender::new(false),
        };
        link.ensure_online().await?;
        Ok(link)
    }

    /// The scooter as found by the scan.
    pub fn discovered(&self) -> &Discovered {
        &self.found
    }

    /// The scooter's address.
    pub fn address(&self) -> BdAddr {
        self.found.address
    }

    /// The generation spoken (after the first connection).
    pub fn generation(&self) -> Option<Generation> {
        self.generation
    }

    /// The model, when the advertisement told it.
    pub fn model(&self) -> Option<Model> {
        self.found.model
    }

    /// What happened so far.
    pub fn counters(&self) -> Counters {
        Counters {
            empty_notifications: self.transport.empty_notifications(),
            ..self.counters
        }
    }

    /// The reconnection phase.
    pub fn phase(&self) -> Phase {
        self.policy.phase()
    }

    /// The transport, e.g. to look at a simulator behind it.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Reads one telemetry sample (pipelined), reconnecting first if needed.
    pub async fn sample(&mut self) -> Result<Telemetry, BleError> {
        let answers = self
            .request(&telemetry::requests(self.config.read_cells))
            .await?;
        let sample = telemetry::decode(&answers)?;
        self.counters.samples += 1;
        Ok(sample)
    }

    /// Reads every register block of [`Info`].
    pub async fn info(&mut self) -> Result<Info, BleError> {
        let answers = self.request(&info::requests()).await?;
        Ok(info::decode(&answers, self.found.model)?)
    }

    /// Locks or unlocks, confirmed by reading the status back (§11a Q7).
    pub async fn set_locked(&mut self, locked: bool) -> Result<(), BleError> {
        let command = |mode| {
            if locked {
                write::lock(mode)
            } else {
                write::unlock(mode)
            }
        };
        let reg = if locked { REG_LOCK } else { REG_UNLOCK };
        self.write_confirmed(
            reg,
            u16::from(locked),
            command,
            esc::read_motor_info(),
            |frame| Ok(u16::from(MotorInfo::decode(frame)?.status.locked())),
        )
        .await
    }

    /// Turns cruise control on or off, confirmed by reading it back.
    pub async fn set_cruise(&mut self, on: bool) -> Result<(), BleError> {
        self.write_confirmed(
            esc::REG_CRUISE,
            u16::from(on),
            |mode| write::cruise(on, mode),
            esc::read_settings(),
            |frame| Ok(u16::from(Settings::decode(frame)?.cruise)),
        )
        .await
    }

    /// Sets the KERS level, confirmed by reading it back.
    pub async fn set_kers(&mut self, level: KersLevel) -> Result<(), BleError> {
        self.write_confirmed(
            esc::REG_KERS,
            level.raw(),
            |mode| write::kers(level, mode),
            esc::read_settings(),
            |frame| Ok(Settings::decode(frame)?.kers.raw()),
        )
        .await
    }

    /// Sets "tail light always on" (read-modify-write of the 0x7D flags, §11a Q13), confirmed by
    /// reading it back.
    pub async fn set_tail_light(&mut self, on: bool) -> Result<(), BleError> {
        let current = self.read_settings().await?.tail_light;
        self.write_confirmed(
            esc::REG_TAIL_LIGHT,
            current.with_always_on(on).0,
            |mode| write::tail_light(current, on, mode),
            esc::read_settings(),
            |frame| Ok(Settings::decode(frame)?.tail_light.0),
        )
        .await
    }

    /// Switches the scooter off (1 to ESC 0x79, protocol.md §6.5, §6.8); only its power button
    /// brings it back. There is no register to read back, so the write is sent acknowledged
    /// (RW 0x02, as py9b sends it) and confirmed by whatever comes first:
    ///
    /// - the acknowledgement (result `01`; any other result is
    ///   [`BleError::WriteNotConfirmed`]);
    /// - the link dropping, which is what a scooter going off does (the simulator drops it at
    ///   once and stays off for its `power_off_hold`, then the simulated rider switches it on);
    /// - with neither within [`ExchangeConfig::ack_timeout`], a motor-info read the scooter no
    ///   longer answers (still answered: [`BleError::WriteNotConfirmed`], the scooter is on).
    ///
    /// Sent once, never repeated after a reconnect: the link is left down (or dropped) and the
    /// next request reconnects under the usual policy, which finds the scooter only once
    /// someone switches it on again.
    pub async fn power_off(&mut self) -> Result<(), BleError> {
        // A read first: it reconnects if needed and proves the session, so that the silence
        // after the write can only mean the scooter went off.
        self.request(&[esc::read_motor_info()]).await?;
        let not_confirmed = BleError::WriteNotConfirmed {
            reg: esc::REG_POWER_OFF,
            wanted: 1,
            found: 0,
        };
        let outcome = self
            .exchange_once(&[write::power_off(WriteMode::Ack)])
            .await;
        match outcome {
            Ok(answers) => {
                if let Some(ack) = answers.into_iter().next().flatten() {
                    match WriteAck::decode(&ack) {
                        Ok(ack) if ack.accepted() => {
                            tracing::info!("the scooter acknowledged the power-off");
                            return Ok(());
                        }
                        Ok(ack) => {
                            tracing::warn!(
                                result = ack.result,
                                "the scooter refused the power-off"
                            );
                            return Err(not_confirmed);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "undecodable power-off acknowledgement");
                        }
                    }
                }
            }
            Err(ExchangeError::LinkLost) => {
                tracing::info!("the scooter dropped the link after the power-off");
                self.lost();
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        // Neither an acknowledgement nor a lost link yet: a scooter that is off answers nothing.
        match self.exchange_once(&[esc::read_motor_info()]).await {
            Ok(_) => Err(not_confirmed),
            Err(ExchangeError::LinkLost) => {
                tracing::info!("the scooter dropped the link after the power-off");
                self.lost();
                Ok(())
            }
            Err(ExchangeError::Silent(_) | ExchangeError::Timeout(_)) => {
                tracing::info!("the scooter went silent after the power-off");
                self.drop_link().await;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One exchange on the current session, without reconnecting or logging in again when it
    /// fails (for requests that must not be repeated on a new connection).
    async fn exchange_once(
        &mut self,
        requests: &[Frame],
    ) -> Result<Vec<Option<Frame>>, ExchangeError> {
        let Some(uart) = self.uart.as_mut() else {
            return Err(ExchangeError::LinkLost);
        };
        let outcome = exchange(
            &mut self.transport,
            uart,
            requests,
            self.config.exchange,
            &mut self.counters,
        )
        .await;
        self.unverified = false;
        if outcome.is_ok() {
            self.silent = 0;
        }
        outcome
    }

    async fn read_settings(&mut self) -> Result<Settings, BleError> {
        let answers = self.request(&[esc::read_settings()]).await?;
        Ok(Settings::decode(
            answers.first().ok_or(BleError::LinkLost)?,
        )?)
    }

    /// A write confirmed by reading the register back (§11a Q7), pipelined with the read: RW
    /// 0x03, or RW 0x02 when [`LinkConfig::write_mode`] says so, whose acknowledgement is
    /// waited for about a second and only logged, since the read-back decides. A write the
    /// read-back does not show is sent once more (the app analyses repeat writes too) before
    /// [`BleError::WriteNotConfirmed`].
    async fn write_confirmed(
        &mut self,
        reg: u8,
        wanted: u16,
        command: impl Fn(WriteMode) -> Frame,
        read_back: Frame,
        found: impl Fn(&Frame) -> Result<u16, BleError>,
    ) -> Result<(), BleError> {
        let mut last = None;
        for attempt in 1..=2u32 {
            let answers = self
                .request_each(&[command(self.config.write_mode), read_back.clone()])
                .await?;
            if let Some(Some(ack)) = answers.first() {
                match WriteAck::decode(ack) {
                    Ok(ack) if ack.accepted() => {}
                    Ok(ack) => {
                        tracing::warn!(
                            reg,
                            result = ack.result,
                            "the scooter reports the register as write-protected"
                        );
                    }
                    Err(e) => tracing::debug!(reg, error = %e, "undecodable write acknowledgement"),
                }
            }
            let value = found(
                answers
                    .get(1)
                    .and_then(Option::as_ref)
                    .ok_or(BleError::LinkLost)?,
            )?;
            if value == wanted {
                return Ok(());
            }
            tracing::info!(
                reg,
                attempt,
                wanted,
                found = value,
                "the read-back does not show the write"
            );
            last = Some(value);
        }
        Err(BleError::WriteNotConfirmed {
            reg,
            wanted,
            found: last.unwrap_or_default(),
        })
    }

    /// Sends `requests` pipelined and returns the answers of those that have one, in order.
    /// Reconnects (and logs in again when needed) when the link drops in between. An
    /// acknowledged write whose acknowledgement did not come in time has no entry: use
    /// [`ScooterLink::request_each`] to tell which request an answer belongs to.
    pub async fn request(&mut self, requests: &[Frame]) -> Result<Vec<Frame>, BleError> {
        Ok(self
            .request_each(requests)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Like [`ScooterLink::request`], with one entry per request: `None` for unacknowledged
    /// writes and for acknowledgements that did not come within
    /// [`ExchangeConfig::ack_timeout`].
    ///
    /// A reused session is probed: when the first answer does not come within
    /// [`ReconnectConfig::session_probe`], or the scooter refuses the session (`E0`–`E3` on
    /// UPNP), it logs in again on the same connection at once, and stops reusing sessions after
    /// reconnects (the scooter evidently drops them, as Xiaomi's library does, §3.7). A session
    /// refused again right after a fresh login is an error, never a loop.
    pub async fn request_each(
        &mut self,
        requests: &[Frame],
    ) -> Result<Vec<Option<Frame>>, BleError> {
        let mut fresh_login = false;
        loop {
            self.ensure_online().await?;
            let probing = self.unverified;
            let config = if probing {
                // A short wait for the first answer: a session the scooter dropped must cost
                // neither the retries nor a full request timeout. Once a frame decrypts, the
                // session is proven and the exchange goes on as usual.
                ExchangeConfig {
                    first_answer_timeout: Some(self.config.reconnect.session_probe),
                    ..self.config.exchange
                }
            } else {
                self.config.exchange
            };
            let Some(uart) = self.uart.as_mut() else {
                self.drop_link().await;
                continue;
            };
            let outcome = exchange(
                &mut self.transport,
                uart,
                requests,
                config,
                &mut self.counters,
            )
            .await;
            self.unverified = false;
            match outcome {
                Ok(answers) => {
                    self.silent = 0;
                    return Ok(answers);
                }
                Err(ExchangeError::LinkLost) => self.lost(),
                Err(ExchangeError::Silent(_)) if probing => {
                    tracing::info!(
                        probe = ?self.config.reconnect.session_probe,
                        "the reused session got no answer: the scooter dropped it on disconnect;                          logging in again, and after every reconnect from now on"
                    );
                    self.reuse_sessions = false;
                    self.relogin().await?;
                    fresh_login = true;
                }
                Err(ExchangeError::Refused(refusal)) if !fresh_login => {
                    tracing::info!(%refusal, "the scooter holds no session for us: logging in again");
                    if probing {
                        self.reuse_sessions = false;
                    }
                    self.relogin().await?;
                    fresh_login = true;
                }
                Err(e @ ExchangeError::Refused(_)) => {
                    self.drop_link().await;
                    return Err(e.into());
                }
                Err(ExchangeError::Silent(e)) => {
                    self.silent += 1;
                    if self.silent >= SILENT_LIMIT {
                        // BlueZ notices a dead link only after its supervision timeout, and
                        // sometimes not at all: rebuild it rather than wait.
                        tracing::info!(
                            exchanges = self.silent,
                            "the scooter stopped answering: reconnecting"
                        );
                        self.silent = 0;
                        self.drop_link().await;
                    }
                    return Err(e);
                }
                Err(ExchangeError::Failed(e)) => {
                    // A radio error proves nothing about the session: probe it next time.
                    self.unverified = probing;
                    self.silent = 0;
                    return Err(e);
                }
                Err(ExchangeError::Timeout(e)) => {
                    self.silent = 0;
                    return Err(e);
                }
            }
        }
    }

    /// Drops the session and logs in again on the current connection. A lost link is left to
    /// the reconnection, and so is `E2` (on a new connection); another failure ends the
    /// connection (the next request reconnects).
    async fn relogin(&mut self) -> Result<(), BleError> {
        self.uart = None;
        match self.start_session().await {
            Ok(()) => Ok(()),
            Err(BleError::LinkLost) => {
                self.lost();
                Ok(())
            }
            // `E2`: the scooter counts this connection as logged in (§11a Q9), yet it refused
            // the session: a new connection starts clean.
            Err(BleError::Login(LoginError::Refused(Refusal::RepeatLogin))) => {
                tracing::info!(
                    "the scooter reports a login on this connection already (E2): reconnecting"
                );
                self.drop_link().await;
                Ok(())
            }
            Err(e) => {
                self.drop_link().await;
                Err(e)
            }
        }
    }

    /// Ends the connection on purpose (it is useless) and hands it to the reconnection policy.
    async fn drop_link(&mut self) {
        let _ = self.transport.disconnect().await;
        self.lost();
    }

    /// Whether the link is up now (connected, logged in, no loss seen since).
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Whether the link is up, asking the radio now rather than trusting what its events said
    /// so far (BlueZ reports a loss with a delay): `false` marks the link lost, and the next
    /// request reconnects. For a caller about to start something that must not be carried out
    /// late, such as a remote command with an expiry.
    pub async fn verify_online(&mut self) -> bool {
        if !self.online {
            return false;
        }
        if self.transport.is_connected().await {
            return true;
        }
        tracing::info!("the radio reports the link down");
        self.lost();
        false
    }

    /// Follows the link: `true` once it is up, `false` as soon as a loss is seen (also in the
    /// middle of a request that then reconnects), so a caller can tell the loss when it
    /// happens rather than when the request returns.
    pub fn online_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Listens to the radio between requests and returns when the link went down, marked as
    /// lost (the next request reconnects). Notifications that arrive meanwhile answer nothing
    /// and are dropped. Never returns while the link is already down. Cancel-safe: meant to be
    /// raced against the caller's own timers.
    pub async fn watch_radio(&mut self) {
        if !self.online {
            return std::future::pending().await;
        }
        loop {
            match self.transport.next_event().await {
                Some(crate::transport::TransportEvent::Disconnected) | None => {
                    self.lost();
                    return;
                }
                Some(_) => {}
            }
        }
    }

    /// Brings the link up again now if it is down (under the reconnection policy: it gives up
    /// with [`BleError::Lost`] past the reconnect window).
    pub async fn reconnect(&mut self) -> Result<(), BleError> {
        self.ensure_online().await
    }

    /// Disconnects.
    pub async fn close(mut self) -> Result<(), BleError> {
        self.online = false;
        Ok(self.transport.disconnect().await?)
    }

    fn lost(&mut self) {
        if self.online {
            self.counters.link_losses += 1;
            self.online = false;
            self.up.send_replace(false);
            self.policy.link_lost(Instant::now().into_std());
        }
    }

    fn give_up(&mut self, why: GiveUp) -> BleError {
        match why {
            GiveUp::NotFound => BleError::NotFound {
                timeout: self.config.reconnect.scan_timeout,
                wanted: self.config.filter.describe(),
            },
            GiveUp::Lost => BleError::Lost {
                address: self.found.address,
                window: self.config.reconnect.reconnect_window,
            },
        }
    }

    /// Connects and opens (or resumes) a session, under the reconnection policy.
    async fn ensure_online(&mut self) -> Result<(), BleError> {
        let mut repeat_login = false;
        let mut retried_login = false;
        while !self.online {
            self.connect().await?;
            let has_session = self.uart.is_some() && self.reuse_sessions;
            match self
                .policy
                .connected(Instant::now().into_std(), has_session)
            {
                Resume::ReuseSession => {
                    self.counters.sessions_reused += 1;
                    self.unverified = self.generation == Some(Generation::MiAuth);
                    if let Some(uart) = self.uart.as_mut() {
                        uart.reset();
                    }
                    self.online = true;
                }
                Resume::Login => {
                    self.online = true;
                    match self.start_session().await {
                        Ok(()) => {}
                        Err(BleError::LinkLost) => self.lost(),
                        // `E2`: the scooter counts this connection as logged in already (§11a
                        // Q9). A new connection starts clean; once, so it cannot loop.
                        Err(BleError::Login(LoginError::Refused(Refusal::RepeatLogin)))
                            if !repeat_login =>
                        {
                            tracing::info!(
                                "the scooter reports a login on this connection already (E2): reconnecting"
                            );
                            repeat_login = true;
                            self.uart = None;
                            self.drop_link().await;
                        }
                        // A failure one damaged notification can cause (a proof that does not
                        // match, a `21` that reads `23` or `22`, a parcel cut short, an answer
                        // that never came) is tried once more on a new connection: only a
                        // second failure in a row is taken at its word, so one bad frame never
                        // asks for pairing again (exit 77, which systemd does not restart).
                        Err(e @ (BleError::TokenRejected { .. } | BleError::Login(_)))
                            if !retried_login =>
                        {
                            tracing::warn!(error = %e, "login failed: trying once more on a new connection");
                            retried_login = true;
                            self.uart = None;
                            self.drop_link().await;
                        }
                        Err(e) => {
                            self.drop_link().await;
                            return Err(e);
                        }
                    }
                }
            }
        }
        self.up.send_if_modified(|up| !std::mem::replace(up, true));
        Ok(())
    }

    /// One connection with GATT ready, retrying under the policy until it gives up.
    async fn connect(&mut self) -> Result<(), BleError> {
        let address = self.found.address;
        let mut rescan = false;
        loop {
            let deadline = self.policy.deadline().map(Instant::from_std);
            if rescan {
                let left = deadline.map_or(std::time::Duration::ZERO, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                let filter = ScanFilter {
                    address: Some(address),
                    ..self.config.filter.clone()
                };
                match scanner::find(&mut self.transport, &filter, left).await {
                    Ok(_) => rescan = false,
                    Err(BleError::NotFound { .. }) => {
                        let why = self.policy.exhausted();
                        return Err(self.give_up(why));
                    }
                    Err(e) => return Err(e),
                }
            }
            self.counters.connect_attempts += 1;
            // BlueZ waits for a scooter it cannot hear; that wait counts against the window.
            let wait = deadline.map_or(CONNECT_TIMEOUT, |d| {
                d.saturating_duration_since(Instant::now())
                    .clamp(MIN_CONNECT_WAIT, CONNECT_TIMEOUT)
            });
            let attempt = match self.transport.connect(address, wait).await {
                Ok(()) => self.prepare_gatt().await,
                Err(e) => Err(BleError::Transport(e)),
            };
            let error = match attempt {
                Ok(()) => {
                    self.counters.connects += 1;
                    return Ok(());
                }
                Err(BleError::Transport(TransportError::UnknownDevice(_))) => {
                    rescan = true;
                    continue;
                }
                Err(BleError::Transport(e)) => e,
                Err(BleError::LinkLost) => {
                    TransportError::ConnectFailed("link lost during set-up".into())
                }
                Err(e) => {
                    let _ = self.transport.disconnect().await;
                    return Err(e);
                }
            };
            tracing::debug!(%address, error = %error, "connection attempt failed");
            let _ = self.transport.disconnect().await;
            let jitter = self.rng.r#gen::<f64>();
            match self.policy.connect_failed(
                Instant::now().into_std(),
                error.is_stale_connection(),
                jitter,
            ) {
                Retry::After {
                    delay,
                    remove_device,
                } => {
                    if remove_device {
                        tracing::info!(%address, "removing the stale device from BlueZ");
                        self.transport.remove_device(address).await?;
                        self.counters.stale_removed += 1;
                        rescan = true;
                    }
                    tokio::time::sleep(delay).await;
                }
                Retry::GiveUp(why) => return Err(self.give_up(why)),
            }
        }
    }

    /// Discovers GATT, settles the generation and subscribes to what it needs.
    async fn prepare_gatt(&mut self) -> Result<(), BleError> {
        let chars = self.transport.discover().await?;
        let selection = select(
            self.config.protocol,
            self.found.generation,
            detect_from_gatt(chars),
        )?;
        self.transport.subscribe(Char::UartNotify).await?;
        let generation = match selection {
            Selection::Use(g) => g,
            Selection::Probe => match self.generation {
                Some(g) => g,
                None if probe_plain(&mut self.transport, self.config.exchange.request_timeout)
                    .await? =>
                {
                    Generation::Plain
                }
                None => {
                    return Err(BleError::Unsupported(
                        "the scooter does not answer plain frames: it probably speaks \
                         NinebotCrypto (5A A5), which m365 does not speak"
                            .into(),
                    ));
                }
            },
        };
        if generation == Generation::MiAuth {
            self.transport.subscribe(Char::Upnp).await?;
            self.transport.subscribe(Char::Avdtp).await?;
        }
        if self.generation != Some(generation) {
            tracing::info!(%generation, "protocol selected");
            self.uart = None;
        }
        self.generation = Some(generation);
        Ok(())
    }

    /// Opens a session on the current connection: login (D), keystream (B) or nothing (A).
    async fn start_session(&mut self) -> Result<(), BleError> {
        let generation = self.generation.unwrap_or(Generation::MiAuth);
        let codec = match generation {
            Generation::MiAuth => {
                let token = match &self.token {
                    Some(t) => t.clone(),
                    None => {
                        let t = token_file::read(&self.config.token_path)?;
                        self.token = Some(t.clone());
                        t
                    }
                };
                let keys = login(&mut self.transport, &token, &self.config.token_path).await?;
                self.counters.logins += 1;
                Codec::MiAuth(Some(Box::new(UartCipher::new(keys, Role::Client))))
            }
            Generation::Xor => {
                // The keystream is fixed per scooter: recover it once.
                if let Some(uart) = self
                    .uart
                    .as_mut()
                    .filter(|u| u.generation() == Generation::Xor)
                {
                    uart.reset();
                    return Ok(());
                }
                Codec::Xor(
                    recover_keystream(&mut self.transport, self.config.exchange.request_timeout)
                        .await?,
                )
            }
            Generation::Plain => Codec::Plain,
        };
        self.uart = Some(Uart::new(codec));
        Ok(())
    }
}
