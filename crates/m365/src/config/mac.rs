//! `[scooter] mac`: the scooter's Bluetooth address as written in the configuration, with colons
//! (`AA:BB:CC:DD:EE:FF`), with dashes, or with no separator at all as the earlier client wanted.
//! It parses into the BLE client's own address type, [`BdAddr`], so the configuration,
//! `m365 register <MAC>` and the scanner accept the same spellings and compare equal; only the
//! wording of the error is the configuration's.

use m365_ble::BdAddr;

/// The text is not a Bluetooth address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a Bluetooth address such as \"AA:BB:CC:DD:EE:FF\" (colons, dashes or no separator), found {0:?}"
)]
pub struct MacError(pub String);

/// Parses the value of `[scooter] mac`.
pub fn parse_mac(text: &str) -> Result<BdAddr, MacError> {
    text.parse::<BdAddr>()
        .map_err(|_| MacError(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_spellings_give_the_same_address() {
        let expected = BdAddr([0xD5, 0x01, 0x45, 0x37, 0xED, 0xFD]);
        for text in [
            "D5:01:45:37:ED:FD",
            "d5-01-45-37-ed-fd",
            "D5014537EDFD",
            " d5014537edfd ",
        ] {
            assert_eq!(parse_mac(text), Ok(expected), "{text}");
        }
        assert_eq!(expected.to_string(), "D5:01:45:37:ED:FD");
        assert_eq!(expected.compact(), "d5014537edfd");
    }

    #[test]
    fn malformed_addresses_are_refused_with_the_text() {
        for text in [
            "XXXXXXXXXXX",
            "D5:01:45:37:ED",
            "D5:01:45-37:ED:FD",
            "D5:01:45:37:ED:FDA",
            "",
            "D5:1:45:37:ED:FDF",
        ] {
            assert_eq!(parse_mac(text), Err(MacError(text.to_owned())), "{text}");
        }
    }
}
