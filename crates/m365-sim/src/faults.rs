//! Misbehaviour on demand, and what the scooter saw.
//!
//! Tests of reconnection, retries and the spool need a scooter that drops the link, goes out of
//! range, loses or mangles notifications, stops answering or refuses a login, at a chosen moment
//! and reproducibly. [`Fault`]s are applied immediately ([`FaultState::apply`]) or at an offset
//! from a start time through a [`FaultSchedule`]. [`Counters`] record every event a test may want
//! to assert on.

use std::time::{Duration, Instant};

use rand::Rng;

/// How a connection attempt fails, named like the BlueZ D-Bus errors a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{}: {}", self.dbus_name(), self.message())]
pub enum ConnectError {
    /// `org.bluez.Error.Failed` "le-connection-abort-by-local" (the usual failure when the
    /// peripheral does not answer the connection request in time).
    Failed,
    /// `org.bluez.Error.InProgress`.
    InProgress,
    /// `org.bluez.Error.NotReady`.
    NotReady,
    /// `org.bluez.Error.AlreadyConnected`.
    AlreadyConnected,
}

impl ConnectError {
    /// The D-Bus error name.
    pub const fn dbus_name(self) -> &'static str {
        match self {
            ConnectError::Failed => "org.bluez.Error.Failed",
            ConnectError::InProgress => "org.bluez.Error.InProgress",
            ConnectError::NotReady => "org.bluez.Error.NotReady",
            ConnectError::AlreadyConnected => "org.bluez.Error.AlreadyConnected",
        }
    }

    /// The error message BlueZ attaches.
    pub const fn message(self) -> &'static str {
        match self {
            ConnectError::Failed => "le-connection-abort-by-local",
            ConnectError::InProgress => "In Progress",
            ConnectError::NotReady => "Resource Not Ready",
            ConnectError::AlreadyConnected => "Already Connected",
        }
    }
}

/// One kind of misbehaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The link drops now (supervision timeout) and for `down_for` no connection can be made,
    /// while the scooter keeps advertising: BlueZ's connect waits for it and succeeds when
    /// `down_for` ends. Like any disconnect it ends the session (unless a grace is configured,
    /// which keeps it for that long).
    DropLink {
        /// How long no connection can be made.
        down_for: Duration,
    },
    /// The scooter leaves radio range: the link drops, it stops advertising and no connection
    /// can be made for `for_`. The session ends as after any disconnect.
    OutOfRange {
        /// How long it stays away.
        for_: Duration,
    },
    /// Drop `percent` % of outbound notifications.
    DropNotifications {
        /// 0–100.
        percent: u8,
    },
    /// Hold back `percent` % of outbound notifications by `delay`.
    DelayNotifications {
        /// 0–100.
        percent: u8,
        /// Extra latency.
        delay: Duration,
    },
    /// Flip one byte in `percent` % of outbound notifications.
    CorruptBytes {
        /// 0–100.
        percent: u8,
    },
    /// Stop answering UART frames (the BLE module still handles pairing and login).
    MuteUart,
    /// Precede `percent` % of notifications, on any characteristic, with an extra zero-length
    /// one: empty notifications where no real scooter is known to send them (inside parcel
    /// exchanges, before the first answer), to prove a client ignores them anywhere.
    ExtraEmptyNotifications {
        /// 0–100.
        percent: u8,
    },
    /// After `percent` % of answers, also send a valid frame nobody asked for (an ESC 0x3E
    /// temperature answer): the "rogue" frames clients must ignore (protocol.md §4.6.5).
    RogueFrames {
        /// 0–100.
        percent: u8,
    },
    /// The scooter is switched off and on again: the link drops, the BLE module restarts and
    /// forgets the session (whatever the grace), nothing advertises for `off_for`, then it is
    /// on again with a new power-on session.
    PowerCycle {
        /// How long it stays off.
        off_for: Duration,
    },
    /// Fail the next connection attempt with this error.
    FailNextConnect(ConnectError),
    /// Refuse logins (answer `23 00 00 00`) until cleared.
    RefuseLogin,
    /// End the current session now: keys are dropped, the client must log in again.
    ExpireSession,
    /// Heal every standing fault (not the counters).
    ClearAll,
}

/// Faults in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultState {
    /// Percentage of notifications dropped.
    pub drop_percent: u8,
    /// Percentage of notifications delayed, and by how much.
    pub delay: Option<(u8, Duration)>,
    /// Percentage of notifications with one corrupted byte.
    pub corrupt_percent: u8,
    /// UART frames go unanswered.
    pub mute_uart: bool,
    /// Percentage of answers followed by an unsolicited frame.
    pub rogue_percent: u8,
    /// Percentage of notifications preceded by an extra empty one.
    pub extra_empty_percent: u8,
    /// The next connection attempt fails with this.
    pub fail_next_connect: Option<ConnectError>,
    /// Logins are refused.
    pub refuse_login: bool,
    /// Connections fail until this instant.
    pub unreachable_until: Option<Instant>,
    /// Advertising is off until this instant.
    pub hidden_until: Option<Instant>,
}

/// What the scooter must do right away because of a fault just applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultAction {
    /// Nothing beyond the new standing state.
    None,
    /// Drop the connection.
    Disconnect,
    /// Drop the session keys.
    ExpireSession,
    /// Switch off now, and on again after this long.
    PowerCycle(Duration),
}

/// What happens to one outbound notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Send as is.
    Send,
    /// Do not send.
    Drop,
    /// Send later by this much.
    Delay(Duration),
    /// Send with the byte at this index inverted (XOR 0xFF).
    Corrupt(usize),
}

impl FaultState {
    /// Put `fault` into force at `now`.
    pub fn apply(&mut self, now: Instant, fault: Fault) -> FaultAction {
        match fault {
            Fault::DropLink { down_for } => {
                self.unreachable_until = Some(now + down_for);
                FaultAction::Disconnect
            }
            Fault::OutOfRange { for_ } => {
                self.unreachable_until = Some(now + for_);
                self.hidden_until = Some(now + for_);
                FaultAction::Disconnect
            }
            Fault::DropNotifications { percent } => {
                self.drop_percent = percent.min(100);
                FaultAction::None
            }
            Fault::DelayNotifications { percent, delay } => {
                self.delay = Some((percent.min(100), delay));
                FaultAction::None
            }
            Fault::CorruptBytes { percent } => {
                self.corrupt_percent = percent.min(100);
                FaultAction::None
            }
            Fault::MuteUart => {
                self.mute_uart = true;
                FaultAction::None
            }
            Fault::ExtraEmptyNotifications { percent } => {
                self.extra_empty_percent = percent.min(100);
                FaultAction::None
            }
            Fault::RogueFrames { percent } => {
                self.rogue_percent = percent.min(100);
                FaultAction::None
            }
            Fault::PowerCycle { off_for } => FaultAction::PowerCycle(off_for),
            Fault::FailNextConnect(err) => {
                self.fail_next_connect = Some(err);
                FaultAction::None
            }
            Fault::RefuseLogin => {
                self.refuse_login = true;
                FaultAction::None
            }
            Fault::ExpireSession => FaultAction::ExpireSession,
            Fault::ClearAll => {
                *self = FaultState::default();
                FaultAction::None
            }
        }
    }

    /// Whether the scooter advertises at `now`.
    pub fn advertising(&self, now: Instant) -> bool {
        self.hidden_until.is_none_or(|t| now >= t)
    }

    /// Whether a connection could be established at `now`: advertising, and no fade in force.
    /// BlueZ waits for an unreachable scooter rather than failing; see
    /// [`FaultState::reachable_again`].
    pub fn reachable(&self, now: Instant) -> bool {
        self.advertising(now) && self.unreachable_until.is_none_or(|t| now >= t)
    }

    /// When the scooter can be connected again, if it cannot be at `now`.
    pub fn reachable_again(&self, now: Instant) -> Option<Instant> {
        if self.reachable(now) {
            return None;
        }
        [self.unreachable_until, self.hidden_until]
            .into_iter()
            .flatten()
            .filter(|t| now < *t)
            .max()
    }

    /// Whether a notification is preceded by an extra empty one.
    pub fn extra_empty<R: Rng>(&self, rng: &mut R) -> bool {
        roll(rng, self.extra_empty_percent)
    }

    /// Whether an answer is followed by a rogue frame.
    pub fn rogue<R: Rng>(&self, rng: &mut R) -> bool {
        roll(rng, self.rogue_percent)
    }

    /// Decide whether a connection attempt at `now` succeeds; consumes a one-shot failure.
    pub fn admit_connect(&mut self, now: Instant) -> Result<(), ConnectError> {
        if let Some(err) = self.fail_next_connect.take() {
            return Err(err);
        }
        match self.unreachable_until {
            Some(t) if now < t => Err(ConnectError::Failed),
            _ => Ok(()),
        }
    }

    /// Decide the fate of one notification of `len` bytes.
    pub fn fate<R: Rng>(&self, rng: &mut R, len: usize) -> Fate {
        if roll(rng, self.drop_percent) {
            return Fate::Drop;
        }
        if len > 0 && roll(rng, self.corrupt_percent) {
            return Fate::Corrupt(rng.gen_range(0..len));
        }
        if let Some((percent, delay)) = self.delay
            && roll(rng, percent)
        {
            return Fate::Delay(delay);
        }
        Fate::Send
    }
}

fn roll<R: Rng>(rng: &mut R, percent: u8) -> bool {
    percent > 0 && rng.gen_range(0u8..100) < percent
}

/// Faults to apply at offsets from a start instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSchedule {
    /// Pending entries, sorted by offset.
    pending: Vec<(Duration, Fault)>,
}

impl FaultSchedule {
    /// A schedule from `(offset, fault)` entries in any order.
    pub fn new(mut entries: Vec<(Duration, Fault)>) -> FaultSchedule {
        // Stable: entries at the same offset keep their given order.
        entries.sort_by_key(|(at, _)| *at);
        FaultSchedule { pending: entries }
    }

    /// Add one entry.
    pub fn push(&mut self, at: Duration, fault: Fault) {
        let i = self.pending.partition_point(|(t, _)| *t <= at);
        self.pending.insert(i, (at, fault));
    }

    /// Remove and return the faults due at `now` for a schedule started at `start`.
    pub fn due(&mut self, start: Instant, now: Instant) -> Vec<Fault> {
        let elapsed = now.saturating_duration_since(start);
        let n = self.pending.partition_point(|(t, _)| *t <= elapsed);
        self.pending.drain(..n).map(|(_, f)| f).collect()
    }

    /// When the next entry falls due.
    pub fn next_deadline(&self, start: Instant) -> Option<Instant> {
        self.pending.first().map(|(t, _)| start + *t)
    }

    /// Entries not yet due.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every entry has been applied.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// What the scooter saw, for tests to assert on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Accepted connections.
    pub connects: u64,
    /// Refused connection attempts.
    pub connect_failures: u64,
    /// Ended connections (either side).
    pub disconnects: u64,
    /// Registration attempts (`A2` received).
    pub registration_attempts: u64,
    /// Successful registrations (`11` sent).
    pub registrations: u64,
    /// Failed registrations (`12` sent).
    pub registration_failures: u64,
    /// Beeps asking for the power button.
    pub beeps: u64,
    /// Successful logins (`21` sent).
    pub logins: u64,
    /// Refused logins (`23`, `E0`, `E2` sent).
    pub login_failures: u64,
    /// Register reads answered.
    pub reads: u64,
    /// Register writes handled.
    pub writes: u64,
    /// UART frames dropped: bad checksum, failed decryption, stale counter, or plain frames
    /// before login.
    pub rejected_frames: u64,
    /// Notifications handed to the link.
    pub notifications_sent: u64,
    /// Notifications a fault dropped.
    pub notifications_dropped: u64,
    /// Notifications a fault delayed.
    pub notifications_delayed: u64,
    /// Notifications a fault corrupted.
    pub notifications_corrupted: u64,
    /// Zero-length notifications sent: the terminators after frames of 20, 40, … bytes
    /// (protocol.md §2.3), and the extra ones of [`Fault::ExtraEmptyNotifications`].
    pub empty_notifications: u64,
    /// Unsolicited frames sent by the rogue-frames fault.
    pub rogue_frames: u64,
    /// Presses of the power button (by the rider, the auto-press or a control command).
    pub button_presses: u64,
    /// Presses that answered a beep and opened the registration window.
    pub windows_opened: u64,
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn schedule_releases_faults_in_time_order() {
        let t0 = Instant::now();
        let mut s = FaultSchedule::new(vec![
            (Duration::from_secs(5), Fault::MuteUart),
            (Duration::from_secs(1), Fault::RefuseLogin),
        ]);
        s.push(Duration::from_secs(3), Fault::ClearAll);
        assert_eq!(s.next_deadline(t0), Some(t0 + Duration::from_secs(1)));
        assert!(s.due(t0, t0 + Duration::from_millis(999)).is_empty());
        assert_eq!(
            s.due(t0, t0 + Duration::from_secs(4)),
            vec![Fault::RefuseLogin, Fault::ClearAll]
        );
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.due(t0, t0 + Duration::from_secs(9)),
            vec![Fault::MuteUart]
        );
        assert!(s.is_empty());
    }

    #[test]
    fn out_of_range_hides_and_refuses_until_it_ends() {
        let t0 = Instant::now();
        let mut f = FaultState::default();
        let action = f.apply(
            t0,
            Fault::OutOfRange {
                for_: Duration::from_secs(10),
            },
        );
        assert_eq!(action, FaultAction::Disconnect);
        assert!(!f.advertising(t0 + Duration::from_secs(9)));
        assert_eq!(
            f.admit_connect(t0 + Duration::from_secs(9)),
            Err(ConnectError::Failed)
        );
        assert!(f.advertising(t0 + Duration::from_secs(10)));
        assert_eq!(f.admit_connect(t0 + Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn fail_next_connect_is_one_shot() {
        let t0 = Instant::now();
        let mut f = FaultState::default();
        f.apply(t0, Fault::FailNextConnect(ConnectError::InProgress));
        assert_eq!(f.admit_connect(t0), Err(ConnectError::InProgress));
        assert_eq!(f.admit_connect(t0), Ok(()));
        assert_eq!(
            ConnectError::InProgress.dbus_name(),
            "org.bluez.Error.InProgress"
        );
    }

    #[test]
    fn drop_percentage_is_respected_statistically() {
        let mut f = FaultState::default();
        f.apply(Instant::now(), Fault::DropNotifications { percent: 30 });
        let mut rng = StdRng::seed_from_u64(1);
        let dropped = (0..10_000)
            .filter(|_| f.fate(&mut rng, 20) == Fate::Drop)
            .count();
        assert!((2_700..3_300).contains(&dropped), "{dropped}");
        f.apply(Instant::now(), Fault::ClearAll);
        assert!((0..1000).all(|_| f.fate(&mut rng, 20) == Fate::Send));
    }

    #[test]
    fn corrupt_names_an_index_inside_the_data() {
        let mut f = FaultState::default();
        f.apply(Instant::now(), Fault::CorruptBytes { percent: 100 });
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..100 {
            match f.fate(&mut rng, 7) {
                Fate::Corrupt(i) => assert!(i < 7),
                other => panic!("expected corruption, got {other:?}"),
            }
        }
        assert_eq!(f.fate(&mut rng, 0), Fate::Send);
    }
}
