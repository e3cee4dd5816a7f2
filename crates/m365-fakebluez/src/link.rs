//! [`Link`]: a peripheral's handle on one connection, through which it sends notifications.
//! It is cheap to clone and usable from any thread or task (e.g. a physics tick); it stops
//! working for good when that connection ends, even if the central reconnects (the peripheral
//! then gets a new `Link`).

use std::sync::Weak;

use tokio::sync::mpsc::error::TrySendError;
use tokio::time::Instant;
use uuid::Uuid;

use crate::address::Address;
use crate::state::{Outgoing, Shared};

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

/// A handle on one connection of a simulated peripheral.
#[derive(Debug, Clone)]
pub struct Link {
    pub(crate) shared: Weak<Shared>,
    pub(crate) address: Address,
    pub(crate) generation: u64,
}

impl Link {
    /// The peripheral's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Whether this connection is still up.
    pub fn is_connected(&self) -> bool {
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        let world = shared.world();
        world
            .devices
            .get(&self.address)
            .is_some_and(|d| d.has_link(self.generation))
    }

    /// Queues a notification of `data` on `characteristic`. It reaches the central as a
    /// `PropertiesChanged(Value)` on the characteristic, paced by the device's
    /// [`crate::LinkTiming`]. At most ATT MTU − 3 bytes (20 by default).
    pub fn notify(&self, characteristic: Uuid, data: &[u8]) -> Result<(), LinkError> {
        let shared = self.shared.upgrade().ok_or(LinkError::NotConnected)?;
        let mut world = shared.world();
        let device = world
            .devices
            .get_mut(&self.address)
            .ok_or(LinkError::NotConnected)?;
        if !device.has_link(self.generation) {
            return Err(LinkError::NotConnected);
        }
        let max = device.max_payload();
        let node = device
            .layout
            .by_uuid(characteristic)
            .ok_or(LinkError::UnknownCharacteristic(characteristic))?;
        if !node.flags.can_notify() {
            return Err(LinkError::NotNotifiable(characteristic));
        }
        if data.len() > max {
            return Err(LinkError::TooLong {
                len: data.len(),
                max,
            });
        }
        let char_path = node.path.clone();
        let subscribed = device.chars.get(&char_path).is_some_and(|c| c.notifying);
        let link = device
            .link_of(self.generation)
            .ok_or(LinkError::NotConnected)?;
        if !subscribed {
            return Err(LinkError::NotSubscribed(characteristic));
        }
        if link.notify_tx.capacity() == 0 {
            return Err(LinkError::QueueFull);
        }
        // The slot on the link is taken now, in call order, so a burst fills connection
        // events back to back however late the pump runs.
        let (at, _) = link.reserve(Instant::now());
        link.notify_tx
            .try_send(Outgoing {
                char_path,
                data: data.to_vec(),
                at,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => LinkError::QueueFull,
                TrySendError::Closed(_) => LinkError::NotConnected,
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::heart_rate::{BODY_SENSOR_LOCATION, HEART_RATE_MEASUREMENT};
    use crate::link_timing::LinkTiming;

    const ADDR: Address = crate::state::testing::ADDR;

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
