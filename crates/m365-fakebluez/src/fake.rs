//! [`FakeBluez`]: owns `org.bluez` on a bus, serves the adapter, and hosts the simulated
//! peripherals.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::info;

use crate::adapter::AdapterIface;
use crate::address::BluezAddress;
use crate::config::FakeConfig;
use crate::control::DeviceControl;
use crate::paths::{ADAPTER_PATH, BLUEZ_NAME};
use crate::peripheral::Peripheral;
use crate::state::{Device, Shared};

/// Why the fake could not start or take a peripheral.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// Connecting to the bus, registering objects or taking the name failed. A name already
    /// owned (a real BlueZ, or a second fake) is reported here: the fake never replaces it.
    #[error("cannot serve org.bluez on {address}: {source}")]
    Bus {
        /// The bus address.
        address: String,
        /// What zbus reported.
        #[source]
        source: Box<zbus::Error>,
    },
    /// A peripheral with this address was already added.
    #[error("a peripheral with address {0} already exists")]
    DuplicateAddress(BluezAddress),
}

/// A running fake BlueZ. Dropping it stops discovery and releases the bus connection (and with
/// it `org.bluez`) once no [`DeviceControl`] is left.
///
/// Must be created inside a tokio runtime: zbus and the fake's tasks run on it.
#[derive(Debug)]
pub struct FakeBluez {
    shared: Arc<Shared>,
    /// Discovery and client watching; they hold only weak references to the state.
    tasks: Vec<JoinHandle<()>>,
}

impl FakeBluez {
    /// Serves BlueZ on the bus at `bus_address` with default settings.
    pub async fn start(bus_address: &str) -> Result<Self, FakeError> {
        Self::start_with(bus_address, FakeConfig::default()).await
    }

    /// Serves BlueZ on the bus at `bus_address`.
    pub async fn start_with(bus_address: &str, config: FakeConfig) -> Result<Self, FakeError> {
        let bus_err = |source| FakeError::Bus {
            address: bus_address.to_owned(),
            source: Box::new(source),
        };
        let shared = Arc::new(Shared::new(config));
        // Objects first, name last, so no client can call into a half-built service; no
        // replacement flags, so a second BlueZ on the bus fails loudly.
        let conn = zbus::connection::Builder::address(bus_address)
            .and_then(|b| b.serve_at("/", zbus::fdo::ObjectManager))
            .and_then(|b| b.serve_at(ADAPTER_PATH, AdapterIface::new(Arc::downgrade(&shared))))
            .and_then(|b| b.name(BLUEZ_NAME))
            .map_err(bus_err)?
            .allow_name_replacements(false)
            .replace_existing_names(false)
            .build()
            .await
            .map_err(bus_err)?;
        let tasks = vec![
            tokio::spawn(crate::discovery::run(Arc::downgrade(&shared))),
            tokio::spawn(crate::adapter::end_sessions_of_departed_clients(
                Arc::downgrade(&shared),
                conn.clone(),
            )),
        ];
        // Cannot fail: `shared` is fresh.
        let _ = shared.conn.set(conn);
        info!(bus = bus_address, "fake BlueZ serving org.bluez");
        Ok(FakeBluez { shared, tasks })
    }

    /// Adds a simulated peripheral. It appears to a running (or the next) scan after the
    /// discovery delay, if its advertisement passes the scan's filter.
    pub fn add_peripheral<P: Peripheral>(&self, peripheral: P) -> Result<DeviceControl, FakeError> {
        let advert = peripheral.advertisement();
        let services = peripheral.services();
        let address = advert.address;
        let device = Device::new(Box::new(peripheral), advert, &services, &self.shared.config);
        let mut world = self.shared.world();
        if world.devices.contains_key(&address) {
            return Err(FakeError::DuplicateAddress(address));
        }
        world.devices.insert(address, device);
        info!(%address, "peripheral added");
        Ok(DeviceControl {
            shared: self.shared.clone(),
            address,
        })
    }

    /// The control of the device with this address.
    pub fn device(&self, address: BluezAddress) -> Option<DeviceControl> {
        self.shared
            .world()
            .devices
            .contains_key(&address)
            .then(|| DeviceControl {
                shared: self.shared.clone(),
                address,
            })
    }

    /// Powers the adapter off and blocks it, as `rfkill block` would: every link drops,
    /// discovery ends, connects answer `org.bluez.Error.NotReady`, and a client's attempt to
    /// power it on (btleplug's `start_scan` does) fails. `true` unblocks and powers it on.
    pub async fn set_powered(&self, powered: bool) {
        self.shared.world().rfkill_blocked = !powered;
        crate::adapter::set_powered(&self.shared, powered, true).await;
    }

    /// Whether the adapter is powered.
    pub fn is_powered(&self) -> bool {
        self.shared.world().powered
    }

    /// The settings this instance runs with.
    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }
}

impl Drop for FakeBluez {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
