//! Bluetooth device addresses as users type them (`AA:BB:CC:DD:EE:FF`, `aa-bb-cc-dd-ee-ff` or 12
//! hex digits) and as BlueZ prints them. One type for the scanner filter, the transports and the
//! commands, so an address compares equal however it was written.

use std::fmt;
use std::str::FromStr;

/// A Bluetooth device address, most significant byte first (as printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BdAddr(pub [u8; 6]);

/// The text is not a Bluetooth address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a Bluetooth address: write it as AA:BB:CC:DD:EE:FF, AA-BB-CC-DD-EE-FF or AABBCCDDEEFF"
)]
pub struct AddressError(pub String);

impl BdAddr {
    /// The six bytes, most significant first.
    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }

    /// The address as 12 lower-case hex digits with no separator (`d5014537edfd`), e.g. as an
    /// identifier in MQTT topics.
    pub fn compact(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// BlueZ's object path segment, `dev_AA_BB_CC_DD_EE_FF`.
    pub fn bluez_segment(&self) -> String {
        let [a, b, c, d, e, f] = self.0;
        format!("dev_{a:02X}_{b:02X}_{c:02X}_{d:02X}_{e:02X}_{f:02X}")
    }
}

impl FromStr for BdAddr {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || AddressError(text.to_owned());
        let trimmed = text.trim();
        // One separator kind throughout, or none: a mix is more likely a typo than intent.
        let digits: String = match (trimmed.contains(':'), trimmed.contains('-')) {
            (true, true) => return Err(err()),
            (true, false) => groups(trimmed, ':').ok_or_else(err)?,
            (false, true) => groups(trimmed, '-').ok_or_else(err)?,
            (false, false) => trimmed.to_owned(),
        };
        if digits.len() != 12 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut bytes = [0u8; 6];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = digits.get(2 * i..2 * i + 2).ok_or_else(err)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(BdAddr(bytes))
    }
}

/// Six two-digit groups separated by `sep`, joined; `None` for any other shape.
fn groups(text: &str, sep: char) -> Option<String> {
    let parts: Vec<&str> = text.split(sep).collect();
    (parts.len() == 6 && parts.iter().all(|p| p.len() == 2)).then(|| parts.concat())
}

impl fmt::Display for BdAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_gives_the_same_address() {
        let expected = BdAddr([0xD5, 0x01, 0x45, 0x37, 0xED, 0xFD]);
        for text in [
            "D5:01:45:37:ED:FD",
            "d5:01:45:37:ed:fd",
            "d5-01-45-37-ed-fd",
            "D5014537EDFD",
            " d5014537edfd ",
        ] {
            assert_eq!(text.parse::<BdAddr>(), Ok(expected), "{text}");
        }
        assert_eq!(expected.to_string(), "D5:01:45:37:ED:FD");
        assert_eq!(expected.compact(), "d5014537edfd");
        assert_eq!(expected.bluez_segment(), "dev_D5_01_45_37_ED_FD");
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_text() {
        for text in [
            "",
            "D5:01:45:37:ED",
            "D5:01:45-37:ED:FD",
            "D5014537EDFDA",
            "D5:1:45:37:ED:FDF",
            "G5014537EDFD",
            "D5:01:45:37:ED:F\u{e9}",
        ] {
            let err = text.parse::<BdAddr>().unwrap_err();
            assert_eq!(err.0, text);
        }
    }
}
