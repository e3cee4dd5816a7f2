//! The scooter's Bluetooth address as written in `[scooter] mac`: with colons
//! (`AA:BB:CC:DD:EE:FF`), with dashes, or with no separator at all as the earlier client wanted.

use std::fmt;
use std::str::FromStr;

/// A Bluetooth device address, most significant byte first (as printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

/// The text is not a Bluetooth address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a Bluetooth address such as \"AA:BB:CC:DD:EE:FF\" (colons, dashes or no separator), found {0:?}"
)]
pub struct MacError(pub String);

impl MacAddress {
    /// The address as 12 lower-case hex digits, used as the default scooter id in topics.
    pub fn compact(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl FromStr for MacAddress {
    type Err = MacError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // The same spellings the BLE client accepts, so config and `m365 register` agree.
        text.parse::<m365_ble::BdAddr>()
            .map(|addr| MacAddress(addr.0))
            .map_err(|_| MacError(text.to_owned()))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_spellings_give_the_same_address() {
        let expected = MacAddress([0xD5, 0x01, 0x45, 0x37, 0xED, 0xFD]);
        for text in [
            "D5:01:45:37:ED:FD",
            "d5-01-45-37-ed-fd",
            "D50145 37EDFD".replace(' ', "").as_str(),
            " d5014537edfd ",
        ] {
            assert_eq!(text.parse::<MacAddress>(), Ok(expected), "{text}");
        }
        assert_eq!(expected.to_string(), "D5:01:45:37:ED:FD");
        assert_eq!(expected.compact(), "d5014537edfd");
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for text in [
            "XXXXXXXXXXX",
            "D5:01:45:37:ED",
            "D5:01:45-37:ED:FD",
            "D5:01:45:37:ED:FDA",
            "",
            "D5:1:45:37:ED:FDF",
        ] {
            assert!(text.parse::<MacAddress>().is_err(), "{text}");
        }
    }
}
