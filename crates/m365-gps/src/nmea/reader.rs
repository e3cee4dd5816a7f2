//! Splits a raw receiver byte stream into checksum-verified NMEA sentences.
//!
//! Real serial lines carry more than sentences: baud-rate garbage before the first `$`, NUL runs
//! while a receiver reboots, sentences cut short and glued to the next one, bad checksums. The
//! reader never trusts line boundaries alone: a `$` always starts a new sentence (resynchronising
//! in the middle of a line), a sentence ends at CR or LF, and only a sentence whose `*hh` checksum
//! matches (either hex case) is passed on. Everything else is counted by reason, so an operator can
//! tell a wrong baud rate (binary) from a noisy line (checksums).

/// Longest sentence accepted, from `$` to the checksum. NMEA 0183 allows 82 bytes with CR LF;
/// survey receivers send longer ones (a Trimble RMC with 8-decimal minutes is about 90), so this
/// leaves room while still bounding memory on a stream without line ends.
pub const MAX_SENTENCE_LEN: usize = 160;

/// One sentence that passed the checksum: the text between `$` and `*`, and where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSentence {
    /// 1-based line of the input on which the sentence's `$` appeared (LF bytes before it + 1).
    pub line: u64,
    /// The body: address and fields, without `$`, checksum or line end, e.g. `GPRMC,...`.
    pub body: String,
}

impl RawSentence {
    /// The comma-separated fields; index 0 is the address (`GPRMC`).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.body.split(',')
    }
}

/// Why bytes were discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The `*hh` checksum did not match the body.
    BadChecksum,
    /// The sentence ended without a `*hh` checksum (or with a malformed one).
    MissingChecksum,
    /// A byte that is not printable ASCII inside a sentence (binary noise, NUL).
    Binary,
    /// A new `$` arrived before the sentence was complete.
    Truncated,
    /// Longer than [`MAX_SENTENCE_LEN`].
    TooLong,
    /// Checksum fine, but the address is not a 5-character talker+type (or a `P...` sentence).
    BadAddress,
}

/// Counters of discarded input, by reason. Bytes outside any sentence (line noise before a `$`)
/// are counted as `noise_bytes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounts {
    /// See [`RejectReason::BadChecksum`].
    pub bad_checksum: u64,
    /// See [`RejectReason::MissingChecksum`].
    pub missing_checksum: u64,
    /// See [`RejectReason::Binary`].
    pub binary: u64,
    /// See [`RejectReason::Truncated`].
    pub truncated: u64,
    /// See [`RejectReason::TooLong`].
    pub too_long: u64,
    /// See [`RejectReason::BadAddress`].
    pub bad_address: u64,
    /// Bytes seen outside any sentence and not line ends.
    pub noise_bytes: u64,
}

impl RejectCounts {
    fn count(&mut self, reason: RejectReason) {
        let slot = match reason {
            RejectReason::BadChecksum => &mut self.bad_checksum,
            RejectReason::MissingChecksum => &mut self.missing_checksum,
            RejectReason::Binary => &mut self.binary,
            RejectReason::Truncated => &mut self.truncated,
            RejectReason::TooLong => &mut self.too_long,
            RejectReason::BadAddress => &mut self.bad_address,
        };
        *slot = slot.saturating_add(1);
    }

    /// Total rejected sentences (noise bytes not included).
    pub fn sentences(&self) -> u64 {
        self.bad_checksum
            .saturating_add(self.missing_checksum)
            .saturating_add(self.binary)
            .saturating_add(self.truncated)
            .saturating_add(self.too_long)
            .saturating_add(self.bad_address)
    }
}

/// Result of feeding bytes: sentences or rejects, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderItem {
    /// A checksum-verified sentence.
    Sentence(RawSentence),
    /// A discarded sentence and why; `line` is where its `$` was.
    Rejected {
        /// 1-based line of the `$`.
        line: u64,
        /// Why.
        reason: RejectReason,
    },
}

/// Incremental splitter: feed any chunking of the stream, get the same sentences.
#[derive(Debug, Default)]
pub struct SentenceReader {
    /// Bytes after the current `$` (without it). Empty with `in_sentence == false` between
    /// sentences.
    buf: Vec<u8>,
    in_sentence: bool,
    /// Set when the current sentence already failed (binary, too long): skip to its end.
    poisoned: Option<RejectReason>,
    /// Line of the current byte: LF bytes seen so far + 1.
    line: u64,
    sentence_line: u64,
    counts: RejectCounts,
}

impl SentenceReader {
    /// A reader at the start of a stream (line 1).
    pub fn new() -> Self {
        SentenceReader {
            line: 1,
            ..Default::default()
        }
    }

    /// Rejections so far.
    pub fn rejects(&self) -> RejectCounts {
        self.counts
    }

    /// Feeds bytes; returns the sentences and rejects they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<ReaderItem> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'$' => {
                    if self.in_sentence {
                        // Glued sentences: "...*1E$GPRMC,...". A body that already ends in a
                        // checksum is complete; anything else was cut short.
                        if let Some(reason) = self.poisoned {
                            self.reject(reason, &mut out);
                        } else if ends_with_checksum(&self.buf) {
                            self.finish(&mut out);
                        } else {
                            self.reject(RejectReason::Truncated, &mut out);
                        }
                    }
                    self.in_sentence = true;
                    self.sentence_line = self.line;
                    self.buf.clear();
                    self.poisoned = None;
                }
                b'\r' | b'\n' => {
                    if self.in_sentence {
                        self.finish(&mut out);
                    }
                    if b == b'\n' {
                        self.line = self.line.saturating_add(1);
                    }
                }
                _ if !self.in_sentence => {
                    self.counts.noise_bytes = self.counts.noise_bytes.saturating_add(1);
                }
                _ if self.poisoned.is_some() => {}
                0x20..=0x7e => {
                    if self.buf.len() >= MAX_SENTENCE_LEN {
                        self.poisoned = Some(RejectReason::TooLong);
                        self.buf.clear();
                    } else {
                        self.buf.push(b);
                    }
                }
                _ => {
                    self.poisoned = Some(RejectReason::Binary);
                    self.buf.clear();
                }
            }
        }
        out
    }

    fn reject(&mut self, reason: RejectReason, out: &mut Vec<ReaderItem>) {
        self.counts.count(reason);
        out.push(ReaderItem::Rejected {
            line: self.sentence_line,
            reason,
        });
        self.in_sentence = false;
        self.buf.clear();
        self.poisoned = None;
    }

    fn finish(&mut self, out: &mut Vec<ReaderItem>) {
        if let Some(reason) = self.poisoned {
            return self.reject(reason, out);
        }
        match verify(&self.buf) {
            Ok(body) => {
                let sentence = RawSentence {
                    line: self.sentence_line,
                    body: body.to_owned(),
                };
                out.push(ReaderItem::Sentence(sentence));
                self.in_sentence = false;
                self.buf.clear();
            }
            Err(reason) => self.reject(reason, out),
        }
    }
}

fn ends_with_checksum(buf: &[u8]) -> bool {
    matches!(buf, [.., b'*', a, b] if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
}

/// Checks `body*hh` and returns `body`. Only printable ASCII is ever stored, so the body is UTF-8.
fn verify(buf: &[u8]) -> Result<&str, RejectReason> {
    let star = buf
        .iter()
        .rposition(|&b| b == b'*')
        .ok_or(RejectReason::MissingChecksum)?;
    let (body, tail) = buf.split_at(star);
    let hex = tail.get(1..).ok_or(RejectReason::MissingChecksum)?;
    let [hi, lo] = hex else {
        return Err(RejectReason::MissingChecksum);
    };
    let want = match (hex_value(*hi), hex_value(*lo)) {
        (Some(h), Some(l)) => (h << 4) | l,
        _ => return Err(RejectReason::MissingChecksum),
    };
    let got = body.iter().fold(0u8, |acc, &b| acc ^ b);
    if got != want {
        return Err(RejectReason::BadChecksum);
    }
    let text = std::str::from_utf8(body).map_err(|_| RejectReason::Binary)?;
    let address = text.split(',').next().unwrap_or_default();
    let proprietary = address.starts_with('P') && address.len() >= 2;
    if !(address.len() == 5 || proprietary) || !address.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(RejectReason::BadAddress);
    }
    Ok(text)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentences(items: &[ReaderItem]) -> Vec<(u64, &str)> {
        items
            .iter()
            .filter_map(|i| match i {
                ReaderItem::Sentence(s) => Some((s.line, s.body.as_str())),
                ReaderItem::Rejected { .. } => None,
            })
            .collect()
    }

    const VTG: &str = "$GPVTG,,T,,M,,N,,K,N*2C";

    #[test]
    fn crlf_lf_and_lowercase_checksums() {
        let mut r = SentenceReader::new();
        let input = format!("{VTG}\r\n{VTG}\n$GPVTG,,T,,M,,N,,K,N*2c\r\n");
        let items = r.push(input.as_bytes());
        assert_eq!(
            sentences(&items),
            vec![
                (1, "GPVTG,,T,,M,,N,,K,N"),
                (2, "GPVTG,,T,,M,,N,,K,N"),
                (3, "GPVTG,,T,,M,,N,,K,N")
            ]
        );
        assert_eq!(r.rejects().sentences(), 0);
    }

    #[test]
    fn any_chunking_gives_the_same_result() {
        let input = format!("\x00\x01garbage{VTG}\r\n$GPGSA,A,1,,,,,,,,,,,,,,,*1E{VTG}\r\n");
        let whole = SentenceReader::new().push(input.as_bytes());
        let mut r = SentenceReader::new();
        let mut split = Vec::new();
        for b in input.as_bytes() {
            split.extend(r.push(std::slice::from_ref(b)));
        }
        assert_eq!(whole, split);
        assert_eq!(sentences(&whole).len(), 3);
    }

    #[test]
    fn resyncs_on_dollar_after_binary_noise() {
        let mut r = SentenceReader::new();
        let mut input = vec![0x8a, 0xb2, 0x00, b'$', b'G', 0x81];
        input.extend_from_slice(VTG.as_bytes());
        input.extend_from_slice(b"\r\n");
        let items = r.push(&input);
        assert_eq!(sentences(&items), vec![(1, "GPVTG,,T,,M,,N,,K,N")]);
        // "$G" followed by a non-ASCII byte.
        assert_eq!(r.rejects().binary, 1);
        assert_eq!(r.rejects().noise_bytes, 3);
    }

    #[test]
    fn rejects_are_counted_by_reason() {
        let mut r = SentenceReader::new();
        let long = format!("$GPTXT,{}*00\r\n", "A".repeat(MAX_SENTENCE_LEN));
        let input = format!(
            "$GPVTG,,T,,M,,N,,K,N*2D\r\n$GPVTG,,T,,M\r\n$GPRMC,000346.03,A,4808\0\0\0  \r\n{long}$GPRMC,1*zz\r\n"
        );
        let items = r.push(input.as_bytes());
        assert!(sentences(&items).is_empty());
        let c = r.rejects();
        assert_eq!(c.bad_checksum, 1);
        assert_eq!(c.missing_checksum, 2);
        assert_eq!(c.binary, 1);
        assert_eq!(c.too_long, 1);
        assert_eq!(c.sentences(), 5);
    }

    #[test]
    fn glued_sentence_after_complete_checksum_is_kept() {
        let mut r = SentenceReader::new();
        let input = "$GPGSA,A,1,,,,,,,,,,,,,,,*1E$GPRMC,235949.00,V,0000.0000,N,00000.0000,E,,,161206,,,N*44\r\n";
        let items = r.push(input.as_bytes());
        let s = sentences(&items);
        assert_eq!(s.len(), 2);
        assert!(s[1].1.starts_with("GPRMC,235949.00,V"));
    }

    #[test]
    fn unterminated_stream_stays_bounded() {
        let mut r = SentenceReader::new();
        let noise = vec![b'A'; 100_000];
        r.push(b"$");
        r.push(&noise);
        assert!(r.buf.len() <= MAX_SENTENCE_LEN);
        let items = r.push(format!("{VTG}\n").as_bytes());
        assert_eq!(r.rejects().too_long, 1);
        assert_eq!(sentences(&items).len(), 1);
    }
}
