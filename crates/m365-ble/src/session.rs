//! The client's request/response session over the UART characteristics, for every generation:
//! a thin async loop around two sans-IO pieces of `m365-proto`.
//!
//! - [`Uart`]: the shared [`UartCodec`] (framing, encryption, reassembly; the simulator uses the
//!   same one) plus the random source Mi-auth frames draw from. Each seal takes the next
//!   counter, so a retried request never reuses one (§4.6.6).
//! - [`exchange`]: drives one [`Exchange`] (pipelining, matching answers to requests, retries,
//!   acknowledgement and probe deadlines: see `m365_proto::exchange`) over a [`Transport`],
//!   counting every frame it had to reject or could not match. `E0`–`E3` on UPNP ends the
//!   exchange (the session is gone).

use m365_proto::control::{Control, Refusal};
use m365_proto::exchange::{Exchange, Matched, Outcome};
pub use m365_proto::exchange::{ExchangeConfig, Expect, is_usable_answer};
use m365_proto::frame::Frame;
use m365_proto::gatt::{ATT_PAYLOAD, Char};
use m365_proto::login::LoginError;
use m365_proto::model::Generation;
pub use m365_proto::uart::{Codec, UartCodec};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::time::Instant;

use crate::counters::Counters;
use crate::error::BleError;
use crate::transport::{Transport, TransportError, TransportEvent, WriteKind};

/// The client's UART: the shared codec and the random bytes its Mi-auth frames carry.
#[derive(Debug)]
pub struct Uart {
    codec: UartCodec,
    rng: StdRng,
    rejected_seen: u64,
}

impl Uart {
    /// A session speaking `codec`.
    pub fn new(codec: Codec) -> Uart {
        Uart {
            codec: UartCodec::new(codec),
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
        self.codec.next_counter()
    }

    /// The wire bytes of `frame` (Mi-auth: with the next counter and 4 fresh random bytes);
    /// `None` only for a Mi-auth session without keys, which the client never builds.
    pub fn seal(&mut self, frame: &Frame) -> Option<Vec<u8>> {
        let mut random = [0u8; 4];
        self.rng.fill_bytes(&mut random);
        self.codec.seal(frame, random)
    }

    /// Feeds one UART notification; returns the frames it completed. Frames that fail the
    /// checksum, the tag or the counter check are dropped and counted in `counters`.
    pub fn receive(&mut self, data: &[u8], counters: &mut Counters) -> Vec<Frame> {
        self.codec.push(data);
        let mut frames = Vec::new();
        while let Some(frame) = self.codec.next_frame() {
            match frame {
                Ok(frame) => frames.push(frame),
                Err(e) => tracing::debug!(error = %e, "rejected a UART frame"),
            }
        }
        let rejected = self.codec.rejected_frames();
        counters.rejected_frames += rejected.saturating_sub(self.rejected_seen);
        self.rejected_seen = rejected;
        frames
    }

    /// Drops a partial frame (after a reconnect, or before a retry).
    pub fn reset(&mut self) {
        self.codec.reset();
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
    let wire = uart.seal(frame).ok_or_else(|| {
        ExchangeError::Failed(BleError::Unsupported(
            "a Mi-auth frame without session keys".into(),
        ))
    })?;
    counters.frames_sent += 1;
    for chunk in wire.chunks(ATT_PAYLOAD) {
        transport
            .write(Char::UartWrite, chunk, WriteKind::WithoutResponse)
            .await
            .map_err(|e| match e {
                TransportError::NotConnected => ExchangeError::LinkLost,
                e => ExchangeError::Failed(e.into()),
            })?;
    }
    Ok(())
}

/// What an exchange's outcome means to the caller.
fn conclude(
    outcome: Outcome,
    config: &ExchangeConfig,
    counters: &mut Counters,
) -> Result<Vec<Option<Frame>>, ExchangeError> {
    match outcome {
        Outcome::Answered(answers) => Ok(answers),
        Outcome::NoFirstAnswer => Err(ExchangeError::Silent(BleError::Timeout {
            what: "the first answer on a reused session".into(),
            after: config.first_answer_timeout.unwrap_or_default(),
            attempts: 1,
        })),
        Outcome::Unanswered {
            missing,
            rounds,
            any_answered,
        } => {
            counters.timeouts += missing.len() as u64;
            let names: Vec<String> = missing
                .iter()
                .map(|(dir, attr)| format!("{dir:#04x}/{attr:#04x}"))
                .collect();
            let error = BleError::Timeout {
                what: format!("register read {}", names.join(", ")),
                after: config.request_timeout,
                attempts: rounds,
            };
            Err(if any_answered {
                ExchangeError::Timeout(error)
            } else {
                ExchangeError::Silent(error)
            })
        }
    }
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
    let mut ex = Exchange::new(requests.to_vec(), config, Instant::now().into_std());
    loop {
        let mut sent = false;
        while let Some(transmit) = ex.poll_transmit() {
            if transmit.discard_partial {
                uart.reset();
            }
            if transmit.retry {
                counters.retries += 1;
            }
            send(transport, uart, &transmit.frame, counters).await?;
            sent = true;
        }
        if sent {
            ex.round_sent(Instant::now().into_std());
        }
        if let Some(outcome) = ex.poll_outcome() {
            return conclude(outcome, &config, counters);
        }
        let Some(until) = ex.poll_timeout() else {
            // Unreachable for a well-formed exchange: it always waits or is over.
            return Err(ExchangeError::Failed(BleError::Unsupported(
                "an exchange with nothing to wait for".into(),
            )));
        };
        let event = tokio::select! {
            event = transport.next_event() => event,
            () = tokio::time::sleep_until(Instant::from_std(until)) => {
                ex.handle_timeout(Instant::now().into_std());
                continue;
            }
        };
        match event {
            Some(TransportEvent::Notification {
                char: Char::UartNotify,
                data,
            }) => {
                for frame in uart.receive(&data, counters) {
                    let (dir, rw, attr, len) =
                        (frame.dir, frame.rw, frame.attr, frame.payload.len());
                    match ex.handle_frame(Instant::now().into_std(), frame) {
                        Matched::Answer(_) => counters.answers += 1,
                        Matched::Unrelated => {
                            tracing::debug!(dir, rw, attr, len, "unrelated frame");
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
            None => return Err(ExchangeError::Failed(TransportError::Closed.into())),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_proto::encrypted::UartCipher;
    use m365_proto::registers::esc;

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
        let mut uart = Uart::new(Codec::MiAuth(Some(Box::new(UartCipher::new(
            keys,
            m365_proto::keys::Role::Client,
        )))));
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
        let mut uart = Uart::new(Codec::MiAuth(Some(Box::new(UartCipher::new(
            keys,
            m365_proto::keys::Role::Client,
        )))));
        assert_eq!(uart.next_counter(), Some(0));
        let a = uart.seal(&esc::read_range()).unwrap();
        let b = uart.seal(&esc::read_range()).unwrap();
        assert_ne!(a, b, "a retried request gets a fresh counter");
        assert_eq!((a[3], a[4]), (0, 0));
        assert_eq!((b[3], b[4]), (1, 0));
        assert_eq!(uart.next_counter(), Some(2));
    }
}
