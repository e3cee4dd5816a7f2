//! The request/response session over the UART characteristics, for every generation.
//!
//! - [`Uart`] frames, encrypts and decrypts: Mi-auth (AES-CCM with counters), XOR or plain, and
//!   turns notifications back into frames with the proto crate's reassembler. Each encryption
//!   takes the next counter, so a retried request never reuses one (§4.6.6).
//! - [`Expect`] says which answer a request waits for: same unit (reply DIR), same RW, same
//!   ATTR and the payload length asked for (§4.6.5: answers of another length are unrelated).
//! - [`exchange`] writes a batch of requests back to back (**pipelining**: the BLE module queues
//!   them, so independent reads share connection events instead of costing a round trip
//!   each), then matches answers to requests in any order, retries what stays unanswered with
//!   a fresh counter, and counts every frame it had to reject or could not match.

use std::time::Duration;

use m365_proto::encrypted::UartCipher;
use m365_proto::frame::{
    DIR_BLE, DIR_BLE_REPLY, DIR_BMS, DIR_BMS_REPLY, DIR_ESC, DIR_ESC_REPLY, Frame, RW_READ,
    RW_WRITE_ACK,
};
use m365_proto::gatt::{ATT_PAYLOAD, Char};
use m365_proto::model::Generation;
use m365_proto::reassembly::Reassembler;
use m365_proto::xor::Keystream;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::time::Instant;

use crate::counters::Counters;
use crate::error::BleError;
use crate::transport::{Transport, TransportEvent, WriteKind};

/// The framing of one session.
#[derive(Debug)]
pub enum Codec {
    /// Generation D, with the session's cipher (keys and both counters).
    MiAuth(Box<UartCipher>),
    /// Generation B, with the recovered keystream.
    Xor(Keystream),
    /// Generation A.
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

/// Framing, encryption and reassembly of one session.
#[derive(Debug)]
pub struct Uart {
    codec: Codec,
    reassembler: Reassembler,
    rng: StdRng,
    rejected_seen: u64,
}

impl Uart {
    /// A session speaking `codec`.
    pub fn new(codec: Codec) -> Uart {
        Uart {
            reassembler: Reassembler::new(codec.generation()),
            codec,
            rng: StdRng::from_entropy(),
            rejected_seen: 0,
        }
    }

    /// The generation spoken.
    pub fn generation(&self) -> Generation {
        self.codec.generation()
    }

    /// The next counter a Mi-auth frame will carry (`None` for other generations).
    pub fn next_counter(&self) -> Option<u32> {
        match &self.codec {
            Codec::MiAuth(c) => Some(c.next_tx_counter()),
            _ => None,
        }
    }

    /// The wire bytes of `frame` (Mi-auth: with the next counter and 4 fresh random bytes).
    pub fn seal(&mut self, frame: &Frame) -> Vec<u8> {
        match &mut self.codec {
            Codec::MiAuth(cipher) => {
                let mut random = [0u8; 4];
                self.rng.fill_bytes(&mut random);
                cipher.seal(frame, random)
            }
            Codec::Xor(keystream) => keystream.encrypt(frame),
            Codec::Plain => frame.encode(),
        }
    }

    /// Feeds one UART notification; returns the frames it completed. Frames that fail the
    /// checksum, the tag or the counter check are dropped and counted in `counters`.
    pub fn receive(&mut self, data: &[u8], counters: &mut Counters) -> Vec<Frame> {
        self.reassembler.push(data);
        let mut frames = Vec::new();
        while let Some(wire) = self.reassembler.next_frame() {
            let frame = match &mut self.codec {
                Codec::MiAuth(cipher) => cipher.open(&wire).map_err(|e| e.to_string()),
                Codec::Xor(keystream) => keystream.decrypt(&wire).map_err(|e| e.to_string()),
                Codec::Plain => Frame::decode(&wire).map_err(|e| e.to_string()),
            };
            match frame {
                Ok(frame) => frames.push(frame),
                Err(e) => {
                    tracing::debug!(error = %e, "rejected a UART frame");
                    // The reassembler keeps the one tally of rejected frames; a frame that
                    // passed its checksum but not the tag, the counter window or the inner
                    // framing is counted there too.
                    self.reassembler.count_rejected_tag();
                }
            }
        }
        let rejected = self.reassembler.rejects().frames();
        counters.rejected_frames += rejected.saturating_sub(self.rejected_seen);
        self.rejected_seen = rejected;
        frames
    }

    /// Drops a partial frame (after a reconnect).
    pub fn reset(&mut self) {
        self.reassembler.reset();
    }
}

/// The answer a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expect {
    /// Reply DIR (0x23 ESC, 0x24 BLE, 0x25 BMS).
    pub dir: u8,
    /// RW of the answer (read 0x01, acknowledged write 0x02).
    pub rw: u8,
    /// First register.
    pub attr: u8,
    /// Payload bytes.
    pub len: usize,
}

impl Expect {
    /// What answers `request`; `None` for requests that get no answer (RW 0x03 writes).
    pub fn of(request: &Frame) -> Option<Expect> {
        let dir = match request.dir {
            DIR_ESC => DIR_ESC_REPLY,
            DIR_BMS => DIR_BMS_REPLY,
            DIR_BLE => DIR_BLE_REPLY,
            _ => return None,
        };
        let len = match request.rw {
            RW_READ => usize::from(*request.payload.first()?),
            RW_WRITE_ACK => 1,
            _ => return None,
        };
        Some(Expect {
            dir,
            rw: request.rw,
            attr: request.attr,
            len,
        })
    }

    /// Whether `frame` is this answer.
    pub fn matches(&self, frame: &Frame) -> bool {
        frame.dir == self.dir
            && frame.rw == self.rw
            && frame.attr == self.attr
            && frame.payload.len() == self.len
    }
}

/// Limits of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// How long to wait for the answers after the last request of a round was written.
    pub request_timeout: Duration,
    /// Rounds after the first for requests still unanswered.
    pub retries: u32,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            request_timeout: Duration::from_secs(2),
            retries: 2,
        }
    }
}

/// Why an exchange ended without all answers.
#[derive(Debug)]
pub enum ExchangeError {
    /// The link went down (the answers received so far are lost).
    LinkLost,
    /// Some requests stayed unanswered after every retry (others were answered).
    Timeout(BleError),
    /// Nothing at all was answered, in any round: the link may be dead without BlueZ knowing
    /// yet.
    Silent(BleError),
    /// The radio failed.
    Failed(BleError),
}

impl From<ExchangeError> for BleError {
    fn from(e: ExchangeError) -> BleError {
        match e {
            ExchangeError::LinkLost => BleError::LinkLost,
            ExchangeError::Timeout(e) | ExchangeError::Silent(e) | ExchangeError::Failed(e) => e,
        }
    }
}

/// Writes one sealed frame in 20-byte slices to UART-W.
async fn send<T: Transport>(
    transport: &mut T,
    uart: &mut Uart,
    frame: &Frame,
    counters: &mut Counters,
) -> Result<(), ExchangeError> {
    let wire = uart.seal(frame);
    counters.frames_sent += 1;
    for chunk in wire.chunks(ATT_PAYLOAD) {
        transport
            .write(Char::UartWrite, chunk, WriteKind::WithoutResponse)
            .await
            .map_err(|e| match e {
                crate::transport::TransportError::NotConnected => ExchangeError::LinkLost,
                e => ExchangeError::Failed(e.into()),
            })?;
    }
    Ok(())
}

/// Sends `requests` pipelined and returns their answers in request order (`None` for requests
/// that expect no answer). See the module documentation.
pub async fn exchange<T: Transport>(
    transport: &mut T,
    uart: &mut Uart,
    requests: &[Frame],
    config: ExchangeConfig,
    counters: &mut Counters,
) -> Result<Vec<Option<Frame>>, ExchangeError> {
    let expects: Vec<Option<Expect>> = requests.iter().map(Expect::of).collect();
    let mut answers: Vec<Option<Frame>> = vec![None; requests.len()];
    let mut round = 0u32;
    loop {
        // Send every request of this round back to back.
        for (i, request) in requests.iter().enumerate() {
            let wanted = expects.get(i).copied().flatten().is_some();
            let open = answers.get(i).is_some_and(Option::is_none);
            // Unacknowledged writes go out in the first round only.
            if (wanted && open) || (!wanted && round == 0) {
                if round > 0 {
                    counters.retries += 1;
                }
                send(transport, uart, request, counters).await?;
            }
        }
        let deadline = Instant::now() + config.request_timeout;
        let outstanding = |answers: &[Option<Frame>]| {
            expects
                .iter()
                .zip(answers)
                .any(|(e, a)| e.is_some() && a.is_none())
        };
        while outstanding(&answers) {
            let event = tokio::select! {
                event = transport.next_event() => event,
                () = tokio::time::sleep_until(deadline) => break,
            };
            match event {
                Some(TransportEvent::Notification {
                    char: Char::UartNotify,
                    data,
                }) => {
                    for frame in uart.receive(&data, counters) {
                        let slot = expects
                            .iter()
                            .zip(answers.iter())
                            .position(|(e, a)| a.is_none() && e.is_some_and(|e| e.matches(&frame)));
                        match slot.and_then(|i| answers.get_mut(i)) {
                            Some(answer) => {
                                counters.answers += 1;
                                *answer = Some(frame);
                            }
                            None => {
                                tracing::debug!(
                                    dir = frame.dir,
                                    rw = frame.rw,
                                    attr = frame.attr,
                                    len = frame.payload.len(),
                                    "unrelated frame"
                                );
                                counters.unrelated_frames += 1;
                            }
                        }
                    }
                }
                Some(TransportEvent::Disconnected) => return Err(ExchangeError::LinkLost),
                None => {
                    return Err(ExchangeError::Failed(
                        crate::transport::TransportError::Closed.into(),
                    ));
                }
                Some(_) => {}
            }
        }
        if !outstanding(&answers) {
            return Ok(answers);
        }
        if round >= config.retries {
            let missing: Vec<String> = expects
                .iter()
                .zip(&answers)
                .filter(|(e, a)| e.is_some() && a.is_none())
                .filter_map(|(e, _)| *e)
                .map(|e| format!("{:#04x}/{:#04x}", e.dir, e.attr))
                .collect();
            counters.timeouts += missing.len() as u64;
            let error = BleError::Timeout {
                what: format!("register read {}", missing.join(", ")),
                after: config.request_timeout,
                attempts: round + 1,
            };
            return Err(if answers.iter().all(Option::is_none) {
                ExchangeError::Silent(error)
            } else {
                ExchangeError::Timeout(error)
            });
        }
        // A partial frame of the lost answer must not swallow the retry's answer.
        uart.reset();
        round += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_proto::registers::{bms, esc, write};

    #[test]
    fn expectations_follow_unit_rw_attr_and_length() {
        let e = Expect::of(&esc::read_motor_info()).unwrap();
        assert_eq!((e.dir, e.rw, e.attr, e.len), (0x23, 0x01, 0xB0, 0x20));
        let b = Expect::of(&bms::read_battery_info()).unwrap();
        assert_eq!((b.dir, b.attr, b.len), (0x25, 0x31, 0x0A));
        assert!(Expect::of(&write::lock(write::WriteMode::NoAck)).is_none());
        let ack = Expect::of(&write::lock(write::WriteMode::Ack)).unwrap();
        assert_eq!((ack.rw, ack.len), (0x02, 1));

        let good = Frame::new(0x25, 0x01, 0x31, vec![0; 10]).unwrap();
        assert!(b.matches(&good));
        let short = Frame::new(0x25, 0x01, 0x31, vec![0; 8]).unwrap();
        assert!(!b.matches(&short), "another length is unrelated");
        let other_unit = Frame::new(0x23, 0x01, 0x31, vec![0; 10]).unwrap();
        assert!(!b.matches(&other_unit));
    }

    #[test]
    fn corrupted_frames_are_counted_and_good_ones_still_come_through() {
        let mut uart = Uart::new(Codec::Plain);
        let mut counters = Counters::default();
        let answer = Frame::new(0x23, 0x01, 0x25, vec![0x26, 0x07])
            .unwrap()
            .encode();
        let mut bad = answer.clone();
        bad[6] ^= 0xFF;
        assert!(uart.receive(&bad, &mut counters).is_empty());
        assert_eq!(counters.rejected_frames, 1);
        let frames = uart.receive(&answer, &mut counters);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].payload, [0x26, 0x07]);
        assert_eq!(counters.rejected_frames, 1);
    }

    #[test]
    fn mi_auth_frames_with_a_bad_tag_or_a_replayed_counter_are_rejected() {
        let keys = m365_proto::keys::SessionKeys {
            dev_key: [1; 16],
            app_key: [2; 16],
            dev_iv: [3; 4],
            app_iv: [4; 4],
        };
        let mut device = UartCipher::new(keys.clone(), m365_proto::keys::Role::Device);
        let mut uart = Uart::new(Codec::MiAuth(Box::new(UartCipher::new(
            keys,
            m365_proto::keys::Role::Client,
        ))));
        let mut counters = Counters::default();
        let answer = Frame::new(0x23, 0x01, 0x25, vec![0x26, 0x07]).unwrap();
        let wire = device.seal(&answer, [9, 9, 9, 9]);
        assert_eq!(uart.receive(&wire, &mut counters), vec![answer.clone()]);
        assert!(uart.receive(&wire, &mut counters).is_empty(), "replayed");
        let mut forged = device.seal(&answer, [9, 9, 9, 9]);
        forged[6] ^= 1;
        // Keep the checksum right so only the tag can catch it.
        let n = forged.len();
        let ck = m365_proto::checksum::checksum_le(&forged[2..n - 2]);
        forged[n - 2..].copy_from_slice(&ck);
        assert!(uart.receive(&forged, &mut counters).is_empty(), "bad tag");
        assert_eq!(counters.rejected_frames, 2);
    }

    #[test]
    fn mi_auth_counters_advance_per_frame() {
        let keys = m365_proto::keys::SessionKeys {
            dev_key: [1; 16],
            app_key: [2; 16],
            dev_iv: [3; 4],
            app_iv: [4; 4],
        };
        let mut uart = Uart::new(Codec::MiAuth(Box::new(UartCipher::new(
            keys,
            m365_proto::keys::Role::Client,
        ))));
        assert_eq!(uart.next_counter(), Some(0));
        let a = uart.seal(&esc::read_range());
        let b = uart.seal(&esc::read_range());
        assert_ne!(a, b, "a retried request gets a fresh counter");
        assert_eq!((a[3], a[4]), (0, 0));
        assert_eq!((b[3], b[4]), (1, 0));
        assert_eq!(uart.next_counter(), Some(2));
    }
}
