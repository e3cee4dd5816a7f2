//! The fake's shared state: the adapter's discovery sessions and every simulated device with
//! its link, faults and counters. It lives behind one std `Mutex` that is only ever held for
//! short, synchronous bookkeeping, never across an `.await` and never while a peripheral
//! callback runs (callbacks may call back into the state through [`crate::Link`], which reaches
//! it as a [`LinkHost`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use uuid::Uuid;
use zbus::Connection;

use crate::address::BluezAddress;
use crate::advertisement::Advertisement;
use crate::config::{FakeConfig, GattOnDisconnect};
use crate::counters::Counters;
use crate::faults::Faults;
use crate::gatt_spec::{CharFlags, ServiceSpec};
use crate::link::{LinkError, LinkHost};
use crate::link_timing::{ConnectionEvents, LinkStats, LinkTiming};
use crate::paths;
use crate::peripheral::Peripheral;

/// A peripheral behind its own lock, so its callbacks never run under the world lock.
pub(crate) type SharedPeripheral = Arc<Mutex<Box<dyn Peripheral>>>;

/// Locks a mutex, ignoring poisoning: a panicking peripheral must not take the fake down.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the D-Bus objects, the background tasks and the controls share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: FakeConfig,
    pub(crate) world: Mutex<World>,
    /// Set once the bus connection is up. The D-Bus objects hold only a `Weak<Shared>`, so
    /// this does not form a reference cycle.
    pub(crate) conn: OnceLock<Connection>,
    /// Wakes pending connects when something they wait for may have changed (a cancel, a
    /// cleared fault, a removed device).
    pub(crate) connect_wake: Notify,
}

impl Shared {
    pub(crate) fn new(config: FakeConfig) -> Self {
        Shared {
            config,
            world: Mutex::new(World::default()),
            conn: OnceLock::new(),
            connect_wake: Notify::new(),
        }
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }
}

/// How a [`Link`] reaches the state it belongs to.
impl LinkHost for Shared {
    fn link_is_up(&self, address: BluezAddress, generation: u64) -> bool {
        self.world()
            .devices
            .get(&address)
            .is_some_and(|d| d.has_link(generation))
    }

    fn notify(
        &self,
        address: BluezAddress,
        generation: u64,
        characteristic: Uuid,
        data: &[u8],
    ) -> Result<(), LinkError> {
        let mut world = self.world();
        let device = world
            .devices
            .get_mut(&address)
            .ok_or(LinkError::NotConnected)?;
        if !device.has_link(generation) {
            return Err(LinkError::NotConnected);
        }
        let max = device.max_payload();
        let node = device
            .layout
            .by_uuid(characteristic)
            .ok_or(LinkError::UnknownCharacteristic(characteristic))?;
        if !node.flags.can_notify() {
            return Err(LinkError::NotNotifiable(characteristic));
        }
        if data.len() > max {
            return Err(LinkError::TooLong {
                len: data.len(),
                max,
            });
        }
        let char_path = node.path.clone();
        let subscribed = device.chars.get(&char_path).is_some_and(|c| c.notifying);
        let link = device.link_of(generation).ok_or(LinkError::NotConnected)?;
        if !subscribed {
            return Err(LinkError::NotSubscribed(characteristic));
        }
        if link.notify_tx.capacity() == 0 {
            return Err(LinkError::QueueFull);
        }
        // The slot on the link is taken now, in call order, so a burst fills connection
        // events back to back however late the pump runs.
        let (at, _) = link.reserve(Instant::now());
        link.notify_tx
            .try_send(Outgoing {
                char_path,
                data: data.to_vec(),
                at,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => LinkError::QueueFull,
                TrySendError::Closed(_) => LinkError::NotConnected,
            })
    }
}

/// Adapter and device state.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) powered: bool,
    /// Powered off from outside (rfkill): clients cannot power it on.
    pub(crate) rfkill_blocked: bool,
    /// Unique bus names of the clients that called `StartDiscovery`.
    pub(crate) discovery_clients: BTreeSet<String>,
    pub(crate) discovery_started: Option<Instant>,
    /// Service UUIDs of the discovery filter (empty: no filter).
    pub(crate) filter_uuids: Vec<Uuid>,
    pub(crate) devices: BTreeMap<BluezAddress, Device>,
}

impl Default for World {
    fn default() -> Self {
        World {
            // A fake adapter starts powered, like a Pi whose bluetoothd brought hci0 up.
            powered: true,
            rfkill_blocked: false,
            discovery_clients: BTreeSet::new(),
            discovery_started: None,
            filter_uuids: Vec::new(),
            devices: BTreeMap::new(),
        }
    }
}

impl World {
    pub(crate) fn discovering(&self) -> bool {
        !self.discovery_clients.is_empty()
    }

    /// The device whose Device1 object has this path.
    pub(crate) fn device_by_path(&mut self, path: &str) -> Option<&mut Device> {
        self.devices
            .values_mut()
            .find(|d| paths::device(d.address) == path)
    }
}

/// One simulated device.
pub(crate) struct Device {
    pub(crate) address: BluezAddress,
    pub(crate) peripheral: SharedPeripheral,
    /// The latest advertisement seen while scanning.
    pub(crate) advert: Advertisement,
    pub(crate) layout: GattLayout,
    /// Per characteristic path: subscription and cached value.
    pub(crate) chars: HashMap<String, CharState>,
    /// The Device1 object is on the bus.
    pub(crate) exported: bool,
    /// The GATT objects are on the bus.
    pub(crate) gatt_exported: bool,
    /// The id of the `Connect()` call waiting for the device, if one is.
    pub(crate) pending_connect: Option<u64>,
    /// Ids handed to `Connect()` calls so far.
    pub(crate) connect_calls: u64,
    /// When the device was last heard (by a scan or a pending connect) or last had a link: the
    /// start of BlueZ's temporary timeout.
    pub(crate) last_seen: Option<Instant>,
    pub(crate) connected: bool,
    pub(crate) services_resolved: bool,
    pub(crate) link: Option<LinkSession>,
    /// Incremented on every successful connect; a [`crate::Link`] only works while its
    /// generation is the current one.
    pub(crate) generation: u64,
    pub(crate) faults: Faults,
    pub(crate) counters: Counters,
    pub(crate) rssi_override: Option<i16>,
    /// The RSSI last published on the bus, to signal only changes.
    pub(crate) published_rssi: Option<i16>,
    pub(crate) mtu: u16,
    pub(crate) gatt_on_disconnect: GattOnDisconnect,
    pub(crate) timing: LinkTiming,
    /// Statistics of the last link that went down.
    pub(crate) last_link_stats: LinkStats,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("address", &self.address)
            .field("exported", &self.exported)
            .field("connected", &self.connected)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Device {
    pub(crate) fn new(
        peripheral: Box<dyn Peripheral>,
        advert: Advertisement,
        services: &[ServiceSpec],
        config: &FakeConfig,
    ) -> Self {
        let address = advert.address;
        let layout = GattLayout::new(address, services);
        let chars = layout
            .characteristics()
            .map(|c| (c.path.clone(), CharState::default()))
            .collect();
        Device {
            address,
            peripheral: Arc::new(Mutex::new(peripheral)),
            advert,
            layout,
            chars,
            exported: false,
            gatt_exported: false,
            pending_connect: None,
            connect_calls: 0,
            last_seen: None,
            connected: false,
            services_resolved: false,
            link: None,
            generation: 0,
            faults: Faults {
                connect_delay: config.connect_delay,
                ..Faults::default()
            },
            counters: Counters::default(),
            rssi_override: None,
            published_rssi: None,
            mtu: config.mtu,
            gatt_on_disconnect: config.gatt_on_disconnect,
            timing: config.link_timing,
            last_link_stats: LinkStats::default(),
        }
    }

    /// The current link, if it is the one of `generation`.
    pub(crate) fn link_of(&mut self, generation: u64) -> Option<&mut LinkSession> {
        self.link.as_mut().filter(|l| l.generation == generation)
    }

    /// Whether the link of `generation` is the current one.
    pub(crate) fn has_link(&self, generation: u64) -> bool {
        self.link
            .as_ref()
            .is_some_and(|l| l.generation == generation)
    }

    /// Largest notification or write-without-response payload (ATT MTU − 3).
    pub(crate) fn max_payload(&self) -> usize {
        usize::from(self.mtu.saturating_sub(3))
    }

    /// Whether a `Connect()` is waiting for the device.
    pub(crate) fn connecting(&self) -> bool {
        self.pending_connect.is_some()
    }

    /// RSSI as reported: an override set by a test wins over the advertisement.
    pub(crate) fn rssi(&self) -> Option<i16> {
        self.rssi_override.or(self.advert.rssi)
    }
}

/// A connected link.
#[derive(Debug)]
pub(crate) struct LinkSession {
    pub(crate) generation: u64,
    /// When the link came up: time zero of its connection events.
    pub(crate) started: Instant,
    pub(crate) events: ConnectionEvents,
    pub(crate) notify_tx: mpsc::Sender<Outgoing>,
}

impl LinkSession {
    /// Reserves a slot for a packet ready now; returns when it crosses the link and its offset
    /// from the link start (needed to place a response).
    pub(crate) fn reserve(&mut self, now: Instant) -> (Instant, Duration) {
        let offset = self
            .events
            .reserve(now.saturating_duration_since(self.started));
        (self.started + offset, offset)
    }

    /// Reserves the answer to a request that crossed at `sent` (offset from link start).
    pub(crate) fn reserve_response(&mut self, sent: Duration) -> Instant {
        self.started + self.events.reserve_response(sent)
    }
}

/// A notification queued for delivery.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) char_path: String,
    pub(crate) data: Vec<u8>,
    /// The connection event that carries it.
    pub(crate) at: Instant,
}

/// Subscription and cached `Value` of one characteristic.
#[derive(Debug, Default, Clone)]
pub(crate) struct CharState {
    pub(crate) notifying: bool,
    pub(crate) value: Vec<u8>,
    /// Notifications go to this socket instead of `PropertiesChanged` (`AcquireNotify`).
    pub(crate) notify_socket: Option<crate::acquired::Acquired>,
    /// Packets written to this socket are write commands (`AcquireWrite`).
    pub(crate) write_socket: Option<crate::acquired::Acquired>,
}

impl CharState {
    /// The link went down or came up anew: no subscription, no acquired socket (dropping
    /// BlueZ's end hangs up on the client).
    pub(crate) fn reset_link(&mut self) {
        self.notifying = false;
        self.notify_socket = None;
        self.write_socket = None;
    }
}

/// Object paths and properties of a device's GATT database, fixed when it is added.
#[derive(Debug, Clone)]
pub(crate) struct GattLayout {
    pub(crate) services: Vec<ServiceNode>,
}

/// One GattService1 object.
#[derive(Debug, Clone)]
pub(crate) struct ServiceNode {
    pub(crate) path: String,
    pub(crate) uuid: Uuid,
    pub(crate) primary: bool,
    pub(crate) characteristics: Vec<CharNode>,
}

/// One GattCharacteristic1 object and its CCCD, if it can notify.
#[derive(Debug, Clone)]
pub(crate) struct CharNode {
    pub(crate) path: String,
    pub(crate) service_path: String,
    pub(crate) uuid: Uuid,
    pub(crate) flags: CharFlags,
    pub(crate) cccd_path: Option<String>,
}

impl GattLayout {
    /// Assigns ATT handles the way a peripheral's database would (service declaration, then per
    /// characteristic a declaration, a value and, if it notifies, a CCCD) and names the objects
    /// after them as BlueZ does (`service000a/char000b/desc000d`).
    pub(crate) fn new(address: BluezAddress, services: &[ServiceSpec]) -> Self {
        let device = paths::device(address);
        // Handle 0x0001..0x0009 are taken by the GAP and GATT services on a real peripheral.
        let mut handle: u16 = 0x000a;
        let mut next = || {
            let h = handle;
            handle = handle.saturating_add(1);
            h
        };
        let services = services
            .iter()
            .map(|spec| {
                let path = format!("{device}/service{:04x}", next());
                let characteristics = spec
                    .characteristics
                    .iter()
                    .map(|c| {
                        let decl = next();
                        let _value = next();
                        let char_path = format!("{path}/char{decl:04x}");
                        let cccd_path = c
                            .flags
                            .can_notify()
                            .then(|| format!("{char_path}/desc{:04x}", next()));
                        CharNode {
                            path: char_path,
                            service_path: path.clone(),
                            uuid: c.uuid,
                            flags: c.flags,
                            cccd_path,
                        }
                    })
                    .collect();
                ServiceNode {
                    path,
                    uuid: spec.uuid,
                    primary: spec.primary,
                    characteristics,
                }
            })
            .collect();
        GattLayout { services }
    }

    pub(crate) fn characteristics(&self) -> impl Iterator<Item = &CharNode> {
        self.services.iter().flat_map(|s| s.characteristics.iter())
    }

    /// The first characteristic with this UUID.
    pub(crate) fn by_uuid(&self, uuid: Uuid) -> Option<&CharNode> {
        self.characteristics().find(|c| c.uuid == uuid)
    }
}

/// Fixtures for unit tests: a connected device with no bus behind it.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::heart_rate::HeartRateMonitor;
    use crate::link::{Link, NOTIFY_QUEUE};

    /// The fixture device's address.
    pub(crate) const ADDR: BluezAddress = BluezAddress::new([0xC0, 0xFF, 0xEE, 0, 0, 2]);

    /// A heart-rate monitor with a link of generation 1 that came up now, its [`Link`] and the
    /// receiving end of its notification queue.
    pub(crate) fn connected_hrm(
        timing: LinkTiming,
    ) -> (Arc<Shared>, Link, mpsc::Receiver<Outgoing>) {
        let shared = Arc::new(Shared::new(FakeConfig::default()));
        let hrm = HeartRateMonitor::new(ADDR, 60);
        let mut device = Device::new(
            Box::new(HeartRateMonitor::new(ADDR, 60)),
            crate::Peripheral::advertisement(&hrm),
            &crate::Peripheral::services(&hrm),
            &shared.config,
        );
        let (tx, rx) = mpsc::channel(NOTIFY_QUEUE);
        device.generation = 1;
        device.connected = true;
        device.link = Some(LinkSession {
            generation: 1,
            started: Instant::now(),
            events: ConnectionEvents::new(timing),
            notify_tx: tx,
        });
        shared.world().devices.insert(ADDR, device);
        let link = Link {
            shared: Arc::<Shared>::downgrade(&shared),
            address: ADDR,
            generation: 1,
        };
        (shared, link, rx)
    }

    /// Marks `characteristic` of the fixture device as subscribed.
    pub(crate) fn subscribe(shared: &Shared, characteristic: Uuid) {
        let mut world = shared.world();
        let device = world.devices.get_mut(&ADDR).unwrap();
        let path = device.layout.by_uuid(characteristic).unwrap().path.clone();
        device.chars.get_mut(&path).unwrap().notifying = true;
    }

    /// The cached value of `characteristic` of the fixture device.
    pub(crate) fn value(shared: &Shared, characteristic: Uuid) -> Vec<u8> {
        let world = shared.world();
        let device = &world.devices[&ADDR];
        let path = &device.layout.by_uuid(characteristic).unwrap().path;
        device.chars[path].value.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_objects_after_att_handles() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let spec = [
            ServiceSpec::primary(Uuid::from_u128(0x10))
                .with_characteristic(a, CharFlags::NOTIFY)
                .with_characteristic(b, CharFlags::WRITE),
            ServiceSpec::primary(Uuid::from_u128(0x20)).with_characteristic(a, CharFlags::READ),
        ];
        let layout = GattLayout::new(BluezAddress::new([0xAA, 0, 0, 0, 0, 1]), &spec);
        let paths: Vec<_> = layout
            .characteristics()
            .map(|c| (c.path.as_str(), c.cccd_path.as_deref()))
            .collect();
        let dev = "/org/bluez/hci0/dev_AA_00_00_00_00_01";
        assert_eq!(
            paths,
            [
                (
                    format!("{dev}/service000a/char000b").as_str(),
                    Some(format!("{dev}/service000a/char000b/desc000d").as_str())
                ),
                (format!("{dev}/service000a/char000e").as_str(), None),
                (format!("{dev}/service0010/char0011").as_str(), None),
            ]
        );
        assert_eq!(layout.by_uuid(a).map(|c| c.flags), Some(CharFlags::NOTIFY));
    }
}
