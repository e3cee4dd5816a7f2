//! Bluetooth device addresses as BlueZ spells them: `AA:BB:CC:DD:EE:FF` in properties and
//! `dev_AA_BB_CC_DD_EE_FF` in object paths. Peer-supplied text is parsed, never indexed blindly.
//!
//! The fake is a stand-in for BlueZ, usable by any BLE client, so it has its own address type
//! rather than a client's: [`BluezAddress`] knows exactly BlueZ's spellings (colons only, the
//! object path element, the default alias), which is all the fake needs.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Bluetooth device address as BlueZ presents it, most significant byte first (as
/// printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BluezAddress(pub [u8; 6]);

impl BluezAddress {
    /// The address from its six bytes, most significant first.
    pub const fn new(bytes: [u8; 6]) -> Self {
        BluezAddress(bytes)
    }

    /// The last element of the device's object path: `dev_AA_BB_CC_DD_EE_FF`.
    pub fn path_element(&self) -> String {
        format!("dev_{}", self.to_string().replace(':', "_"))
    }

    /// BlueZ's default alias for a device without a name: the address with dashes.
    pub(crate) fn dashed(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl fmt::Display for BluezAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

/// Why a string is not a Bluetooth address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a Bluetooth address (expected six hex bytes like AA:BB:CC:DD:EE:FF)")]
pub struct ParseBluezAddressError {
    /// The rejected text.
    pub text: String,
}

impl FromStr for BluezAddress {
    type Err = ParseBluezAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseBluezAddressError { text: s.to_owned() };
        let mut bytes = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(err)?;
            // from_str_radix alone would accept a sign ("+5").
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(BluezAddress(bytes))
    }
}

/// Whether an LE address is the device's public (IEEE-assigned) one or a random one, as in
/// BlueZ's `AddressType` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddressType {
    /// `"public"`.
    #[default]
    Public,
    /// `"random"` (static or private).
    Random,
}

impl AddressType {
    /// The property value BlueZ uses.
    pub const fn as_str(self) -> &'static str {
        match self {
            AddressType::Public => "public",
            AddressType::Random => "random",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let addr: BluezAddress = "d5:1a:00:9F:0b:C3".parse().unwrap();
        assert_eq!(addr.0, [0xD5, 0x1A, 0x00, 0x9F, 0x0B, 0xC3]);
        assert_eq!(addr.to_string(), "D5:1A:00:9F:0B:C3");
        assert_eq!(addr.path_element(), "dev_D5_1A_00_9F_0B_C3");
        assert_eq!(addr.dashed(), "D5-1A-00-9F-0B-C3");
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "D5:1A:00:9F:0B",
            "D5:1A:00:9F:0B:C3:00",
            "D5:1A:00:9F:0B:C",
            "D5:1A:00:9F:0B:CG",
            "D51A009F0BC3",
            "D5-1A-00-9F-0B-C3",
            "+5:1A:00:9F:0B:C3",
        ] {
            let err = bad.parse::<BluezAddress>().unwrap_err();
            assert_eq!(err.text, bad);
        }
    }
}
