//! [`ScooterLink`]: one scooter, kept reachable. It finds the scooter, connects, picks the
//! protocol, logs in, answers register reads and writes, and when the link drops reconnects
//! under the [`Reconnect`] policy, reusing the session when the link came back quickly. The
//! daemon calls [`ScooterLink::sample`] at its pace and only sees an error when the scooter is
//! really gone ([`BleError::Lost`]) or something needs a person (token, configuration).

use std::path::PathBuf;

use m365_proto::encrypted::UartCipher;
use m365_proto::frame::Frame;
use m365_proto::gatt::Char;
use m365_proto::keys::{Role, Token};
use m365_proto::model::{Generation, Model, detect_from_gatt};
use m365_proto::registers::motor_info::MotorInfo;
use m365_proto::registers::settings::{KersLevel, Settings};
use m365_proto::registers::write::{self, WriteMode};
use m365_proto::registers::{esc, esc::REG_LOCK, esc::REG_UNLOCK};
use m365_proto::token;
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
use crate::transport::{Transport, TransportError};

/// Exchanges in a row without any answer after which the link is rebuilt.
pub const SILENT_LIMIT: u32 = 2;

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
    policy: Reconnect,
    counters: Counters,
    rng: StdRng,
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
            policy,
            counters: Counters::default(),
            rng: StdRng::from_entropy(),
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
        self.counters
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
        let command = if locked {
            write::lock(WriteMode::NoAck)
        } else {
            write::unlock(WriteMode::NoAck)
        };
        let answers = self.request(&[command, esc::read_motor_info()]).await?;
        let status = answers
            .last()
            .map(MotorInfo::decode)
            .transpose()?
            .map(|m| m.status);
        match status {
            Some(s) if s.locked() == locked => Ok(()),
            other => Err(BleError::WriteNotConfirmed {
                reg: if locked { REG_LOCK } else { REG_UNLOCK },
                wanted: u16::from(locked),
                found: other.map_or(0, |s| s.raw),
            }),
        }
    }

    /// Turns cruise control on or off, confirmed by reading it back.
    pub async fn set_cruise(&mut self, on: bool) -> Result<(), BleError> {
        let settings = self
            .write_and_read_settings(write::cruise(on, WriteMode::NoAck))
            .await?;
        confirm(esc::REG_CRUISE, u16::from(on), u16::from(settings.cruise))
    }

    /// Sets the KERS level, confirmed by reading it back.
    pub async fn set_kers(&mut self, level: KersLevel) -> Result<(), BleError> {
        let settings = self
            .write_and_read_settings(write::kers(level, WriteMode::NoAck))
            .await?;
        confirm(esc::REG_KERS, level.raw(), settings.kers.raw())
    }

    /// Sets "tail light always on" (read-modify-write of the 0x7D flags, §11a Q13), confirmed by
    /// reading it back.
    pub async fn set_tail_light(&mut self, on: bool) -> Result<(), BleError> {
        let current = self.read_settings().await?;
        let settings = self
            .write_and_read_settings(write::tail_light(current.tail_light, on, WriteMode::NoAck))
            .await?;
        let wanted = current.tail_light.with_always_on(on).0;
        confirm(esc::REG_TAIL_LIGHT, wanted, settings.tail_light.0)
    }

    async fn read_settings(&mut self) -> Result<Settings, BleError> {
        let answers = self.request(&[esc::read_settings()]).await?;
        Ok(Settings::decode(
            answers.first().ok_or(BleError::LinkLost)?,
        )?)
    }

    async fn write_and_read_settings(&mut self, command: Frame) -> Result<Settings, BleError> {
        let answers = self.request(&[command, esc::read_settings()]).await?;
        Ok(Settings::decode(answers.last().ok_or(BleError::LinkLost)?)?)
    }

    /// Sends `requests` pipelined and returns the answers of those that have one, in order.
    /// Reconnects (and logs in again when needed) when the link drops in between.
    pub async fn request(&mut self, requests: &[Frame]) -> Result<Vec<Frame>, BleError> {
        loop {
            self.ensure_online().await?;
            let config = if self.unverified {
                // One round only: a session the scooter dropped must not cost every retry.
                ExchangeConfig {
                    retries: 0,
                    ..self.config.exchange
                }
            } else {
                self.config.exchange
            };
            let Some(uart) = self.uart.as_mut() else {
                self.online = false;
                continue;
            };
            match exchange(
                &mut self.transport,
                uart,
                requests,
                config,
                &mut self.counters,
            )
            .await
            {
                Ok(answers) => {
                    self.unverified = false;
                    self.silent = 0;
                    return Ok(answers.into_iter().flatten().collect());
                }
                Err(ExchangeError::LinkLost) => self.lost(),
                Err(ExchangeError::Timeout(_) | ExchangeError::Silent(_)) if self.unverified => {
                    tracing::info!("the reused session got no answer: logging in again");
                    self.unverified = false;
                    self.uart = None;
                    match self.start_session().await {
                        Ok(()) => {}
                        Err(BleError::LinkLost) => self.lost(),
                        Err(e) => return Err(e),
                    }
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
                        let _ = self.transport.disconnect().await;
                        self.lost();
                    }
                    return Err(e);
                }
                Err(ExchangeError::Timeout(e) | ExchangeError::Failed(e)) => {
                    self.silent = 0;
                    return Err(e);
                }
            }
        }
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
        while !self.online {
            self.connect().await?;
            let has_session = self.uart.is_some();
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
                        Err(e) => {
                            self.online = false;
                            let _ = self.transport.disconnect().await;
                            return Err(e);
                        }
                    }
                }
            }
        }
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
            let attempt = match self.transport.connect(address).await {
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
                        let t = token::read(&self.config.token_path)?;
                        self.token = Some(t.clone());
                        t
                    }
                };
                let keys = login(&mut self.transport, &token, &self.config.token_path).await?;
                self.counters.logins += 1;
                Codec::MiAuth(Box::new(UartCipher::new(keys, Role::Client)))
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

fn confirm(reg: u8, wanted: u16, found: u16) -> Result<(), BleError> {
    if wanted == found {
        Ok(())
    } else {
        Err(BleError::WriteNotConfirmed { reg, wanted, found })
    }
}
