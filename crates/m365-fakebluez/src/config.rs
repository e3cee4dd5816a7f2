//! Settings of a fake BlueZ instance and the defaults new devices start with. Everything that
//! models timing is here so a test can make the fake as fast or as realistic as it needs. The
//! defaults are BlueZ's own (`main.conf`, `[GATT] Cache = always`, `TemporaryTimeout = 30`,
//! the kernel's LE connection timeout).

use std::time::Duration;

use crate::address::BluezAddress;
use crate::link_timing::LinkTiming;

/// What happens to a device's GATT objects when its link goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GattOnDisconnect {
    /// Kept, as BlueZ does with its default `[GATT] Cache = always`: after a drop, writes fail
    /// with `org.bluez.Error.Failed: Not connected`, and a reconnect finds the same objects.
    #[default]
    Keep,
    /// Removed (InterfacesRemoved), as BlueZ does with `Cache = no`: after a drop, writes fail
    /// with `UnknownObject` and the client must rediscover services.
    Remove,
}

/// How long BlueZ waits for an LE device to answer a connection request before it gives up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(25);

/// Settings of a [`crate::FakeBluez`].
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The adapter's own address.
    pub adapter_address: BluezAddress,
    /// The adapter's name (`Name`/`Alias`).
    pub adapter_name: String,
    /// How long after discovery starts devices appear (InterfacesAdded).
    pub discovery_delay: Duration,
    /// How often advertisements are polled while discovering (RSSI and data updates, devices
    /// coming back into range).
    pub advertising_interval: Duration,
    /// How long a device that is neither paired, connected, being connected nor heard by a
    /// scan stays on the bus before BlueZ forgets it (InterfacesRemoved; BlueZ's
    /// `TemporaryTimeout`, 30 s by default). A scan that hears it again brings it back.
    pub temporary_timeout: Duration,
    /// How long a `Connect()` waits for a device that cannot be reached before it fails with
    /// `le-connection-abort-by-local` (about 25 s with BlueZ on Linux).
    pub connect_timeout: Duration,
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
            adapter_address: BluezAddress::new([0x00, 0x1A, 0x7D, 0xDA, 0x71, 0x13]),
            adapter_name: "m365-fakebluez".to_owned(),
            discovery_delay: Duration::from_millis(100),
            advertising_interval: Duration::from_millis(100),
            temporary_timeout: Duration::from_secs(30),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            connect_delay: Duration::ZERO,
            mtu: 23,
            gatt_on_disconnect: GattOnDisconnect::Keep,
            link_timing: LinkTiming::instant(),
        }
    }
}
