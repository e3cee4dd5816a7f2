//! D-Bus object paths and interface names of BlueZ's API, in one place.

use crate::address::BluezAddress;

/// The one adapter the fake offers.
pub const ADAPTER_PATH: &str = "/org/bluez/hci0";
/// The name the fake owns on the bus.
pub const BLUEZ_NAME: &str = "org.bluez";

pub(crate) const ADAPTER_IFACE: &str = "org.bluez.Adapter1";
pub(crate) const DEVICE_IFACE: &str = "org.bluez.Device1";
pub(crate) const CHAR_IFACE: &str = "org.bluez.GattCharacteristic1";

/// UUID of the Client Characteristic Configuration Descriptor.
pub(crate) const CCCD_UUID: uuid::Uuid =
    uuid::Uuid::from_u128(0x00002902_0000_1000_8000_00805f9b34fb);

/// Object path of a device: `/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF`.
pub fn device(address: BluezAddress) -> String {
    format!("{ADAPTER_PATH}/{}", address.path_element())
}
