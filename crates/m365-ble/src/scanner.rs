//! Finding scooters: advertisements filtered by name prefix (`MIScooter`) or by the configured
//! address, described with what can be told before connecting (model and protocol generation
//! from the manufacturer data, §2.1).

use std::collections::HashMap;
use std::time::Duration;

use m365_proto::model::{Detected, ManufacturerData, Model, NAME_PREFIX};
use tokio::time::Instant;

use crate::address::BdAddr;
use crate::error::BleError;
use crate::transport::{Advertisement, Transport, TransportError, TransportEvent};

/// Which advertisements are scooters we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanFilter {
    /// Names that start with this mark a scooter.
    pub name_prefix: String,
    /// Only this device (then the name does not matter).
    pub address: Option<BdAddr>,
}

impl Default for ScanFilter {
    fn default() -> Self {
        ScanFilter {
            name_prefix: NAME_PREFIX.to_owned(),
            address: None,
        }
    }
}

impl ScanFilter {
    /// Whether `ad` passes.
    pub fn accepts(&self, ad: &Advertisement) -> bool {
        match self.address {
            Some(address) => ad.address == address,
            None => ad
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&self.name_prefix)),
        }
    }

    /// What is looked for, for messages.
    pub fn describe(&self) -> String {
        match self.address {
            Some(a) => format!("address {a}"),
            None => format!("name starting with {}", self.name_prefix),
        }
    }
}

/// A scooter heard advertising.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovered {
    /// Its address.
    pub address: BdAddr,
    /// Its advertised name.
    pub name: Option<String>,
    /// Last RSSI, dBm.
    pub rssi: Option<i16>,
    /// The model, when the manufacturer data names a known one.
    pub model: Option<Model>,
    /// The protocol the manufacturer data announces.
    pub generation: Option<Detected>,
    /// When it was last heard.
    pub last_seen: Instant,
}

impl Discovered {
    /// Describes an advertisement.
    pub fn from_advertisement(ad: &Advertisement, now: Instant) -> Discovered {
        let data = ad
            .manufacturer_data
            .iter()
            .find_map(|(company, data)| ManufacturerData::parse(*company, data).ok());
        Discovered {
            address: ad.address,
            name: ad.name.clone(),
            rssi: ad.rssi,
            model: data.and_then(|d| d.model()),
            generation: data.and_then(|d| d.detected()),
            last_seen: now,
        }
    }
}

/// A running scan that yields matching scooters.
#[derive(Debug)]
pub struct Scanner<'a, T: Transport> {
    transport: &'a mut T,
    filter: ScanFilter,
    seen: HashMap<BdAddr, Discovered>,
}

impl<'a, T: Transport> Scanner<'a, T> {
    /// Starts scanning on `transport`.
    pub async fn start(transport: &'a mut T, filter: ScanFilter) -> Result<Self, TransportError> {
        transport.start_scan().await?;
        Ok(Scanner {
            transport,
            filter,
            seen: HashMap::new(),
        })
    }

    /// The next advertisement of a matching scooter (new or again), or `None` at `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Result<Option<Discovered>, BleError> {
        loop {
            let event = tokio::select! {
                e = self.transport.next_event() => e,
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            };
            match event {
                Some(TransportEvent::Advertisement(ad)) if self.filter.accepts(&ad) => {
                    let found = Discovered::from_advertisement(&ad, Instant::now());
                    self.seen.insert(found.address, found.clone());
                    return Ok(Some(found));
                }
                Some(_) => {}
                None => return Err(TransportError::Closed.into()),
            }
        }
    }

    /// Every scooter heard so far, latest data.
    pub fn seen(&self) -> impl Iterator<Item = &Discovered> {
        self.seen.values()
    }

    /// Stops scanning.
    pub async fn stop(self) -> Result<(), TransportError> {
        self.transport.stop_scan().await
    }
}

/// Scans until the first matching scooter advertises, for at most `timeout`.
pub async fn find<T: Transport>(
    transport: &mut T,
    filter: &ScanFilter,
    timeout: Duration,
) -> Result<Discovered, BleError> {
    let deadline = Instant::now() + timeout;
    let mut scanner = Scanner::start(transport, filter.clone()).await?;
    let found = scanner.next(deadline).await;
    let stopped = scanner.stop().await;
    match found? {
        Some(d) => {
            stopped?;
            Ok(d)
        }
        None => Err(BleError::NotFound {
            timeout,
            wanted: filter.describe(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(name: Option<&str>, last: u8, data: Vec<(u16, Vec<u8>)>) -> Advertisement {
        Advertisement {
            address: BdAddr([0xD5, 0, 0, 0, 0, last]),
            name: name.map(str::to_owned),
            rssi: Some(-70),
            manufacturer_data: data,
            services: vec![],
        }
    }

    #[test]
    fn filter_by_prefix_or_address() {
        let f = ScanFilter::default();
        assert!(f.accepts(&ad(Some("MIScooter1234"), 1, vec![])));
        assert!(!f.accepts(&ad(Some("Echo-1"), 1, vec![])));
        assert!(!f.accepts(&ad(None, 1, vec![])));
        let by_addr = ScanFilter {
            address: Some(BdAddr([0xD5, 0, 0, 0, 0, 2])),
            ..ScanFilter::default()
        };
        assert!(by_addr.accepts(&ad(Some("renamed"), 2, vec![])));
        assert!(!by_addr.accepts(&ad(Some("MIScooter1234"), 1, vec![])));
    }

    #[test]
    fn manufacturer_data_tells_model_and_generation() {
        let pro2 = ad(
            Some("MIScooter0001"),
            1,
            vec![(0x424E, vec![0x28, 0x02, 0, 0, 0, 0xD5])],
        );
        let d = Discovered::from_advertisement(&pro2, Instant::now());
        assert_eq!(d.model, Some(Model::Pro2));
        assert_eq!(
            d.generation,
            Some(Detected::Generation(m365_proto::model::Generation::MiAuth))
        );
        let other = ad(Some("MIScooter0002"), 2, vec![(0x004C, vec![1, 2, 3])]);
        let d = Discovered::from_advertisement(&other, Instant::now());
        assert_eq!((d.model, d.generation), (None, None));
    }
}
