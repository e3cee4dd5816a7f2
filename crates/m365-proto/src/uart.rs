//! The one UART codec both ends of a session use: framing and encryption per generation
//! (Mi-auth AES-CCM with counters, XOR, plain) on the way out, reassembly of notifications
//! and decryption on the way in. The client (`m365-ble`) and the simulated scooter (`m365-sim`)
//! drive the same type, each with its own [`Role`](crate::keys::Role) in the cipher.
//!
//! Sans-IO like the rest of the crate: the 4 random bytes a Mi-auth frame carries are an
//! argument of [`UartCodec::seal`], and bytes go in through [`UartCodec::push`].
//!
//! Every frame that does not make it through (bad length, checksum, tag, counter, inner
//! framing, or a Mi-auth frame before the session has keys) is counted once, in
//! [`UartCodec::rejected_frames`].

use crate::encrypted::UartCipher;
use crate::frame::Frame;
use crate::model::Generation;
use crate::reassembly::Reassembler;
use crate::xor::Keystream;

/// The framing of one session.
#[derive(Debug)]
pub enum Codec {
    /// Generation D: AES-CCM with the session's keys and counters, once logged in (`None`
    /// until then: no UART frame is sent or accepted before login).
    MiAuth(Option<Box<UartCipher>>),
    /// Generation B, with the session's keystream.
    Xor(Keystream),
    /// Generation A: checksummed frames in the clear.
    Plain,
}

impl Codec {
    /// The generation this codec frames.
    pub fn generation(&self) -> Generation {
        match self {
            Codec::MiAuth(_) => Generation::MiAuth,
            Codec::Xor(_) => Generation::Xor,
            Codec::Plain => Generation::Plain,
        }
    }
}

/// Why a reassembled frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UartError {
    /// A Mi-auth frame arrived before the session had keys.
    #[error("an encrypted frame arrived before login")]
    NoSession,
    /// The tag, the counter window or the inner framing failed.
    #[error("{0}")]
    Rejected(String),
}

/// Framing, encryption and reassembly of one session, for either role.
#[derive(Debug)]
pub struct UartCodec {
    codec: Codec,
    reassembler: Reassembler,
}

impl UartCodec {
    /// A session speaking `codec`.
    pub fn new(codec: Codec) -> UartCodec {
        UartCodec {
            reassembler: Reassembler::new(codec.generation()),
            codec,
        }
    }

    /// The generation spoken.
    pub fn generation(&self) -> Generation {
        self.codec.generation()
    }

    /// Whether frames can be sealed and opened: always, except Mi-auth before login.
    pub fn has_session(&self) -> bool {
        !matches!(self.codec, Codec::MiAuth(None))
    }

    /// Gives a Mi-auth session its cipher (after login), or takes it away (`None`: the session
    /// ended). Returns the cipher it held. Ignored by other generations.
    pub fn set_cipher(&mut self, cipher: Option<Box<UartCipher>>) -> Option<Box<UartCipher>> {
        match &mut self.codec {
            Codec::MiAuth(held) => std::mem::replace(held, cipher),
            Codec::Xor(_) | Codec::Plain => None,
        }
    }

    /// The next counter a Mi-auth frame will carry (`None` for other generations and before
    /// login).
    pub fn next_counter(&self) -> Option<u32> {
        match &self.codec {
            Codec::MiAuth(Some(c)) => Some(c.next_tx_counter()),
            _ => None,
        }
    }

    /// The wire bytes of `frame`; Mi-auth takes the next counter and carries `random` (4 fresh
    /// random bytes per frame). `None` for Mi-auth before login.
    pub fn seal(&mut self, frame: &Frame, random: [u8; 4]) -> Option<Vec<u8>> {
        match &mut self.codec {
            Codec::MiAuth(Some(cipher)) => Some(cipher.seal(frame, random)),
            Codec::MiAuth(None) => None,
            Codec::Xor(keystream) => Some(keystream.encrypt(frame)),
            Codec::Plain => Some(frame.encode()),
        }
    }

    /// Feeds the bytes of one notification (or one write, on the device side).
    pub fn push(&mut self, bytes: &[u8]) {
        self.reassembler.push(bytes);
    }

    /// The next frame the bytes pushed so far complete: `Some(Ok(frame))`, `Some(Err(_))` for
    /// a complete frame that was rejected (and counted), `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, UartError>> {
        let wire = self.reassembler.next_frame()?;
        let frame = match &mut self.codec {
            Codec::MiAuth(Some(cipher)) => cipher
                .open(&wire)
                .map_err(|e| UartError::Rejected(e.to_string())),
            Codec::MiAuth(None) => Err(UartError::NoSession),
            Codec::Xor(keystream) => keystream
                .decrypt(&wire)
                .map_err(|e| UartError::Rejected(e.to_string())),
            Codec::Plain => Frame::decode(&wire).map_err(|e| UartError::Rejected(e.to_string())),
        };
        if frame.is_err() {
            // The reassembler keeps the one tally of rejected frames.
            self.reassembler.count_rejected_tag();
        }
        Some(frame)
    }

    /// Bytes waiting for the rest of their frame.
    pub fn buffered(&self) -> usize {
        self.reassembler.buffered()
    }

    /// Frames rejected so far, for any reason (a running total).
    pub fn rejected_frames(&self) -> u64 {
        self.reassembler.rejects().frames()
    }

    /// Drops a partial frame (a new connection, or a retry whose answer must not be swallowed
    /// by the lost one's remains). The rejected-frame total is kept.
    pub fn reset(&mut self) {
        self.reassembler.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Role, SessionKeys};

    fn keys() -> SessionKeys {
        SessionKeys {
            dev_key: [1; 16],
            app_key: [2; 16],
            dev_iv: [3; 4],
            app_iv: [4; 4],
        }
    }

    fn pair() -> (UartCodec, UartCodec) {
        let client = UartCodec::new(Codec::MiAuth(Some(Box::new(UartCipher::new(
            keys(),
            Role::Client,
        )))));
        let device = UartCodec::new(Codec::MiAuth(Some(Box::new(UartCipher::new(
            keys(),
            Role::Device,
        )))));
        (client, device)
    }

    fn deliver(to: &mut UartCodec, wire: &[u8]) -> Vec<Result<Frame, UartError>> {
        let mut out = Vec::new();
        for chunk in wire.chunks(crate::gatt::ATT_PAYLOAD) {
            to.push(chunk);
            while let Some(f) = to.next_frame() {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn client_and_device_understand_each_other_in_every_generation() {
        let request = Frame::new(0x20, 0x01, 0xB0, vec![0x20]).unwrap();
        let answer = Frame::new(0x23, 0x01, 0xB0, vec![9; 0x20]).unwrap();
        let stream = Keystream::new((0..=255u8).cycle().take(1024).collect());
        let pairs = [
            pair(),
            (
                UartCodec::new(Codec::Xor(stream.clone())),
                UartCodec::new(Codec::Xor(stream)),
            ),
            (UartCodec::new(Codec::Plain), UartCodec::new(Codec::Plain)),
        ];
        for (mut client, mut device) in pairs {
            let wire = client.seal(&request, [1, 2, 3, 4]).unwrap();
            assert_eq!(deliver(&mut device, &wire), vec![Ok(request.clone())]);
            let wire = device.seal(&answer, [5, 6, 7, 8]).unwrap();
            assert_eq!(deliver(&mut client, &wire), vec![Ok(answer.clone())]);
            assert_eq!(client.rejected_frames() + device.rejected_frames(), 0);
        }
    }

    #[test]
    fn mi_auth_before_login_neither_seals_nor_accepts_and_counts_what_it_drops() {
        let mut device = UartCodec::new(Codec::MiAuth(None));
        assert!(!device.has_session());
        let frame = Frame::new(0x23, 0x01, 0x25, vec![1, 2]).unwrap();
        assert_eq!(device.seal(&frame, [0; 4]), None);
        let (mut client, _) = pair();
        let wire = client.seal(&frame, [0; 4]).unwrap();
        assert_eq!(deliver(&mut device, &wire), vec![Err(UartError::NoSession)]);
        assert_eq!(device.rejected_frames(), 1);

        let cipher = Box::new(UartCipher::new(keys(), Role::Device));
        assert!(device.set_cipher(Some(cipher)).is_none());
        assert!(device.has_session());
        let wire = client.seal(&frame, [0; 4]).unwrap();
        assert_eq!(deliver(&mut device, &wire), vec![Ok(frame)]);
        assert!(device.set_cipher(None).is_some(), "the session ends");
        assert!(!device.has_session());
    }

    #[test]
    fn replays_and_forgeries_are_rejected_and_counted_once_each() {
        let (mut client, mut device) = pair();
        let frame = Frame::new(0x23, 0x01, 0x25, vec![0x26, 0x07]).unwrap();
        let wire = device.seal(&frame, [9; 4]).unwrap();
        assert_eq!(deliver(&mut client, &wire), vec![Ok(frame.clone())]);
        assert!(matches!(
            deliver(&mut client, &wire).as_slice(),
            [Err(UartError::Rejected(_))]
        ));
        let mut corrupt = device.seal(&frame, [9; 4]).unwrap();
        corrupt[6] ^= 0xFF;
        assert!(deliver(&mut client, &corrupt).is_empty(), "bad checksum");
        assert_eq!(client.rejected_frames(), 2);
    }

    #[test]
    fn counters_advance_per_sealed_frame() {
        let (mut client, _) = pair();
        assert_eq!(client.next_counter(), Some(0));
        let frame = Frame::new(0x20, 0x01, 0x25, vec![2]).unwrap();
        let a = client.seal(&frame, [0; 4]).unwrap();
        let b = client.seal(&frame, [0; 4]).unwrap();
        assert_ne!(a, b, "a retried request gets a fresh counter");
        assert_eq!(client.next_counter(), Some(2));
    }

    #[test]
    fn reset_drops_a_partial_frame_but_keeps_the_total() {
        let mut codec = UartCodec::new(Codec::Plain);
        let wire = Frame::new(0x23, 0x01, 0x25, vec![1; 16]).unwrap().encode();
        codec.push(&wire[..10]);
        assert_eq!(codec.buffered(), 10);
        codec.reset();
        assert_eq!(codec.buffered(), 0);
        codec.push(&wire);
        assert!(matches!(codec.next_frame(), Some(Ok(_))));
        assert_eq!(codec.next_frame(), None);
    }
}
