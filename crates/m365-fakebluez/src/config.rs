//! Settings of a fake BlueZ instance and the defaults new devices start with. Everything that
//! models timing is here so a test can make the fake as fast or as realistic as it needs.

use std::time::Duration;

use crate::address::Address;
use crate::link_timing::LinkTiming;

/// What happens to a device's GATT objects when its link goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GattOnDisconnect {
    /// Removed (InterfacesRemoved), as BlueZ does for a device that is not bonded: after a
    /// drop, writes fail with `UnknownObject` and the client must rediscover services.
    #[default]
    Remove,
    /// Kept (BlueZ's attribute cache for bonded devices): writes fail with "Not connected".
    Keep,
}

/// Settings of a [`crate::FakeBluez`].
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The adapter's own address.
    pub adapter_address: Address,
    /// The adapter's name (`Name`/`Alias`).
    pub adapter_name: String,
    /// How long after discovery starts devices appear (InterfacesAdded).
    pub discovery_delay: Duration,
    /// How often advertisements are polled while discovering (RSSI and data updates, devices
    /// coming back into range).
    pub advertising_interval: Duration,
    /// How long an out-of-range device stays on the bus before BlueZ forgets it (BlueZ's
    /// `TemporaryTimeout`, 30 s by default).
    pub temporary_timeout: Duration,
    /// Initial connect delay of new devices.
    pub connect_delay: Duration,
    /// Initial ATT MTU of new devices (23: 20-byte payloads, as the scooters use).
    pub mtu: u16,
    /// Initial GATT behaviour on disconnect of new devices.
    pub gatt_on_disconnect: GattOnDisconnect,
    /// Initial link timing of new devices.
    pub link_timing: LinkTiming,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            adapter_address: Address::new([0x00, 0x1A, 0x7D, 0xDA, 0x71, 0x13]),
            adapter_name: "m365-fakebluez".to_owned(),
            discovery_delay: Duration::from_millis(100),
            advertising_interval: Duration::from_millis(100),
            temporary_timeout: Duration::from_secs(30),
            connect_delay: Duration::ZERO,
            mtu: 23,
            gatt_on_disconnect: GattOnDisconnect::Remove,
            link_timing: LinkTiming::instant(),
        }
    }
}
