//! The `org.bluez.Error.*` replies of the fake, which are also what tests inject as faults
//! ("fail the next connect with ..."), so a fault looks to btleplug exactly like real BlueZ.

/// A BlueZ D-Bus error: the variant is the name after `org.bluez.Error.`, the string is the
/// human-readable message btleplug shows (`btleplug::Error::Other`).
#[derive(Debug, Clone, PartialEq, Eq, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
pub enum BluezError {
    /// `org.bluez.Error.Failed`, the catch-all (e.g. `le-connection-abort-by-local`).
    Failed(String),
    /// `org.bluez.Error.InProgress`: an operation of the same kind is pending.
    InProgress(String),
    /// `org.bluez.Error.NotReady`: adapter powered off.
    NotReady(String),
    /// `org.bluez.Error.NotConnected`.
    NotConnected(String),
    /// `org.bluez.Error.AlreadyConnected`.
    AlreadyConnected(String),
    /// `org.bluez.Error.DoesNotExist`.
    DoesNotExist(String),
    /// `org.bluez.Error.InvalidArguments`.
    InvalidArguments(String),
    /// `org.bluez.Error.NotPermitted`.
    NotPermitted(String),
    /// `org.bluez.Error.NotAuthorized`.
    NotAuthorized(String),
    /// `org.bluez.Error.NotSupported`.
    NotSupported(String),
    /// `org.bluez.Error.InvalidValueLength`.
    InvalidValueLength(String),
    /// `org.bluez.Error.InvalidOffset`.
    InvalidOffset(String),
}

impl BluezError {
    /// The error BlueZ gives when the controller aborts a connection attempt, typically radio
    /// interference or a peer that went away: `Failed: le-connection-abort-by-local`.
    pub fn le_connection_abort_by_local() -> Self {
        BluezError::Failed("le-connection-abort-by-local".into())
    }

    /// BlueZ's reply to a connect while another connect to the device is pending (or stuck).
    pub fn in_progress() -> Self {
        BluezError::InProgress("In Progress".into())
    }

    /// BlueZ's reply to a GATT operation on a device without a link.
    pub(crate) fn not_connected() -> Self {
        BluezError::Failed("Not connected".into())
    }
}
