//! The SIM7600 AT port as a byte stream: command echo, `\r\r\n+...` information lines, and the
//! final `OK`/`ERROR`, grouped into exchanges.
//!
//! With echo on (the factory default) the modem repeats the command and its `\r`, then answers in
//! V.25ter verbose form: `\r\n<info>\r\n` lines and a `\r\n<result>\r\n` final line. The parser
//! does not depend on that exact CR/LF placement: it splits on any CR or LF, drops empty lines,
//! and classifies each line. Hosts that send `\r\n` and modems with echo off work the same.

/// Longest line kept; a longer one is cut (a broken port can stream without line ends).
pub const MAX_LINE_LEN: usize = 512;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalResult {
    /// `OK`.
    Ok,
    /// `ERROR`.
    Error,
    /// `+CME ERROR: <text>`.
    CmeError(String),
}

/// One classified line of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtLine {
    /// The echo of a command (`AT...`).
    Echo(String),
    /// An information or unsolicited line (`+CGPSINFO: ...`).
    Info(String),
    /// A final result.
    Final(FinalResult),
}

/// Splits the byte stream into [`AtLine`]s.
#[derive(Debug, Default)]
pub struct AtLineReader {
    buf: Vec<u8>,
    overflowed: bool,
}

impl AtLineReader {
    /// A fresh reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the lines they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<AtLine> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                if !self.buf.is_empty() && !self.overflowed {
                    let text = String::from_utf8_lossy(&self.buf).trim().to_owned();
                    if !text.is_empty() {
                        out.push(classify(text));
                    }
                }
                self.buf.clear();
                self.overflowed = false;
            } else if self.buf.len() < MAX_LINE_LEN {
                self.buf.push(b);
            } else {
                self.overflowed = true;
            }
        }
        out
    }
}

fn classify(text: String) -> AtLine {
    if text == "OK" {
        return AtLine::Final(FinalResult::Ok);
    }
    if text == "ERROR" {
        return AtLine::Final(FinalResult::Error);
    }
    if let Some(rest) = text.strip_prefix("+CME ERROR:") {
        return AtLine::Final(FinalResult::CmeError(rest.trim().to_owned()));
    }
    if text.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("AT")) {
        return AtLine::Echo(text);
    }
    AtLine::Info(text)
}

/// One command and everything the modem answered to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The echoed command, when echo is on.
    pub command: Option<String>,
    /// Information lines, in order.
    pub info: Vec<String>,
    /// How it ended.
    pub result: FinalResult,
}

impl Exchange {
    /// The payload of the first information line with this prefix (e.g. `+CGPSINFO:`).
    pub fn payload(&self, prefix: &str) -> Option<&str> {
        self.info
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    }
}

/// Groups [`AtLine`]s into [`Exchange`]s: an exchange ends at its final result.
#[derive(Debug, Default)]
pub struct ExchangeReader {
    lines: AtLineReader,
    command: Option<String>,
    info: Vec<String>,
}

impl ExchangeReader {
    /// A fresh reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the exchanges they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Exchange> {
        let mut out = Vec::new();
        for line in self.lines.push(bytes) {
            match line {
                AtLine::Echo(cmd) => {
                    // A new echo starts a new exchange; lines before it without a final result
                    // (unsolicited output) are dropped.
                    self.command = Some(cmd);
                    self.info.clear();
                }
                AtLine::Info(text) => self.info.push(text),
                AtLine::Final(result) => out.push(Exchange {
                    command: self.command.take(),
                    info: std::mem::take(&mut self.info),
                    result,
                }),
            }
        }
        out
    }
}

/// Splits a whole transcript into exchanges.
pub fn exchanges(bytes: &[u8]) -> Vec<Exchange> {
    ExchangeReader::new().push(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_info_and_result_group() {
        let ex = exchanges(
            b"AT+CGPS?\r\r\n+CGPS: 0,1\r\n\r\nOK\r\nAT+CGPS=1\r\r\nOK\r\nAT+CGPS=1\r\r\nERROR\r\n",
        );
        assert_eq!(ex.len(), 3);
        assert_eq!(ex[0].command.as_deref(), Some("AT+CGPS?"));
        assert_eq!(ex[0].payload("+CGPS:"), Some("0,1"));
        assert_eq!(ex[1].result, FinalResult::Ok);
        assert!(ex[1].info.is_empty());
        assert_eq!(ex[2].result, FinalResult::Error);
    }

    #[test]
    fn echo_off_and_cme_errors() {
        let ex = exchanges(b"\r\n+CGPSINFO: ,,,,,,,,\r\n\r\nOK\r\n\r\n+CME ERROR: 3\r\n");
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].command, None);
        assert_eq!(ex[0].payload("+CGPSINFO:"), Some(",,,,,,,,"));
        assert_eq!(ex[1].result, FinalResult::CmeError("3".into()));
    }

    #[test]
    fn split_anywhere_gives_the_same_exchanges() {
        let input: &[u8] = b"AT+CGPSINFO\r\r\n+CGPSINFO: 4319.736021,N,00824.498574,W,150724,162016.0,176.0,0.0,\r\n\r\nOK\r\n";
        let whole = exchanges(input);
        let mut r = ExchangeReader::new();
        let mut split = Vec::new();
        for b in input {
            split.extend(r.push(std::slice::from_ref(b)));
        }
        assert_eq!(whole, split);
    }

    #[test]
    fn overlong_lines_are_dropped() {
        let mut input = b"AT+X\r\n+JUNK: ".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_LEN * 3));
        input.extend_from_slice(b"\r\nOK\r\n");
        let ex = exchanges(&input);
        assert_eq!(ex.len(), 1);
        assert!(ex[0].info.is_empty());
    }
}
