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
