//! `m365-ble`'s [`Transport`] for simulated scooters ([`crate::Scooter`]): it drives them directly in
//! the caller's tokio runtime, for tests, benchmarks and the demo: no D-Bus, no threads, and under tokio's paused clock whole rides run in
//! milliseconds of real time.
//!
//! Time is tokio's clock (`tokio::time::Instant`, converted to `std::time::Instant` for the
//! sans-IO scooter), so `#[tokio::test(start_paused = true)]` makes every timer deterministic.
//! The scooter's link model schedules its notifications at connection events; this transport
//! schedules the client's writes the same way (an uplink [`LinkClock`] on the same event grid),
//! so the round trips it produces are those of a real link with the same parameters.
//!
//! Faults are injected on the scooter ([`SimScooter::with`] + [`crate::Scooter::apply_fault`])
//! or, for what BlueZ itself does wrong, on the handle ([`SimScooter::stale_in_progress`]).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use m365_ble::BdAddr;
use m365_ble::transport::{
    Advertisement, BLUEZ_CONNECT_TIMEOUT, Transport, TransportError, TransportEvent, WriteKind,
};
use m365_fakebluez::LinkTiming;
use m365_proto::gatt::{ATT_PAYLOAD, Char};
use tokio::time::Instant;

use crate::link_timing::{HOST_TURNAROUND, LinkClock};
use crate::scooter::{Scooter, ScooterConfig, ScooterEvent};
use crate::state_file::StateError;
use crate::{ConnectError, Counters};

/// How often a scanning transport hears each scooter advertise.
pub const ADVERTISING_INTERVAL: Duration = Duration::from_millis(100);
/// How long [`Transport::next_event`] sleeps when nothing is scheduled, so that changes made
/// through a [`SimScooter`] handle (faults, button presses) are noticed.
const IDLE_TICK: Duration = Duration::from_millis(50);
/// The RSSI reported for every simulated advertisement.
const SIM_RSSI: i16 = -60;

struct SimState {
    scooter: Scooter,
    link: Option<LinkTiming>,
    stale_in_progress: bool,
    events: Vec<ScooterEvent>,
}

/// A shared handle on one simulated scooter: the transport drives it, a test inspects and
/// disturbs it.
#[derive(Clone)]
pub struct SimScooter {
    inner: Arc<Mutex<SimState>>,
}

impl std::fmt::Debug for SimScooter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimScooter")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl SimScooter {
    /// A scooter built from `config` (its link timing also paces the client's writes).
    pub fn new(config: ScooterConfig) -> Result<SimScooter, StateError> {
        let link = config.link;
        let scooter = Scooter::new(config)?;
        Ok(SimScooter {
            inner: Arc::new(Mutex::new(SimState {
                scooter,
                link,
                stale_in_progress: false,
                events: Vec::new(),
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock (a failing test) must not hide the first failure.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the scooter (apply a fault, press the button, read registers).
    pub fn with<R>(&self, f: impl FnOnce(&mut Scooter) -> R) -> R {
        f(&mut self.lock().scooter)
    }

    /// The scooter's address.
    pub fn address(&self) -> BdAddr {
        BdAddr(self.lock().scooter.profile().address)
    }

    /// What the scooter saw so far.
    pub fn counters(&self) -> Counters {
        self.lock().scooter.counters()
    }

    /// Every event the scooter reported so far.
    pub fn events(&self) -> Vec<ScooterEvent> {
        self.lock().events.clone()
    }

    /// Makes connects fail with BlueZ's `InProgress` until the client removes the device, the
    /// way BlueZ behaves when an earlier connection attempt is stuck.
    pub fn stale_in_progress(&self) {
        self.lock().stale_in_progress = true;
    }

    /// A radio micro-interruption: the link drops now (the scooter sees an ordinary
    /// disconnect) and for `down_for` no connection can be made, like a supervision timeout
    /// followed by a fade; a connect meanwhile waits, as BlueZ's does.
    pub fn drop_link(&self, down_for: Duration) {
        let now = SimScooter::now();
        self.lock()
            .scooter
            .apply_fault(now, crate::Fault::DropLink { down_for });
    }

    /// The current time as the scooter sees it.
    pub fn now() -> std::time::Instant {
        Instant::now().into_std()
    }
}

/// A write waiting for its connection event.
#[derive(Debug)]
struct PendingWrite {
    due: std::time::Instant,
    char: Char,
    data: Vec<u8>,
}

/// The in-process transport over a set of simulated scooters.
#[derive(Debug)]
pub struct InProcessTransport {
    scooters: Vec<SimScooter>,
    connected: Option<usize>,
    subscribed: HashSet<Char>,
    uplink: Option<LinkClock>,
    pending: VecDeque<PendingWrite>,
    scanning: bool,
    next_advert: Option<std::time::Instant>,
    last_physics: std::time::Instant,
    events: VecDeque<TransportEvent>,
    empty_notifications: u64,
}

impl InProcessTransport {
    /// A central that can reach `scooters`.
    pub fn new(scooters: Vec<SimScooter>) -> InProcessTransport {
        InProcessTransport {
            scooters,
            connected: None,
            subscribed: HashSet::new(),
            uplink: None,
            pending: VecDeque::new(),
            scanning: false,
            next_advert: None,
            last_physics: SimScooter::now(),
            events: VecDeque::new(),
            empty_notifications: 0,
        }
    }

    /// The scooters this transport reaches.
    pub fn scooters(&self) -> &[SimScooter] {
        &self.scooters
    }

    fn connected_scooter(&self) -> Result<&SimScooter, TransportError> {
        self.connected
            .and_then(|i| self.scooters.get(i))
            .ok_or(TransportError::NotConnected)
    }

    fn link_down(&mut self) {
        self.connected = None;
        self.subscribed.clear();
        self.pending.clear();
        self.uplink = None;
    }

    /// Moves everything that is due at `now`: physics, writes, scooter timers, notifications,
    /// link loss and advertisements.
    fn pump(&mut self, now: std::time::Instant) {
        let dt = now.saturating_duration_since(self.last_physics);
        self.last_physics = now;
        for i in 0..self.scooters.len() {
            let Some(sim) = self.scooters.get(i).cloned() else {
                continue;
            };
            let mut state = sim.lock();
            if !dt.is_zero() {
                state.scooter.step_physics(dt);
            }
            // Writes and the scooter's own deadlines, in time order, each at its own instant:
            // a button press or a timer must see the time it was due, not the time of the
            // next poll.
            for _ in 0..10_000 {
                let write_due = if self.connected == Some(i) {
                    self.pending.front().map(|w| w.due).filter(|t| *t <= now)
                } else {
                    None
                };
                let timer_due = state.scooter.poll_timeout().filter(|t| *t <= now);
                let write_first = match (write_due, timer_due) {
                    (Some(w), Some(t)) => w <= t,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if write_first {
                    if let Some(w) = self.pending.pop_front() {
                        state.scooter.handle_write(w.due, w.char, &w.data);
                    }
                } else if let Some(t) = timer_due {
                    state.scooter.handle_timeout(t);
                } else {
                    break;
                }
                self.take_notifications(i, &mut state.scooter);
            }
            state.scooter.handle_timeout(now);
            self.take_notifications(i, &mut state.scooter);
            while let Some(e) = state.scooter.poll_event() {
                state.events.push(e);
            }
        }
        if let Some(i) = self.connected
            && let Some(sim) = self.scooters.get(i)
            && !sim.lock().scooter.is_connected()
        {
            tracing::debug!("simulated link lost");
            self.link_down();
            self.events.push_back(TransportEvent::Disconnected);
        }
        if self.scanning && self.next_advert.is_some_and(|t| t <= now) {
            for sim in &self.scooters {
                let mut state = sim.lock();
                if let Some(ad) = state.scooter.advertisement(now) {
                    self.events
                        .push_back(TransportEvent::Advertisement(Advertisement {
                            address: BdAddr(ad.address),
                            name: Some(ad.name),
                            rssi: Some(SIM_RSSI),
                            manufacturer_data: vec![(ad.company_id, ad.manufacturer_data)],
                            services: ad.service_uuids,
                        }));
                }
            }
            self.next_advert = Some(now + ADVERTISING_INTERVAL);
        }
    }

    fn take_notifications(&mut self, i: usize, scooter: &mut Scooter) {
        while let Some(t) = scooter.poll_transmit() {
            if self.connected == Some(i) && self.subscribed.contains(&t.char) {
                if t.data.is_empty() {
                    // The terminator after a frame of 20, 40, … bytes (§2.3).
                    self.empty_notifications += 1;
                    continue;
                }
                self.events.push_back(TransportEvent::Notification {
                    char: t.char,
                    data: t.data,
                });
            }
        }
    }

    fn next_deadline(&self, now: std::time::Instant) -> std::time::Instant {
        let mut next = now + IDLE_TICK;
        if let Some(w) = self.pending.front() {
            next = next.min(w.due);
        }
        if self.scanning
            && let Some(t) = self.next_advert
        {
            next = next.min(t);
        }
        for sim in &self.scooters {
            if let Some(t) = sim.lock().scooter.poll_timeout() {
                next = next.min(t);
            }
        }
        next
    }
}

impl Transport for InProcessTransport {
    async fn start_scan(&mut self) -> Result<(), TransportError> {
        self.scanning = true;
        // The first advertisements arrive at once, like a device already in BlueZ's cache.
        self.next_advert = Some(SimScooter::now());
        Ok(())
    }

    async fn stop_scan(&mut self) -> Result<(), TransportError> {
        self.scanning = false;
        self.next_advert = None;
        Ok(())
    }

    async fn connect(&mut self, address: BdAddr, timeout: Duration) -> Result<(), TransportError> {
        let now = SimScooter::now();
        self.pump(now);
        if self.connected.is_some() {
            return Err(TransportError::ConnectFailed("already connected".into()));
        }
        let (i, sim) = self
            .scooters
            .iter()
            .enumerate()
            .find(|(_, s)| s.address() == address)
            .map(|(i, s)| (i, s.clone()))
            .ok_or(TransportError::UnknownDevice(address))?;
        if sim.lock().stale_in_progress {
            return Err(TransportError::InProgress(
                "org.bluez.Error.InProgress: In Progress".into(),
            ));
        }
        // Like BlueZ: wait for a scooter that cannot be heard, connect the moment it can.
        let deadline = now + timeout.min(BLUEZ_CONNECT_TIMEOUT);
        loop {
            let now = SimScooter::now();
            self.pump(now);
            let (reachable, again) = {
                let state = sim.lock();
                (
                    state.scooter.reachable(now),
                    state.scooter.reachable_again(now),
                )
            };
            if reachable {
                break;
            }
            if now >= deadline {
                return Err(TransportError::ConnectFailed(
                    "org.bluez.Error.Failed: le-connection-abort-by-local".into(),
                ));
            }
            // Heard again at its next advertisement.
            let wake = again
                .unwrap_or(now + ADVERTISING_INTERVAL)
                .min(deadline)
                .max(now + Duration::from_micros(100));
            tokio::time::sleep_until(Instant::from_std(wake)).await;
        }
        let now = SimScooter::now();
        let mut state = sim.lock();
        state.scooter.connect(now).map_err(|e| match e {
            ConnectError::InProgress => TransportError::InProgress(e.to_string()),
            _ => TransportError::ConnectFailed(e.to_string()),
        })?;
        let link = state.link;
        drop(state);
        self.connected = Some(i);
        // What the previous connection left in the queue (its loss, late notifications) must
        // not be taken for news of this one.
        self.events
            .retain(|e| matches!(e, TransportEvent::Advertisement(_)));
        self.subscribed.clear();
        self.pending.clear();
        self.uplink = link.map(|t| LinkClock::new(t, now));
        Ok(())
    }

    async fn discover(&mut self) -> Result<Vec<u128>, TransportError> {
        let sim = self.connected_scooter()?;
        let state = sim.lock();
        Ok(state
            .scooter
            .profile()
            .gatt()
            .iter()
            .flat_map(|s| s.chars.iter().map(|c| c.uuid))
            .collect())
    }

    async fn subscribe(&mut self, char: Char) -> Result<(), TransportError> {
        let sim = self.connected_scooter()?;
        let notifies = sim
            .lock()
            .scooter
            .profile()
            .gatt()
            .iter()
            .flat_map(|s| s.chars.iter())
            .any(|c| c.uuid == char.uuid() && c.props.notify);
        if !notifies {
            return Err(TransportError::MissingCharacteristic(char));
        }
        self.subscribed.insert(char);
        Ok(())
    }

    async fn write(
        &mut self,
        char: Char,
        data: &[u8],
        _kind: WriteKind,
    ) -> Result<(), TransportError> {
        let now = SimScooter::now();
        self.pump(now);
        self.connected_scooter()?;
        if data.len() > ATT_PAYLOAD {
            return Err(TransportError::Gatt(format!(
                "write of {} bytes exceeds the {ATT_PAYLOAD}-byte ATT payload",
                data.len()
            )));
        }
        // The host stack needs a moment between an answer and the write it triggers, so that
        // write misses the connection event that carried the answer (as in the link model).
        let due = match &mut self.uplink {
            Some(clock) => clock.schedule(now + HOST_TURNAROUND),
            None => now,
        };
        self.pending.push_back(PendingWrite {
            due,
            char,
            data: data.to_vec(),
        });
        Ok(())
    }

    async fn read(&mut self, uuid: u128) -> Result<Vec<u8>, TransportError> {
        let sim = self.connected_scooter()?;
        sim.lock().scooter.read_characteristic(uuid).ok_or_else(|| {
            TransportError::Gatt(format!("characteristic {uuid:032x} is not readable"))
        })
    }

    async fn disconnect(&mut self) -> Result<(), TransportError> {
        let now = SimScooter::now();
        if let Some(sim) = self.connected.and_then(|i| self.scooters.get(i)) {
            sim.lock().scooter.disconnect(now);
        }
        self.link_down();
        Ok(())
    }

    async fn remove_device(&mut self, address: BdAddr) -> Result<(), TransportError> {
        for sim in &self.scooters {
            if sim.address() == address {
                sim.lock().stale_in_progress = false;
            }
        }
        Ok(())
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            let now = SimScooter::now();
            self.pump(now);
            if !self.events.is_empty() {
                continue;
            }
            // A deadline the scooter failed to clear must not spin: wait at least a tick of
            // the clock.
            let deadline = self
                .next_deadline(now)
                .max(now + Duration::from_micros(100));
            tokio::time::sleep_until(Instant::from_std(deadline)).await;
        }
    }

    fn empty_notifications(&self) -> u64 {
        self.empty_notifications
    }
}
