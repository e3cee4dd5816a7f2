//! The request/response session over the UART characteristics, for every generation.
//!
//! - [`Uart`] frames, encrypts and decrypts: Mi-auth (AES-CCM with counters), XOR or plain, and
//!   turns notifications back into frames with the proto crate's reassembler. Each encryption
//!   takes the next counter, so a retried request never reuses one (§4.6.6).
//! - Matching: a frame answers the first open request it answers exactly (same unit, RW,
//!   register and length, [`Expect`]); failing that, the first open request it can stand for
//!   ([`is_usable_answer`]: real scooters answer with RW 0x02 or another length, §5.3,
//!   §4.6.5), but a one-byte write acknowledgement is never taken for register data. Frames
//!   that answer nothing open are counted as unrelated.
//! - [`exchange`] writes a batch of requests back to back (**pipelining**: the BLE module queues
//!   them, so independent reads share connection events instead of costing a round trip
//!   each), then matches answers to requests in any order, retries unanswered reads with a
//!   fresh counter, and counts every frame it had to reject or could not match. Acknowledged
//!   writes wait at most `ack_timeout` for their acknowledgement and are never repeated
//!   (§11a Q7: the read-back decides); `E0`–`E3` on UPNP ends the exchange (the session is
//!   gone).

use std::time::Duration;

use m365_proto::control::{Control, Refusal};
use m365_proto::encrypted::UartCipher;
use m365_proto::frame::{Frame, RW_READ, RW_WRITE_ACK};
use m365_proto::gatt::{ATT_PAYLOAD, Char};
use m365_proto::login::LoginError;
use m365_proto::model::Generation;
use m365_proto::reassembly::Reassembler;
use m365_proto::registers::answer::{self, expected_len, reply_dir};
use m365_proto::registers::write::WriteAck;
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
        Some(Expect {
            dir: reply_dir(request.dir)?,
            rw: request.rw,
            attr: request.attr,
            len: expected_len(request)?,
        })
    }

    /// Whether `frame` is exactly this answer: same unit, RW, register and length. Answers
    /// that differ in RW or length may still be usable: see [`is_usable_answer`].
    pub fn matches(&self, frame: &Frame) -> bool {
        frame.dir == self.dir
            && frame.rw == self.rw
            && frame.attr == self.attr
            && frame.payload.len() == self.len
    }
}

/// Whether `frame` can stand for the answer to `request` although it is not the exact one
/// (protocol.md §5.3, §4.6.5: real scooters answer with RW 0x01 or 0x02, and not always with
/// the length asked for). Same unit and register as [`answer::is_answer`], and beyond that:
/// an answer to a read must carry at least one whole register, so a one-byte write
/// acknowledgement never passes as register data; an answer to an acknowledged write must
/// decode as an acknowledgement ([`WriteAck::decode`]), so read data never passes as one.
pub fn is_usable_answer(request: &Frame, frame: &Frame) -> bool {
    answer::is_answer(request, frame)
        && match request.rw {
            RW_READ => frame.payload.len() >= 2,
            RW_WRITE_ACK => WriteAck::decode(frame).is_ok(),
            _ => false,
        }
}

/// The open request `frame` answers: the first one it answers exactly, else the first one it
/// can stand for ([`is_usable_answer`]); `None` when it answers nothing still open.
fn slot_for(requests: &[Frame], answers: &[Option<Frame>], frame: &Frame) -> Option<usize> {
    let open = |i: &usize| answers.get(*i).is_some_and(Option::is_none);
    let exact = (0..requests.len()).filter(open).find(|&i| {
        requests
            .get(i)
            .is_some_and(|r| answer::is_exact_answer(r, frame))
    });
    exact.or_else(|| {
        (0..requests.len())
            .filter(open)
            .find(|&i| requests.get(i).is_some_and(|r| is_usable_answer(r, frame)))
    })
}

/// What a request needs before its exchange can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A read: answered, or retried, or the exchange fails.
    Answer,
    /// An acknowledged write (RW 0x02): the acknowledgement is waited for `ack_timeout` and
    /// never retried; without it the caller's read-back decides (§11a Q7).
    Ack,
    /// An unacknowledged write (RW 0x03): sent once, nothing comes back.
    Nothing,
}

impl Need {
    fn of(request: &Frame) -> Need {
        match Expect::of(request) {
            None => Need::Nothing,
            Some(_) if request.rw == RW_WRITE_ACK => Need::Ack,
            Some(_) => Need::Answer,
        }
    }
}

/// Limits of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// How long to wait for the answers after the last request of a round was written.
    pub request_timeout: Duration,
    /// Rounds after the first for requests still unanswered.
    pub retries: u32,
    /// How long an acknowledged write (RW 0x02) waits for its acknowledgement before the
    /// read-back decides instead (§11a Q7: about a second).
    pub ack_timeout: Duration,
    /// When set, the exchange ends as [`ExchangeError::Silent`] if no valid frame at all came
    /// this long after the first round was written: the probe of a reused session.
    pub first_answer_timeout: Option<Duration>,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            request_timeout: Duration::from_secs(2),
            retries: 2,
            ack_timeout: Duration::from_secs(1),
            first_answer_timeout: None,
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
    /// yet, or (with [`ExchangeConfig::first_answer_timeout`]) the session is not the
    /// scooter's.
    Silent(BleError),
    /// The scooter said on UPNP that it holds no session for us (`E0`–`E3`): log in again.
    Refused(Refusal),
    /// The radio failed.
    Failed(BleError),
}

impl From<ExchangeError> for BleError {
    fn from(e: ExchangeError) -> BleError {
        match e {
            ExchangeError::LinkLost => BleError::LinkLost,
            ExchangeError::Refused(r) => BleError::Login(LoginError::Refused(r)),
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
/// that expect no answer, and for acknowledged writes whose acknowledgement did not come in
/// time). See the module documentation.
pub async fn exchange<T: Transport>(
    transport: &mut T,
    uart: &mut Uart,
    requests: &[Frame],
    config: ExchangeConfig,
    counters: &mut Counters,
) -> Result<Vec<Option<Frame>>, ExchangeError> {
    let needs: Vec<Need> = requests.iter().map(Need::of).collect();
    let mut answers: Vec<Option<Frame>> = vec![None; requests.len()];
    let open = |answers: &[Option<Frame>], need: Need| {
        needs
            .iter()
            .zip(answers)
            .any(|(n, a)| *n == need && a.is_none())
    };
    let start = Instant::now();
    let ack_deadline = start + config.ack_timeout;
    let mut probe_deadline = config.first_answer_timeout.map(|t| start + t);
    let mut round = 0u32;
    loop {
        // Send every request of this round back to back; later rounds only re-send reads.
        for (i, request) in requests.iter().enumerate() {
            let need = needs.get(i).copied().unwrap_or(Need::Nothing);
            let unanswered = answers.get(i).is_some_and(Option::is_none);
            if round == 0 || (need == Need::Answer && unanswered) {
                if round > 0 {
                    counters.retries += 1;
                }
                // Each send seals again with the next counter (§4.6.6).
                send(transport, uart, request, counters).await?;
            }
        }
        let round_deadline = Instant::now() + config.request_timeout;
        loop {
            // Reads keep the round open; acknowledgements only until their own deadline.
            let until = if open(&answers, Need::Answer) {
                round_deadline
            } else if open(&answers, Need::Ack) && Instant::now() < ack_deadline {
                ack_deadline
            } else {
                return Ok(answers);
            };
            let until = probe_deadline.map_or(until, |p| p.min(until));
            let event = tokio::select! {
                event = transport.next_event() => event,
                () = tokio::time::sleep_until(until) => {
                    if probe_deadline.is_some_and(|p| Instant::now() >= p) {
                        let error = BleError::Timeout {
                            what: "the first answer on a reused session".into(),
                            after: config.first_answer_timeout.unwrap_or_default(),
                            attempts: 1,
                        };
                        return Err(ExchangeError::Silent(error));
                    }
                    if open(&answers, Need::Answer) {
                        break;
                    }
                    // Only acknowledgements were missing: the read-back decides.
                    continue;
                }
            };
            match event {
                Some(TransportEvent::Notification {
                    char: Char::UartNotify,
                    data,
                }) => {
                    for frame in uart.receive(&data, counters) {
                        // Any frame that decrypted proves the session is the scooter's.
                        probe_deadline = None;
                        match slot_for(requests, &answers, &frame).and_then(|i| answers.get_mut(i))
                        {
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
                Some(TransportEvent::Notification {
                    char: Char::Upnp,
                    data,
                }) if uart.generation() == Generation::MiAuth => {
                    if let Ok(Control::Refused(refusal)) = Control::parse(&data) {
                        tracing::info!(%refusal, "the scooter refused the session");
                        return Err(ExchangeError::Refused(refusal));
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
        if round >= config.retries {
            let missing: Vec<String> = requests
                .iter()
                .zip(&needs)
                .zip(&answers)
                .filter(|((_, n), a)| **n == Need::Answer && a.is_none())
                .map(|((r, _), _)| format!("{:#04x}/{:#04x}", r.dir, r.attr))
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
    use m365_proto::registers::settings::KersLevel;
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
        assert!(!b.matches(&short), "another length is not the exact answer");
        let other_unit = Frame::new(0x23, 0x01, 0x31, vec![0; 10]).unwrap();
        assert!(!b.matches(&other_unit));
    }

    #[test]
    fn usable_answers_differ_in_rw_or_length_but_never_pass_an_ack_for_data() {
        let read = bms::read_battery_info();
        let data = |rw, len| Frame::new(0x25, rw, 0x31, vec![7; len]).unwrap();
        assert!(is_usable_answer(&read, &data(0x01, 10)));
        assert!(is_usable_answer(&read, &data(0x02, 10)), "RW 0x02");
        assert!(is_usable_answer(&read, &data(0x01, 12)), "longer");
        assert!(is_usable_answer(&read, &data(0x01, 8)), "shorter");
        assert!(!is_usable_answer(&read, &data(0x02, 1)), "a write ack");
        assert!(
            !is_usable_answer(&read, &data(0x01, 1)),
            "one byte is no register"
        );
        assert!(
            !is_usable_answer(&read, &data(0x03, 10)),
            "RW 0x03 answers nothing"
        );
        let other_reg = Frame::new(0x25, 0x01, 0x32, vec![7; 10]).unwrap();
        assert!(!is_usable_answer(&read, &other_reg));
        let other_unit = Frame::new(0x23, 0x01, 0x31, vec![7; 10]).unwrap();
        assert!(!is_usable_answer(&read, &other_unit));

        let kers = write::kers(KersLevel::Strong, write::WriteMode::Ack);
        let ack = |rw, len| Frame::new(0x23, rw, 0x7B, vec![1; len]).unwrap();
        assert!(is_usable_answer(&kers, &ack(0x02, 1)));
        assert!(is_usable_answer(&kers, &ack(0x01, 1)), "RW 0x01 ack");
        assert!(is_usable_answer(&kers, &ack(0x02, 2)), "trailing byte");
        assert!(
            !is_usable_answer(&kers, &ack(0x01, 2)),
            "read data is no ack"
        );
        let no_ack = write::kers(KersLevel::Strong, write::WriteMode::NoAck);
        assert!(!is_usable_answer(&no_ack, &ack(0x02, 1)));
    }

    #[test]
    fn exact_answers_are_placed_first_then_usable_ones_in_request_order() {
        let requests = [
            write::kers(KersLevel::Strong, write::WriteMode::Ack),
            m365_proto::registers::read_unit(m365_proto::registers::Unit::Esc, 0x7B, 6),
            m365_proto::registers::read_unit(m365_proto::registers::Unit::Esc, 0x7B, 2),
        ];
        let none = vec![None; 3];
        let short = Frame::new(0x23, 0x01, 0x7B, vec![0; 2]).unwrap();
        assert_eq!(
            slot_for(&requests, &none, &short),
            Some(2),
            "exact beats order"
        );
        let long = Frame::new(0x23, 0x01, 0x7B, vec![0; 4]).unwrap();
        assert_eq!(
            slot_for(&requests, &none, &long),
            Some(1),
            "read data skips the write"
        );
        let ack = Frame::new(0x23, 0x02, 0x7B, vec![1]).unwrap();
        assert_eq!(slot_for(&requests, &none, &ack), Some(0));
        let filled = vec![Some(ack.clone()), None, None];
        assert_eq!(
            slot_for(&requests, &filled, &ack),
            None,
            "a second ack is unrelated"
        );
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
