//! `org.bluez.GattService1`, `GattCharacteristic1` and `GattDescriptor1` (the CCCD): the GATT
//! database of a connected device. Reads and writes cross the simulated link (paced by the
//! timing model) and are answered by the peripheral; notifications arrive through
//! [`crate::Link`] and leave through the connection's notification pump.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures_lite::StreamExt as _;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;
use uuid::Uuid;
use zbus::interface;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

use crate::acquired::{self, Incoming, Watch};
use crate::address::BluezAddress;
use crate::bluez_error::BluezError;
use crate::gatt_spec::CharFlags;
use crate::paths::{CCCD_UUID, CHAR_IFACE};
use crate::peripheral::WriteKind;
use crate::state::{CharNode, ServiceNode, Shared, SharedPeripheral, lock};

/// Longest value BlueZ accepts in one write request (ATT long write limit).
const MAX_ATTRIBUTE_LEN: usize = 512;

fn object_path(path: &str) -> OwnedObjectPath {
    ObjectPath::try_from(path.to_owned())
        .map(OwnedObjectPath::from)
        .unwrap_or_else(|_| ObjectPath::from_static_str_unchecked("/").into())
}

/// A GattService1 object: static data only.
#[derive(Debug)]
pub(crate) struct ServiceIface {
    uuid: Uuid,
    primary: bool,
    device: OwnedObjectPath,
}

impl ServiceIface {
    pub(crate) fn new(node: &ServiceNode, device_path: &str) -> Self {
        ServiceIface {
            uuid: node.uuid,
            primary: node.primary,
            device: object_path(device_path),
        }
    }
}

#[interface(name = "org.bluez.GattService1")]
impl ServiceIface {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.to_string()
    }

    #[zbus(property)]
    fn primary(&self) -> bool {
        self.primary
    }

    #[zbus(property)]
    fn device(&self) -> OwnedObjectPath {
        self.device.clone()
    }
}

/// A GattCharacteristic1 object.
#[derive(Debug, Clone)]
pub(crate) struct CharIface {
    shared: Weak<Shared>,
    address: BluezAddress,
    node: CharNode,
}

/// What a GATT operation needs once it is admitted onto the link.
struct Admitted {
    shared: Arc<Shared>,
    peripheral: SharedPeripheral,
    generation: u64,
}

impl CharIface {
    pub(crate) fn new(shared: Weak<Shared>, address: BluezAddress, node: CharNode) -> Self {
        CharIface {
            shared,
            address,
            node,
        }
    }

    fn shared(&self) -> Result<Arc<Shared>, BluezError> {
        self.shared
            .upgrade()
            .ok_or_else(|| BluezError::Failed("adapter gone".into()))
    }

    /// Reads one flag of this characteristic's state (`false` without a device).
    fn acquired(&self, f: impl Fn(&crate::state::CharState) -> bool) -> bool {
        self.shared.upgrade().is_some_and(|shared| {
            shared
                .world()
                .devices
                .get(&self.address)
                .and_then(|d| d.chars.get(&self.node.path))
                .is_some_and(f)
        })
    }

    /// Whether the link of `generation` is still up.
    fn still_connected(&self, shared: &Shared, generation: u64) -> bool {
        shared
            .world()
            .devices
            .get(&self.address)
            .is_some_and(|d| d.has_link(generation))
    }

    /// Checks the link and `check`s the request under the world lock, counts it with `count`,
    /// and reserves its slot on the link; returns when it crosses and its offset.
    fn admit(
        &self,
        count: impl FnOnce(&mut crate::counters::Counters),
        check: impl FnOnce(&crate::state::Device) -> Result<(), BluezError>,
    ) -> Result<(Admitted, Instant, std::time::Duration), BluezError> {
        let shared = self.shared()?;
        let (peripheral, generation, at, sent) = {
            let mut world = shared.world();
            let device = world
                .devices
                .get_mut(&self.address)
                .ok_or_else(BluezError::not_connected)?;
            count(&mut device.counters);
            check(device)?;
            let peripheral = device.peripheral.clone();
            let link = device.link.as_mut().ok_or_else(BluezError::not_connected)?;
            let (at, sent) = link.reserve(Instant::now());
            (peripheral, link.generation, at, sent)
        };
        Ok((
            Admitted {
                shared,
                peripheral,
                generation,
            },
            at,
            sent,
        ))
    }

    /// Waits for the response slot of a request that crossed at `sent`.
    async fn await_response(&self, admitted: &Admitted, sent: std::time::Duration) {
        let at = {
            let mut world = admitted.shared.world();
            world
                .devices
                .get_mut(&self.address)
                .and_then(|d| d.link_of(admitted.generation))
                .map(|link| link.reserve_response(sent))
        };
        if let Some(at) = at {
            tokio::time::sleep_until(at).await;
        }
    }

    fn set_notifying(&self, shared: &Shared, on: bool) {
        if let Some(state) = shared
            .world()
            .devices
            .get_mut(&self.address)
            .and_then(|d| d.chars.get_mut(&self.node.path))
        {
            state.notifying = on;
        }
    }

    /// Tells the bus that `props` of this characteristic changed.
    async fn signal(&self, shared: &Shared, props: Vec<(&'static str, Value<'static>)>) {
        if let Some(conn) = shared.conn.get() {
            crate::signals::properties_changed(conn, &self.node.path, CHAR_IFACE, props).await;
        }
    }

    /// Sends one write command that came through an acquired socket: it takes a slot on the
    /// link now; `queue` delivers it to the peripheral when its slot comes, in order.
    fn admit_command(&self, value: Vec<u8>, queue: &mpsc::UnboundedSender<(Instant, Vec<u8>)>) {
        let admitted = self.admit(
            |c| c.socket_writes += 1,
            |device| {
                if value.len() > device.max_payload() {
                    Err(BluezError::Failed("Failed to initiate write".into()))
                } else {
                    Ok(())
                }
            },
        );
        match admitted {
            Ok((_, at, _)) => {
                let _ = queue.send((at, value));
            }
            Err(e) => debug!(uuid = %self.node.uuid, "write command from the socket dropped: {e}"),
        }
    }

    /// Ends an acquisition the client closed (BlueZ's own end was dropped otherwise).
    async fn release(&self, socket: &Weak<tokio::net::UnixDatagram>, notify: bool) {
        let Ok(shared) = self.shared() else {
            return;
        };
        let peripheral = {
            let mut world = shared.world();
            let Some(device) = world.devices.get_mut(&self.address) else {
                return;
            };
            let peripheral = device.peripheral.clone();
            let Some(state) = device.chars.get_mut(&self.node.path) else {
                return;
            };
            let slot = if notify {
                &mut state.notify_socket
            } else {
                &mut state.write_socket
            };
            if !slot.as_ref().is_some_and(|a| a.same(socket)) {
                return;
            }
            *slot = None;
            if notify {
                state.notifying = false;
            }
            peripheral
        };
        if notify {
            lock(&peripheral).on_subscribe(self.node.uuid, false);
            self.signal(
                &shared,
                vec![
                    ("NotifyAcquired", false.into()),
                    ("Notifying", false.into()),
                ],
            )
            .await;
        } else {
            self.signal(&shared, vec![("WriteAcquired", false.into())])
                .await;
        }
    }

    /// BlueZ ends an acquisition when its owner (the caller's bus name) leaves the bus.
    fn release_when_owner_leaves(
        &self,
        shared: &Shared,
        owner: Option<String>,
        socket: Weak<tokio::net::UnixDatagram>,
        notify: bool,
    ) {
        let (Some(owner), Some(conn)) = (owner, shared.conn.get().cloned()) else {
            return;
        };
        let iface = self.clone();
        tokio::spawn(async move {
            let Ok(proxy) = zbus::fdo::DBusProxy::new(&conn).await else {
                return;
            };
            let Ok(mut changes) = proxy
                .receive_name_owner_changed_with_args(&[(0, owner.as_str())])
                .await
            else {
                return;
            };
            let present = match zbus::names::BusName::try_from(owner.as_str()) {
                Ok(name) => proxy.name_has_owner(name).await.unwrap_or(false),
                Err(_) => false,
            };
            if present {
                while let Some(signal) = changes.next().await {
                    if signal.args().is_ok_and(|a| a.new_owner().is_none()) {
                        break;
                    }
                }
            }
            iface.release(&socket, notify).await;
        });
    }

    /// The client's end of a notify socket: nothing it writes is used; its hang-up releases.
    async fn watch_notify(self, mut watch: Watch) {
        loop {
            match watch.next().await {
                Incoming::Packet(_) => {}
                Incoming::Stopped => return,
                Incoming::Closed => {
                    let socket = Arc::downgrade(&watch.socket);
                    return self.release(&socket, true).await;
                }
            }
        }
    }

    /// The client's end of a write socket: each packet is a write command.
    async fn watch_write(self, mut watch: Watch) {
        let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
        let writer = {
            let iface = self.clone();
            tokio::spawn(async move {
                while let Some((at, value)) = due.recv().await {
                    tokio::time::sleep_until(at).await;
                    let Ok(shared) = iface.shared() else {
                        return;
                    };
                    let peripheral = {
                        let world = shared.world();
                        match world.devices.get(&iface.address) {
                            Some(d) if d.connected => d.peripheral.clone(),
                            _ => continue,
                        }
                    };
                    if let Err(e) =
                        lock(&peripheral).on_write(iface.node.uuid, &value, WriteKind::Command)
                    {
                        debug!(uuid = %iface.node.uuid, "peripheral rejected a command: {e}");
                    }
                }
            })
        };
        loop {
            match watch.next().await {
                Incoming::Packet(value) => self.admit_command(value, &queue),
                Incoming::Stopped => break,
                Incoming::Closed => {
                    let socket = Arc::downgrade(&watch.socket);
                    self.release(&socket, false).await;
                    break;
                }
            }
        }
        // What was written before the end still crosses (or fails on a link that is gone).
        drop(queue);
        let _ = writer.await;
    }
}

/// The write type of `WriteValue`'s options: `type` if given, else what the flags allow.
fn write_kind(
    options: &HashMap<String, OwnedValue>,
    flags: CharFlags,
) -> Result<WriteKind, BluezError> {
    match options.get("type").map(|v| <&str>::try_from(&**v)) {
        None => Ok(if flags.contains(CharFlags::WRITE) {
            WriteKind::Request
        } else {
            WriteKind::Command
        }),
        Some(Ok("command")) => Ok(WriteKind::Command),
        Some(Ok("request" | "reliable")) => Ok(WriteKind::Request),
        Some(_) => Err(BluezError::InvalidArguments(
            "Invalid arguments in method call".into(),
        )),
    }
}

#[interface(name = "org.bluez.GattCharacteristic1")]
impl CharIface {
    /// Reads the value from the peripheral (request and response take two connection events).
    /// Like BlueZ, the read value becomes the cached `Value` and is signalled as changed.
    async fn read_value(
        &self,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<Vec<u8>, BluezError> {
        let flags = self.node.flags;
        let (admitted, at, sent) = self.admit(
            |c| c.reads += 1,
            |_| {
                if flags.contains(CharFlags::READ) {
                    Ok(())
                } else {
                    Err(BluezError::NotPermitted("Read not permitted".into()))
                }
            },
        )?;
        tokio::time::sleep_until(at).await;
        if !self.still_connected(&admitted.shared, admitted.generation) {
            return Err(BluezError::not_connected());
        }
        let result = lock(&admitted.peripheral).on_read(self.node.uuid);
        self.await_response(&admitted, sent).await;
        let value = result.map_err(BluezError::from)?;
        if let Some(state) = admitted
            .shared
            .world()
            .devices
            .get_mut(&self.address)
            .and_then(|d| d.chars.get_mut(&self.node.path))
        {
            state.value.clone_from(&value);
        }
        if let Some(conn) = admitted.shared.conn.get() {
            crate::signals::properties_changed(
                conn,
                &self.node.path,
                CHAR_IFACE,
                vec![("Value", Value::from(value.clone()))],
            )
            .await;
        }
        Ok(value)
    }

    /// Writes to the peripheral. A command takes one slot on the link and its reply does not
    /// wait for the peripheral's verdict; a request also waits for the response event and
    /// reports the peripheral's ATT error.
    async fn write_value(
        &self,
        value: Vec<u8>,
        options: HashMap<String, OwnedValue>,
    ) -> Result<(), BluezError> {
        let flags = self.node.flags;
        let mut kind = Ok(WriteKind::Command);
        let (admitted, at, sent) = self.admit(
            |c| c.writes += 1,
            |device| {
                kind = write_kind(&options, flags);
                match kind.clone()? {
                    WriteKind::Command if !flags.contains(CharFlags::WRITE_WITHOUT_RESPONSE) => {
                        Err(BluezError::NotSupported(
                            "Operation is not supported".into(),
                        ))
                    }
                    WriteKind::Request if !flags.contains(CharFlags::WRITE) => {
                        Err(BluezError::NotPermitted("Write not permitted".into()))
                    }
                    WriteKind::Command if value.len() > device.max_payload() => {
                        Err(BluezError::Failed("Failed to initiate write".into()))
                    }
                    WriteKind::Request if value.len() > MAX_ATTRIBUTE_LEN => {
                        Err(BluezError::InvalidValueLength("Invalid Length".into()))
                    }
                    _ => Ok(()),
                }
            },
        )?;
        let kind = kind?;
        tokio::time::sleep_until(at).await;
        if !self.still_connected(&admitted.shared, admitted.generation) {
            return Err(BluezError::not_connected());
        }
        let result = lock(&admitted.peripheral).on_write(self.node.uuid, &value, kind);
        match kind {
            WriteKind::Command => {
                if let Err(e) = result {
                    debug!(uuid = %self.node.uuid, "peripheral rejected a command: {e}");
                }
                Ok(())
            }
            WriteKind::Request => {
                self.await_response(&admitted, sent).await;
                result.map_err(BluezError::from)
            }
        }
    }

    /// Enables notifications (writes the CCCD). Idempotent, like BlueZ for the same client.
    async fn start_notify(&self) -> Result<(), BluezError> {
        let flags = self.node.flags;
        let path = self.node.path.clone();
        let mut already = false;
        let (admitted, at, sent) = self.admit(
            |c| c.start_notify += 1,
            |device| {
                if !flags.can_notify() {
                    return Err(BluezError::NotSupported(
                        "Operation is not supported".into(),
                    ));
                }
                let state = device.chars.get(&path);
                if state.is_some_and(|c| c.notify_socket.is_some()) {
                    return Err(BluezError::NotPermitted("Notify acquired".into()));
                }
                already = state.is_some_and(|c| c.notifying);
                Ok(())
            },
        )?;
        if already {
            return Ok(());
        }
        // Enabling is a CCCD write request: it crosses the link and waits for its response.
        tokio::time::sleep_until(at).await;
        self.await_response(&admitted, sent).await;
        if !self.still_connected(&admitted.shared, admitted.generation) {
            return Err(BluezError::not_connected());
        }
        self.set_notifying(&admitted.shared, true);
        lock(&admitted.peripheral).on_subscribe(self.node.uuid, true);
        if let Some(conn) = admitted.shared.conn.get() {
            crate::signals::properties_changed(
                conn,
                &self.node.path,
                CHAR_IFACE,
                vec![("Notifying", true.into())],
            )
            .await;
        }
        Ok(())
    }

    /// Disables notifications.
    async fn stop_notify(&self) -> Result<(), BluezError> {
        let path = self.node.path.clone();
        let (admitted, at, sent) = self.admit(
            |c| c.stop_notify += 1,
            |device| {
                if device.chars.get(&path).is_some_and(|c| c.notifying) {
                    Ok(())
                } else {
                    Err(BluezError::Failed("No notify session started".into()))
                }
            },
        )?;
        tokio::time::sleep_until(at).await;
        self.await_response(&admitted, sent).await;
        self.set_notifying(&admitted.shared, false);
        lock(&admitted.peripheral).on_subscribe(self.node.uuid, false);
        if let Some(conn) = admitted.shared.conn.get() {
            crate::signals::properties_changed(
                conn,
                &self.node.path,
                CHAR_IFACE,
                vec![("Notifying", false.into())],
            )
            .await;
        }
        Ok(())
    }

    /// `AcquireNotify`: notifications through a socket instead of `PropertiesChanged`. BlueZ's
    /// checks: not twice, not beside `StartNotify`, only where the flags allow; the CCCD write
    /// crosses the link before the answer, which carries the client's end and the MTU.
    async fn acquire_notify(
        &self,
        _options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(zbus::zvariant::OwnedFd, u16), BluezError> {
        let owner = header.sender().map(ToString::to_string);
        let flags = self.node.flags;
        let path = self.node.path.clone();
        let mut mtu = 23;
        let (admitted, at, sent) = self.admit(
            |c| c.acquire_notify += 1,
            |device| {
                let state = device.chars.get(&path);
                if state.is_some_and(|c| c.notify_socket.is_some()) {
                    return Err(BluezError::NotPermitted("Notify acquired".into()));
                }
                if state.is_some_and(|c| c.notifying) {
                    return Err(BluezError::in_progress());
                }
                if !flags.can_notify() {
                    return Err(BluezError::NotSupported(
                        "Operation is not supported".into(),
                    ));
                }
                mtu = device.mtu;
                Ok(())
            },
        )?;
        tokio::time::sleep_until(at).await;
        self.await_response(&admitted, sent).await;
        let (acquired, watch, theirs) =
            acquired::pair().map_err(|e| BluezError::Failed(e.to_string()))?;
        {
            let mut world = admitted.shared.world();
            let state = world
                .devices
                .get_mut(&self.address)
                .filter(|d| d.has_link(admitted.generation))
                .and_then(|d| d.chars.get_mut(&path))
                .ok_or_else(BluezError::not_connected)?;
            if state.notifying {
                return Err(BluezError::in_progress());
            }
            state.notifying = true;
            state.notify_socket = Some(acquired);
        }
        lock(&admitted.peripheral).on_subscribe(self.node.uuid, true);
        self.signal(
            &admitted.shared,
            vec![("NotifyAcquired", true.into()), ("Notifying", true.into())],
        )
        .await;
        self.release_when_owner_leaves(
            &admitted.shared,
            owner,
            Arc::downgrade(&watch.socket),
            true,
        );
        tokio::spawn(self.clone().watch_notify(watch));
        Ok((theirs.into(), mtu))
    }

    /// `AcquireWrite`: write commands through a socket, one packet each, instead of
    /// `WriteValue` calls. Only where the flags allow a write without response, and not twice.
    async fn acquire_write(
        &self,
        _options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(zbus::zvariant::OwnedFd, u16), BluezError> {
        let owner = header.sender().map(ToString::to_string);
        let flags = self.node.flags;
        let path = self.node.path.clone();
        let shared = self.shared()?;
        let (acquired, watch, theirs) =
            acquired::pair().map_err(|e| BluezError::Failed(e.to_string()))?;
        let mtu = {
            let mut world = shared.world();
            let device = world
                .devices
                .get_mut(&self.address)
                .filter(|d| d.link.is_some())
                .ok_or_else(BluezError::not_connected)?;
            let mtu = device.mtu;
            device.counters.acquire_write += 1;
            let state = device.chars.entry(path).or_default();
            if state.write_socket.is_some() {
                return Err(BluezError::NotPermitted("Write acquired".into()));
            }
            if !flags.contains(CharFlags::WRITE_WITHOUT_RESPONSE) {
                return Err(BluezError::NotSupported(
                    "Operation is not supported".into(),
                ));
            }
            state.write_socket = Some(acquired);
            mtu
        };
        self.signal(&shared, vec![("WriteAcquired", true.into())])
            .await;
        self.release_when_owner_leaves(&shared, owner, Arc::downgrade(&watch.socket), false);
        tokio::spawn(self.clone().watch_write(watch));
        Ok((theirs.into(), mtu))
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.node.uuid.to_string()
    }

    #[zbus(property)]
    fn service(&self) -> OwnedObjectPath {
        object_path(&self.node.service_path)
    }

    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        self.node.flags.to_bluez()
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        self.shared
            .upgrade()
            .and_then(|shared| {
                shared
                    .world()
                    .devices
                    .get(&self.address)
                    .and_then(|d| d.chars.get(&self.node.path))
                    .map(|c| c.value.clone())
            })
            .unwrap_or_default()
    }

    /// Present only on characteristics that can notify, as in BlueZ.
    #[zbus(property)]
    fn notifying(&self) -> zbus::fdo::Result<bool> {
        if !self.node.flags.can_notify() {
            return Err(zbus::fdo::Error::Failed("No such property".into()));
        }
        Ok(self
            .shared
            .upgrade()
            .and_then(|shared| {
                shared
                    .world()
                    .devices
                    .get(&self.address)
                    .and_then(|d| d.chars.get(&self.node.path))
                    .map(|c| c.notifying)
            })
            .unwrap_or(false))
    }

    /// Present only on characteristics that can notify, as in BlueZ.
    #[zbus(property)]
    fn notify_acquired(&self) -> zbus::fdo::Result<bool> {
        if !self.node.flags.can_notify() {
            return Err(zbus::fdo::Error::Failed("No such property".into()));
        }
        Ok(self.acquired(|c| c.notify_socket.is_some()))
    }

    /// Present only on characteristics that take writes without response, as in BlueZ.
    #[zbus(property)]
    fn write_acquired(&self) -> zbus::fdo::Result<bool> {
        if !self.node.flags.contains(CharFlags::WRITE_WITHOUT_RESPONSE) {
            return Err(zbus::fdo::Error::Failed("No such property".into()));
        }
        Ok(self.acquired(|c| c.write_socket.is_some()))
    }

    #[zbus(property, name = "MTU")]
    fn mtu(&self) -> u16 {
        self.shared
            .upgrade()
            .and_then(|shared| shared.world().devices.get(&self.address).map(|d| d.mtu))
            .unwrap_or(23)
    }
}

/// The CCCD (0x2902) of a notifying characteristic. BlueZ manages it itself: clients read it
/// but enable notifications through StartNotify, never by writing it.
#[derive(Debug)]
pub(crate) struct DescIface {
    shared: Weak<Shared>,
    address: BluezAddress,
    char_path: String,
}

impl DescIface {
    pub(crate) fn new(shared: Weak<Shared>, address: BluezAddress, char_path: String) -> Self {
        DescIface {
            shared,
            address,
            char_path,
        }
    }

    fn cccd_value(&self) -> Vec<u8> {
        let notifying = self.shared.upgrade().is_some_and(|shared| {
            shared
                .world()
                .devices
                .get(&self.address)
                .and_then(|d| d.chars.get(&self.char_path))
                .is_some_and(|c| c.notifying)
        });
        vec![u8::from(notifying), 0]
    }
}

#[interface(name = "org.bluez.GattDescriptor1")]
impl DescIface {
    async fn read_value(
        &self,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<Vec<u8>, BluezError> {
        Ok(self.cccd_value())
    }

    async fn write_value(
        &self,
        _value: Vec<u8>,
        _options: HashMap<String, OwnedValue>,
    ) -> Result<(), BluezError> {
        Err(BluezError::NotPermitted("Write not permitted".into()))
    }

    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        CCCD_UUID.to_string()
    }

    #[zbus(property)]
    fn characteristic(&self) -> OwnedObjectPath {
        object_path(&self.char_path)
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        self.cccd_value()
    }
}
