//! [`DeviceControl`]: a test's or simulator's hand on one simulated device: inject link faults
//! at run time, tune its radio, and read what centrals did to it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::address::BluezAddress;
use crate::bluez_error::BluezError;
use crate::config::GattOnDisconnect;
use crate::connection::{self, Cause};
use crate::counters::Counters;
use crate::faults::Harshness;
use crate::link_timing::{LinkStats, LinkTiming};
use crate::state::{Device, Shared};

/// Run-time control of one simulated device. Cheap to clone; keeps the fake alive.
#[derive(Debug, Clone)]
pub struct DeviceControl {
    pub(crate) shared: Arc<Shared>,
    pub(crate) address: BluezAddress,
}

impl DeviceControl {
    /// The device's address.
    pub fn address(&self) -> BluezAddress {
        self.address
    }

    fn with<T>(&self, f: impl FnOnce(&mut Device) -> T) -> Option<T> {
        self.shared.world().devices.get_mut(&self.address).map(f)
    }

    /// Loses the link the way a radio fade does: `ServicesResolved=false`, then
    /// `Connected=false` (btleplug reports `DeviceDisconnected`), the peripheral's
    /// `on_disconnect`. The device keeps advertising, but for `hold_off` a connection cannot be
    /// established: a `Connect()` made meanwhile waits and succeeds when the hold-off ends (or
    /// fails after the connect timeout), as with BlueZ. Returns whether a link was up.
    pub async fn drop_link(&self, hold_off: Duration) -> bool {
        self.drop_link_with(hold_off, Harshness::default()).await
    }

    /// [`DeviceControl::drop_link`] with harsher-than-BlueZ variants: connects failing at once
    /// during the hold-off, GATT objects removed.
    pub async fn drop_link_with(&self, hold_off: Duration, harshness: Harshness) -> bool {
        let until = Instant::now() + hold_off;
        self.with(|d| {
            d.faults.unreachable_until = Some(until);
            d.faults.fail_at_once = harshness.fail_at_once;
        });
        info!(address = %self.address, ?hold_off, ?harshness, "injected link drop");
        self.shared.connect_wake.notify_waiters();
        let cause = Cause::LinkLoss {
            remove_gatt: harshness.remove_gatt,
        };
        connection::disconnect(&self.shared, self.address, cause).await
    }

    /// Takes the device out of range for `duration`: the link drops (if up) and advertising
    /// stops. A `Connect()` meanwhile waits for it and succeeds the moment it is back in range
    /// (or fails with `le-connection-abort-by-local` after the connect timeout); once nothing
    /// has heard it for the temporary timeout, BlueZ forgets it (InterfacesRemoved) until a
    /// scan hears it again.
    pub async fn out_of_range(&self, duration: Duration) {
        self.out_of_range_with(duration, Harshness::default()).await;
    }

    /// [`DeviceControl::out_of_range`] with harsher-than-BlueZ variants.
    pub async fn out_of_range_with(&self, duration: Duration, harshness: Harshness) {
        let now = Instant::now();
        self.with(|d| {
            d.faults.out_of_range = Some((now, now + duration));
            d.faults.fail_at_once = harshness.fail_at_once;
        });
        info!(address = %self.address, ?duration, ?harshness, "out of range");
        self.shared.connect_wake.notify_waiters();
        let cause = Cause::LinkLoss {
            remove_gatt: harshness.remove_gatt,
        };
        connection::disconnect(&self.shared, self.address, cause).await;
    }

    /// Ends an out-of-range period now (the device was switched on again early, say): it
    /// advertises again and a waiting connect completes. Other faults stay.
    pub fn end_out_of_range(&self) {
        self.with(|d| d.faults.out_of_range = None);
        self.shared.connect_wake.notify_waiters();
    }

    /// Ends every injected fault: a link-drop hold-off, an out-of-range period (the device
    /// advertises again at once), failing and stuck connects. The connect delay, RSSI, MTU and
    /// timing settings stay. A pending connect then completes.
    pub fn clear_faults(&self) {
        self.with(|d| d.faults.clear());
        info!(address = %self.address, "faults cleared");
        self.shared.connect_wake.notify_waiters();
    }

    /// Makes the next `count` connects fail with `error`, at once (a connect already waiting
    /// included).
    pub fn fail_next_connects(&self, count: usize, error: BluezError) {
        self.with(|d| {
            d.faults
                .failing_connects
                .extend(std::iter::repeat_n(error, count));
        });
        // A connect already waiting for the device takes the first one.
        self.shared.connect_wake.notify_waiters();
    }

    /// Simulates BlueZ's stuck connect: every connect answers `org.bluez.Error.InProgress`
    /// until a client calls `Adapter1.RemoveDevice` for this device.
    pub fn stale_in_progress(&self) {
        self.with(|d| d.faults.stale_in_progress = true);
    }

    /// How long a connect takes once the device can be reached.
    pub fn set_connect_delay(&self, delay: Duration) {
        self.with(|d| d.faults.connect_delay = delay);
    }

    /// Overrides the advertised RSSI (`None`: back to the advertisement's).
    pub fn set_rssi(&self, rssi: Option<i16>) {
        self.with(|d| d.rssi_override = rssi);
    }

    /// Sets the link timing, for the current link (from now on) and the next ones.
    pub fn set_link_timing(&self, timing: LinkTiming) {
        self.with(|d| {
            d.timing = timing;
            if let Some(link) = d.link.as_mut() {
                link.events.set_timing(timing);
            }
        });
    }

    /// Sets the ATT MTU reported on the characteristics and bounding notification size; takes
    /// effect for the next connection's service discovery.
    pub fn set_mtu(&self, mtu: u16) {
        self.with(|d| d.mtu = mtu.max(23));
    }

    /// Whether GATT objects survive a disconnect.
    pub fn set_gatt_on_disconnect(&self, behaviour: GattOnDisconnect) {
        self.with(|d| d.gatt_on_disconnect = behaviour);
    }

    /// What centrals asked of this device so far.
    pub fn counters(&self) -> Counters {
        self.with(|d| d.counters).unwrap_or_default()
    }

    /// Statistics of the current link, or of the last one if none is up.
    pub fn link_stats(&self) -> LinkStats {
        self.with(|d| match &d.link {
            Some(link) => link.events.stats(),
            None => d.last_link_stats,
        })
        .unwrap_or_default()
    }

    /// Whether a central is connected.
    pub fn is_connected(&self) -> bool {
        self.with(|d| d.connected).unwrap_or(false)
    }

    /// Whether a `Connect()` is waiting for the device.
    pub fn is_connecting(&self) -> bool {
        self.with(|d| d.connecting()).unwrap_or(false)
    }

    /// Whether the device is on the bus (discovered and not removed).
    pub fn is_visible(&self) -> bool {
        self.with(|d| d.exported).unwrap_or(false)
    }
}
