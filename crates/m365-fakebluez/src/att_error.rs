//! ATT error responses a simulated peripheral can give to a read or a write request, and how
//! BlueZ reports each of them to its D-Bus client.

use crate::bluez_error::BluezError;

/// An ATT error response (Bluetooth Core Vol 3 Part F §3.4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttError {
    /// 0x02 Read Not Permitted.
    #[error("read not permitted")]
    ReadNotPermitted,
    /// 0x03 Write Not Permitted.
    #[error("write not permitted")]
    WriteNotPermitted,
    /// 0x05 Insufficient Authentication.
    #[error("insufficient authentication")]
    InsufficientAuthentication,
    /// 0x06 Request Not Supported.
    #[error("request not supported")]
    RequestNotSupported,
    /// 0x07 Invalid Offset.
    #[error("invalid offset")]
    InvalidOffset,
    /// 0x0D Invalid Attribute Value Length.
    #[error("invalid attribute value length")]
    InvalidAttributeValueLength,
    /// 0x0E Unlikely Error.
    #[error("unlikely error")]
    UnlikelyError,
    /// Any other code, e.g. an application error 0x80..=0x9F.
    #[error("ATT error 0x{0:02x}")]
    Other(u8),
}

impl AttError {
    /// The ATT error code.
    pub const fn code(self) -> u8 {
        match self {
            AttError::ReadNotPermitted => 0x02,
            AttError::WriteNotPermitted => 0x03,
            AttError::InsufficientAuthentication => 0x05,
            AttError::RequestNotSupported => 0x06,
            AttError::InvalidOffset => 0x07,
            AttError::InvalidAttributeValueLength => 0x0D,
            AttError::UnlikelyError => 0x0E,
            AttError::Other(code) => code,
        }
    }
}

impl From<AttError> for BluezError {
    /// The mapping of BlueZ's GATT client (`create_gatt_dbus_error`): a few codes have their own
    /// D-Bus error, the rest are `Failed` with the code in the message.
    fn from(err: AttError) -> BluezError {
        match err {
            AttError::ReadNotPermitted => BluezError::NotPermitted("Read not permitted".into()),
            AttError::WriteNotPermitted => BluezError::NotPermitted("Write not permitted".into()),
            AttError::InsufficientAuthentication => {
                BluezError::NotAuthorized("Operation Not Authorized".into())
            }
            AttError::RequestNotSupported => {
                BluezError::NotSupported("Operation is not supported".into())
            }
            AttError::InvalidOffset => BluezError::InvalidOffset("Invalid offset".into()),
            AttError::InvalidAttributeValueLength => {
                BluezError::InvalidValueLength("Invalid Length".into())
            }
            other => BluezError::Failed(format!(
                "Operation failed with ATT error: 0x{:02x}",
                other.code()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn maps_like_bluez() {
        let e = BluezError::from(AttError::WriteNotPermitted);
        assert_eq!(e.name().as_str(), "org.bluez.Error.NotPermitted");
        assert_eq!(e.description(), Some("Write not permitted"));
        let e = BluezError::from(AttError::Other(0x81));
        assert_eq!(e.name().as_str(), "org.bluez.Error.Failed");
        assert_eq!(
            e.description(),
            Some("Operation failed with ATT error: 0x81")
        );
        assert_eq!(AttError::UnlikelyError.code(), 0x0E);
    }
}
