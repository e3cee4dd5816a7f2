//! The commented example configuration, printed by `m365 config example` and installed by the
//! .deb as `/etc/m365/martinete.toml`. It lives in `packaging/` so the package and the binary
//! ship the same text.

/// The full example: every key, each set to its default or commented out when it has none.
pub const EXAMPLE: &str = include_str!("../../../../packaging/martinete.toml");
