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
//! - Failed connection attempts back off with the workspace's [`Backoff`] (from 250 ms doubling
//!   up to 5 s, each delay drawn from the upper half of its range), so several clients (or a
//!   stuck BlueZ) are not hammered in lock-step; a delay never runs past the deadline. A stale
//!   `InProgress` asks the driver to remove the device from BlueZ before the next attempt.
//! - Every transition is logged once at INFO with its reason.

use std::time::{Duration, Instant};

use m365_backoff::Backoff;

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
    /// First (and shortest) back-off delay.
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
    backoff: Backoff,
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
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
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
        self.backoff.reset();
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
            self.backoff.reset();
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
    /// (`InProgress`). `jitter` is the caller's uniform draw in `[0, 1]`: where the delay falls
    /// in its attempt's range (see [`Backoff::next_delay_at`]).
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
        let delay = self.backoff.next_delay_at(jitter).min(deadline - now);
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

    fn delay(retry: Retry) -> Duration {
        match retry {
            Retry::After { delay, .. } => delay,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failed_attempts_back_off_from_min_to_max_and_start_over_when_connected() {
        let t0 = Instant::now();
        let c = ReconnectConfig {
            scan_timeout: secs(3600),
            ..ReconnectConfig::default()
        };
        let mut r = Reconnect::new(c, t0);
        // Draws at the top give each attempt's ceiling: 250 ms doubling, capped at 5 s.
        let top: Vec<u128> = (0..8)
            .map(|_| delay(r.connect_failed(t0, false, 1.0)).as_millis())
            .collect();
        assert_eq!(top, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        // Draws at the bottom give half the ceiling (never below the minimum).
        let mut r = Reconnect::new(c, t0);
        let bottom: Vec<u128> = (0..7)
            .map(|_| delay(r.connect_failed(t0, false, 0.0)).as_millis())
            .collect();
        assert_eq!(bottom, [250, 250, 500, 1000, 2000, 2500, 2500]);
        // A connection resets the back-off; so does the next loss.
        r.connected(t0, false);
        r.link_lost(t0);
        assert_eq!(delay(r.connect_failed(t0, false, 1.0)), c.backoff_min);
        assert_eq!(
            r.phase(),
            Phase::Reconnecting {
                lost_at: t0,
                deadline: t0 + c.reconnect_window,
                attempts: 1
            }
        );
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
