//! The reconnection policy as a pure state machine: time and randomness are arguments, the
//! driver ([`crate::link::ScooterLink`]) does the radio work and asks this machine what next.
//!
//! ```text
//!  Searching ──connected──▶ Online ──link lost──▶ Reconnecting ──connected──▶ Online
//!      │ scan_timeout passed                          │ reconnect_window passed
//!      ▼                                              ▼
//!   GaveUp(NotFound)                              GaveUp(Lost)
//! ```
//!
//! - Before the first connection the scooter has `scan_timeout` to show up; then the daemon
//!   exits with "scooter not found" and systemd starts a fresh scan later.
//! - After a link loss it has `reconnect_window`, BlueZ's wait for a scooter it cannot hear
//!   included. Every reconnect logs in again by default: real scooters drop the session keys
//!   on disconnect (protocol.md §3.7). With `session_reuse` set, a link back within that time
//!   reuses the session (keys and counters) without a login, for scooters that keep it across
//!   a short interruption (the simulator can be told to); the driver probes a reused session
//!   with `session_probe` and stops reusing after one failure.
//! - Failed connection attempts back off exponentially (250 ms doubling up to 5 s) with ±20 %
//!   jitter, so several clients (or a stuck BlueZ) are not hammered in lock-step. A stale
//!   `InProgress` asks the driver to remove the device from BlueZ before the next attempt.
//! - Every transition is logged once at INFO with its reason.

use std::time::{Duration, Instant};

/// Timing of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// Time to find and connect the scooter at start.
    pub scan_timeout: Duration,
    /// Time to get the link back after a loss.
    pub reconnect_window: Duration,
    /// A link back within this time reuses the session instead of logging in; zero (the
    /// default) always logs in, as real scooters require (protocol.md §3.7).
    pub session_reuse: Duration,
    /// How long the first request on a reused session waits for any answer before the
    /// session is given up and a login is made on the same connection. Real scooters drop the
    /// session on disconnect (protocol.md §3.7), so this is kept short.
    pub session_probe: Duration,
    /// First back-off delay.
    pub backoff_min: Duration,
    /// Longest back-off delay.
    pub backoff_max: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        ReconnectConfig {
            scan_timeout: Duration::from_secs(60),
            reconnect_window: Duration::from_secs(60),
            session_reuse: Duration::ZERO,
            session_probe: Duration::from_millis(500),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Why the machine gave up; each maps to its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Never connected within `scan_timeout`.
    NotFound,
    /// Lost and not back within `reconnect_window`.
    Lost,
}

/// Where the link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Looking for the scooter the first time, until `deadline`.
    Searching {
        /// End of `scan_timeout`.
        deadline: Instant,
        /// Failed attempts so far.
        attempts: u32,
    },
    /// Connected with a session.
    Online {
        /// Since when.
        since: Instant,
    },
    /// The link was lost at `lost_at`; trying until `deadline`.
    Reconnecting {
        /// When the link went down.
        lost_at: Instant,
        /// End of `reconnect_window`.
        deadline: Instant,
        /// Failed attempts so far.
        attempts: u32,
    },
    /// Finished for good.
    GaveUp(GiveUp),
}

/// What to do after a failed connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Wait `delay`, first removing the device from BlueZ if `remove_device`.
    After {
        /// Back-off delay.
        delay: Duration,
        /// Clear a stale BlueZ connection first.
        remove_device: bool,
    },
    /// Stop.
    GiveUp(GiveUp),
}

/// How to continue on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Keep using the previous session (no login).
    ReuseSession,
    /// Log in.
    Login,
}

/// The reconnection policy.
#[derive(Debug, Clone)]
pub struct Reconnect {
    config: ReconnectConfig,
    phase: Phase,
}

impl Reconnect {
    /// Starts searching at `now`.
    pub fn new(config: ReconnectConfig, now: Instant) -> Reconnect {
        tracing::info!(timeout = ?config.scan_timeout, "searching for the scooter");
        Reconnect {
            config,
            phase: Phase::Searching {
                deadline: now + config.scan_timeout,
                attempts: 0,
            },
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The configuration.
    pub fn config(&self) -> &ReconnectConfig {
        &self.config
    }

    /// Until when connection attempts are worth making (`None` when online or finished).
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Searching { deadline, .. } | Phase::Reconnecting { deadline, .. } => {
                Some(deadline)
            }
            Phase::Online { .. } | Phase::GaveUp(_) => None,
        }
    }

    /// A connection (with GATT ready) came up at `now`; `has_session` says whether a previous
    /// session exists that could be reused.
    pub fn connected(&mut self, now: Instant, has_session: bool) -> Resume {
        let resume = match self.phase {
            Phase::Reconnecting { lost_at, .. }
                if has_session
                    && !self.config.session_reuse.is_zero()
                    && now.saturating_duration_since(lost_at) <= self.config.session_reuse =>
            {
                tracing::info!(
                    after = ?now.saturating_duration_since(lost_at),
                    "link back within session_reuse: reusing the session"
                );
                Resume::ReuseSession
            }
            Phase::Reconnecting { lost_at, .. } => {
                tracing::info!(
                    after = ?now.saturating_duration_since(lost_at),
                    "link back: logging in again"
                );
                Resume::Login
            }
            _ => {
                tracing::info!("connected");
                Resume::Login
            }
        };
        self.phase = Phase::Online { since: now };
        resume
    }

    /// The link went down at `now`.
    pub fn link_lost(&mut self, now: Instant) {
        if let Phase::Online { .. } = self.phase {
            tracing::info!(window = ?self.config.reconnect_window, "link lost: reconnecting");
            self.phase = Phase::Reconnecting {
                lost_at: now,
                deadline: now + self.config.reconnect_window,
                attempts: 0,
            };
        }
    }

    /// The scooter could not be found or connected in the time left (e.g. a scan that ended
    /// at the deadline).
    pub fn exhausted(&mut self) -> GiveUp {
        let give_up = match self.phase {
            Phase::Searching { .. } => GiveUp::NotFound,
            Phase::GaveUp(g) => g,
            _ => GiveUp::Lost,
        };
        if self.phase != Phase::GaveUp(give_up) {
            tracing::info!(reason = ?give_up, "giving up on the scooter");
        }
        self.phase = Phase::GaveUp(give_up);
        give_up
    }

    /// A connection attempt failed at `now`; `stale` when BlueZ reported a stuck attempt
    /// (`InProgress`). `jitter` in 0..1 spreads the delay by ±20 %.
    pub fn connect_failed(&mut self, now: Instant, stale: bool, jitter: f64) -> Retry {
        let (deadline, attempts) = match &mut self.phase {
            Phase::Searching { deadline, attempts }
            | Phase::Reconnecting {
                deadline, attempts, ..
            } => {
                *attempts += 1;
                (*deadline, *attempts)
            }
            Phase::Online { .. } | Phase::GaveUp(_) => return Retry::GiveUp(self.exhausted()),
        };
        if now >= deadline {
            return Retry::GiveUp(self.exhausted());
        }
        let delay = backoff(&self.config, attempts, jitter).min(deadline - now);
        tracing::info!(
            attempt = attempts,
            ?delay,
            stale,
            "connection attempt failed: retrying"
        );
        Retry::After {
            delay,
            remove_device: stale,
        }
    }
}

/// Exponential back-off for the `attempt`-th failure (from 1) with ±20 % jitter.
pub fn backoff(config: &ReconnectConfig, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(16);
    let base = config
        .backoff_min
        .saturating_mul(1u32 << exp)
        .min(config.backoff_max);
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn not_found_after_the_scan_timeout() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(ReconnectConfig::default(), t0);
        assert_eq!(r.deadline(), Some(t0 + secs(60)));
        assert!(matches!(
            r.connect_failed(t0 + secs(1), false, 0.5),
            Retry::After {
                remove_device: false,
                ..
            }
        ));
        assert_eq!(
            r.connect_failed(t0 + secs(60), false, 0.5),
            Retry::GiveUp(GiveUp::NotFound)
        );
        assert_eq!(r.phase(), Phase::GaveUp(GiveUp::NotFound));
    }

    #[test]
    fn by_default_every_reconnect_logs_in() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(ReconnectConfig::default(), t0);
        assert_eq!(r.connected(t0, false), Resume::Login);
        r.link_lost(t0 + secs(10));
        assert_eq!(r.connected(t0 + secs(10), true), Resume::Login);
    }

    #[test]
    fn quick_return_reuses_the_session_late_return_logs_in() {
        let t0 = Instant::now();
        let config = ReconnectConfig {
            session_reuse: secs(5),
            ..ReconnectConfig::default()
        };
        let mut r = Reconnect::new(config, t0);
        assert_eq!(r.connected(t0, false), Resume::Login);
        r.link_lost(t0 + secs(10));
        assert_eq!(r.connected(t0 + secs(12), true), Resume::ReuseSession);
        r.link_lost(t0 + secs(20));
        assert_eq!(r.connected(t0 + secs(30), true), Resume::Login);
        r.link_lost(t0 + secs(40));
        assert_eq!(
            r.connected(t0 + secs(41), false),
            Resume::Login,
            "nothing to reuse"
        );
    }

    #[test]
    fn lost_after_the_window_and_stale_connections_are_removed() {
        let t0 = Instant::now();
        let mut r = Reconnect::new(ReconnectConfig::default(), t0);
        r.connected(t0, false);
        r.link_lost(t0);
        assert_eq!(r.deadline(), Some(t0 + secs(60)));
        assert!(matches!(
            r.connect_failed(t0 + secs(1), true, 0.0),
            Retry::After {
                remove_device: true,
                ..
            }
        ));
        assert_eq!(
            r.connect_failed(t0 + secs(61), false, 0.0),
            Retry::GiveUp(GiveUp::Lost)
        );
    }

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let c = ReconnectConfig::default();
        assert_eq!(backoff(&c, 1, 0.5), Duration::from_millis(250));
        assert_eq!(backoff(&c, 2, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(&c, 3, 0.5), Duration::from_millis(1000));
        assert_eq!(backoff(&c, 30, 0.5), secs(5));
        assert_eq!(backoff(&c, 1, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(&c, 1, 1.0), Duration::from_millis(300));
    }

    #[test]
    fn the_delay_never_runs_past_the_deadline() {
        let t0 = Instant::now();
        let config = ReconnectConfig {
            scan_timeout: Duration::from_millis(100),
            ..ReconnectConfig::default()
        };
        let mut r = Reconnect::new(config, t0);
        match r.connect_failed(t0 + Duration::from_millis(90), false, 1.0) {
            Retry::After { delay, .. } => assert_eq!(delay, Duration::from_millis(10)),
            other => panic!("{other:?}"),
        }
    }
}
