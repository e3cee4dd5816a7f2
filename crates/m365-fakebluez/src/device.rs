//! `org.bluez.Device1`: one simulated peripheral as BlueZ presents it. Properties are read from
//! the shared state on every call; optional ones (Name, RSSI, ManufacturerData, ...) are left
//! out of GetAll when absent, exactly as BlueZ does, because btleplug reads a wrongly typed or
//! empty placeholder as real data. [`export_device`] and [`unexport_device`] put the object on
//! the bus and take it off; its link is [`crate::connection`]'s.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use tracing::{debug, warn};
use zbus::fdo;
use zbus::interface;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

use crate::address::BluezAddress;
use crate::bluez_error::BluezError;
use crate::connection::{self, Cause};
use crate::paths::{self, ADAPTER_PATH};
use crate::state::{Device, Shared};

/// Puts a device's Device1 object on the bus (InterfacesAdded). The caller has already marked
/// it exported under the world lock.
pub(crate) async fn export_device(shared: &Arc<Shared>, address: BluezAddress) {
    let Some(conn) = shared.conn.get() else {
        return;
    };
    let iface = DeviceIface::new(Arc::downgrade(shared), address);
    match conn.object_server().at(paths::device(address), iface).await {
        Ok(_) => debug!(%address, "device appeared"),
        Err(e) => {
            warn!(%address, "cannot export device: {e}");
            if let Some(d) = shared.world().devices.get_mut(&address) {
                d.exported = false;
            }
        }
    }
}

/// Takes a device off the bus (link, GATT objects, Device1), as `RemoveDevice` or BlueZ's
/// expiry of an unseen device do. The caller has already marked it not exported.
pub(crate) async fn unexport_device(shared: &Arc<Shared>, address: BluezAddress) {
    connection::disconnect(shared, address, Cause::Central).await;
    let layout = {
        let mut world = shared.world();
        match world.devices.get_mut(&address) {
            Some(d) => {
                let exported = d.gatt_exported;
                d.gatt_exported = false;
                exported.then(|| d.layout.clone())
            }
            None => None,
        }
    };
    let Some(conn) = shared.conn.get() else {
        return;
    };
    if let Some(layout) = layout {
        connection::unexport_gatt(conn, &layout).await;
    }
    if let Err(e) = conn
        .object_server()
        .remove::<DeviceIface, _>(paths::device(address))
        .await
    {
        debug!(%address, "device was not on the bus: {e}");
    }
}

/// The Device1 object of one device.
#[derive(Debug)]
pub(crate) struct DeviceIface {
    shared: Weak<Shared>,
    address: BluezAddress,
}

impl DeviceIface {
    pub(crate) fn new(shared: Weak<Shared>, address: BluezAddress) -> Self {
        DeviceIface { shared, address }
    }

    fn shared(&self) -> Result<Arc<Shared>, BluezError> {
        self.shared
            .upgrade()
            .ok_or_else(|| BluezError::Failed("adapter gone".into()))
    }

    /// Reads a value from the device's state; `None` when the device is gone.
    fn read<T>(&self, f: impl FnOnce(&Device) -> T) -> Option<T> {
        let shared = self.shared.upgrade()?;
        let world = shared.world();
        world.devices.get(&self.address).map(f)
    }

    /// Reads an optional property: absent (an error, which GetAll skips) when `None`.
    fn optional<T>(&self, f: impl FnOnce(&Device) -> Option<T>) -> fdo::Result<T> {
        self.read(f)
            .flatten()
            .ok_or_else(|| fdo::Error::Failed("No such property".into()))
    }
}

#[interface(name = "org.bluez.Device1")]
impl DeviceIface {
    /// Connects: honours injected faults and the connect delay, then brings the link up.
    async fn connect(&self) -> Result<(), BluezError> {
        let shared = self.shared()?;
        connection::connect(&shared, self.address).await
    }

    /// Disconnects; a device without a link answers success, as BlueZ does. It also cancels a
    /// `Connect()` still waiting for the device (which then fails), as BlueZ documents.
    async fn disconnect(&self) -> Result<(), BluezError> {
        let shared = self.shared()?;
        if let Some(d) = shared.world().devices.get_mut(&self.address) {
            d.counters.disconnects += 1;
            d.pending_connect = None;
        }
        shared.connect_wake.notify_waiters();
        connection::disconnect(&shared, self.address, Cause::Central).await;
        Ok(())
    }

    #[zbus(property)]
    fn address(&self) -> String {
        self.address.to_string()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        self.read(|d| d.advert.address_type.as_str())
            .unwrap_or("public")
            .to_owned()
    }

    #[zbus(property)]
    fn name(&self) -> fdo::Result<String> {
        self.optional(|d| d.advert.name.clone())
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        self.read(|d| d.advert.name.clone())
            .flatten()
            .unwrap_or_else(|| self.address.dashed())
    }

    #[zbus(property)]
    fn adapter(&self) -> OwnedObjectPath {
        ObjectPath::from_static_str_unchecked(ADAPTER_PATH).into()
    }

    #[zbus(property)]
    fn paired(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn bonded(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn trusted(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn blocked(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn legacy_pairing(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn connected(&self) -> bool {
        self.read(|d| d.connected).unwrap_or(false)
    }

    #[zbus(property)]
    fn services_resolved(&self) -> bool {
        self.read(|d| d.services_resolved).unwrap_or(false)
    }

    #[zbus(property, name = "RSSI")]
    fn rssi(&self) -> fdo::Result<i16> {
        self.optional(Device::rssi)
    }

    #[zbus(property)]
    fn tx_power(&self) -> fdo::Result<i16> {
        self.optional(|d| d.advert.tx_power)
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        self.read(|d| {
            let mut uuids: Vec<String> = d.advert.services.iter().map(|u| u.to_string()).collect();
            // Once connected BlueZ lists the resolved GATT services too.
            if d.services_resolved {
                for s in &d.layout.services {
                    let u = s.uuid.to_string();
                    if !uuids.contains(&u) {
                        uuids.push(u);
                    }
                }
            }
            uuids
        })
        .unwrap_or_default()
    }

    #[zbus(property)]
    fn manufacturer_data(&self) -> fdo::Result<HashMap<u16, Value<'static>>> {
        self.optional(|d| {
            let data = &d.advert.manufacturer_data;
            (!data.is_empty()).then(|| {
                data.iter()
                    .map(|(k, v)| (*k, Value::from(v.clone())))
                    .collect()
            })
        })
    }

    #[zbus(property)]
    fn service_data(&self) -> fdo::Result<HashMap<String, Value<'static>>> {
        self.optional(|d| {
            let data = &d.advert.service_data;
            (!data.is_empty()).then(|| {
                data.iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v.clone())))
                    .collect()
            })
        })
    }
}
