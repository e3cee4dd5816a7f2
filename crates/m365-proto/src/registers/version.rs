//! Firmware version numbers as the registers hold them (protocol.md §6.5, §6.7).
//!
//! ESC 0x1A, ESC 0x66/0x67 and BMS 0x17 store versions as one hex digit per part under a major
//! byte: 0x0134 is "1.3.4" (high byte major, high nibble of the low byte minor, low nibble
//! patch). The BLE module version at ESC 0x68 is quoted by the community as three digits,
//! 0x0081 = "081"; [`BleVersion`] shows that form and offers the dotted one.

/// An ESC or BMS firmware version, e.g. 0x0134 = 1.3.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FirmwareVersion(pub u16);

impl FirmwareVersion {
    /// High byte.
    pub fn major(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// High nibble of the low byte.
    pub fn minor(self) -> u8 {
        ((self.0 >> 4) & 0x0F) as u8
    }
    /// Low nibble.
    pub fn patch(self) -> u8 {
        (self.0 & 0x0F) as u8
    }
}

impl core::fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.minor(), self.patch())
    }
}

/// The BLE module firmware version (ESC 0x68), e.g. 0x0081 = "081".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BleVersion(pub u16);

impl BleVersion {
    /// The dotted form, e.g. "0.8.1".
    pub fn dotted(self) -> String {
        FirmwareVersion(self.0).to_string()
    }
}

impl core::fmt::Display for BleVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The hex digits read as a decimal-looking version: 0x0081 → "081", 0x0155 → "155".
        write!(f, "{:03X}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays() {
        assert_eq!(FirmwareVersion(0x0134).to_string(), "1.3.4");
        assert_eq!(FirmwareVersion(0x0115).to_string(), "1.1.5");
        assert_eq!(BleVersion(0x0081).to_string(), "081");
        assert_eq!(BleVersion(0x0071).to_string(), "071");
        assert_eq!(BleVersion(0x0155).to_string(), "155");
        assert_eq!(BleVersion(0x0081).dotted(), "0.8.1");
        assert!(BleVersion(0x0081) > BleVersion(0x0072));
    }
}
