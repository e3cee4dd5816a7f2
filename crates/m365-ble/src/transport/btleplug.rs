//! The production transport: BlueZ over D-Bus through btleplug.
//!
//! btleplug's Linux backend (bluez-async 0.9) spawns a task whenever one of its streams is
//! dropped, and that task unwraps the removal of a D-Bus match rule; on a multi-thread tokio
//! runtime the rule is sometimes already gone and the task panics. On a current-thread runtime
//! this never happens. So all btleplug calls run on a **dedicated thread with its own
//! current-thread runtime**; [`BtleplugTransport`] is a handle that sends it commands over a
//! channel and receives events from it. Whatever runtime the caller uses, btleplug never runs
//! on a multi-thread one, and should the worker die anyway the handle reports
//! [`TransportError::Closed`] instead of taking the process down.
//!
//! One worker is one BlueZ session ([`BtleplugSession`]): one btleplug `Manager`, one D-Bus
//! connection and one stream of the adapter's events, which match every `PropertiesChanged`
//! under the adapter. A process serving several scooters shares one session: each handle
//! ([`BtleplugSession::transport`]) is a slot of the worker, a task of its own on the worker's
//! runtime with its own connection and notification stream (so one scooter's slow connect never
//! holds up another's samples). One router task reads the adapter's events once for every slot:
//! a link loss goes to the slot connected to that device, advertisements to the slots that
//! scan. The adapter scans while at least one slot does. [`BtleplugTransport::new`] starts a
//! session of its own for a single handle.
//!
//! Link loss is only visible on the adapter's event stream (`DeviceDisconnected`): the worker
//! watches it and turns it into [`TransportEvent::Disconnected`]. BlueZ's `RemoveDevice`, which
//! btleplug does not offer, is called directly over D-Bus.
//!
//! The bus is the system bus, so `DBUS_SYSTEM_BUS_ADDRESS` points the transport at another
//! BlueZ (the simulator's fake one).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use btleplug::api::{
    Central as _, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter,
    ValueNotification, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures::{Stream, StreamExt};
use m365_proto::gatt::Char;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::acquired::{self, AcquiredUart, Owner, Received, Sockets};
use super::{Advertisement, Transport, TransportError, TransportEvent, WriteKind};
use crate::address::BdAddr;

/// How long an explicit disconnect waits for BlueZ to confirm it, so the confirmation is not
/// mistaken for a later link loss.
const DISCONNECT_CONFIRM: Duration = Duration::from_millis(500);
/// Events buffered between the worker and the handle.
const EVENT_QUEUE: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, TransportError>>;

enum Command {
    StartScan(Reply<()>),
    StopScan(Reply<()>),
    Connect(BdAddr, Duration, Reply<()>),
    Discover(Reply<Vec<u128>>),
    /// The UART notify characteristic may come back as BlueZ's sockets.
    Subscribe(Char, Reply<Option<Sockets>>),
    Write(Char, Vec<u8>, WriteKind, Reply<()>),
    Read(u128, Reply<Vec<u8>>),
    Disconnect(Reply<()>),
    Remove(BdAddr, Reply<()>),
    IsConnected(Reply<bool>),
}

/// What the worker needs to serve a new handle.
struct Open {
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<TransportEvent>,
    empty: Arc<AtomicU64>,
}

/// One BlueZ session on its worker thread, shared by any number of handles. Cloning it is
/// cheap; the worker ends once every clone and every handle is dropped.
#[derive(Debug, Clone)]
pub struct BtleplugSession {
    opens: mpsc::UnboundedSender<Open>,
}

impl BtleplugSession {
    /// Starts the worker thread on the first Bluetooth adapter of the system bus.
    pub async fn start() -> Result<BtleplugSession, TransportError> {
        let (opens, open_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("m365-ble".into())
            .spawn(move || {
                // A few sockets (D-Bus, one per scooter's acquired UART): 64 readiness events
                // per poll instead of tokio's 1,024 keep 24 KiB of buffer off the heap.
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .max_io_events_per_tick(64)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(TransportError::NoAdapter(e.to_string())));
                        return;
                    }
                };
                // The slots are tasks of this thread only (btleplug's streams are not `Sync`).
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, worker(open_rx, ready_tx));
                // Whatever the set still holds is dropped inside the runtime: bluez-async's
                // streams spawn a task when dropped, which outside a runtime is a panic.
                let _context = runtime.enter();
                drop(local);
            })
            .map_err(|e| TransportError::NoAdapter(e.to_string()))?;
        ready_rx.await.map_err(|_| TransportError::Closed)??;
        Ok(BtleplugSession { opens })
    }

    /// A new handle on this session, with its own connection, events and counters. Should the
    /// worker be gone, the handle answers [`TransportError::Closed`].
    pub fn transport(&self) -> BtleplugTransport {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let empty = Arc::new(AtomicU64::new(0));
        let _ = self.opens.send(Open {
            commands: command_rx,
            events: event_tx,
            empty: empty.clone(),
        });
        BtleplugTransport {
            commands,
            events,
            held: VecDeque::new(),
            empty,
            uart: None,
        }
    }

    /// Whether the worker is gone (its adapter's event stream ended): a new session is needed.
    pub fn is_closed(&self) -> bool {
        self.opens.is_closed()
    }
}

/// A handle on the BLE worker thread: one slot of a [`BtleplugSession`].
#[derive(Debug)]
pub struct BtleplugTransport {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<TransportEvent>,
    /// Advertisements taken off the queue while clearing it before a connect.
    held: VecDeque<TransportEvent>,
    /// Zero-length notifications the worker dropped for this handle.
    empty: Arc<AtomicU64>,
    /// The UART sockets of the current connection, when BlueZ handed them out.
    uart: Option<AcquiredUart>,
}

impl BtleplugTransport {
    /// Starts a worker thread of its own (a session with this one handle) on the first
    /// Bluetooth adapter of the system bus.
    pub async fn new() -> Result<BtleplugTransport, TransportError> {
        Ok(BtleplugSession::start().await?.transport())
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, TransportError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .map_err(|_| TransportError::Closed)?;
        rx.await.map_err(|_| TransportError::Closed)?
    }
}

impl Transport for BtleplugTransport {
    async fn start_scan(&mut self) -> Result<(), TransportError> {
        self.call(Command::StartScan).await
    }

    async fn stop_scan(&mut self) -> Result<(), TransportError> {
        self.call(Command::StopScan).await
    }

    async fn connect(&mut self, address: BdAddr, timeout: Duration) -> Result<(), TransportError> {
        // What the previous connection left in the queue (its loss, late notifications) must
        // not be taken for news of the next one.
        self.uart = None;
        while let Ok(event) = self.events.try_recv() {
            if let TransportEvent::Advertisement(_) = event {
                self.held.push_back(event);
            }
        }
        self.call(|tx| Command::Connect(address, timeout, tx))
            .await?;
        // The worker tells a loss of this connection only after answering the connect: a loss
        // already queued is the previous link's, reported while the connect was on its way.
        while let Ok(event) = self.events.try_recv() {
            if !matches!(event, TransportEvent::Disconnected) {
                self.held.push_back(event);
            }
        }
        Ok(())
    }

    async fn discover(&mut self) -> Result<Vec<u128>, TransportError> {
        self.call(Command::Discover).await
    }

    async fn subscribe(&mut self, char: Char) -> Result<(), TransportError> {
        if let Some(sockets) = self.call(|tx| Command::Subscribe(char, tx)).await? {
            self.uart = Some(AcquiredUart::register(sockets).map_err(|e| {
                TransportError::Gatt(format!("BlueZ's UART sockets cannot be used: {e}"))
            })?);
        }
        Ok(())
    }

    async fn write(
        &mut self,
        char: Char,
        data: &[u8],
        kind: WriteKind,
    ) -> Result<(), TransportError> {
        if char == Char::UartWrite
            && kind == WriteKind::WithoutResponse
            && let Some(uart) = self.uart.as_mut()
            && let Some(sent) = uart.write(data).await
        {
            // BlueZ hangs up when the link goes down.
            return sent.map_err(|e| {
                tracing::debug!("UART write socket: {e}");
                TransportError::NotConnected
            });
        }
        let data = data.to_vec();
        self.call(|tx| Command::Write(char, data, kind, tx)).await
    }

    async fn read(&mut self, uuid: u128) -> Result<Vec<u8>, TransportError> {
        self.call(|tx| Command::Read(uuid, tx)).await
    }

    async fn disconnect(&mut self) -> Result<(), TransportError> {
        self.uart = None;
        self.call(Command::Disconnect).await
    }

    async fn remove_device(&mut self, address: BdAddr) -> Result<(), TransportError> {
        self.call(|tx| Command::Remove(address, tx)).await
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        if let Some(event) = self.held.pop_front() {
            return Some(event);
        }
        loop {
            let uart = async {
                match self.uart.as_mut() {
                    Some(uart) => uart.recv().await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                event = self.events.recv() => event,
                got = uart => match got {
                    // The terminator after a frame of 20, 40, … bytes (§2.3).
                    Received::Value(data) if data.is_empty() => {
                        self.empty.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Received::Value(data) => Some(TransportEvent::Notification {
                        char: Char::UartNotify,
                        data,
                    }),
                    // The link went down (the adapter's events tell it) or the acquisition
                    // ended.
                    Received::HungUp => {
                        tracing::debug!("BlueZ closed the UART notification socket");
                        continue;
                    }
                },
            };
            if matches!(event, Some(TransportEvent::Disconnected)) {
                self.uart = None;
            }
            return event;
        }
    }

    fn empty_notifications(&self) -> u64 {
        self.empty.load(Ordering::Relaxed)
    }

    async fn is_connected(&mut self) -> bool {
        self.call(Command::IsConnected).await.unwrap_or(false)
    }
}

type Notifications = Pin<Box<dyn Stream<Item = ValueNotification> + Send>>;
type CentralEvents = Pin<Box<dyn Stream<Item = CentralEvent> + Send>>;

/// The connection a slot holds.
struct Connection {
    peripheral: Peripheral,
    chars: BTreeSet<Characteristic>,
    notifications: Option<Notifications>,
    /// Keeps the UART sockets BlueZ handed out for this connection (the handle uses them).
    uart: Option<Owner>,
}

/// What the router knows of a slot.
struct Route {
    events: mpsc::Sender<TransportEvent>,
    /// Link-down events of the device below.
    link_down: mpsc::UnboundedSender<PeripheralId>,
    scanning: bool,
    /// The device the slot is connected to (or waits to hear disconnected).
    watching: Option<PeripheralId>,
}

#[derive(Default)]
struct Routes {
    /// The adapter's events ended: no slot is served any more.
    closed: bool,
    slots: HashMap<u64, Route>,
}

/// The session every slot of a worker shares.
struct Shared {
    adapter: Adapter,
    adapter_path: String,
    routes: std::sync::Mutex<Routes>,
    /// How many slots scan; held while the adapter's scan is started or stopped.
    scanners: tokio::sync::Mutex<usize>,
}

impl Shared {
    async fn start() -> Result<(Shared, CentralEvents), TransportError> {
        let no_adapter = |e: btleplug::Error| TransportError::NoAdapter(bluez_error(e));
        let manager = Manager::new().await.map_err(no_adapter)?;
        let adapter = manager
            .adapters()
            .await
            .map_err(no_adapter)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                TransportError::NoAdapter("BlueZ reports no Bluetooth adapter".into())
            })?;
        // adapter_info() reads "hci0 (usb:…)": the first word names the D-Bus object.
        let info = adapter.adapter_info().await.map_err(no_adapter)?;
        let name = info.split_whitespace().next().unwrap_or("hci0");
        let adapter_path = format!("/org/bluez/{name}");
        let central = adapter.events().await.map_err(no_adapter)?;
        tracing::debug!(adapter = %info, "Bluetooth adapter ready");
        Ok((
            Shared {
                adapter,
                adapter_path,
                routes: std::sync::Mutex::new(Routes::default()),
                scanners: tokio::sync::Mutex::new(0),
            },
            central,
        ))
    }

    /// The routes (never held across an await).
    fn routes(&self) -> MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn worker(
    mut opens: mpsc::UnboundedReceiver<Open>,
    ready: oneshot::Sender<Result<(), TransportError>>,
) {
    let (shared, central) = match Shared::start().await {
        Ok(started) => {
            let _ = ready.send(Ok(()));
            started
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let shared = Arc::new(shared);
    let mut router = tokio::task::spawn_local(route(shared.clone(), central));
    let mut slots = JoinSet::new();
    let mut next_id = 0u64;
    let mut router_ended = false;
    loop {
        tokio::select! {
            open = opens.recv() => match open {
                Some(open) => {
                    next_id += 1;
                    let slot = Slot::open(shared.clone(), next_id, open);
                    slots.spawn_local(slot.run());
                }
                None => break,
            },
            Some(_) = slots.join_next() => {}
            _ = &mut router => {
                router_ended = true;
                break;
            }
        }
    }
    // No new handle from here on; the slots end when their handles are dropped, or at once
    // when the adapter's events ended.
    drop(opens);
    if router_ended {
        tracing::debug!("the adapter's event stream ended");
        let mut routes = shared.routes();
        routes.closed = true;
        routes.slots.clear();
    }
    while slots.join_next().await.is_some() {}
    router.abort();
    // The router's event stream is dropped here, on the runtime (see `start`).
    let _ = router.await;
}

/// Reads the adapter's events once for every slot of the session.
async fn route(shared: Arc<Shared>, mut central: CentralEvents) {
    while let Some(event) = central.next().await {
        match event {
            CentralEvent::DeviceDiscovered(id)
            | CentralEvent::DeviceUpdated(id)
            | CentralEvent::ManufacturerDataAdvertisement { id, .. }
            | CentralEvent::ServicesAdvertisement { id, .. } => {
                if !shared.routes().slots.values().any(|r| r.scanning) {
                    continue;
                }
                let Ok(p) = shared.adapter.peripheral(&id).await else {
                    continue;
                };
                let Some(advert) = advertisement(&p).await else {
                    continue;
                };
                for route in shared.routes().slots.values().filter(|r| r.scanning) {
                    let _ = route
                        .events
                        .try_send(TransportEvent::Advertisement(advert.clone()))
                        .inspect_err(|_| {
                            tracing::debug!("advertisement dropped: event queue full")
                        });
                }
            }
            CentralEvent::DeviceDisconnected(id) => {
                for route in shared.routes().slots.values() {
                    if route.watching.as_ref() == Some(&id) {
                        let _ = route.link_down.send(id.clone());
                    }
                }
            }
            _ => {}
        }
    }
}

fn bluez_error(e: btleplug::Error) -> String {
    e.to_string()
}

fn gatt_error(e: btleplug::Error) -> TransportError {
    TransportError::Gatt(bluez_error(e))
}

/// One handle's part of the worker: a task of its own.
struct Slot {
    id: u64,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    link_down: mpsc::UnboundedReceiver<PeripheralId>,
    events: mpsc::Sender<TransportEvent>,
    scanning: bool,
    connection: Option<Connection>,
    empty: Arc<AtomicU64>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.routes().slots.remove(&self.id);
    }
}

impl Slot {
    fn open(shared: Arc<Shared>, id: u64, open: Open) -> Slot {
        let (link_down_tx, link_down) = mpsc::unbounded_channel();
        {
            let mut routes = shared.routes();
            // Once the adapter's events ended the slot is not routed: it ends at once.
            if !routes.closed {
                routes.slots.insert(
                    id,
                    Route {
                        events: open.events.clone(),
                        link_down: link_down_tx,
                        scanning: false,
                        watching: None,
                    },
                );
            }
        }
        Slot {
            id,
            shared,
            commands: open.commands,
            link_down,
            events: open.events,
            scanning: false,
            connection: None,
            empty: open.empty,
        }
    }

    async fn run(mut self) {
        loop {
            let notification = async {
                match self
                    .connection
                    .as_mut()
                    .and_then(|c| c.notifications.as_mut())
                {
                    Some(stream) => stream.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                id = self.link_down.recv() => match id {
                    Some(id) => self.on_link_down(id).await,
                    None => break,
                },
                Some(note) = notification => self.on_notification(note).await,
            }
        }
        // The handle is gone: leave the other slots their scan, and free the scooter.
        if self.scanning {
            let _ = self.stop_scan().await;
        }
        if let Some(c) = self.connection.take() {
            let _ = c.peripheral.disconnect().await;
        }
    }

    fn route(&self, update: impl FnOnce(&mut Route)) {
        if let Some(route) = self.shared.routes().slots.get_mut(&self.id) {
            update(route);
        }
    }

    /// Forgets the connection (the link is gone or given up).
    fn drop_connection(&mut self) {
        self.connection = None;
        self.route(|r| r.watching = None);
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::StartScan(tx) => {
                let _ = tx.send(self.start_scan().await);
            }
            Command::StopScan(tx) => {
                let _ = tx.send(self.stop_scan().await);
            }
            Command::Connect(address, timeout, tx) => {
                let _ = tx.send(self.connect(address, timeout).await);
            }
            Command::Discover(tx) => {
                let _ = tx.send(self.discover().await);
            }
            Command::Subscribe(char, tx) => {
                let sockets = if char == Char::UartNotify {
                    self.acquire_uart().await
                } else {
                    None
                };
                if sockets.as_ref().is_some_and(|s| s.notify.is_some()) {
                    let _ = tx.send(Ok(sockets));
                    return;
                }
                let r = match self.characteristic(char) {
                    Ok((p, c)) => p.subscribe(&c).await.map_err(gatt_error),
                    Err(e) => Err(e),
                };
                let _ = tx.send(r.map(|()| sockets));
            }
            Command::Write(char, data, kind, tx) => {
                let r = match self.characteristic(char) {
                    Ok((p, c)) => {
                        let kind = match kind {
                            WriteKind::WithResponse => WriteType::WithResponse,
                            WriteKind::WithoutResponse => WriteType::WithoutResponse,
                        };
                        match p.write(&c, &data, kind).await {
                            Ok(()) => Ok(()),
                            // After a link loss BlueZ answers writes with "Not connected" or
                            // UnknownObject before the adapter reports the loss: either way the
                            // link is gone.
                            Err(_) if !p.is_connected().await.unwrap_or(false) => {
                                self.drop_connection();
                                Err(TransportError::NotConnected)
                            }
                            Err(e) => Err(gatt_error(e)),
                        }
                    }
                    Err(e) => Err(e),
                };
                let _ = tx.send(r);
            }
            Command::Read(uuid, tx) => {
                let r = match self.connection.as_ref() {
                    None => Err(TransportError::NotConnected),
                    Some(c) => match c.chars.iter().find(|ch| ch.uuid.as_u128() == uuid) {
                        None => Err(TransportError::Gatt(format!(
                            "no characteristic {}",
                            uuid::Uuid::from_u128(uuid)
                        ))),
                        Some(ch) => c.peripheral.read(ch).await.map_err(gatt_error),
                    },
                };
                let _ = tx.send(r);
            }
            Command::Disconnect(tx) => {
                self.disconnect().await;
                let _ = tx.send(Ok(()));
            }
            Command::Remove(address, tx) => {
                let _ = tx.send(self.remove(address).await);
            }
            Command::IsConnected(tx) => {
                let up = match &self.connection {
                    // A fresh look at BlueZ's `Connected`, not btleplug's cache.
                    Some(c) => c.peripheral.is_connected().await.unwrap_or(false),
                    None => false,
                };
                let _ = tx.send(Ok(up));
            }
        }
    }

    /// Scans: the adapter's scan starts with the session's first scanning slot.
    async fn start_scan(&mut self) -> Result<(), TransportError> {
        let mut scanners = self.shared.scanners.lock().await;
        if !self.scanning {
            if *scanners == 0 {
                self.shared
                    .adapter
                    .start_scan(ScanFilter::default())
                    .await
                    .map_err(gatt_error)?;
            }
            *scanners += 1;
            self.scanning = true;
            self.route(|r| r.scanning = true);
        }
        drop(scanners);
        // Devices BlueZ already knows produce no new discovery event: report them.
        self.report_known().await;
        Ok(())
    }

    /// Stops scanning: the adapter's scan stops with the session's last scanning slot.
    async fn stop_scan(&mut self) -> Result<(), TransportError> {
        let mut scanners = self.shared.scanners.lock().await;
        if self.scanning {
            self.scanning = false;
            self.route(|r| r.scanning = false);
            *scanners = scanners.saturating_sub(1);
        }
        if *scanners > 0 {
            return Ok(());
        }
        self.shared.adapter.stop_scan().await.map_err(gatt_error)
    }

    fn characteristic(&self, char: Char) -> Result<(Peripheral, Characteristic), TransportError> {
        let c = self
            .connection
            .as_ref()
            .ok_or(TransportError::NotConnected)?;
        let ch = c
            .chars
            .iter()
            .find(|ch| ch.uuid.as_u128() == char.uuid())
            .ok_or(TransportError::MissingCharacteristic(char))?;
        Ok((c.peripheral.clone(), ch.clone()))
    }

    async fn find(&self, address: BdAddr) -> Option<Peripheral> {
        let peripherals = self.shared.adapter.peripherals().await.ok()?;
        peripherals
            .into_iter()
            .find(|p| BdAddr(p.address().into_inner()) == address)
    }

    async fn connect(&mut self, address: BdAddr, timeout: Duration) -> Result<(), TransportError> {
        if self.connection.is_some() {
            self.disconnect().await;
        }
        let peripheral = self
            .find(address)
            .await
            .ok_or(TransportError::UnknownDevice(address))?;
        // BlueZ waits for a device it cannot hear (about 25 s) and connects as soon as it
        // advertises; the caller may not afford that long.
        match tokio::time::timeout(timeout, peripheral.connect()).await {
            Err(_) => {
                // Cancel BlueZ's pending attempt (Disconnect does that), or the next connect
                // would be answered InProgress.
                if let Err(e) = peripheral.disconnect().await {
                    tracing::debug!(error = %e, "cancelling the pending connect");
                }
                return Err(TransportError::ConnectFailed(format!(
                    "the scooter was not heard within {timeout:?}"
                )));
            }
            Ok(Err(e)) => return Err(connect_error(address, bluez_error(e))),
            Ok(Ok(())) => {}
        }
        // One notification stream per connection, kept until the link ends: dropping streams
        // in a loop is what upsets bluez-async.
        let notifications = peripheral.notifications().await.map_err(gatt_error)?;
        let id = peripheral.id();
        self.route(|r| r.watching = Some(id));
        self.connection = Some(Connection {
            peripheral,
            chars: BTreeSet::new(),
            notifications: Some(notifications),
            uart: None,
        });
        Ok(())
    }

    async fn discover(&mut self) -> Result<Vec<u128>, TransportError> {
        let c = self
            .connection
            .as_mut()
            .ok_or(TransportError::NotConnected)?;
        c.peripheral.discover_services().await.map_err(gatt_error)?;
        c.chars = c.peripheral.characteristics();
        Ok(c.chars.iter().map(|ch| ch.uuid.as_u128()).collect())
    }

    async fn disconnect(&mut self) {
        let Some(c) = self.connection.take() else {
            return;
        };
        let id = c.peripheral.id();
        if c.peripheral.disconnect().await.is_ok() {
            // Take BlueZ's confirmation here (the router still sends this device's link-down
            // events to this slot) so it is not reported as a link loss later.
            let _ = tokio::time::timeout(DISCONNECT_CONFIRM, async {
                while let Some(got) = self.link_down.recv().await {
                    if got == id {
                        break;
                    }
                }
            })
            .await;
        }
        self.drop_connection();
    }

    async fn remove(&mut self, address: BdAddr) -> Result<(), TransportError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| BdAddr(c.peripheral.address().into_inner()) == address)
        {
            self.drop_connection();
        }
        let adapter = self.shared.adapter_path.clone();
        let device = format!("{adapter}/{}", address.bluez_segment());
        tokio::task::spawn_blocking(move || remove_device(&adapter, &device))
            .await
            .map_err(|e| TransportError::Gatt(e.to_string()))?
    }

    /// Reports every device BlueZ knows to this slot only.
    async fn report_known(&mut self) {
        let Ok(peripherals) = self.shared.adapter.peripherals().await else {
            return;
        };
        for p in peripherals {
            let Some(advert) = advertisement(&p).await else {
                continue;
            };
            let _ = self
                .events
                .try_send(TransportEvent::Advertisement(advert))
                .inspect_err(|_| tracing::debug!("advertisement dropped: event queue full"));
        }
    }

    async fn on_link_down(&mut self, id: PeripheralId) {
        let Some(c) = self.connection.as_ref().filter(|c| c.peripheral.id() == id) else {
            return;
        };
        // The loss of the previous link can reach us only after a new connect to the same
        // device completed (BlueZ's connect waited for the device while the event sat in the
        // stream): ask BlueZ before taking the new link for dead.
        if c.peripheral.is_connected().await.unwrap_or(false) {
            tracing::debug!("a stale link-down event of an earlier connection: ignored");
            return;
        }
        tracing::debug!("BlueZ reports the link down");
        self.drop_connection();
        let _ = self.events.send(TransportEvent::Disconnected).await;
    }

    async fn on_notification(&mut self, note: ValueNotification) {
        let Some(char) = Char::from_uuid(note.uuid.as_u128()) else {
            return;
        };
        if note.value.is_empty() {
            // The terminator after a frame of 20, 40, … bytes (§2.3): nothing to deliver.
            self.empty.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let _ = self
            .events
            .send(TransportEvent::Notification {
                char,
                data: note.value,
            })
            .await;
    }

    /// Has BlueZ hand out the UART characteristics as sockets for the handle (see
    /// [`super::acquired`]); `None` when it hands out none. A new subscription of the same
    /// connection acquires anew (the earlier sockets are released).
    async fn acquire_uart(&mut self) -> Option<Sockets> {
        let c = self.connection.as_mut()?;
        c.uart = None;
        let device = format!(
            "{}/{}",
            self.shared.adapter_path,
            BdAddr(c.peripheral.address().into_inner()).bluez_segment()
        );
        let uuid = |char: Char| uuid::Uuid::from_u128(char.uuid()).to_string();
        let got = acquired::acquire(device, uuid(Char::UartNotify), uuid(Char::UartWrite)).await;
        match got {
            Ok((owner, sockets)) => {
                tracing::debug!(?sockets, "UART through BlueZ's sockets");
                self.connection.as_mut()?.uart = Some(owner);
                Some(sockets)
            }
            Err(e) => {
                tracing::debug!("UART stays on D-Bus: {e}");
                None
            }
        }
    }
}

/// What a device advertises, as BlueZ last heard it.
async fn advertisement(p: &Peripheral) -> Option<Advertisement> {
    let props = p.properties().await.ok()??;
    let mut manufacturer_data: Vec<(u16, Vec<u8>)> = props.manufacturer_data.into_iter().collect();
    manufacturer_data.sort();
    Some(Advertisement {
        address: BdAddr(props.address.into_inner()),
        name: props.local_name,
        rssi: props.rssi,
        manufacturer_data,
        services: props.services.iter().map(|u| u.as_u128()).collect(),
    })
}

/// `org.bluez.Adapter1.RemoveDevice(device)` on the system bus.
#[cfg(target_os = "linux")]
fn remove_device(adapter: &str, device: &str) -> Result<(), TransportError> {
    let err = |e: dbus::Error| {
        TransportError::Gatt(format!(
            "RemoveDevice: {}",
            e.message().unwrap_or("D-Bus error")
        ))
    };
    let conn = dbus::blocking::Connection::new_system().map_err(err)?;
    let proxy = conn.with_proxy("org.bluez", adapter, Duration::from_secs(5));
    let path = dbus::Path::new(device.to_owned()).map_err(TransportError::Gatt)?;
    proxy
        .method_call::<(), _, _, _>("org.bluez.Adapter1", "RemoveDevice", (path,))
        .map_err(err)
}

/// Other platforms have no BlueZ to clear: stale connections are a BlueZ problem.
#[cfg(not(target_os = "linux"))]
fn remove_device(_adapter: &str, _device: &str) -> Result<(), TransportError> {
    Ok(())
}

/// The transport error for a failed connect: BlueZ's `InProgress` (a stale attempt that only
/// removing the device clears) and a device BlueZ has forgotten (its object is gone after the
/// temporary timeout: a scan must find it again) apart from every other failure.
fn connect_error(address: BdAddr, text: String) -> TransportError {
    if text.contains("InProgress") || text.contains("In Progress") {
        TransportError::InProgress(text)
    } else if text.contains("UnknownObject")
        || text.contains("Unknown object")
        || text.contains("DoesNotExist")
    {
        TransportError::UnknownDevice(address)
    } else {
        TransportError::ConnectFailed(text)
    }
}

#[cfg(test)]
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    #[test]
    fn in_progress_and_forgotten_devices_are_told_apart_from_other_connect_failures() {
        let a = BdAddr([0xC0, 1, 2, 3, 4, 5]);
        assert!(
            connect_error(a, "org.bluez.Error.InProgress: In Progress".into())
                .is_stale_connection()
        );
        assert!(
            connect_error(a, "Operation already in progress: In Progress".into())
                .is_stale_connection()
        );
        let other = connect_error(
            a,
            "org.bluez.Error.Failed: le-connection-abort-by-local".into(),
        );
        assert!(!other.is_stale_connection());
        assert!(matches!(other, TransportError::ConnectFailed(_)));
        let gone = connect_error(
            a,
            "Unknown object '/org/bluez/hci0/dev_C0_01_02_03_04_05'".into(),
        );
        assert_eq!(gone, TransportError::UnknownDevice(a));
    }
}
