//! An emulated SIM7600 modem on a pty: answers `AT+CGPS?`, `AT+CGPS=1`, `AT+CGPS=0`,
//! `AT+CGPSINFO` and `AT+CGNSSINFO` with the byte conventions of a real modem (echo on,
//! `\r\n<info>\r\n\r\nOK\r\n`), with or without a fix, and can corrupt a reply now and then the
//! way some firmware does (a latitude cut to its first two digits).

use std::collections::VecDeque;
use std::path::PathBuf;

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use crate::emulate::handle::{Control, EmulatorHandle, Status};
use crate::emulate::nmea_receiver::{apply, write_dropping};
use crate::emulate::pty::{Pty, PtyError};
use crate::emulate::route::RoutePoint;
use crate::emulate::synth::{cgnssinfo_payload, cgpsinfo_payload};

/// Supplies the modem's current position: `None` means no fix.
pub type PositionFn = Box<dyn FnMut() -> Option<RoutePoint> + Send>;

/// The modem's behaviour, independent of any port.
pub struct ModemModel {
    position: PositionFn,
    gps_on: bool,
    echo: bool,
    corrupt_every: Option<u32>,
    info_replies: u64,
    /// Recorded answers to replay, in order: (command, exact bytes including the echo).
    script: VecDeque<(String, Vec<u8>)>,
}

impl std::fmt::Debug for ModemModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModemModel")
            .field("gps_on", &self.gps_on)
            .field("echo", &self.echo)
            .field("corrupt_every", &self.corrupt_every)
            .finish_non_exhaustive()
    }
}

impl ModemModel {
    /// A modem with GNSS off and echo on (factory state), reporting `position` once on.
    pub fn new(position: PositionFn) -> Self {
        ModemModel {
            position,
            gps_on: false,
            echo: true,
            corrupt_every: None,
            info_replies: 0,
            script: VecDeque::new(),
        }
    }

    /// Answers with the recorded bytes of an AT transcript (a capture of a real modem's port),
    /// exchange by exchange, for as long as the commands match the recording; then falls back to
    /// the modelled behaviour.
    pub fn with_transcript(mut self, transcript: &[u8]) -> Self {
        self.script = split_transcript(transcript).into();
        self
    }

    /// Corrupts every n-th position reply (cuts the latitude to its first two digits).
    pub fn with_corrupt_every(mut self, n: u32) -> Self {
        self.corrupt_every = (n > 0).then_some(n);
        self
    }

    /// Starts with GNSS already on.
    pub fn with_gps_on(mut self) -> Self {
        self.gps_on = true;
        self
    }

    /// Whether GNSS is on.
    pub fn gps_on(&self) -> bool {
        self.gps_on
    }

    /// The bytes the modem sends in answer to one command line (without its `\r`).
    pub fn respond(&mut self, command: &str) -> Vec<u8> {
        if let Some((recorded, _)) = self.script.front() {
            if recorded.eq_ignore_ascii_case(command.trim()) {
                if let Some((_, bytes)) = self.script.pop_front() {
                    return bytes;
                }
            } else {
                // The host left the recorded script: stop replaying.
                self.script.clear();
            }
        }
        let mut out = Vec::new();
        if self.echo {
            out.extend_from_slice(command.as_bytes());
            out.push(b'\r');
        }
        let cmd = command.trim().to_ascii_uppercase();
        let (info, ok) = match cmd.as_str() {
            "AT" => (None, true),
            "ATE0" => {
                self.echo = false;
                (None, true)
            }
            "ATE1" => {
                self.echo = true;
                (None, true)
            }
            "AT+CGPS?" => (Some(format!("+CGPS: {},1", u8::from(self.gps_on))), true),
            "AT+CGPS=1" | "AT+CGPS=1,1" => {
                // A real modem refuses to start a session that already runs.
                let was_on = self.gps_on;
                self.gps_on = true;
                (None, !was_on)
            }
            "AT+CGPS=0" => {
                let was_on = self.gps_on;
                self.gps_on = false;
                (None, was_on)
            }
            "AT+CGPSINFO" => (
                Some(format!("+CGPSINFO: {}", self.position_payload(false))),
                true,
            ),
            "AT+CGNSSINFO" => (
                Some(format!("+CGNSSINFO: {}", self.position_payload(true))),
                true,
            ),
            _ => (None, false),
        };
        if let Some(info) = info {
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(info.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(if ok { b"\r\nOK\r\n" } else { b"\r\nERROR\r\n" });
        out
    }

    fn position_payload(&mut self, gnss: bool) -> String {
        let point = if self.gps_on { (self.position)() } else { None };
        let mut payload = if gnss {
            cgnssinfo_payload(point.as_ref())
        } else {
            cgpsinfo_payload(point.as_ref())
        };
        if point.is_some() {
            self.info_replies = self.info_replies.saturating_add(1);
            let corrupt = self
                .corrupt_every
                .is_some_and(|n| self.info_replies.is_multiple_of(u64::from(n)));
            if corrupt {
                payload = corrupt_latitude(&payload, gnss);
            }
        }
        payload
    }
}

/// Splits a transcript into exchanges' exact bytes: each runs from its echo to the end of its
/// final result line.
fn split_transcript(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut current: Vec<u8> = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        current.extend_from_slice(line);
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        let last_part = text.rsplit('\r').next().unwrap_or(text).trim();
        if last_part == "OK" || last_part == "ERROR" || last_part.starts_with("+CME ERROR:") {
            let seg = std::mem::take(&mut current);
            let head = String::from_utf8_lossy(&seg);
            let command = head
                .split(['\r', '\n'])
                .map(str::trim)
                .find(|l| l.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("AT")))
                .unwrap_or_default()
                .to_owned();
            out.push((command, seg));
        }
    }
    out
}

/// Cuts the latitude field to two characters, as the firmware bug does.
fn corrupt_latitude(payload: &str, gnss: bool) -> String {
    let lat_index = if gnss { 4 } else { 0 };
    payload
        .split(',')
        .enumerate()
        .map(|(i, f)| {
            if i == lat_index {
                f.get(..2).unwrap_or(f)
            } else {
                f
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Configuration of [`spawn`].
#[derive(Debug)]
pub struct Sim7600ModemConfig {
    /// The modem's behaviour.
    pub model: ModemModel,
    /// Keep a symlink here pointing at the current pty.
    pub symlink: Option<PathBuf>,
}

/// Longest command line buffered; a real modem rejects longer ones too.
const MAX_COMMAND: usize = 256;

/// Starts the modem; its AT port exists when this returns.
pub fn spawn(config: Sim7600ModemConfig) -> Result<EmulatorHandle, PtyError> {
    let pty = Pty::open(config.symlink.as_deref())?;
    let (status_tx, status) = watch::channel(Status {
        path: Some(pty.path().to_owned()),
        finished: false,
    });
    let (control, control_rx) = mpsc::channel(4);
    let symlink = config.symlink.clone();
    let task = tokio::spawn(run(
        pty,
        config.model,
        config.symlink,
        status_tx,
        control_rx,
    ));
    Ok(EmulatorHandle {
        symlink,
        status,
        control,
        task,
    })
}

async fn run(
    pty: Pty,
    mut model: ModemModel,
    symlink: Option<PathBuf>,
    status: watch::Sender<Status>,
    mut control: mpsc::Receiver<Control>,
) {
    let mut pty = Some(pty);
    let mut unplugged = Vec::new();
    let mut line: Vec<u8> = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let Some(dev) = pty.as_mut() else {
            match control.recv().await {
                Some(c) => apply(c, &mut pty, &mut unplugged, symlink.as_deref(), &status),
                None => return,
            }
            continue;
        };
        let read = tokio::select! {
            r = dev.master.read(&mut buf) => r,
            c = control.recv() => {
                match c {
                    Some(c) => apply(c, &mut pty, &mut unplugged, symlink.as_deref(), &status),
                    None => return,
                }
                continue;
            }
        };
        let n = match read {
            Ok(n) if n > 0 => n,
            // No client has the port open (EIO on Linux) or it is gone: wait for one.
            Ok(_) | Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        for &b in buf.get(..n).unwrap_or_default() {
            match b {
                b'\r' => {
                    let command = String::from_utf8_lossy(&line).into_owned();
                    line.clear();
                    if command.trim().is_empty() {
                        continue;
                    }
                    let reply = model.respond(&command);
                    write_dropping(dev, &reply).await;
                }
                b'\n' => {}
                _ if line.len() < MAX_COMMAND => line.push(b),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim7600::{FinalResult, exchanges, parse_cgps_status, parse_cgpsinfo};

    fn point() -> RoutePoint {
        RoutePoint {
            time: "2024-10-24T13:17:19.2Z".parse().unwrap(),
            lat: 48.91070705,
            lon: 2.8382225666666665,
            alt_m: 17.6,
            speed_mps: 0.0,
            course_deg: 0.0,
        }
    }

    #[test]
    fn answers_have_the_real_framing() {
        let mut m = ModemModel::new(Box::new(|| Some(point())));
        assert_eq!(
            m.respond("AT+CGPS?"),
            b"AT+CGPS?\r\r\n+CGPS: 0,1\r\n\r\nOK\r\n"
        );
        assert_eq!(m.respond("AT+CGPS=1"), b"AT+CGPS=1\r\r\nOK\r\n");
        assert_eq!(m.respond("AT+CGPS=1"), b"AT+CGPS=1\r\r\nERROR\r\n");
        let reply = m.respond("AT+CGPSINFO");
        let ex = exchanges(&reply);
        let fix = parse_cgpsinfo(ex[0].payload("+CGPSINFO:").unwrap())
            .unwrap()
            .unwrap();
        assert!((fix.lat - 48.91070705).abs() < 1e-6);
        assert_eq!(m.respond("AT+CGPS=0"), b"AT+CGPS=0\r\r\nOK\r\n");
        let ex = exchanges(&m.respond("AT+CGPS?"));
        assert!(
            !parse_cgps_status(ex[0].payload("+CGPS:").unwrap())
                .unwrap()
                .on
        );
        assert_eq!(
            exchanges(&m.respond("AT+BOGUS"))[0].result,
            FinalResult::Error
        );
    }

    #[test]
    fn transcript_replays_byte_for_byte_then_falls_back() {
        let t: &[u8] = b"AT+CGPS?\r\r\n+CGPS: 0,1\r\n\r\nOK\r\nAT+CGPS=1\r\r\nOK\r\n";
        let mut m = ModemModel::new(Box::new(|| None)).with_transcript(t);
        let mut replayed = m.respond("AT+CGPS?");
        replayed.extend(m.respond("AT+CGPS=1"));
        assert_eq!(replayed, t);
        // Script exhausted: the model answers (its own state never saw the recorded CGPS=1).
        assert_eq!(m.respond("AT"), b"AT\r\r\nOK\r\n");
    }

    #[test]
    fn off_or_without_position_is_no_fix() {
        let mut m = ModemModel::new(Box::new(|| None)).with_gps_on();
        let ex = exchanges(&m.respond("AT+CGPSINFO"));
        assert_eq!(ex[0].payload("+CGPSINFO:"), Some(",,,,,,,,"));
        let mut m = ModemModel::new(Box::new(|| Some(point())));
        let ex = exchanges(&m.respond("AT+CGPSINFO"));
        assert_eq!(ex[0].payload("+CGPSINFO:"), Some(",,,,,,,,"));
    }

    #[test]
    fn every_nth_reply_is_corrupted_and_rejected() {
        let mut m = ModemModel::new(Box::new(|| Some(point())))
            .with_gps_on()
            .with_corrupt_every(3);
        let results: Vec<bool> = (0..6)
            .map(|_| {
                let ex = exchanges(&m.respond("AT+CGPSINFO"));
                parse_cgpsinfo(ex[0].payload("+CGPSINFO:").unwrap()).is_ok()
            })
            .collect();
        assert_eq!(results, [true, true, false, true, true, false]);
        let ex = exchanges(&m.respond("ATE0"));
        assert_eq!(ex[0].command.as_deref(), Some("ATE0"));
        assert_eq!(m.respond("AT"), b"\r\nOK\r\n");
    }
}
