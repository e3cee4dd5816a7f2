//! The Mi-auth cryptography of protocol.md §4, as plain functions the pairing and login machines
//! (and the vector tests) call: P-256 key pairs and ECDH, the two HKDF splits, the DID encryption
//! and the login proofs.
//!
//! Every secret lives in a type that is zeroized on drop and whose `Debug` is redacted. Randomness
//! is always an argument, so a seeded generator makes every output reproducible.

use aes::Aes128;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U4, U12};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::keys::{SessionKeys, Token};

/// Length of a public key on the wire: X ‖ Y, 32 bytes each, without the SEC1 `04` prefix.
pub const PUBLIC_KEY_LEN: usize = 64;
/// Length of the DID field that registration encrypts.
pub const DID_LEN: usize = 20;
/// Length of the DID ciphertext: 20 bytes plus the 4-byte CCM tag.
pub const DID_CIPHERTEXT_LEN: usize = DID_LEN + DID_TAG_LEN;
/// Length of the CCM tag on the DID ciphertext.
pub const DID_TAG_LEN: usize = 4;
/// Length of each login random (app_random, dev_random).
pub const LOGIN_RANDOM_LEN: usize = 16;
/// Length of a login proof (an HMAC-SHA256 output).
pub const PROOF_LEN: usize = 32;
/// The fixed CCM nonce of the DID encryption (§4.3).
pub const DID_NONCE: [u8; 12] = [
    0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B,
];
/// The associated data of the DID encryption (§4.3).
pub const DID_AAD: &[u8] = b"devID";
/// HKDF info string of the registration split.
pub const SETUP_INFO: &[u8] = b"mible-setup-info";
/// HKDF info string of the login split.
pub const LOGIN_INFO: &[u8] = b"mible-login-info";

/// AES-128-CCM with a 4-byte tag and a 12-byte nonce, as both DID and UART encryption use it.
type DidCcm = ccm::Ccm<Aes128, U4, U12>;

/// What went wrong in a cryptographic step. Each message says what was expected and what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A public key on the wire had the wrong length.
    #[error("public key: expected {PUBLIC_KEY_LEN} bytes (X‖Y), got {found}")]
    PublicKeyLength {
        /// Bytes received.
        found: usize,
    },
    /// 64 bytes that are not a point on P-256.
    #[error("public key: the 64 bytes are not a point on the P-256 curve")]
    PublicKeyNotOnCurve,
    /// A private scalar of zero or not below the curve order.
    #[error("private key: not a valid P-256 scalar (zero or not below the curve order)")]
    InvalidPrivateKey,
    /// A DID ciphertext of the wrong length.
    #[error("DID ciphertext: expected {DID_CIPHERTEXT_LEN} bytes (20 + 4-byte tag), got {found}")]
    DidCiphertextLength {
        /// Bytes received.
        found: usize,
    },
    /// A DID plaintext longer than CCM with a 12-byte nonce can encrypt (16 MiB).
    #[error("DID plaintext: {found} bytes is beyond the CCM limit of 16 MiB")]
    DidPlaintextLength {
        /// Bytes given.
        found: usize,
    },
    /// The CCM tag did not verify: wrong key (a different ECDH secret) or altered bytes.
    #[error("DID ciphertext: the CCM tag does not verify (keys differ or the bytes were altered)")]
    DidTagMismatch,
}

/// A P-256 public key, kept as a validated curve point.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(p256::PublicKey);

impl PublicKey {
    /// Parses the 64-byte wire form (X ‖ Y big-endian, no `04` prefix).
    pub fn from_wire(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(CryptoError::PublicKeyLength { found: bytes.len() });
        }
        let mut sec1 = [0u8; PUBLIC_KEY_LEN + 1];
        sec1[0] = 0x04;
        sec1[1..].copy_from_slice(bytes);
        p256::PublicKey::from_sec1_bytes(&sec1)
            .map(PublicKey)
            .map_err(|_| CryptoError::PublicKeyNotOnCurve)
    }

    /// The 64-byte wire form.
    pub fn to_wire(&self) -> [u8; PUBLIC_KEY_LEN] {
        let point = self.0.to_encoded_point(false);
        let mut out = [0u8; PUBLIC_KEY_LEN];
        // An uncompressed encoding of a valid point is always 65 bytes: 04 ‖ X ‖ Y.
        if let Some(xy) = point.as_bytes().get(1..)
            && xy.len() == PUBLIC_KEY_LEN
        {
            out.copy_from_slice(xy);
        }
        out
    }
}

impl core::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Public keys are not secret; the hex form helps when comparing transcripts.
        write!(f, "PublicKey(")?;
        for b in self.to_wire() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// An ephemeral P-256 key pair; one per registration attempt, on each side (§4.1).
pub struct KeyPair {
    // `p256::SecretKey` zeroizes itself on drop.
    secret: p256::SecretKey,
    public: PublicKey,
}

impl KeyPair {
    /// A fresh key pair drawn from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_secret(p256::SecretKey::random(rng))
    }

    /// The key pair of a given 32-byte big-endian private scalar (used by test vectors).
    pub fn from_private_bytes(bytes: &[u8; 32]) -> Result<Self, CryptoError> {
        p256::SecretKey::from_slice(bytes)
            .map(Self::from_secret)
            .map_err(|_| CryptoError::InvalidPrivateKey)
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        let public = PublicKey(secret.public_key());
        KeyPair { secret, public }
    }

    /// The public half, to be sent to the peer.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// ECDH with the peer's public key: the 32-byte X coordinate of the product.
    pub fn shared_secret(&self, peer: &PublicKey) -> SharedSecret {
        let shared =
            p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.0.as_affine());
        let mut out = [0u8; 32];
        out.copy_from_slice(shared.raw_secret_bytes());
        SharedSecret(out)
    }
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("secret", &"<redacted>")
            .field("public", &self.public)
            .finish()
    }
}

/// The ECDH shared secret ("eShareKey"), input of the registration HKDF.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret(pub [u8; 32]);

impl core::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// HKDF-SHA256 with L = 64 (§4.2). `salt = None` is RFC 5869's default (32 zero bytes).
// The output length is the constant 64, far below HKDF-SHA256's limit, so `expand` cannot fail.
#[allow(clippy::expect_used)]
pub fn hkdf_sha256(ikm: &[u8], salt: Option<&[u8]>, info: &[u8]) -> Zeroizing<[u8; 64]> {
    let mut okm = Zeroizing::new([0u8; 64]);
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, okm.as_mut())
        .expect("64 bytes is within HKDF-SHA256's output limit of 8160");
    okm
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    hmac_of(key, &[data]).finalize().into_bytes().into()
}

// HMAC takes keys of any length (longer ones are hashed), so `new_from_slice` cannot fail.
#[allow(clippy::expect_used)]
fn hmac_of(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// AES-128-CCM encryption of the DID field (§4.3): returns ciphertext ‖ 4-byte tag.
/// `plaintext` is normally the 20-byte DID; other lengths are accepted (the vectors use 4 bytes).
pub fn did_encrypt(key: &[u8; 16], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = DidCcm::new(GenericArray::from_slice(key));
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(&DID_NONCE), DID_AAD, &mut buf)
        .map_err(|_| CryptoError::DidPlaintextLength {
            found: plaintext.len(),
        })?;
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// Inverse of [`did_encrypt`]: checks the tag and returns the plaintext.
pub fn did_decrypt(key: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let split =
        ciphertext
            .len()
            .checked_sub(DID_TAG_LEN)
            .ok_or(CryptoError::DidCiphertextLength {
                found: ciphertext.len(),
            })?;
    let (body, tag) = ciphertext.split_at(split);
    let cipher = DidCcm::new(GenericArray::from_slice(key));
    let mut buf = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(&DID_NONCE),
            DID_AAD,
            &mut buf,
            GenericArray::from_slice(tag),
        )
        .map_err(|_| CryptoError::DidTagMismatch)?;
    Ok(buf)
}

/// The registration split of the setup HKDF (§4.2): token, bind key and DID key A.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct RegistrationKeys {
    /// Bytes 0..12: the long-term token both sides store.
    #[zeroize(skip)]
    pub token: Token,
    /// Bytes 12..28: the bind key (computed, used by no known client).
    pub bind_key: [u8; 16],
    /// Bytes 28..44: key A, which encrypts the DID.
    pub did_key: [u8; 16],
}

impl RegistrationKeys {
    /// Derives the keys from the ECDH secret: HKDF(ikm = secret, no salt, "mible-setup-info").
    pub fn derive(secret: &SharedSecret) -> Self {
        let okm = hkdf_sha256(&secret.0, None, SETUP_INFO);
        Self::from_okm(&okm)
    }

    /// Splits a 64-byte setup HKDF output.
    pub fn from_okm(okm: &[u8; 64]) -> Self {
        let mut keys = RegistrationKeys {
            token: Token([0; 12]),
            bind_key: [0; 16],
            did_key: [0; 16],
        };
        keys.token.0.copy_from_slice(&okm[0..12]);
        keys.bind_key.copy_from_slice(&okm[12..28]);
        keys.did_key.copy_from_slice(&okm[28..44]);
        keys
    }

    /// The 24-byte DID ciphertext the client sends in R17.
    // The message is the constant 20 bytes, within CCM's length limit, so sealing cannot fail.
    #[allow(clippy::expect_used)]
    pub fn encrypt_did(&self, did: &[u8; DID_LEN]) -> [u8; DID_CIPHERTEXT_LEN] {
        let mut out = [0u8; DID_CIPHERTEXT_LEN];
        let (body, tag) = out.split_at_mut(DID_LEN);
        body.copy_from_slice(did);
        let sealed = DidCcm::new(GenericArray::from_slice(&self.did_key))
            .encrypt_in_place_detached(GenericArray::from_slice(&DID_NONCE), DID_AAD, body)
            .expect("a 20-byte message is within the CCM length limit");
        tag.copy_from_slice(&sealed);
        out
    }

    /// The device's check of R17: the tag must verify; returns the 20-byte DID.
    pub fn decrypt_did(&self, ciphertext: &[u8]) -> Result<[u8; DID_LEN], CryptoError> {
        if ciphertext.len() != DID_CIPHERTEXT_LEN {
            return Err(CryptoError::DidCiphertextLength {
                found: ciphertext.len(),
            });
        }
        let plain = Zeroizing::new(did_decrypt(&self.did_key, ciphertext)?);
        let mut did = [0u8; DID_LEN];
        did.copy_from_slice(&plain);
        Ok(did)
    }
}

impl core::fmt::Debug for RegistrationKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RegistrationKeys(<redacted>)")
    }
}

/// The two login randoms (§4.5); `salt = app ‖ dev`, `salt_inv = dev ‖ app`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRandoms {
    /// The client's 16 random bytes (L4).
    pub app: [u8; LOGIN_RANDOM_LEN],
    /// The device's 16 random bytes (L8).
    pub dev: [u8; LOGIN_RANDOM_LEN],
}

impl LoginRandoms {
    /// `app_random ‖ dev_random`, the HKDF salt and the message of the app proof.
    pub fn salt(&self) -> [u8; 32] {
        concat16(&self.app, &self.dev)
    }

    /// `dev_random ‖ app_random`, the message of the device proof.
    pub fn salt_inv(&self) -> [u8; 32] {
        concat16(&self.dev, &self.app)
    }

    /// The session keys: HKDF(ikm = token, salt, "mible-login-info") split 16/16/4/4.
    pub fn session_keys(&self, token: &Token) -> SessionKeys {
        let okm = hkdf_sha256(token.as_bytes(), Some(&self.salt()), LOGIN_INFO);
        session_keys_from_okm(&okm)
    }

    /// dev_info = HMAC-SHA256(dev_key, dev_random ‖ app_random), the device's proof (L12).
    pub fn device_proof(&self, keys: &SessionKeys) -> [u8; PROOF_LEN] {
        hmac_sha256(&keys.dev_key, &self.salt_inv())
    }

    /// app_info = HMAC-SHA256(app_key, app_random ‖ dev_random), the client's proof (L16).
    pub fn app_proof(&self, keys: &SessionKeys) -> [u8; PROOF_LEN] {
        hmac_sha256(&keys.app_key, &self.salt())
    }

    /// Constant-time check of a received device proof.
    pub fn verify_device_proof(&self, keys: &SessionKeys, proof: &[u8]) -> bool {
        hmac_of(&keys.dev_key, &[&self.salt_inv()])
            .verify_slice(proof)
            .is_ok()
    }

    /// Constant-time check of a received app proof.
    pub fn verify_app_proof(&self, keys: &SessionKeys, proof: &[u8]) -> bool {
        hmac_of(&keys.app_key, &[&self.salt()])
            .verify_slice(proof)
            .is_ok()
    }
}

/// Splits a 64-byte login HKDF output into dev_key, app_key, dev_iv, app_iv.
pub fn session_keys_from_okm(okm: &[u8; 64]) -> SessionKeys {
    let mut keys = SessionKeys {
        dev_key: [0; 16],
        app_key: [0; 16],
        dev_iv: [0; 4],
        app_iv: [0; 4],
    };
    keys.dev_key.copy_from_slice(&okm[0..16]);
    keys.app_key.copy_from_slice(&okm[16..32]);
    keys.dev_iv.copy_from_slice(&okm[32..36]);
    keys.app_iv.copy_from_slice(&okm[36..40]);
    keys
}

fn concat16(a: &[u8; 16], b: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(a);
    out[16..].copy_from_slice(b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_rejects_wrong_length_and_off_curve_points() {
        assert_eq!(
            PublicKey::from_wire(&[0u8; 63]),
            Err(CryptoError::PublicKeyLength { found: 63 })
        );
        assert_eq!(
            PublicKey::from_wire(&[0u8; 64]),
            Err(CryptoError::PublicKeyNotOnCurve)
        );
        let mut bad = KeyPair::from_private_bytes(&[7u8; 32])
            .map(|k| k.public_key().to_wire())
            .unwrap_or([0; 64]);
        bad[63] ^= 1;
        assert_eq!(
            PublicKey::from_wire(&bad),
            Err(CryptoError::PublicKeyNotOnCurve)
        );
    }

    #[test]
    fn private_key_zero_is_rejected() {
        assert!(matches!(
            KeyPair::from_private_bytes(&[0u8; 32]),
            Err(CryptoError::InvalidPrivateKey)
        ));
    }

    #[test]
    fn did_decrypt_detects_altered_ciphertext_and_bad_length() {
        let key = [3u8; 16];
        let mut sealed = did_encrypt(&key, &[9u8; 20]).unwrap_or_default();
        assert_eq!(did_decrypt(&key, &sealed).as_deref(), Ok(&[9u8; 20][..]));
        sealed[0] ^= 0x80;
        assert_eq!(did_decrypt(&key, &sealed), Err(CryptoError::DidTagMismatch));
        assert_eq!(
            did_decrypt(&key, &[1, 2, 3]),
            Err(CryptoError::DidCiphertextLength { found: 3 })
        );
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let pair = KeyPair::from_private_bytes(&[0x11; 32]).ok();
        let text = format!("{pair:?} {:?}", SharedSecret([0xAB; 32]));
        assert!(!text.contains("1111111111"));
        assert!(!text.contains("abababab"));
        let regs = RegistrationKeys::from_okm(&[0xCD; 64]);
        assert_eq!(format!("{regs:?}"), "RegistrationKeys(<redacted>)");
    }
}
