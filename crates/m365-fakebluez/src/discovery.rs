//! The radio side of scanning: while a discovery session runs, advertisements are polled every
//! advertising interval. Devices in range appear (InterfacesAdded) once the discovery delay
//! has passed, and changed RSSI and advertising data are published. Like BlueZ, a device that
//! is not paired, not connected, not being connected and not heard by a scan for the
//! temporary timeout is forgotten (InterfacesRemoved): after a disconnect without a scan
//! running, or once it went out of range. A scan that hears it again brings it back.

use std::sync::{Arc, Weak};

use tokio::time::{Instant, MissedTickBehavior};
use zbus::zvariant::Value;

use crate::address::BluezAddress;
use crate::advertisement::Advertisement;
use crate::device;
use crate::paths::{self, DEVICE_IFACE};
use crate::state::{Shared, lock};

/// Runs until the fake is dropped.
pub(crate) async fn run(shared: Weak<Shared>) {
    let period = match shared.upgrade() {
        Some(s) => s
            .config
            .advertising_interval
            .max(std::time::Duration::from_millis(1)),
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        step(&shared).await;
    }
}

/// What one step decided for a device.
enum Action {
    Appear(BluezAddress),
    Changed(BluezAddress, Vec<(&'static str, Value<'static>)>),
    Forget(BluezAddress),
}

/// One advertising interval.
pub(crate) async fn step(shared: &Arc<Shared>) {
    let peripherals: Vec<_> = shared
        .world()
        .devices
        .values()
        .map(|d| (d.address, d.peripheral.clone()))
        .collect();
    // Poll outside the world lock: a peripheral may be busy in a callback.
    let adverts: Vec<(BluezAddress, Advertisement)> = peripherals
        .into_iter()
        .map(|(address, p)| (address, lock(&p).advertisement()))
        .collect();

    let now = Instant::now();
    let mut actions = Vec::new();
    {
        let mut world = shared.world();
        let scanning = world.discovering()
            && world
                .discovery_started
                .is_some_and(|t| now >= t + shared.config.discovery_delay);
        let filter = world.filter_uuids.clone();
        for (address, mut advert) in adverts {
            let Some(device) = world.devices.get_mut(&address) else {
                continue;
            };
            // The address is the device's identity; a peripheral cannot change it.
            advert.address = address;
            let heard = device.faults.advertising(now);
            // A pending connect listens for the device too (BlueZ's passive scan).
            if heard && device.connecting() {
                device.last_seen = Some(now);
            }
            let unseen_for = device.last_seen.map(|t| now.saturating_duration_since(t));
            let forgotten = device.exported
                && !device.connected
                && !device.connecting()
                && unseen_for.is_some_and(|d| d >= shared.config.temporary_timeout)
                && !(heard && scanning && advert.matches_filter(&filter));
            if forgotten {
                device.exported = false;
                actions.push(Action::Forget(address));
                continue;
            }
            if !heard || !scanning || !advert.matches_filter(&filter) {
                continue;
            }
            device.last_seen = Some(now);
            if !device.exported {
                device.advert = advert;
                device.published_rssi = device.rssi();
                device.exported = true;
                actions.push(Action::Appear(address));
                continue;
            }
            let mut changed: Vec<(&'static str, Value<'static>)> = Vec::new();
            if advert.manufacturer_data != device.advert.manufacturer_data {
                changed.push((
                    "ManufacturerData",
                    Value::from(
                        advert
                            .manufacturer_data
                            .iter()
                            .map(|(k, v)| (*k, Value::from(v.clone())))
                            .collect::<std::collections::HashMap<_, _>>(),
                    ),
                ));
            }
            if advert.service_data != device.advert.service_data {
                changed.push((
                    "ServiceData",
                    Value::from(
                        advert
                            .service_data
                            .iter()
                            .map(|(k, v)| (k.to_string(), Value::from(v.clone())))
                            .collect::<std::collections::HashMap<_, _>>(),
                    ),
                ));
            }
            if advert.name != device.advert.name
                && let Some(name) = &advert.name
            {
                changed.push(("Name", Value::from(name.clone())));
                changed.push(("Alias", Value::from(name.clone())));
            }
            device.advert = advert;
            if let Some(rssi) = device.rssi().filter(|r| Some(*r) != device.published_rssi) {
                device.published_rssi = Some(rssi);
                changed.push(("RSSI", Value::from(rssi)));
            }
            if !changed.is_empty() {
                actions.push(Action::Changed(address, changed));
            }
        }
    }

    for action in actions {
        match action {
            Action::Appear(address) => device::export_device(shared, address).await,
            Action::Forget(address) => device::unexport_device(shared, address).await,
            Action::Changed(address, changed) => {
                if let Some(conn) = shared.conn.get() {
                    crate::signals::properties_changed(
                        conn,
                        &paths::device(address),
                        DEVICE_IFACE,
                        changed,
                    )
                    .await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::FakeConfig;
    use crate::heart_rate::HeartRateMonitor;
    use crate::peripheral::Peripheral;
    use crate::state::Device;

    const ADDR: BluezAddress = BluezAddress::new([0xC0, 0xFF, 0xEE, 0, 0, 1]);

    /// A fake with one heart-rate monitor and no bus: the discovery decisions are observable
    /// through the `exported` flag, and bus operations are skipped.
    fn fake(config: FakeConfig) -> Arc<Shared> {
        let shared = Arc::new(Shared::new(config));
        let hrm = HeartRateMonitor::new(ADDR, 60);
        let device = Device::new(
            Box::new(HeartRateMonitor::new(ADDR, 60)),
            hrm.advertisement(),
            &hrm.services(),
            &shared.config,
        );
        shared.world().devices.insert(ADDR, device);
        shared
    }

    fn start_discovery(shared: &Shared) {
        let mut world = shared.world();
        world.discovery_clients.insert(":1.7".into());
        world.discovery_started = Some(Instant::now());
    }

    fn exported(shared: &Shared) -> bool {
        shared.world().devices[&ADDR].exported
    }

    #[tokio::test(start_paused = true)]
    async fn devices_appear_only_after_the_discovery_delay() {
        let shared = fake(FakeConfig::default());
        step(&shared).await;
        assert!(!exported(&shared), "visible without a scan");
        start_discovery(&shared);
        tokio::time::advance(Duration::from_millis(99)).await;
        step(&shared).await;
        assert!(!exported(&shared), "visible before the discovery delay");
        tokio::time::advance(Duration::from_millis(1)).await;
        step(&shared).await;
        assert!(exported(&shared));
    }

    #[tokio::test(start_paused = true)]
    async fn filtered_out_devices_stay_hidden() {
        let shared = fake(FakeConfig::default());
        start_discovery(&shared);
        shared.world().filter_uuids = vec![uuid::Uuid::from_u128(0xfe95)];
        tokio::time::advance(Duration::from_secs(1)).await;
        step(&shared).await;
        assert!(!exported(&shared));
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_range_devices_are_forgotten_then_found_again() {
        let config = FakeConfig {
            temporary_timeout: Duration::from_secs(30),
            ..FakeConfig::default()
        };
        let shared = fake(config);
        start_discovery(&shared);
        tokio::time::advance(Duration::from_secs(1)).await;
        step(&shared).await;
        assert!(exported(&shared));

        let now = Instant::now();
        shared
            .world()
            .devices
            .get_mut(&ADDR)
            .unwrap()
            .faults
            .out_of_range = Some((now, now + Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(29)).await;
        step(&shared).await;
        assert!(
            exported(&shared),
            "forgotten before BlueZ's temporary timeout"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        step(&shared).await;
        assert!(!exported(&shared), "kept after the temporary timeout");
        tokio::time::advance(Duration::from_secs(29)).await;
        step(&shared).await;
        assert!(
            !exported(&shared),
            "back before the out-of-range period ended"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        step(&shared).await;
        assert!(exported(&shared));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unseen_device_is_forgotten_unless_a_connect_waits_for_it() {
        let shared = fake(FakeConfig::default());
        start_discovery(&shared);
        tokio::time::advance(Duration::from_secs(1)).await;
        step(&shared).await;
        assert!(exported(&shared));
        // The scan stops: the device is in range but nobody hears it any more.
        shared.world().discovery_clients.clear();
        tokio::time::advance(Duration::from_secs(29)).await;
        step(&shared).await;
        assert!(exported(&shared), "forgotten before the temporary timeout");
        // A connect waiting for it listens too (BlueZ's passive scan for the connection).
        shared
            .world()
            .devices
            .get_mut(&ADDR)
            .unwrap()
            .pending_connect = Some(1);
        tokio::time::advance(Duration::from_secs(60)).await;
        step(&shared).await;
        assert!(exported(&shared), "forgotten while a connect waits");
        shared
            .world()
            .devices
            .get_mut(&ADDR)
            .unwrap()
            .pending_connect = None;
        tokio::time::advance(Duration::from_secs(29)).await;
        step(&shared).await;
        assert!(exported(&shared));
        tokio::time::advance(Duration::from_secs(1)).await;
        step(&shared).await;
        assert!(!exported(&shared), "kept past the temporary timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn rssi_is_published_only_when_it_changes() {
        let shared = fake(FakeConfig::default());
        start_discovery(&shared);
        tokio::time::advance(Duration::from_secs(1)).await;
        step(&shared).await;
        let published = || shared.world().devices[&ADDR].published_rssi;
        assert_eq!(published(), Some(-75));
        shared.world().devices.get_mut(&ADDR).unwrap().rssi_override = Some(-40);
        step(&shared).await;
        assert_eq!(published(), Some(-40));
    }
}
