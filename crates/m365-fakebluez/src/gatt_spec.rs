//! The GATT layout a peripheral declares: services, their characteristics and each
//! characteristic's properties. The fake turns it into BlueZ's GattService1 /
//! GattCharacteristic1 / GattDescriptor1 objects when a central connects.

use std::fmt;
use std::ops::BitOr;

use uuid::Uuid;

/// Characteristic properties, as a small set of flags. Only flags btleplug understands are
/// offered: an unknown flag string would make btleplug's whole service discovery fail.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CharFlags(u8);

impl CharFlags {
    /// No property.
    pub const NONE: CharFlags = CharFlags(0);
    /// `read`.
    pub const READ: CharFlags = CharFlags(1 << 0);
    /// `write` (write with response, "request").
    pub const WRITE: CharFlags = CharFlags(1 << 1);
    /// `write-without-response` ("command").
    pub const WRITE_WITHOUT_RESPONSE: CharFlags = CharFlags(1 << 2);
    /// `notify`.
    pub const NOTIFY: CharFlags = CharFlags(1 << 3);
    /// `indicate`.
    pub const INDICATE: CharFlags = CharFlags(1 << 4);

    /// The flag names in BlueZ order, paired with their bits.
    const NAMES: [(CharFlags, &'static str); 5] = [
        (CharFlags::READ, "read"),
        (CharFlags::WRITE_WITHOUT_RESPONSE, "write-without-response"),
        (CharFlags::WRITE, "write"),
        (CharFlags::NOTIFY, "notify"),
        (CharFlags::INDICATE, "indicate"),
    ];

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: CharFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether notifications or indications can be enabled (the characteristic has a CCCD).
    pub const fn can_notify(self) -> bool {
        self.0 & (CharFlags::NOTIFY.0 | CharFlags::INDICATE.0) != 0
    }

    /// The `Flags` property value (`as`).
    pub fn to_bluez(self) -> Vec<String> {
        CharFlags::NAMES
            .iter()
            .filter(|(flag, _)| self.contains(*flag))
            .map(|(_, name)| (*name).to_owned())
            .collect()
    }
}

impl BitOr for CharFlags {
    type Output = CharFlags;

    fn bitor(self, rhs: CharFlags) -> CharFlags {
        CharFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for CharFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.to_bluez()).finish()
    }
}

/// One characteristic of a [`ServiceSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharacteristicSpec {
    /// Characteristic UUID; the peripheral's callbacks are keyed by it.
    pub uuid: Uuid,
    /// Properties.
    pub flags: CharFlags,
}

impl CharacteristicSpec {
    /// A characteristic with the given UUID and properties.
    pub fn new(uuid: Uuid, flags: CharFlags) -> Self {
        CharacteristicSpec { uuid, flags }
    }
}

/// One GATT service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Service UUID.
    pub uuid: Uuid,
    /// Primary (true) or secondary service.
    pub primary: bool,
    /// Characteristics in handle order.
    pub characteristics: Vec<CharacteristicSpec>,
}

impl ServiceSpec {
    /// A primary service with no characteristics yet.
    pub fn primary(uuid: Uuid) -> Self {
        ServiceSpec {
            uuid,
            primary: true,
            characteristics: Vec::new(),
        }
    }

    /// Adds a characteristic.
    pub fn with_characteristic(mut self, uuid: Uuid, flags: CharFlags) -> Self {
        self.characteristics
            .push(CharacteristicSpec::new(uuid, flags));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_render_as_bluez_strings() {
        let flags = CharFlags::NOTIFY | CharFlags::WRITE | CharFlags::WRITE_WITHOUT_RESPONSE;
        assert_eq!(
            flags.to_bluez(),
            ["write-without-response", "write", "notify"]
        );
        assert!(flags.can_notify());
        assert!(flags.contains(CharFlags::WRITE));
        assert!(!flags.contains(CharFlags::READ));
        assert!(!CharFlags::READ.can_notify());
        assert!(CharFlags::INDICATE.can_notify());
        assert!(CharFlags::NONE.to_bluez().is_empty());
    }
}
