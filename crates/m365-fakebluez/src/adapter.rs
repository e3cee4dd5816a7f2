//! `org.bluez.Adapter1` at `/org/bluez/hci0`: power, discovery sessions (one per client, like
//! BlueZ) with a service-UUID filter, and RemoveDevice.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures_lite::StreamExt;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use uuid::Uuid;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedValue};
use zbus::{Connection, interface};

use crate::bluez_error::BluezError;
use crate::paths::{ADAPTER_IFACE, ADAPTER_PATH};
use crate::state::Shared;
use crate::{connection, device};

/// The adapter object.
#[derive(Debug)]
pub(crate) struct AdapterIface {
    shared: Weak<Shared>,
}

impl AdapterIface {
    pub(crate) fn new(shared: Weak<Shared>) -> Self {
        AdapterIface { shared }
    }

    fn shared(&self) -> Result<Arc<Shared>, BluezError> {
        self.shared
            .upgrade()
            .ok_or_else(|| BluezError::Failed("adapter gone".into()))
    }

    fn config<T>(&self, f: impl FnOnce(&crate::config::FakeConfig) -> T) -> Option<T> {
        self.shared.upgrade().map(|s| f(&s.config))
    }
}

/// The service UUIDs of a discovery filter (`UUIDs: as`), other keys accepted and ignored.
fn filter_uuids(filter: &HashMap<String, OwnedValue>) -> Result<Vec<Uuid>, BluezError> {
    let invalid = || BluezError::InvalidArguments("Invalid arguments in method call".into());
    let Some(value) = filter.get("UUIDs") else {
        return Ok(Vec::new());
    };
    let list = value.try_clone().map_err(|_| invalid())?;
    let list = <Vec<String>>::try_from(list).map_err(|_| invalid())?;
    list.iter()
        .map(|s| Uuid::parse_str(s).map_err(|_| invalid()))
        .collect()
}

/// Powers the adapter on or off. Off, like BlueZ: every discovery session ends, every link
/// drops, and scans and connects answer `NotReady` until it is powered again. `emit_powered`:
/// also signal the Powered change (a D-Bus property set has zbus do that).
pub(crate) async fn set_powered(shared: &Arc<Shared>, powered: bool, emit_powered: bool) {
    let (stopped_discovery, connected) = {
        let mut world = shared.world();
        world.powered = powered;
        if powered {
            (false, Vec::new())
        } else {
            let was = world.discovering();
            world.discovery_clients.clear();
            world.discovery_started = None;
            world.filter_uuids.clear();
            let connected: Vec<_> = world
                .devices
                .values()
                .filter(|d| d.connected)
                .map(|d| d.address)
                .collect();
            (was, connected)
        }
    };
    info!(powered, "adapter power");
    // Pending connects fail with NotReady once the adapter is off.
    shared.connect_wake.notify_waiters();
    let Some(conn) = shared.conn.get() else {
        return;
    };
    let mut changed = Vec::new();
    if emit_powered {
        changed.push(("Powered", powered.into()));
    }
    if stopped_discovery {
        changed.push(("Discovering", false.into()));
    }
    if !changed.is_empty() {
        crate::signals::properties_changed(conn, ADAPTER_PATH, ADAPTER_IFACE, changed).await;
    }
    for address in connected {
        connection::disconnect(
            shared,
            address,
            connection::Cause::LinkLoss { remove_gatt: false },
        )
        .await;
    }
}

/// Ends the discovery sessions of clients that leave the bus, as BlueZ does; otherwise a
/// crashed client would leave the adapter discovering forever. Runs until aborted.
pub(crate) async fn end_sessions_of_departed_clients(shared: Weak<Shared>, conn: Connection) {
    let stream = match zbus::fdo::DBusProxy::new(&conn).await {
        Ok(proxy) => proxy.receive_name_owner_changed().await,
        Err(e) => Err(e),
    };
    let mut stream = match stream {
        Ok(stream) => stream,
        Err(e) => {
            warn!("cannot watch clients leaving the bus: {e}");
            return;
        }
    };
    while let Some(signal) = stream.next().await {
        let Ok(args) = signal.args() else {
            continue;
        };
        if args.new_owner().is_some() {
            continue;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let name = args.name().to_string();
        let stopped = {
            let mut world = shared.world();
            let was = world.discovering();
            world.discovery_clients.remove(&name);
            let stopped = was && !world.discovering();
            if stopped {
                world.discovery_started = None;
                world.filter_uuids.clear();
            }
            stopped
        };
        if stopped {
            info!(client = name, "discovery stopped: its client left the bus");
            crate::signals::properties_changed(
                &conn,
                ADAPTER_PATH,
                ADAPTER_IFACE,
                vec![("Discovering", false.into())],
            )
            .await;
        }
    }
}

fn sender(header: &Header<'_>) -> String {
    header.sender().map(|s| s.to_string()).unwrap_or_default()
}

#[interface(name = "org.bluez.Adapter1")]
impl AdapterIface {
    /// Sets the service UUID filter (btleplug sends `Transport`, `DuplicateData`, `UUIDs`).
    async fn set_discovery_filter(
        &self,
        filter: HashMap<String, OwnedValue>,
    ) -> Result<(), BluezError> {
        let uuids = filter_uuids(&filter)?;
        debug!(?uuids, "discovery filter");
        self.shared()?.world().filter_uuids = uuids;
        Ok(())
    }

    /// Starts a discovery session for the calling client.
    async fn start_discovery(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        let shared = self.shared()?;
        let first = {
            let mut world = shared.world();
            if !world.powered {
                return Err(BluezError::NotReady("Resource Not Ready".into()));
            }
            let first = !world.discovering();
            if !world.discovery_clients.insert(sender(&header)) {
                return Err(BluezError::InProgress(
                    "Operation already in progress".into(),
                ));
            }
            if first {
                world.discovery_started = Some(Instant::now());
            }
            first
        };
        if first {
            info!("discovery started");
            let _ = self.discovering_changed(&emitter).await;
        }
        Ok(())
    }

    /// Ends the calling client's discovery session.
    async fn stop_discovery(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        let shared = self.shared()?;
        let last = {
            let mut world = shared.world();
            if !world.discovery_clients.remove(&sender(&header)) {
                return Err(BluezError::Failed("No discovery started".into()));
            }
            let last = !world.discovering();
            if last {
                world.discovery_started = None;
                world.filter_uuids.clear();
            }
            last
        };
        if last {
            info!("discovery stopped");
            let _ = self.discovering_changed(&emitter).await;
        }
        Ok(())
    }

    /// Forgets a device: drops its link and takes it off the bus. It is found again by the next
    /// discovery. This also clears a stale "InProgress" connect.
    async fn remove_device(&self, device: ObjectPath<'_>) -> Result<(), BluezError> {
        let shared = self.shared()?;
        let address = {
            let mut world = shared.world();
            let d = world
                .device_by_path(device.as_str())
                .filter(|d| d.exported)
                .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?;
            d.counters.remove_device += 1;
            d.faults.stale_in_progress = false;
            d.exported = false;
            // A connect still waiting for the device ends with it.
            d.pending_connect = None;
            d.address
        };
        shared.connect_wake.notify_waiters();
        info!(%address, "device removed");
        device::unexport_device(&shared, address).await;
        Ok(())
    }

    /// The filters this adapter supports.
    fn get_discovery_filters(&self) -> Vec<String> {
        [
            "UUIDs",
            "RSSI",
            "Pathloss",
            "Transport",
            "DuplicateData",
            "Discoverable",
            "Pattern",
        ]
        .map(String::from)
        .to_vec()
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.config(|c| c.adapter_address.to_string())
            .unwrap_or_default()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".to_owned()
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.config(|c| c.adapter_name.clone()).unwrap_or_default()
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        self.name()
    }

    #[zbus(property)]
    fn class(&self) -> u32 {
        0
    }

    #[zbus(property)]
    fn powered(&self) -> bool {
        self.shared.upgrade().is_some_and(|s| s.world().powered)
    }

    /// btleplug's start_scan sets Powered=true first, so it must be writable. (zbus emits the
    /// Powered change itself after a D-Bus set.)
    #[zbus(property)]
    async fn set_powered(&self, powered: bool) -> zbus::fdo::Result<()> {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        if powered && shared.world().rfkill_blocked {
            return Err(zbus::fdo::Error::Failed("Blocked through rfkill".into()));
        }
        set_powered(&shared, powered, false).await;
        Ok(())
    }

    #[zbus(property)]
    fn discoverable(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn pairable(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn discovering(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|s| s.world().discovering())
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        Vec::new()
    }

    /// Must look like a real USB modalias (upper-case hex) or btleplug hides the adapter.
    #[zbus(property)]
    fn modalias(&self) -> String {
        "usb:v1D6Bp0246d0537".to_owned()
    }
}
