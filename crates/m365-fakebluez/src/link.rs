//! [`Link`]: a peripheral's handle on one connection, through which it sends notifications.
//! It is cheap to clone and usable from any thread or task (e.g. a physics tick); it stops
//! working for good when that connection ends, even if the central reconnects (the peripheral
//! then gets a new `Link`).

use std::fmt::Debug;
use std::sync::Weak;

use uuid::Uuid;

use crate::address::BluezAddress;

/// Notifications a link buffers before [`Link::notify`] reports [`LinkError::QueueFull`]: a
/// real controller's transmit buffers are finite too.
pub const NOTIFY_QUEUE: usize = 256;

/// Why a notification was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The connection this link belonged to has ended.
    #[error("the link is down")]
    NotConnected,
    /// The device has no such characteristic.
    #[error("no characteristic {0}")]
    UnknownCharacteristic(Uuid),
    /// The characteristic has neither the notify nor the indicate property.
    #[error("characteristic {0} does not notify")]
    NotNotifiable(Uuid),
    /// The central has not enabled notifications (nothing would be sent over the air).
    #[error("notifications on {0} are not enabled by the central")]
    NotSubscribed(Uuid),
    /// Longer than ATT MTU − 3 (20 bytes at the default MTU of 23).
    #[error("notification of {len} bytes exceeds the {max}-byte ATT payload")]
    TooLong {
        /// Bytes offered.
        len: usize,
        /// Largest payload.
        max: usize,
    },
    /// [`NOTIFY_QUEUE`] notifications are already waiting for the radio.
    #[error("the notification queue is full")]
    QueueFull,
}

/// What a [`Link`] reaches through: the fake's shared state, seen only through this seam (the
/// state keeps the peripherals, which hold links, so the link must not name the state).
pub(crate) trait LinkHost: Send + Sync + Debug {
    /// Whether connection `generation` of the device at `address` is still the current one.
    fn link_is_up(&self, address: BluezAddress, generation: u64) -> bool;

    /// Queues a notification of `data` on `characteristic` over connection `generation` of the
    /// device at `address` ([`Link::notify`]).
    fn notify(
        &self,
        address: BluezAddress,
        generation: u64,
        characteristic: Uuid,
        data: &[u8],
    ) -> Result<(), LinkError>;
}

/// A handle on one connection of a simulated peripheral.
#[derive(Debug, Clone)]
pub struct Link {
    pub(crate) shared: Weak<dyn LinkHost>,
    pub(crate) address: BluezAddress,
    pub(crate) generation: u64,
}

impl Link {
    /// The peripheral's address.
    pub fn address(&self) -> BluezAddress {
        self.address
    }

    /// Whether this connection is still up.
    pub fn is_connected(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|host| host.link_is_up(self.address, self.generation))
    }

    /// Queues a notification of `data` on `characteristic`. It reaches the central as a
    /// `PropertiesChanged(Value)` on the characteristic, paced by the device's
    /// [`crate::LinkTiming`]. At most ATT MTU − 3 bytes (20 by default).
    pub fn notify(&self, characteristic: Uuid, data: &[u8]) -> Result<(), LinkError> {
        let host = self.shared.upgrade().ok_or(LinkError::NotConnected)?;
        host.notify(self.address, self.generation, characteristic, data)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::heart_rate::{BODY_SENSOR_LOCATION, HEART_RATE_MEASUREMENT};
    use crate::link_timing::LinkTiming;
    use crate::state::{Outgoing, Shared};

    const ADDR: BluezAddress = crate::state::testing::ADDR;

    fn connected() -> (Arc<Shared>, Link, mpsc::Receiver<Outgoing>) {
        crate::state::testing::connected_hrm(LinkTiming::instant())
    }

    fn subscribe(shared: &Shared) {
        let mut world = shared.world();
        let device = world.devices.get_mut(&ADDR).unwrap();
        let path = device
            .layout
            .by_uuid(HEART_RATE_MEASUREMENT)
            .unwrap()
            .path
            .clone();
        device.chars.get_mut(&path).unwrap().notifying = true;
    }

    #[tokio::test]
    async fn notifications_need_a_subscription_and_a_notifying_characteristic() {
        let (shared, link, mut rx) = connected();
        assert_eq!(
            link.notify(HEART_RATE_MEASUREMENT, &[0, 60]),
            Err(LinkError::NotSubscribed(HEART_RATE_MEASUREMENT))
        );
        assert_eq!(
            link.notify(BODY_SENSOR_LOCATION, &[1]),
            Err(LinkError::NotNotifiable(BODY_SENSOR_LOCATION))
        );
        let unknown = Uuid::from_u128(42);
        assert_eq!(
            link.notify(unknown, &[1]),
            Err(LinkError::UnknownCharacteristic(unknown))
        );
        subscribe(&shared);
        link.notify(HEART_RATE_MEASUREMENT, &[0, 61]).unwrap();
        let out = rx.recv().await.unwrap();
        assert_eq!(out.data, [0, 61]);
        assert!(out.char_path.ends_with("/char000b"), "{}", out.char_path);
    }

    #[tokio::test]
    async fn payload_is_bounded_by_the_mtu() {
        let (shared, link, _rx) = connected();
        subscribe(&shared);
        assert!(link.notify(HEART_RATE_MEASUREMENT, &[0; 20]).is_ok());
        assert_eq!(
            link.notify(HEART_RATE_MEASUREMENT, &[0; 21]),
            Err(LinkError::TooLong { len: 21, max: 20 })
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_reported() {
        let (shared, link, _rx) = connected();
        subscribe(&shared);
        for _ in 0..NOTIFY_QUEUE {
            link.notify(HEART_RATE_MEASUREMENT, &[0]).unwrap();
        }
        assert_eq!(
            link.notify(HEART_RATE_MEASUREMENT, &[0]),
            Err(LinkError::QueueFull)
        );
    }

    #[tokio::test]
    async fn an_old_link_stays_dead_after_a_reconnect() {
        let (shared, link, _rx) = connected();
        subscribe(&shared);
        assert!(link.is_connected());
        {
            let mut world = shared.world();
            let device = world.devices.get_mut(&ADDR).unwrap();
            let session = device.link.as_mut().unwrap();
            // A reconnect: same device, next generation.
            session.generation = 2;
            device.generation = 2;
        }
        assert!(!link.is_connected());
        assert_eq!(
            link.notify(HEART_RATE_MEASUREMENT, &[0]),
            Err(LinkError::NotConnected)
        );
        drop(shared);
        assert_eq!(
            link.notify(HEART_RATE_MEASUREMENT, &[0]),
            Err(LinkError::NotConnected)
        );
    }
}
