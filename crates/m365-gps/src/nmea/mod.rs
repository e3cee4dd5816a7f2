//! NMEA 0183: from raw receiver bytes to one [`crate::Fix`] per epoch, as gpsd reports it.
//!
//! The pipeline is [`reader::SentenceReader`] (bytes to checksum-verified sentences) →
//! [`sentence::decode`] (typed, strictly decoded fields) → [`epoch::EpochAssembler`] (one fix or
//! no-fix per receiver cycle). [`NmeaDecoder`] runs all three.
//!
//! Why not the `nmea` crate: it was evaluated first. It decodes single sentences well, but it
//! stores altitude, speed, course and DOPs as `f32` (an altitude of 1144.8 m reads back as
//! 1144.800048828125), parses seconds through `f32`, drops the raw UTC field that ties the
//! sentences of one epoch together, and its `Nmea` state machine carries altitude over from older
//! epochs. gpsd-compatible epoch combination is the part that matters here, and it needs the raw
//! fields, so the sentence layer is written out in [`sentence`] (a few hundred lines of field
//! access on top of the crate's strict field decoders).

pub mod epoch;
pub mod reader;
pub mod sentence;

pub use epoch::{Epoch, EpochAssembler};
pub use reader::{RawSentence, ReaderItem, RejectCounts, RejectReason, SentenceReader};
pub use sentence::{Sentence, SentenceError};

/// Bytes in, epochs out: reader, sentence decoder and epoch assembler in one.
#[derive(Debug, Default)]
pub struct NmeaDecoder {
    reader: SentenceReader,
    epochs: EpochAssembler,
    undecodable: u64,
}

impl NmeaDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        NmeaDecoder {
            reader: SentenceReader::new(),
            ..Default::default()
        }
    }

    /// Feeds bytes (any chunking); returns the epochs they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Epoch> {
        let mut out = Vec::new();
        for item in self.reader.push(bytes) {
            let ReaderItem::Sentence(raw) = item else {
                continue;
            };
            match sentence::decode(&raw) {
                Ok(s) => out.extend(self.epochs.push(s, raw.line)),
                Err(e) => {
                    self.undecodable = self.undecodable.saturating_add(1);
                    tracing::debug!(line = raw.line, error = %e, "NMEA sentence rejected");
                }
            }
        }
        out
    }

    /// Reports the epoch in progress: call at end of input or when the receiver goes quiet.
    pub fn flush(&mut self) -> Vec<Epoch> {
        self.epochs.flush()
    }

    /// Framing and checksum rejects so far.
    pub fn rejects(&self) -> RejectCounts {
        self.reader.rejects()
    }

    /// Checksum-valid sentences with a malformed field, so far.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }
}

/// Decodes a whole capture, including the final epoch.
pub fn decode_all(bytes: &[u8]) -> Vec<Epoch> {
    let mut d = NmeaDecoder::new();
    let mut out = d.push(bytes);
    out.extend(d.flush());
    out
}
