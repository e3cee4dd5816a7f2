//! Which protocol generation to speak (protocol.md §5.6): forced by the configuration, else
//! what the GATT table shows (FE95 with UPNP and AVDTP: Mi-auth, D; FE95 with KEY: XOR, B; only
//! the Nordic UART: send a plain probe, an answer means A), with the advertised manufacturer
//! data as the first hint. Also the two generation-specific set-ups that need the radio: the
//! plain probe (sent twice before silence counts, and answered only by a valid plain frame
//! from the ESC register asked) and the XOR keystream recovery.

use std::time::Duration;

use m365_proto::frame::Frame;
use m365_proto::gatt::{ATT_PAYLOAD, CHAR_KEY, Char};
use m365_proto::model::{Detected, GattDetection, Generation, PLAIN_PROBE};
use m365_proto::reassembly::Reassembler;
use m365_proto::registers::answer;
use m365_proto::xor::Keystream;
use tokio::time::Instant;

use crate::error::BleError;
use crate::transport::{Transport, TransportError, TransportEvent, WriteKind};

/// What to do after looking at the GATT table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// Speak this generation.
    Use(Generation),
    /// Only the Nordic UART: send the plain probe; an answer means generation A.
    Probe,
}

/// Picks the generation from the configuration (`forced`), the advertisement and the GATT
/// characteristics found.
pub(crate) fn select(
    forced: Option<Generation>,
    advertised: Option<Detected>,
    gatt: GattDetection,
) -> Result<Selection, BleError> {
    if let Some(g) = forced {
        if let GattDetection::Generation(found) = gatt
            && found != g
        {
            tracing::warn!(forced = %g, detected = %found, "protocol forced by the configuration differs from what the scooter exposes");
        }
        return Ok(Selection::Use(g));
    }
    match gatt {
        GattDetection::Generation(g) => {
            if let Some(Detected::Generation(a)) = advertised
                && a != g
            {
                tracing::debug!(advertised = %a, detected = %g, "advertisement and GATT disagree; GATT wins");
            }
            Ok(Selection::Use(g))
        }
        GattDetection::ProbePlain => match advertised {
            Some(Detected::Ninebot) => Err(BleError::Unsupported(
                "the scooter announces NinebotCrypto (5A A5), which m365 does not speak".into(),
            )),
            _ => Ok(Selection::Probe),
        },
        GattDetection::NotAScooter => Err(BleError::Unsupported(
            "the device has no Nordic UART service: not a scooter of the m365 family".into(),
        )),
    }
}

/// Waits for the first frame `reassembler` completes from UART notifications.
async fn first_frame<T: Transport>(
    transport: &mut T,
    reassembler: &mut Reassembler,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, BleError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(wire) = reassembler.next_frame() {
            return Ok(Some(wire));
        }
        let event = tokio::select! {
            event = transport.next_event() => event,
            () = tokio::time::sleep_until(deadline) => return Ok(None),
        };
        match event {
            Some(TransportEvent::Notification {
                char: Char::UartNotify,
                data,
            }) => reassembler.push(&data),
            Some(TransportEvent::Disconnected) => return Err(BleError::LinkLost),
            None => return Err(TransportError::Closed.into()),
            Some(_) => {}
        }
    }
}

async fn write_frame<T: Transport>(transport: &mut T, wire: &[u8]) -> Result<(), BleError> {
    for chunk in wire.chunks(ATT_PAYLOAD) {
        transport
            .write(Char::UartWrite, chunk, WriteKind::WithoutResponse)
            .await?;
    }
    Ok(())
}

/// Times the plain probe is sent before silence is taken for NinebotCrypto: one lost
/// notification must not make a generation-A scooter "unsupported".
pub(crate) const PROBE_ATTEMPTS: u32 = 2;

/// Sends the plain probe (read ESC 0x1A, §5.6 step 4), up to [`PROBE_ATTEMPTS`] times;
/// `Ok(true)` when a valid plain frame answers it (same unit and register; any other frame,
/// or bytes that are no plain frame, do not count).
pub(crate) async fn probe_plain<T: Transport>(
    transport: &mut T,
    timeout: Duration,
) -> Result<bool, BleError> {
    let Ok(probe) = Frame::decode(&PLAIN_PROBE) else {
        return Ok(false);
    };
    for attempt in 1..=PROBE_ATTEMPTS {
        write_frame(transport, &PLAIN_PROBE).await?;
        let mut reassembler = Reassembler::new(Generation::Plain);
        let deadline = Instant::now() + timeout;
        while let Some(wire) = first_frame(
            transport,
            &mut reassembler,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?
        {
            match Frame::decode(&wire) {
                Ok(frame) if answer::is_answer(&probe, &frame) => return Ok(true),
                Ok(frame) => {
                    tracing::debug!(dir = frame.dir, attr = frame.attr, "not the probe's answer");
                }
                Err(e) => tracing::debug!(error = %e, "not a plain frame"),
            }
        }
        tracing::debug!(attempt, "no answer to the plain probe");
    }
    Ok(false)
}

/// Generation B: reads the KEY characteristic and extends the keystream from the answer to
/// the all-zero BMS read (§5.4).
pub(crate) async fn recover_keystream<T: Transport>(
    transport: &mut T,
    timeout: Duration,
) -> Result<Keystream, BleError> {
    let key = transport.read(CHAR_KEY).await?;
    let mut keystream = Keystream::new(key);
    let mut reassembler = Reassembler::new(Generation::Xor);
    for _ in 0..3 {
        write_frame(transport, &keystream.recovery_request()).await?;
        if let Some(wire) = first_frame(transport, &mut reassembler, timeout).await? {
            match keystream.extend_from_zero_read(&wire) {
                Ok(added) => {
                    tracing::debug!(added, total = keystream.len(), "XOR keystream recovered");
                    return Ok(keystream);
                }
                Err(e) => tracing::debug!(error = %e, "not the key-recovery answer"),
            }
        }
    }
    Err(BleError::Timeout {
        what: "the XOR key-recovery read (BMS 0x50)".into(),
        after: timeout,
        attempts: 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gatt_decides_unless_forced() {
        let d = GattDetection::Generation(Generation::MiAuth);
        assert_eq!(
            select(None, None, d).unwrap(),
            Selection::Use(Generation::MiAuth)
        );
        assert_eq!(
            select(
                None,
                Some(Detected::Generation(Generation::Plain)),
                GattDetection::Generation(Generation::Xor)
            )
            .unwrap(),
            Selection::Use(Generation::Xor)
        );
        assert_eq!(
            select(Some(Generation::Plain), None, d).unwrap(),
            Selection::Use(Generation::Plain)
        );
    }

    #[test]
    fn nus_only_needs_a_probe_unless_ninebot_is_announced() {
        assert_eq!(
            select(None, None, GattDetection::ProbePlain).unwrap(),
            Selection::Probe
        );
        assert!(matches!(
            select(None, Some(Detected::Ninebot), GattDetection::ProbePlain),
            Err(BleError::Unsupported(_))
        ));
        assert!(matches!(
            select(None, None, GattDetection::NotAScooter),
            Err(BleError::Unsupported(_))
        ));
    }
}
