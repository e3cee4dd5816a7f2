//! Secrets that outlive one message: the 12-byte pairing token and the per-connection session
//! keys. Their `Debug` output is redacted so a stray `{:?}` in a log can never leak them.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Which side of the link a machine plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The app / `m365`.
    Client,
    /// The scooter's BLE module (played by the simulator).
    Device,
}

/// Length of a [`Token`], and so of the `.mi-token` file that stores it.
pub const TOKEN_LEN: usize = 12;

/// The 12-byte token created by registration and stored in `.mi-token` (protocol.md §4.4).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Token(pub [u8; TOKEN_LEN]);

impl Token {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; TOKEN_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Keys derived at login (protocol.md §4.5): the device encrypts with `dev_key`/`dev_iv`,
/// the client with `app_key`/`app_iv`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// Scooter → client AES-128 key.
    pub dev_key: [u8; 16],
    /// Client → scooter AES-128 key.
    pub app_key: [u8; 16],
    /// Scooter → client nonce prefix.
    pub dev_iv: [u8; 4],
    /// Client → scooter nonce prefix.
    pub app_iv: [u8; 4],
}

impl SessionKeys {
    /// Key and IV that `role` encrypts with.
    pub fn sending(&self, role: Role) -> (&[u8; 16], &[u8; 4]) {
        match role {
            Role::Client => (&self.app_key, &self.app_iv),
            Role::Device => (&self.dev_key, &self.dev_iv),
        }
    }

    /// Key and IV that `role` decrypts with.
    pub fn receiving(&self, role: Role) -> (&[u8; 16], &[u8; 4]) {
        match role {
            Role::Client => (&self.dev_key, &self.dev_iv),
            Role::Device => (&self.app_key, &self.app_iv),
        }
    }
}

impl core::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionKeys(<redacted>)")
    }
}
