//! An emulated NMEA receiver on a pty: synthesises RMC/VTG/GGA/GSA along a route or from a live
//! position, or replays a capture, at real or accelerated pace, with optional injected garbage,
//! unplug and replug.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::emulate::handle::{Control, EmulatorHandle, Status};
use crate::emulate::pty::{Pty, PtyError, Unplugged, remove_symlink};
use crate::emulate::route::RoutePoint;
use crate::emulate::synth::{Talker, nmea_epoch, nmea_no_fix_epoch, sentence};

/// What the receiver sends.
pub enum NmeaFeed {
    /// One RMC/VTG/GGA/GSA cycle per point; the pace follows the points' times.
    Route(Box<dyn Iterator<Item = RoutePoint> + Send>),
    /// A recorded capture, byte for byte; the pace follows its UTC time fields.
    Replay(Vec<u8>),
    /// One cycle every `period` from whatever position the channel holds at that moment (the
    /// simulator's ride model); `None` sends a no-fix cycle, like a receiver without sky view.
    Live {
        /// The current position.
        position: watch::Receiver<Option<RoutePoint>>,
        /// Time between cycles (1 s for a 1 Hz receiver).
        period: Duration,
    },
}

impl std::fmt::Debug for NmeaFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NmeaFeed::Route(_) => f.write_str("Route(..)"),
            NmeaFeed::Replay(b) => write!(f, "Replay({} bytes)", b.len()),
            NmeaFeed::Live { period, .. } => write!(f, "Live(every {period:?})"),
        }
    }
}

/// How fast time passes for the feed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As recorded (1 Hz receivers send once a second).
    RealTime,
    /// `n` times faster than recorded.
    Accelerated(f64),
    /// No waiting at all.
    Unpaced,
}

impl Pace {
    fn scale(self, d: Duration) -> Option<Duration> {
        match self {
            Pace::RealTime => Some(d),
            Pace::Accelerated(n) if n.is_finite() && n > 0.0 => Some(d.div_f64(n)),
            Pace::Accelerated(_) | Pace::Unpaced => None,
        }
    }
}

/// Configuration of [`spawn`].
#[derive(Debug)]
pub struct NmeaReceiverConfig {
    /// What to send.
    pub feed: NmeaFeed,
    /// How fast.
    pub pace: Pace,
    /// `$GP` or `$GN` for synthesised sentences.
    pub talker: Talker,
    /// Keep a symlink here pointing at the current pty.
    pub symlink: Option<PathBuf>,
    /// Inject garbage before every n-th epoch (binary noise, a bad checksum, a cut sentence, in
    /// turn).
    pub garbage_every: Option<u32>,
}

impl NmeaReceiverConfig {
    /// A receiver following `feed` at `pace`, GP talker, no symlink, no garbage.
    pub fn new(feed: NmeaFeed, pace: Pace) -> Self {
        NmeaReceiverConfig {
            feed,
            pace,
            talker: Talker::Gp,
            symlink: None,
            garbage_every: None,
        }
    }
}

/// The position source of a [`NmeaFeed::Live`] receiver.
struct Live {
    position: watch::Receiver<Option<RoutePoint>>,
    talker: Talker,
}

impl Live {
    fn render(&self) -> Vec<u8> {
        match &*self.position.borrow() {
            Some(p) => nmea_epoch(p, self.talker).into_bytes(),
            None => nmea_no_fix_epoch().into_bytes(),
        }
    }
}

/// A chunk to write and the wait before it.
struct Chunk {
    wait: Duration,
    bytes: Vec<u8>,
}

/// The longest gap honoured between two epochs of a replayed capture (gaps in recordings are
/// not worth waiting for).
const MAX_REPLAY_GAP: Duration = Duration::from_secs(5);

/// Starts the receiver; its device exists when this returns.
pub fn spawn(config: NmeaReceiverConfig) -> Result<EmulatorHandle, PtyError> {
    let pty = Pty::open(config.symlink.as_deref())?;
    let (status_tx, status) = watch::channel(Status {
        path: Some(pty.path().to_owned()),
        finished: false,
    });
    let (control, control_rx) = mpsc::channel(4);
    let symlink = config.symlink.clone();
    let mut live = None;
    let chunks: Box<dyn Iterator<Item = Chunk> + Send> = match config.feed {
        NmeaFeed::Route(points) => Box::new(route_chunks(points, config.talker)),
        NmeaFeed::Replay(bytes) => Box::new(replay_chunks(&bytes).into_iter()),
        NmeaFeed::Live { position, period } => {
            live = Some(Live {
                position,
                talker: config.talker,
            });
            // The bytes are rendered after each wait, from the position at that moment.
            let waits = std::iter::once(Duration::ZERO).chain(std::iter::repeat(period));
            Box::new(waits.map(|wait| Chunk {
                wait,
                bytes: Vec::new(),
            }))
        }
    };
    let script = Script {
        chunks,
        live,
        pace: config.pace,
        garbage_every: config.garbage_every,
    };
    let task = tokio::spawn(run(pty, script, config.symlink, status_tx, control_rx));
    Ok(EmulatorHandle {
        symlink,
        status,
        control,
        task,
    })
}

fn route_chunks(
    points: Box<dyn Iterator<Item = RoutePoint> + Send>,
    talker: Talker,
) -> impl Iterator<Item = Chunk> + Send {
    let mut previous: Option<chrono::DateTime<chrono::Utc>> = None;
    points.map(move |p| {
        let wait = previous
            .and_then(|t| (p.time - t).to_std().ok())
            .unwrap_or_default()
            .min(MAX_REPLAY_GAP);
        previous = Some(p.time);
        Chunk {
            wait,
            bytes: nmea_epoch(&p, talker).into_bytes(),
        }
    })
}

/// Splits a capture into epochs at each change of UTC time field, with the recorded gap.
fn replay_chunks(bytes: &[u8]) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        wait: Duration::ZERO,
        bytes: Vec::new(),
    };
    let mut last_time: Option<chrono::NaiveTime> = None;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if let Some(t) = line_time(line) {
            if last_time.is_some_and(|l| l != t) {
                let gap = last_time
                    .map(|l| {
                        let mut d = t - l;
                        if d < chrono::TimeDelta::zero() {
                            d += chrono::TimeDelta::days(1);
                        }
                        d.to_std().unwrap_or_default().min(MAX_REPLAY_GAP)
                    })
                    .unwrap_or_default();
                chunks.push(std::mem::replace(
                    &mut current,
                    Chunk {
                        wait: gap,
                        bytes: Vec::new(),
                    },
                ));
            }
            last_time = Some(t);
        }
        current.bytes.extend_from_slice(line);
    }
    if !current.bytes.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The UTC field of an RMC/GGA/GNS/GLL line, if it has a readable one.
fn line_time(line: &[u8]) -> Option<chrono::NaiveTime> {
    let start = line.iter().position(|&b| b == b'$')?;
    let text = std::str::from_utf8(line.get(start + 1..)?).ok()?;
    let mut fields = text.split(',');
    let address = fields.next()?;
    let index = match address.get(2..)? {
        "RMC" | "GGA" | "GNS" => 0,
        "GLL" => 4,
        _ => return None,
    };
    let field = fields.nth(index)?;
    crate::fields::utc_time(field).ok().flatten()
}

/// Garbage the way real lines produce it, in turn.
fn garbage(n: u64) -> Vec<u8> {
    match n % 3 {
        0 => vec![0x00, 0x00, 0xfe, 0x8a, 0xb2, 0x12, 0xc1, b'\r', b'\n'],
        1 => {
            // A valid-looking sentence whose checksum is off by one.
            let good = sentence("GPTXT,01,01,02,checksum test");
            let mut bytes = good.into_bytes();
            if let Some(last_hex) = bytes.len().checked_sub(3).and_then(|i| bytes.get_mut(i)) {
                *last_hex = if *last_hex == b'0' { b'1' } else { b'0' };
            }
            bytes
        }
        _ => b"$GPGGA,1234".to_vec(),
    }
}

/// What the receiver will send, and how.
struct Script {
    chunks: Box<dyn Iterator<Item = Chunk> + Send>,
    live: Option<Live>,
    pace: Pace,
    garbage_every: Option<u32>,
}

async fn run(
    pty: Pty,
    script: Script,
    symlink: Option<PathBuf>,
    status: watch::Sender<Status>,
    mut control: mpsc::Receiver<Control>,
) {
    let Script {
        chunks,
        live,
        pace,
        garbage_every,
    } = script;
    let mut pty = Some(pty);
    let mut unplugged = Vec::new();
    let mut epoch: u64 = 0;
    let mut garbage_sent: u64 = 0;
    for chunk in chunks {
        if let Some(wait) = pace.scale(chunk.wait) {
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => break,
                    c = control.recv() => match c {
                        Some(c) => apply(c, &mut pty, &mut unplugged, symlink.as_deref(), &status),
                        None => return,
                    },
                }
            }
        }
        while let Ok(c) = control.try_recv() {
            apply(c, &mut pty, &mut unplugged, symlink.as_deref(), &status);
        }
        epoch = epoch.saturating_add(1);
        let Some(dev) = pty.as_mut() else {
            // Unplugged: the receiver's output goes nowhere.
            continue;
        };
        if garbage_every.is_some_and(|n| n > 0 && epoch.is_multiple_of(u64::from(n))) {
            write_dropping(dev, &garbage(garbage_sent)).await;
            garbage_sent = garbage_sent.saturating_add(1);
        }
        match &live {
            Some(live) => write_dropping(dev, &live.render()).await,
            None => write_dropping(dev, &chunk.bytes).await,
        }
    }
    status.send_modify(|s| s.finished = true);
    // Feed exhausted: stay plugged in, silent, still obeying unplug/replug.
    while let Some(c) = control.recv().await {
        apply(c, &mut pty, &mut unplugged, symlink.as_deref(), &status);
    }
}

/// Writes like a UART: if nobody reads and the buffer is full, unread data is dropped.
pub(crate) async fn write_dropping(pty: &mut Pty, mut bytes: &[u8]) {
    const STALL: Duration = Duration::from_millis(200);
    let mut cleared = false;
    while !bytes.is_empty() {
        match tokio::time::timeout(STALL, pty.master.write(bytes)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(_) if !cleared => {
                pty.discard_unread();
                cleared = true;
            }
            Err(_) => return,
        }
    }
}

/// Carries out an unplug or a replug. Unplugged ptys go to `unplugged`, which the emulator task
/// holds until it ends, so that no number it ever handed out names another terminal meanwhile
/// (see [`crate::emulate::pty`]); a replug always gets a new number.
pub(crate) fn apply(
    c: Control,
    pty: &mut Option<Pty>,
    unplugged: &mut Vec<Unplugged>,
    symlink: Option<&std::path::Path>,
    status: &watch::Sender<Status>,
) {
    match c {
        Control::Unplug => {
            if let Some(p) = pty.take() {
                unplugged.push(p.unplug());
                if let Some(symlink) = symlink {
                    remove_symlink(symlink);
                }
                tracing::debug!("emulated device unplugged");
            }
            status.send_modify(|s| s.path = None);
        }
        Control::Replug => {
            if pty.is_none() {
                match Pty::open(symlink) {
                    Ok(p) => {
                        let path = p.path().to_owned();
                        *pty = Some(p);
                        status.send_modify(|s| s.path = Some(path));
                    }
                    Err(e) => tracing::warn!(error = %e, "emulated device cannot replug"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_splits_at_time_changes_with_gaps() {
        let capture = b"junk\r\n$GPGGA,095257.809,x*00\r\n$GPRMC,095257.809,V*00\r\n$GPGSA,A,1*00\r\n$GPGGA,095258.809,x*00\r\n$GPRMC,000000.000,V*00\r\n";
        let chunks = replay_chunks(capture);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[0].wait, Duration::ZERO);
        assert!(chunks[0].bytes.starts_with(b"junk"));
        assert_eq!(chunks[1].wait, Duration::from_secs(1));
        // Midnight wrap with a huge gap is capped.
        assert_eq!(chunks[2].wait, MAX_REPLAY_GAP);
        let total: usize = chunks.iter().map(|c| c.bytes.len()).sum();
        assert_eq!(total, capture.len());
    }

    #[test]
    fn garbage_kinds_are_all_rejected_by_the_reader() {
        let mut r = crate::nmea::SentenceReader::new();
        for n in 0..3 {
            let items = r.push(&garbage(n));
            assert!(
                items
                    .iter()
                    .all(|i| matches!(i, crate::nmea::ReaderItem::Rejected { .. }))
            );
        }
        r.push(b"$");
        assert_eq!(r.rejects().bad_checksum, 1);
        assert_eq!(r.rejects().truncated, 1);
    }

    #[test]
    fn pace_scaling() {
        let s = Duration::from_secs(2);
        assert_eq!(Pace::RealTime.scale(s), Some(s));
        assert_eq!(
            Pace::Accelerated(4.0).scale(s),
            Some(Duration::from_millis(500))
        );
        assert_eq!(Pace::Unpaced.scale(s), None);
        assert_eq!(Pace::Accelerated(0.0).scale(s), None);
    }
}
