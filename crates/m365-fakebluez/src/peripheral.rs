//! The seam between the fake BlueZ and whatever it simulates: a [`Peripheral`] describes itself
//! (advertisement, GATT layout) and answers what a central does to it (connect, writes, reads,
//! subscriptions, disconnect). It knows nothing of D-Bus, and the fake knows nothing of the
//! protocol spoken over the characteristics.

use uuid::Uuid;

use crate::advertisement::Advertisement;
use crate::att_error::AttError;
use crate::gatt_spec::ServiceSpec;
use crate::link::Link;

/// How a central wrote to a characteristic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    /// Write without response (BlueZ `type: "command"`): a peripheral error is not reported.
    Command,
    /// Write with response (BlueZ `type: "request"`): an error becomes the client's error.
    Request,
}

/// A simulated BLE peripheral.
///
/// The fake calls these methods from its own tasks, one at a time (the peripheral sits behind
/// a mutex), so they must return promptly and must not block on anything the fake does. Work
/// that takes time (a physics tick, a delayed reply) belongs on the peripheral's own task, which
/// sends through the [`Link`] it got in [`Peripheral::on_connect`].
pub trait Peripheral: Send + 'static {
    /// The current advertisement. Polled while a scan runs, so RSSI or manufacturer data may
    /// change over time; the address must stay the same.
    fn advertisement(&self) -> Advertisement;

    /// The GATT layout, read once when the peripheral is added.
    fn services(&self) -> Vec<ServiceSpec>;

    /// A central connected. `link` sends notifications until the link goes down.
    fn on_connect(&mut self, link: Link);

    /// A central wrote `data` to `characteristic`.
    fn on_write(
        &mut self,
        characteristic: Uuid,
        data: &[u8],
        kind: WriteKind,
    ) -> Result<(), AttError>;

    /// A central read `characteristic`. The default refuses, like a peripheral whose
    /// characteristics are not readable.
    fn on_read(&mut self, characteristic: Uuid) -> Result<Vec<u8>, AttError> {
        let _ = characteristic;
        Err(AttError::ReadNotPermitted)
    }

    /// A central enabled (`true`) or disabled notifications on `characteristic` (its CCCD was
    /// written). Notifications sent while disabled are not delivered. The default ignores it.
    fn on_subscribe(&mut self, characteristic: Uuid, enabled: bool) {
        let _ = (characteristic, enabled);
    }

    /// The link went down (central disconnected, or an injected link drop / out-of-range).
    fn on_disconnect(&mut self);
}
