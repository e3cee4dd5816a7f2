//! Decoding a recorded capture file as if it came from the device: NMEA 0183 from a receiver, or
//! a SIM7600 AT-port transcript. The kind is detected from the bytes, so `m365 gps --replay`
//! takes either.

use crate::fix::Fix;
use crate::nmea::NmeaDecoder;
use crate::sim7600::{self, FinalResult};

/// What a capture contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureKind {
    /// NMEA sentences.
    Nmea,
    /// SIM7600 AT commands and answers.
    Sim7600At,
}

/// A decoded capture: one entry per epoch (NMEA) or position poll (AT), `None` for no fix.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedCapture {
    /// What was detected.
    pub kind: CaptureKind,
    /// Epochs in order.
    pub epochs: Vec<Option<Fix>>,
    /// Sentences or replies rejected as corrupt or malformed.
    pub rejected: u64,
}

/// Detects the kind: AT transcripts contain `+CGPSINFO:`/`+CGNSSINFO:`/`+CGPS:` answers or
/// `AT` command echoes at the start of a line; anything else is treated as NMEA.
pub fn detect(bytes: &[u8]) -> CaptureKind {
    let at_line = bytes
        .split(|&b| b == b'\r' || b == b'\n')
        .any(|l| l.starts_with(b"AT+CG") || l.starts_with(b"+CGPS") || l.starts_with(b"+CGNSS"));
    if at_line {
        CaptureKind::Sim7600At
    } else {
        CaptureKind::Nmea
    }
}

/// Decodes a whole capture.
pub fn decode(bytes: &[u8]) -> DecodedCapture {
    match detect(bytes) {
        CaptureKind::Nmea => {
            let mut d = NmeaDecoder::new();
            let mut epochs: Vec<Option<Fix>> = d.push(bytes).into_iter().map(|e| e.fix).collect();
            epochs.extend(d.flush().into_iter().map(|e| e.fix));
            DecodedCapture {
                kind: CaptureKind::Nmea,
                epochs,
                rejected: d.rejects().sentences().saturating_add(d.undecodable()),
            }
        }
        CaptureKind::Sim7600At => {
            let mut epochs = Vec::new();
            let mut rejected = 0u64;
            for ex in sim7600::exchanges(bytes) {
                if ex.result != FinalResult::Ok {
                    continue;
                }
                let decoded = if let Some(p) = ex.payload("+CGPSINFO:") {
                    Some(sim7600::parse_cgpsinfo(p))
                } else {
                    ex.payload("+CGNSSINFO:")
                        .map(|p| sim7600::parse_cgnssinfo(p).map(|i| i.fix))
                };
                match decoded {
                    Some(Ok(fix)) => epochs.push(fix),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "AT reply rejected");
                        rejected = rejected.saturating_add(1);
                    }
                    None => {}
                }
            }
            DecodedCapture {
                kind: CaptureKind::Sim7600At,
                epochs,
                rejected,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_both_kinds() {
        assert_eq!(detect(b"$GPVTG,,T,,M,,N,,K,N*2C\r\n"), CaptureKind::Nmea);
        assert_eq!(
            detect(b"AT+CGPSINFO\r\r\n+CGPSINFO: ,,,,,,,,\r\n\r\nOK\r\n"),
            CaptureKind::Sim7600At
        );
        assert_eq!(
            detect(b"\r\n+CGNSSINFO: ,,,,,,,,,,,,,,,\r\n"),
            CaptureKind::Sim7600At
        );
    }

    #[test]
    fn at_transcript_epochs_skip_corrupt_replies() {
        let t = b"AT+CGPSINFO\r\r\n+CGPSINFO: 4854.642423,N,00250.293354,E,241023,131719.20,17.6,0.0,\r\n\r\nOK\r\nAT+CGPSINFO\r\r\n+CGPSINFO: 48,N,00250.293354,E,241023,131719.70,17.6,0.0,\r\n\r\nOK\r\nAT+CGPSINFO\r\r\n+CGPSINFO: ,,,,,,,,\r\n\r\nOK\r\n";
        let d = decode(t);
        assert_eq!(d.kind, CaptureKind::Sim7600At);
        assert_eq!(d.rejected, 1);
        assert_eq!(d.epochs.len(), 2);
        assert!(d.epochs[0].is_some() && d.epochs[1].is_none());
    }
}
