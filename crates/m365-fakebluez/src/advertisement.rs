//! What a peripheral advertises, i.e. what a scanner sees before connecting: the fields BlueZ
//! turns into Device1 properties (Name, RSSI, ManufacturerData, ServiceData, UUIDs, ...).

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::address::{AddressType, BluezAddress};

/// One advertisement (plus scan response) of a simulated peripheral.
///
/// The fake polls [`crate::Peripheral::advertisement`] while discovery runs; a change of RSSI,
/// manufacturer data or service data is published as `PropertiesChanged` on the device, the way
/// BlueZ reports fresh advertising reports. The address is read once, when the peripheral is
/// added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// The device address.
    pub address: BluezAddress,
    /// Public or random address.
    pub address_type: AddressType,
    /// Complete local name, if advertised.
    pub name: Option<String>,
    /// Received signal strength in dBm, as the adapter would measure it.
    pub rssi: Option<i16>,
    /// Advertised transmit power in dBm.
    pub tx_power: Option<i16>,
    /// Manufacturer-specific data by company identifier.
    pub manufacturer_data: BTreeMap<u16, Vec<u8>>,
    /// Service data by service UUID.
    pub service_data: BTreeMap<Uuid, Vec<u8>>,
    /// Advertised service UUIDs.
    pub services: Vec<Uuid>,
}

impl Advertisement {
    /// An advertisement with only an address (public) and a typical RSSI of -60 dBm.
    pub fn new(address: BluezAddress) -> Self {
        Advertisement {
            address,
            address_type: AddressType::Public,
            name: None,
            rssi: Some(-60),
            tx_power: None,
            manufacturer_data: BTreeMap::new(),
            service_data: BTreeMap::new(),
            services: Vec::new(),
        }
    }

    /// Sets the local name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the RSSI.
    pub fn with_rssi(mut self, rssi: i16) -> Self {
        self.rssi = Some(rssi);
        self
    }

    /// Sets the address type.
    pub fn with_address_type(mut self, address_type: AddressType) -> Self {
        self.address_type = address_type;
        self
    }

    /// Adds manufacturer data for a company identifier.
    pub fn with_manufacturer_data(mut self, company: u16, data: impl Into<Vec<u8>>) -> Self {
        self.manufacturer_data.insert(company, data.into());
        self
    }

    /// Adds service data for a service UUID.
    pub fn with_service_data(mut self, service: Uuid, data: impl Into<Vec<u8>>) -> Self {
        self.service_data.insert(service, data.into());
        self
    }

    /// Adds an advertised service UUID.
    pub fn with_service(mut self, service: Uuid) -> Self {
        self.services.push(service);
        self
    }

    /// Whether a discovery filter on service UUIDs lets this advertisement through. BlueZ
    /// matches the advertised UUID list and service data keys; an empty filter passes all.
    pub(crate) fn matches_filter(&self, filter: &[Uuid]) -> bool {
        filter.is_empty()
            || filter
                .iter()
                .any(|u| self.services.contains(u) || self.service_data.contains_key(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HRS: Uuid = Uuid::from_u128(0x0000180d_0000_1000_8000_00805f9b34fb);
    const FE95: Uuid = Uuid::from_u128(0x0000fe95_0000_1000_8000_00805f9b34fb);

    #[test]
    fn service_filter_matches_uuids_and_service_data() {
        let addr = BluezAddress::new([1, 2, 3, 4, 5, 6]);
        let by_uuid = Advertisement::new(addr).with_service(HRS);
        let by_data = Advertisement::new(addr).with_service_data(FE95, [1, 2]);
        assert!(by_uuid.matches_filter(&[]));
        assert!(by_uuid.matches_filter(&[HRS]));
        assert!(!by_uuid.matches_filter(&[FE95]));
        assert!(by_data.matches_filter(&[HRS, FE95]));
        assert!(!by_data.matches_filter(&[HRS]));
    }
}
