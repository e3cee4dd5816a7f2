//! GPS sources as tokio tasks. Each task owns its device, decodes continuously, and publishes
//! the latest fix with its receive time on a `watch` channel; the telemetry sampler reads it with
//! [`GpsHandle::latest`], which never waits.
//!
//! A device that disappears (unplugged receiver, closed pty, gpsd restarted) is an error: the
//! task logs it once, keeps the last fix (its age keeps growing, and [`SourceState::connected`]
//! turns false, so consumers see it is stale) and reopens with the workspace's back-off
//! ([`Backoff`], from [`BACKOFF_MIN`] doubling up to [`BACKOFF_MAX`], with jitter): a receiver
//! unplugged for an hour costs a handful of open attempts, not a busy loop.

mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::fix::Fix;
use crate::sim7600::InfoCommand;

pub use m365_backoff::{Backoff, RngCore};

/// Delay before the first reopening attempt.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest delay between reopening attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Default serial speed of NMEA receivers.
pub const DEFAULT_NMEA_BAUD: u32 = 9600;
/// Default SIM7600 AT-port speed.
pub const DEFAULT_SIM7600_BAUD: u32 = 115_200;
/// Default SIM7600 poll interval.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Which device to read, and how.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// An NMEA receiver on a serial port.
    Nmea {
        /// Device path, e.g. `/dev/ttyACM0` or `/dev/serial0`.
        path: PathBuf,
        /// Baud rate.
        baud: u32,
    },
    /// A SIM7600 modem's AT port.
    Sim7600 {
        /// Device path, e.g. `/dev/ttyUSB2`.
        path: PathBuf,
        /// Baud rate.
        baud: u32,
        /// `AT+CGPSINFO` or `AT+CGNSSINFO`.
        command: InfoCommand,
        /// Time between polls.
        interval: Duration,
    },
    /// A gpsd daemon.
    Gpsd {
        /// Its address, usually 127.0.0.1:2947.
        addr: SocketAddr,
    },
}

/// The last epoch a source reported: a fix, or explicitly none.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochEvent {
    /// The fix, or `None` for an epoch without a fix.
    pub fix: Option<Fix>,
    /// When it was received.
    pub received: Instant,
}

/// Everything a source task publishes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceState {
    /// The most recent fix and when it was received; kept across disconnections.
    pub last_fix: Option<(Fix, Instant)>,
    /// The most recent epoch, fix or not.
    pub last_epoch: Option<EpochEvent>,
    /// Epochs reported so far (a sequence number for consumers that print every epoch).
    pub epochs: u64,
    /// Epochs that had a fix, so far.
    pub fixes: u64,
    /// Whether the device is open and delivering.
    pub connected: bool,
    /// Attempts to open the device so far.
    pub connect_attempts: u64,
    /// Connections that ended in an error (unplug, EOF, timeouts).
    pub failures: u64,
    /// Replies or sentences rejected as corrupt.
    pub rejected: u64,
    /// The last error, for display.
    pub last_error: Option<String>,
}

/// Epoch events buffered for [`GpsHandle::epochs`] subscribers that fall behind: 6.4 s of a
/// 10 Hz receiver (the buffer is allocated whole, 176 bytes an epoch).
const EPOCH_BUFFER: usize = 64;

/// A running source. Dropping it stops the task.
#[derive(Debug)]
pub struct GpsHandle {
    rx: watch::Receiver<SourceState>,
    epochs: broadcast::Sender<EpochEvent>,
    task: JoinHandle<()>,
}

impl GpsHandle {
    /// Starts a source task on the current tokio runtime.
    pub fn spawn(config: SourceConfig) -> Self {
        GpsHandle::spawn_with_backoff(config, Backoff::new(BACKOFF_MIN, BACKOFF_MAX))
    }

    /// Starts a source task with a specific reconnection back-off (jitter drawn from the
    /// operating system's entropy).
    pub fn spawn_with_backoff(config: SourceConfig, backoff: Backoff) -> Self {
        GpsHandle::spawn_with_rng(config, backoff, StdRng::from_entropy())
    }

    /// Starts a source task whose back-off draws its jitter from `rng` (a seeded or scripted
    /// source makes the retry schedule reproducible).
    pub fn spawn_with_rng<R: RngCore + Send + 'static>(
        config: SourceConfig,
        backoff: Backoff,
        rng: R,
    ) -> Self {
        let (tx, rx) = watch::channel(SourceState::default());
        let (epochs, _) = broadcast::channel(EPOCH_BUFFER);
        let task = tokio::spawn(run::run(config, backoff, rng, tx, epochs.clone()));
        GpsHandle { rx, epochs, task }
    }

    /// The latest fix and its age, without waiting. `None` until the first fix.
    pub fn latest(&self) -> Option<(Fix, Duration)> {
        let state = self.rx.borrow();
        state
            .last_fix
            .as_ref()
            .map(|(fix, at)| (fix.clone(), at.elapsed()))
    }

    /// Whether the device is open and delivering right now. While it is not, [`Self::latest`]
    /// still returns the last fix, with its growing age.
    pub fn is_connected(&self) -> bool {
        self.rx.borrow().connected
    }

    /// A snapshot of everything the task publishes.
    pub fn state(&self) -> SourceState {
        self.rx.borrow().clone()
    }

    /// A receiver to await state changes. Intermediate states may be skipped; use
    /// [`GpsHandle::epochs`] to see every epoch.
    pub fn subscribe(&self) -> watch::Receiver<SourceState> {
        self.rx.clone()
    }

    /// Every epoch from now on, fix or no fix, in order (a subscriber that falls more than a few
    /// hundred epochs behind is told how many it missed).
    pub fn epochs(&self) -> broadcast::Receiver<EpochEvent> {
        self.epochs.subscribe()
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for GpsHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
