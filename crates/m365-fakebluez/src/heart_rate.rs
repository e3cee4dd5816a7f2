//! A ready-made unrelated BLE device, a heart-rate monitor (service 0x180D), for checking that
//! scanners and clients ignore what is not theirs.

use uuid::Uuid;

use crate::address::{AddressType, BluezAddress};
use crate::advertisement::Advertisement;
use crate::att_error::AttError;
use crate::gatt_spec::{CharFlags, ServiceSpec};
use crate::link::Link;
use crate::peripheral::{Peripheral, WriteKind};

/// Heart Rate service.
pub const HEART_RATE_SERVICE: Uuid = Uuid::from_u128(0x0000180d_0000_1000_8000_00805f9b34fb);
/// Heart Rate Measurement characteristic (notify).
pub const HEART_RATE_MEASUREMENT: Uuid = Uuid::from_u128(0x00002a37_0000_1000_8000_00805f9b34fb);
/// Body Sensor Location characteristic (read).
pub const BODY_SENSOR_LOCATION: Uuid = Uuid::from_u128(0x00002a38_0000_1000_8000_00805f9b34fb);

/// A chest-strap heart-rate monitor: advertises "HRM-Strap" with the heart-rate service and
/// Polar's company ID, answers reads of its sensor location, and sends one measurement
/// (`flags, bpm`) when notifications are enabled.
#[derive(Debug)]
pub struct HeartRateMonitor {
    address: BluezAddress,
    bpm: u8,
    link: Option<Link>,
}

impl HeartRateMonitor {
    /// A monitor at `address` reporting `bpm`.
    pub fn new(address: BluezAddress, bpm: u8) -> Self {
        HeartRateMonitor {
            address,
            bpm,
            link: None,
        }
    }
}

impl Peripheral for HeartRateMonitor {
    fn advertisement(&self) -> Advertisement {
        Advertisement::new(self.address)
            .with_address_type(AddressType::Random)
            .with_name("HRM-Strap")
            .with_rssi(-75)
            .with_manufacturer_data(0x006B, [0x01, 0x02])
            .with_service(HEART_RATE_SERVICE)
    }

    fn services(&self) -> Vec<ServiceSpec> {
        vec![
            ServiceSpec::primary(HEART_RATE_SERVICE)
                .with_characteristic(HEART_RATE_MEASUREMENT, CharFlags::NOTIFY)
                .with_characteristic(BODY_SENSOR_LOCATION, CharFlags::READ),
        ]
    }

    fn on_connect(&mut self, link: Link) {
        self.link = Some(link);
    }

    fn on_write(&mut self, _: Uuid, _: &[u8], _: WriteKind) -> Result<(), AttError> {
        Err(AttError::WriteNotPermitted)
    }

    fn on_read(&mut self, characteristic: Uuid) -> Result<Vec<u8>, AttError> {
        match characteristic {
            // 1 = chest.
            BODY_SENSOR_LOCATION => Ok(vec![1]),
            _ => Err(AttError::ReadNotPermitted),
        }
    }

    fn on_subscribe(&mut self, characteristic: Uuid, enabled: bool) {
        if enabled
            && characteristic == HEART_RATE_MEASUREMENT
            && let Some(link) = &self.link
        {
            // Flags 0: 8-bit heart rate value.
            let _ = link.notify(HEART_RATE_MEASUREMENT, &[0x00, self.bpm]);
        }
    }

    fn on_disconnect(&mut self) {
        self.link = None;
    }
}
