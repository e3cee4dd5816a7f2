//! Puts a sans-IO [`Scooter`] on the fake BlueZ, so the unmodified BLE client stack (btleplug
//! over D-Bus) talks to it exactly as to a real scooter.
//!
//! The fake calls the [`Peripheral`] methods (connect, writes, reads, disconnect) from its own
//! tasks; each call feeds the scooter and pushes out whatever notifications are due. A driver
//! task owns time: it fires the scooter's deadlines (parcel timers, the auto-press, delayed
//! notifications, scheduled faults) and advances the physics every tick. Link-level faults (link
//! drop, out of range, failing connects) are played by the fake itself, so btleplug sees real
//! BlueZ behaviour; the others go to the scooter.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use m365_fakebluez::Harshness;
use m365_fakebluez::{
    AddressType, Advertisement, AttError, BluezAddress, BluezError, CharFlags, DeviceControl,
    FakeBluez, FakeError, Link, Peripheral, ServiceSpec, Uuid, WriteKind,
};
use m365_proto::gatt::Char;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::faults::{ConnectError, Counters, Fault};
use crate::profile::{CharProps, Profile};
use crate::ride::GpsSample;
use crate::scooter::{Scooter, ScooterEvent};

/// How often the driver advances the physics by default.
pub const DEFAULT_PHYSICS_TICK: Duration = Duration::from_millis(100);

/// How long a scooter switched off with no time to come back stays away.
const OFF_FOR_GOOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// What the peripheral and the driver share.
struct State {
    scooter: Scooter,
    link: Option<Link>,
    /// The link must be dropped (the scooter asked for it).
    drop_link: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the simulator down with a second one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The [`Peripheral`] the fake BlueZ drives.
struct SimPeripheral {
    shared: Arc<Shared>,
    services: Vec<ServiceSpec>,
}

impl std::fmt::Debug for SimPeripheral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPeripheral").finish_non_exhaustive()
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Peripheral for SimPeripheral {
    fn advertisement(&self) -> Advertisement {
        let mut state = self.shared.lock();
        let at = now();
        let adv = state
            .scooter
            .advertisement(at)
            // While the scooter itself is silent the fake decides visibility; keep the data.
            .unwrap_or_else(|| state.scooter.profile().advertisement(0));
        let mut out = Advertisement::new(BluezAddress::new(adv.address))
            .with_address_type(AddressType::Random)
            .with_name(adv.name)
            .with_manufacturer_data(adv.company_id, adv.manufacturer_data);
        for uuid in adv.service_uuids {
            out = out.with_service(Uuid::from_u128(uuid));
        }
        if let Some((uuid, data)) = adv.service_data {
            out = out.with_service_data(Uuid::from_u128(uuid), data);
        }
        out
    }

    fn services(&self) -> Vec<ServiceSpec> {
        self.services.clone()
    }

    fn on_connect(&mut self, link: Link) {
        let mut state = self.shared.lock();
        if let Err(e) = state.scooter.connect(now()) {
            // The fake already accepted the connection; the scooter refuses by dropping it.
            tracing::debug!(error = %e, "scooter refused the connection");
            state.drop_link = true;
        } else {
            state.link = Some(link);
        }
        drop(state);
        self.shared.wake.notify_one();
    }

    fn on_write(
        &mut self,
        characteristic: Uuid,
        data: &[u8],
        _kind: WriteKind,
    ) -> Result<(), AttError> {
        let Some(char) = Char::from_uuid(characteristic.as_u128()) else {
            return Err(AttError::WriteNotPermitted);
        };
        let mut state = self.shared.lock();
        state.scooter.handle_write(now(), char, data);
        pump(&mut state);
        drop(state);
        // Notifications that are not due yet, and new deadlines, are the driver's.
        self.shared.wake.notify_one();
        Ok(())
    }

    fn on_read(&mut self, characteristic: Uuid) -> Result<Vec<u8>, AttError> {
        self.shared
            .lock()
            .scooter
            .read_characteristic(characteristic.as_u128())
            .ok_or(AttError::ReadNotPermitted)
    }

    fn on_disconnect(&mut self) {
        let mut state = self.shared.lock();
        state.link = None;
        state.scooter.disconnect(now());
        drop(state);
        self.shared.wake.notify_one();
    }
}

/// Send every notification that is due over the current link.
fn pump(state: &mut State) {
    while let Some(t) = state.scooter.poll_transmit() {
        let Some(link) = &state.link else { continue };
        if let Err(e) = link.notify(Uuid::from_u128(t.char.uuid()), &t.data) {
            // A client that did not subscribe simply misses it, as over the air.
            tracing::debug!(error = %e, char = ?t.char, "notification not delivered");
        }
    }
}

/// The GATT layout of `profile` for the fake.
fn services(profile: &Profile) -> Vec<ServiceSpec> {
    profile
        .gatt()
        .into_iter()
        .map(|service| {
            service.chars.into_iter().fold(
                ServiceSpec::primary(Uuid::from_u128(service.uuid)),
                |spec, c| spec.with_characteristic(Uuid::from_u128(c.uuid), flags(c.props)),
            )
        })
        .collect()
}

fn flags(props: CharProps) -> CharFlags {
    let mut f = CharFlags::NONE;
    if props.read {
        f = f | CharFlags::READ;
    }
    if props.write {
        f = f | CharFlags::WRITE;
    }
    if props.write_without_response {
        f = f | CharFlags::WRITE_WITHOUT_RESPONSE;
    }
    if props.notify {
        f = f | CharFlags::NOTIFY;
    }
    f
}

/// The BlueZ error a connection fault produces.
pub fn bluez_error(error: ConnectError) -> BluezError {
    match error {
        ConnectError::Failed => BluezError::le_connection_abort_by_local(),
        ConnectError::InProgress => BluezError::in_progress(),
        ConnectError::NotReady => BluezError::NotReady(error.message().to_owned()),
        ConnectError::AlreadyConnected => BluezError::AlreadyConnected(error.message().to_owned()),
    }
}

/// A scooter served by the fake BlueZ. Dropping it stops its driver task (the device stays
/// registered with the fake until the fake is dropped).
#[derive(Debug)]
pub struct ServedScooter {
    shared: Arc<Shared>,
    control: DeviceControl,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl ServedScooter {
    /// Add `scooter` to `fake` and start driving it; must run inside a tokio runtime.
    pub fn start(
        fake: &FakeBluez,
        scooter: Scooter,
        physics_tick: Duration,
    ) -> Result<ServedScooter, FakeError> {
        let services = services(scooter.profile());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                scooter,
                link: None,
                drop_link: false,
            }),
            wake: Notify::new(),
        });
        let control = fake.add_peripheral(SimPeripheral {
            shared: shared.clone(),
            services,
        })?;
        let task = tokio::spawn(drive(shared.clone(), control.clone(), physics_tick));
        Ok(ServedScooter {
            shared,
            control,
            task,
        })
    }

    /// The fake's handle on the device (link faults, BlueZ counters, link statistics).
    pub fn control(&self) -> &DeviceControl {
        &self.control
    }

    /// Run `f` on the scooter (inspect or change it); wakes the driver afterwards.
    pub fn with_scooter<T>(&self, f: impl FnOnce(&mut Scooter) -> T) -> T {
        let out = f(&mut self.shared.lock().scooter);
        self.shared.wake.notify_one();
        out
    }

    /// What the scooter saw.
    pub fn counters(&self) -> Counters {
        self.shared.lock().scooter.counters()
    }

    /// Position, course and speed for GPS emulation.
    pub fn gps(&self) -> GpsSample {
        self.shared.lock().scooter.ride().gps()
    }

    /// A source of GPS samples that follows this scooter, for an emulated receiver running on
    /// another task.
    pub fn gps_feed(&self) -> Box<dyn FnMut() -> GpsSample + Send> {
        let shared = self.shared.clone();
        Box::new(move || shared.lock().scooter.ride().gps())
    }

    /// Press the power button.
    pub fn press_button(&self) {
        self.with_scooter(|s| s.press_button(now()));
    }

    /// Put `fault` into force: link faults are played by the fake (so btleplug sees BlueZ's own
    /// behaviour), the others by the scooter. Clearing faults clears both.
    pub async fn apply_fault(&self, fault: Fault) {
        match fault {
            Fault::DropLink { down_for } => {
                self.control.drop_link(down_for).await;
            }
            Fault::OutOfRange { for_ } => self.control.out_of_range(for_).await,
            Fault::FailNextConnect(error) => {
                self.control.fail_next_connects(1, bluez_error(error));
            }
            Fault::ClearAll => {
                self.control.clear_faults();
                self.with_scooter(|s| s.apply_fault(now(), Fault::ClearAll));
            }
            other => self.with_scooter(|s| s.apply_fault(now(), other)),
        }
    }

    /// A link drop with harsher-than-BlueZ variants on demand (see [`Harshness`]).
    pub async fn drop_link_with(&self, down_for: Duration, harshness: Harshness) {
        self.control.drop_link_with(down_for, harshness).await;
    }

    /// Out of range with harsher-than-BlueZ variants on demand (see [`Harshness`]).
    pub async fn out_of_range_with(&self, for_: Duration, harshness: Harshness) {
        self.control.out_of_range_with(for_, harshness).await;
    }
}

impl Drop for ServedScooter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the driver asks of the scooter's radio (its BLE link and its advertising): the fake's
/// [`DeviceControl`] in service, a recorder in tests.
trait RadioControl: Send + Sync + 'static {
    /// Drop the current link now; no connection can be made for `hold` (the scooter still
    /// advertises).
    fn drop_link(&self, hold: Duration) -> impl Future<Output = ()> + Send;
    /// Drop the link and stop advertising for `hold` (out of range, or switched off).
    fn go_silent(&self, hold: Duration) -> impl Future<Output = ()> + Send;
    /// The scooter is on again before its time: it advertises and accepts connections now.
    fn back(&self);
}

impl RadioControl for DeviceControl {
    async fn drop_link(&self, hold: Duration) {
        DeviceControl::drop_link(self, hold).await;
    }

    async fn go_silent(&self, hold: Duration) {
        self.out_of_range(hold).await;
    }

    fn back(&self) {
        self.end_out_of_range();
    }
}

/// What the scooter asked of its radio in one round of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RadioAction {
    /// Nothing.
    None,
    /// Drop the link; not connectable for this long.
    Drop(Duration),
    /// Drop the link and stop advertising for this long.
    Silent(Duration),
    /// Advertise and accept connections again now.
    Back,
}

/// The driver: fires deadlines, ticks the physics, pushes due notifications, carries out what
/// the scooter asks of the link. Link faults the scooter applies itself (a scheduled drop or
/// out-of-range, a power-off) are handed to the fake with their duration, so a connect waits
/// for the scooter as it would with BlueZ.
async fn drive<C: RadioControl>(shared: Arc<Shared>, control: C, tick: Duration) {
    let tick = tick.max(Duration::from_millis(1));
    let mut last_tick = Instant::now();
    loop {
        let (wake_at, action) = {
            let mut state = shared.lock();
            let t = Instant::now();
            if t.duration_since(last_tick) >= tick {
                state.scooter.step_physics(t.duration_since(last_tick));
                last_tick = t;
            }
            let now = t.into_std();
            state.scooter.handle_timeout(now);
            pump(&mut state);
            let mut action = RadioAction::None;
            while let Some(event) = state.scooter.poll_event() {
                tracing::debug!(?event, "scooter event");
                match event {
                    ScooterEvent::DropLink => state.drop_link = true,
                    ScooterEvent::PoweredOff => {
                        // Off until the scooter comes back on by itself (or for good).
                        let hold = state
                            .scooter
                            .off_until()
                            .map_or(OFF_FOR_GOOD, |until| until.saturating_duration_since(now));
                        action = RadioAction::Silent(hold);
                    }
                    ScooterEvent::PoweredOn => action = RadioAction::Back,
                    _ => {}
                }
            }
            if std::mem::take(&mut state.drop_link) && action == RadioAction::None {
                let hold = state
                    .scooter
                    .reachable_again(now)
                    .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
                action = if state.scooter.faults().advertising(now) {
                    RadioAction::Drop(hold)
                } else {
                    RadioAction::Silent(hold)
                };
            }
            let mut wake_at = last_tick + tick;
            if let Some(d) = state.scooter.poll_timeout() {
                wake_at = wake_at.min(Instant::from_std(d));
            }
            (wake_at, action)
        };
        match action {
            RadioAction::None => {}
            RadioAction::Drop(hold) => control.drop_link(hold).await,
            RadioAction::Silent(hold) => control.go_silent(hold).await,
            RadioAction::Back => control.back(),
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use m365_proto::frame::Frame;

    use super::*;
    use crate::config::DEFAULT_POWER_OFF_HOLD;
    use crate::faults::FaultSchedule;
    use crate::profile::{Generation, Model};
    use crate::ride::Script;
    use crate::scooter::ScooterConfig;

    #[derive(Default)]
    struct Recorder {
        drops: AtomicUsize,
        holds: Mutex<Vec<Duration>>,
        power_offs: Mutex<Vec<Duration>>,
        backs: AtomicUsize,
    }

    impl RadioControl for Arc<Recorder> {
        async fn drop_link(&self, hold: Duration) {
            self.drops.fetch_add(1, Ordering::SeqCst);
            self.holds
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(hold);
        }

        async fn go_silent(&self, hold: Duration) {
            self.power_offs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(hold);
        }

        fn back(&self) {
            self.backs.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn shared(script: Script) -> Arc<Shared> {
        let mut config = ScooterConfig::new(Model::M365, 3).with_generation(Generation::Plain);
        config.link = None;
        config.script = script;
        let scooter = Scooter::new(config).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Shared {
            state: Mutex::new(State {
                scooter,
                link: None,
                drop_link: false,
            }),
            wake: Notify::new(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn driver_ticks_the_physics_on_the_clock() {
        let shared = shared(Script::Trace(vec![(0.0, 18.0)]));
        let recorder = Arc::new(Recorder::default());
        let task = tokio::spawn(drive(
            shared.clone(),
            recorder.clone(),
            Duration::from_millis(100),
        ));
        tokio::time::sleep(Duration::from_millis(10_050)).await;
        let (uptime, trip) = {
            let state = shared.lock();
            (
                state.scooter.ride().power_on_s(),
                state.scooter.ride().trip_m(),
            )
        };
        task.abort();
        assert!((uptime - 10.0).abs() < 0.11, "{uptime}");
        // 18 km/h = 5 m/s for 10 s.
        assert!((trip - 50.0).abs() < 0.6, "{trip}");
        assert_eq!(recorder.drops.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_link_faults_reach_the_link_with_their_duration() {
        let shared = shared(Script::Parked);
        {
            let mut state = shared.lock();
            let t = now();
            assert!(state.scooter.connect(t).is_ok());
            state.scooter.set_fault_schedule(
                t,
                FaultSchedule::new(vec![
                    (
                        Duration::from_secs(1),
                        Fault::DropLink {
                            down_for: Duration::from_secs(2),
                        },
                    ),
                    (
                        Duration::from_secs(5),
                        Fault::OutOfRange {
                            for_: Duration::from_secs(7),
                        },
                    ),
                ]),
            );
        }
        let recorder = Arc::new(Recorder::default());
        let task = tokio::spawn(drive(
            shared.clone(),
            recorder.clone(),
            Duration::from_millis(100),
        ));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let holds = recorder
            .holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(holds.len(), 1, "one drop");
        let fade = holds[0];
        assert!(
            fade > Duration::from_millis(1_900) && fade <= Duration::from_secs(2),
            "the fade's length: {fade:?}"
        );
        // Back on the link after the fade, before the out-of-range period silences it.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(shared.lock().scooter.connect(now()).is_ok());
        tokio::time::sleep(Duration::from_secs(2)).await;
        let silent = recorder
            .power_offs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        assert_eq!(silent.len(), 1, "{silent:?}");
        assert!(silent[0] > Duration::from_millis(6_900), "{silent:?}");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn power_off_takes_the_scooter_away_and_the_button_brings_it_back() {
        let shared = shared(Script::Parked);
        let recorder = Arc::new(Recorder::default());
        let task = tokio::spawn(drive(
            shared.clone(),
            recorder.clone(),
            Duration::from_millis(100),
        ));
        {
            let mut state = shared.lock();
            let t = now();
            assert!(state.scooter.connect(t).is_ok());
            let off = Frame {
                dir: 0x20,
                rw: 0x03,
                attr: 0x79,
                payload: vec![1, 0],
            };
            state
                .scooter
                .handle_write(t, Char::UartWrite, &off.encode());
        }
        shared.wake.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            *recorder
                .power_offs
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            vec![DEFAULT_POWER_OFF_HOLD]
        );
        assert!(!shared.lock().scooter.ride().powered());
        tokio::time::sleep(DEFAULT_POWER_OFF_HOLD).await;
        assert!(shared.lock().scooter.ride().powered());
        assert_eq!(
            recorder.backs.load(Ordering::SeqCst),
            1,
            "advertising again"
        );
        task.abort();
    }
}
