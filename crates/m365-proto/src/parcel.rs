//! The AVDTP parcel transport (protocol.md §3.1–3.2): how Mi-auth moves byte strings longer than
//! one BLE write, with flow control, for either role.
//!
//! - [`Message`] parses and encodes the single AVDTP writes/notifications: announces
//!   (`00 00 00 type count_le16`), acknowledges (`00 00 01 code [index_le16]`), chunks
//!   (`index_le16` + ≤ 18 bytes) and the official app's inline data (`00 00 02 type data`).
//! - [`Sender`] sends one parcel: announce → wait `RCV_RDY` → all chunks → wait `RCV_OK`,
//!   resending any chunk named in an *A_LOST*.
//! - [`Receiver`] receives one expected parcel: `RCV_RDY` (only once armed for that type),
//!   chunks collected by index, `RCV_OK` when complete, *A_LOST* for the first missing chunk when
//!   the last chunk came or 200 ms passed without progress, *A_CANCEL* for a count beyond what the
//!   type may carry.
//! - [`Channel`] pairs one optional sender with one receiver and routes each AVDTP message to the
//!   right one; the pairing and login machines drive a `Channel`.
//!
//! Nothing here panics on any input: malformed messages are typed errors, stray ones are ignored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Payload bytes per chunk (20-byte ATT payload minus the 2-byte index).
pub const CHUNK_DATA_LEN: usize = 18;
/// How long a receiver waits for progress before it names the first missing chunk (§3.2).
pub const LOST_TIMEOUT: Duration = Duration::from_millis(200);
/// How many times in a row a receiver names a missing chunk without getting anything before it
/// drops the partial parcel (2 s in all). The library's limit is not known; without one a silent
/// peer would be asked forever. It stays armed, so a new announce starts over.
pub const MAX_LOST_REPEATS: u8 = 10;
/// How many chunks a sender resends for *A_LOST* acknowledges before it gives up on the parcel.
/// An honest receiver on a lossy link asks for each chunk a few times at most; a peer that keeps
/// asking would otherwise keep the sender busy forever. The transfer then fails with
/// [`ParcelError::PeerFailed`] carrying the last request.
pub const MAX_RESENDS: u16 = 32;

/// The parcel type byte of an announce (Xiaomi library names).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParcelType(pub u8);

impl ParcelType {
    /// 0x00 *PASS_THROUGH*: device info and DID ciphertext.
    pub const PASS_THROUGH: ParcelType = ParcelType(0x00);
    /// 0x03 *ECC_PUBKEY*: a 64-byte public key.
    pub const ECC_PUBKEY: ParcelType = ParcelType(0x03);
    /// 0x0A *APP_CONFIRMATION*: the client's login proof.
    pub const APP_CONFIRMATION: ParcelType = ParcelType(0x0A);
    /// 0x0B *APP_RANDOM*: the client's login random.
    pub const APP_RANDOM: ParcelType = ParcelType(0x0B);
    /// 0x0C *DEV_CONFIRMATION*: the device's login proof.
    pub const DEV_CONFIRMATION: ParcelType = ParcelType(0x0C);
    /// 0x0D *DEV_RANDOM*: the device's login random.
    pub const DEV_RANDOM: ParcelType = ParcelType(0x0D);

    fn name(self) -> Option<&'static str> {
        Some(match self {
            ParcelType::PASS_THROUGH => "PASS_THROUGH",
            ParcelType::ECC_PUBKEY => "ECC_PUBKEY",
            ParcelType::APP_CONFIRMATION => "APP_CONFIRMATION",
            ParcelType::APP_RANDOM => "APP_RANDOM",
            ParcelType::DEV_CONFIRMATION => "DEV_CONFIRMATION",
            ParcelType::DEV_RANDOM => "DEV_RANDOM",
            _ => return None,
        })
    }
}

impl core::fmt::Debug for ParcelType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}(0x{:02x})", self.0),
            None => write!(f, "ParcelType(0x{:02x})", self.0),
        }
    }
}

impl core::fmt::Display for ParcelType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self, f)
    }
}

/// An acknowledge (`00 00 01 code …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ack {
    /// `00`: all chunks received (*A_SUCCESS*, "RCV_OK").
    Success,
    /// `01`: ready for the announced chunks (*A_READY*, "RCV_RDY").
    Ready,
    /// `02`: *A_BUSY*.
    Busy,
    /// `03`: *A_TIMEOUT*.
    Timeout,
    /// `04`: *A_CANCEL*: the announced count is too large for the parcel type.
    Cancel,
    /// `05 idx_le16`: *A_LOST*: chunk `idx` is missing, send it again.
    Lost(u16),
    /// Any other code.
    Other(u8),
}

/// One AVDTP write or notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// `00 00 00 type count_le16`: a parcel of `count` chunks follows.
    Announce {
        /// Parcel type.
        kind: ParcelType,
        /// Number of chunks.
        count: u16,
    },
    /// `00 00 01 …`: flow control.
    Ack(Ack),
    /// `idx_le16 data`: chunk `index` (from 1) with up to 18 bytes.
    Chunk {
        /// Chunk index, `b0 + 256·b1`.
        index: u16,
        /// The chunk's payload bytes.
        data: &'a [u8],
    },
    /// `00 00 02 type data`: a whole short parcel in one message (official app, §3.5).
    InlineData {
        /// Parcel type.
        kind: ParcelType,
        /// The payload.
        data: &'a [u8],
    },
    /// `00 00 03 code`: acknowledge of inline data.
    InlineAck(u8),
    /// Any other control mode (e.g. the `04`/`05` greeting), kept as bytes 3.. .
    Other {
        /// Byte 2.
        mode: u8,
        /// Bytes 3.. .
        rest: &'a [u8],
    },
}

/// What went wrong in the parcel transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParcelError {
    /// A message shorter than its kind requires.
    #[error("AVDTP {what}: expected at least {expected} bytes, got {found}")]
    Truncated {
        /// Which kind of message.
        what: &'static str,
        /// Minimum length.
        expected: usize,
        /// Bytes received.
        found: usize,
    },
    /// A chunk carrying more than 18 payload bytes.
    #[error("AVDTP chunk {index}: expected at most {CHUNK_DATA_LEN} payload bytes, got {found}")]
    ChunkTooLong {
        /// Its index.
        index: u16,
        /// Payload bytes received.
        found: usize,
    },
    /// A payload too long to be counted in 16-bit chunk indices.
    #[error("parcel of {len} bytes needs more than 65535 chunks")]
    PayloadTooLong {
        /// Payload length.
        len: usize,
    },
    /// The peer cancelled our parcel (*A_CANCEL*).
    #[error("the peer cancelled our {kind} parcel (its buffer for that type is smaller)")]
    Cancelled {
        /// Our parcel's type.
        kind: ParcelType,
    },
    /// The peer answered *A_BUSY* or *A_TIMEOUT*, or kept naming chunks lost after
    /// [`MAX_RESENDS`] resends.
    #[error("the peer answered {ack:?} to our {kind} parcel")]
    PeerFailed {
        /// Our parcel's type.
        kind: ParcelType,
        /// What it said.
        ack: Ack,
    },
    /// The peer asked again for a chunk that does not exist.
    #[error("the peer asked for chunk {index} of our {kind} parcel, which has {count} chunks")]
    LostOutOfRange {
        /// Our parcel's type.
        kind: ParcelType,
        /// Requested index.
        index: u16,
        /// Chunks in the parcel.
        count: u16,
    },
}

impl ParcelError {
    /// Whether the transfer cannot continue. Non-fatal errors describe a single malformed
    /// message that the machines drop.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ParcelError::Cancelled { .. }
                | ParcelError::PeerFailed { .. }
                | ParcelError::LostOutOfRange { .. }
        )
    }
}

impl<'a> Message<'a> {
    /// Parses one AVDTP message.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, ParcelError> {
        let truncated = |what, expected| ParcelError::Truncated {
            what,
            expected,
            found: bytes.len(),
        };
        let (&[b0, b1], rest) = split2(bytes).ok_or_else(|| truncated("message", 2))?;
        let index = u16::from_le_bytes([b0, b1]);
        if index != 0 {
            if rest.len() > CHUNK_DATA_LEN {
                return Err(ParcelError::ChunkTooLong {
                    index,
                    found: rest.len(),
                });
            }
            return Ok(Message::Chunk { index, data: rest });
        }
        let (&mode, rest) = rest.split_first().ok_or_else(|| truncated("control", 3))?;
        match mode {
            // Bytes after the count are ignored: a peer may pad its writes.
            0x00 => match rest {
                &[kind, lo, hi, ..] => Ok(Message::Announce {
                    kind: ParcelType(kind),
                    count: u16::from_le_bytes([lo, hi]),
                }),
                _ => Err(truncated("announce", 6)),
            },
            0x01 => {
                let (&code, tail) = rest.split_first().ok_or_else(|| truncated("ack", 4))?;
                let ack = match code {
                    0x00 => Ack::Success,
                    0x01 => Ack::Ready,
                    0x02 => Ack::Busy,
                    0x03 => Ack::Timeout,
                    0x04 => Ack::Cancel,
                    0x05 => match tail {
                        &[lo, hi, ..] => Ack::Lost(u16::from_le_bytes([lo, hi])),
                        _ => return Err(truncated("lost ack", 6)),
                    },
                    other => Ack::Other(other),
                };
                Ok(Message::Ack(ack))
            }
            0x02 => {
                let (&kind, data) = rest.split_first().ok_or_else(|| truncated("inline", 4))?;
                Ok(Message::InlineData {
                    kind: ParcelType(kind),
                    data,
                })
            }
            0x03 => {
                let (&code, _) = rest
                    .split_first()
                    .ok_or_else(|| truncated("inline ack", 4))?;
                Ok(Message::InlineAck(code))
            }
            mode => Ok(Message::Other { mode, rest }),
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Message::Announce { kind, count } => {
                let [lo, hi] = count.to_le_bytes();
                vec![0, 0, 0, kind.0, lo, hi]
            }
            Message::Ack(ack) => match ack {
                Ack::Success => vec![0, 0, 1, 0],
                Ack::Ready => vec![0, 0, 1, 1],
                Ack::Busy => vec![0, 0, 1, 2],
                Ack::Timeout => vec![0, 0, 1, 3],
                Ack::Cancel => vec![0, 0, 1, 4],
                Ack::Lost(index) => {
                    let [lo, hi] = index.to_le_bytes();
                    vec![0, 0, 1, 5, lo, hi]
                }
                Ack::Other(code) => vec![0, 0, 1, code],
            },
            Message::Chunk { index, data } => {
                let mut out = index.to_le_bytes().to_vec();
                out.extend_from_slice(data);
                out
            }
            Message::InlineData { kind, data } => {
                let mut out = vec![0, 0, 2, kind.0];
                out.extend_from_slice(data);
                out
            }
            Message::InlineAck(code) => vec![0, 0, 3, code],
            Message::Other { mode, rest } => {
                let mut out = vec![0, 0, mode];
                out.extend_from_slice(rest);
                out
            }
        }
    }
}

fn split2(bytes: &[u8]) -> Option<(&[u8; 2], &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<2>()?;
    Some((head, rest))
}

/// Number of chunks for a payload of `len` bytes: ⌈len / 18⌉, or `None` beyond 65535.
pub fn chunk_count(len: usize) -> Option<u16> {
    u16::try_from(len.div_ceil(CHUNK_DATA_LEN)).ok()
}

/// Sends one parcel. Drive it with [`Sender::handle_ack`] and drain [`Sender::poll_transmit`].
#[derive(Debug)]
pub struct Sender {
    kind: ParcelType,
    payload: Vec<u8>,
    count: u16,
    state: SenderState,
    /// Chunks resent so far for *A_LOST*.
    resends: u16,
    out: VecDeque<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SenderState {
    AwaitReady,
    AwaitOk,
    Done,
}

impl Sender {
    /// Starts a parcel: its announce is the first transmit.
    pub fn new(kind: ParcelType, payload: Vec<u8>) -> Result<Sender, ParcelError> {
        let count =
            chunk_count(payload.len()).ok_or(ParcelError::PayloadTooLong { len: payload.len() })?;
        let mut out = VecDeque::new();
        out.push_back(Message::Announce { kind, count }.encode());
        Ok(Sender {
            kind,
            payload,
            count,
            state: SenderState::AwaitReady,
            resends: 0,
            out,
        })
    }

    /// The parcel's type.
    pub fn kind(&self) -> ParcelType {
        self.kind
    }

    /// Whether the receiver answered the announce (`RCV_RDY`).
    pub fn is_accepted(&self) -> bool {
        self.state != SenderState::AwaitReady
    }

    /// Whether the receiver confirmed the whole parcel.
    pub fn is_done(&self) -> bool {
        self.state == SenderState::Done
    }

    /// The wire bytes of chunk `index` (from 1), if it exists.
    pub fn chunk(&self, index: u16) -> Option<Vec<u8>> {
        if index == 0 || index > self.count {
            return None;
        }
        let start = usize::from(index - 1) * CHUNK_DATA_LEN;
        let end = (start + CHUNK_DATA_LEN).min(self.payload.len());
        let data = self.payload.get(start..end)?;
        Some(Message::Chunk { index, data }.encode())
    }

    /// Feeds an acknowledge from the receiver. Returns `Ok(true)` when it completed the parcel.
    ///
    /// Acks that do not fit the current state (a repeated `RCV_RDY`, a stale `RCV_OK` before the
    /// announce was answered) are ignored: BLE peers repeat themselves.
    pub fn handle_ack(&mut self, ack: Ack) -> Result<bool, ParcelError> {
        match (self.state, ack) {
            (SenderState::AwaitReady, Ack::Ready) => {
                // All chunks back to back, as every known implementation writes them.
                for index in 1..=self.count {
                    if let Some(chunk) = self.chunk(index) {
                        self.out.push_back(chunk);
                    }
                }
                self.state = SenderState::AwaitOk;
                Ok(false)
            }
            (SenderState::AwaitOk, Ack::Success) => {
                self.state = SenderState::Done;
                Ok(true)
            }
            (SenderState::AwaitOk, Ack::Lost(index)) => {
                if self.resends >= MAX_RESENDS {
                    return Err(ParcelError::PeerFailed {
                        kind: self.kind,
                        ack: Ack::Lost(index),
                    });
                }
                self.resends += 1;
                let chunk = self.chunk(index).ok_or(ParcelError::LostOutOfRange {
                    kind: self.kind,
                    index,
                    count: self.count,
                })?;
                self.out.push_back(chunk);
                Ok(false)
            }
            (SenderState::Done, _) => Ok(false),
            (_, Ack::Cancel) => Err(ParcelError::Cancelled { kind: self.kind }),
            (_, ack @ (Ack::Busy | Ack::Timeout)) => Err(ParcelError::PeerFailed {
                kind: self.kind,
                ack,
            }),
            _ => Ok(false),
        }
    }

    /// The next AVDTP write to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
}

/// Receives parcels of the type it is armed for.
#[derive(Debug, Default)]
pub struct Receiver {
    armed: Option<Armed>,
    /// The last announce that came while not armed for its type, answered once armed.
    pending: Option<(ParcelType, u16)>,
    collecting: Option<Collecting>,
    out: VecDeque<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
struct Armed {
    kind: ParcelType,
    max_len: usize,
    max_count: u16,
}

#[derive(Debug)]
struct Collecting {
    kind: ParcelType,
    /// Bytes the parcel may carry; a padded last chunk is cut to this.
    max_len: usize,
    chunks: Vec<Option<Vec<u8>>>,
    seen_last: bool,
    last_progress: Instant,
    requested: Option<u16>,
    /// A_LOST sent by the timer since the last chunk arrived.
    lost_repeats: u8,
}

impl Collecting {
    fn first_missing(&self) -> Option<u16> {
        let pos = self.chunks.iter().position(Option::is_none)?;
        u16::try_from(pos + 1).ok()
    }
}

impl Receiver {
    /// An idle receiver, armed for nothing.
    pub fn new() -> Receiver {
        Receiver::default()
    }

    /// Arms the receiver for one parcel of `kind` of at most `max_len` bytes. An announce of that
    /// type that already came is answered now. An announce of more chunks than `max_len` needs
    /// gets *A_CANCEL*; bytes beyond `max_len` in the last chunk (padding) are dropped.
    pub fn expect(&mut self, now: Instant, kind: ParcelType, max_len: usize) {
        let max_count = chunk_count(max_len).unwrap_or(u16::MAX);
        self.armed = Some(Armed {
            kind,
            max_len,
            max_count,
        });
        self.collecting = None;
        if let Some((pending_kind, count)) = self.pending.take() {
            if pending_kind == kind {
                // `count > 0` for pending announces, so this cannot complete a parcel here.
                let _ = self.on_announce(now, kind, count);
            } else {
                self.pending = Some((pending_kind, count));
            }
        }
    }

    /// Whether the receiver waits for (or is collecting) a parcel.
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Stops expecting anything; a partial parcel is dropped.
    pub fn disarm(&mut self) {
        self.armed = None;
        self.collecting = None;
    }

    /// Feeds one parsed message. Returns the parcel it completed, if any.
    pub fn handle(&mut self, now: Instant, message: &Message<'_>) -> Option<(ParcelType, Vec<u8>)> {
        match *message {
            Message::Announce { kind, count } => self.on_announce(now, kind, count),
            Message::Chunk { index, data } => self.on_chunk(now, index, data),
            Message::InlineData { kind, data } => {
                let armed = self.armed?;
                if armed.kind != kind || self.collecting.is_some() {
                    return None;
                }
                self.disarm();
                self.out.push_back(Message::InlineAck(0).encode());
                Some((kind, data.iter().take(armed.max_len).copied().collect()))
            }
            Message::Ack(_) | Message::InlineAck(_) | Message::Other { .. } => None,
        }
    }

    fn on_announce(
        &mut self,
        now: Instant,
        kind: ParcelType,
        count: u16,
    ) -> Option<(ParcelType, Vec<u8>)> {
        let Some(armed) = self.armed.filter(|a| a.kind == kind) else {
            // Not expected (yet): the device's library answers only once its state machine
            // expects the type, e.g. the client key after the button press (§3.2, §3.6). An empty
            // parcel is not kept: no step of the protocol waits for one, and completing it later,
            // outside `handle`, would have no way to report it.
            if count > 0 {
                self.pending = Some((kind, count));
            }
            return None;
        };
        if let Some(c) = &self.collecting
            && c.kind == kind
            && c.chunks.len() == usize::from(count)
        {
            // A repeated announce of the parcel being collected: the sender did not hear our
            // RCV_RDY. Answer it again and keep the chunks that came; a sender already sending
            // ignores a second RCV_RDY.
            self.out.push_back(Message::Ack(Ack::Ready).encode());
            return None;
        }
        if count > armed.max_count {
            self.out.push_back(Message::Ack(Ack::Cancel).encode());
            return None;
        }
        self.out.push_back(Message::Ack(Ack::Ready).encode());
        if count == 0 {
            // Nothing will follow: an empty parcel is complete once it is accepted.
            self.out.push_back(Message::Ack(Ack::Success).encode());
            self.disarm();
            return Some((kind, Vec::new()));
        }
        self.collecting = Some(Collecting {
            kind,
            max_len: armed.max_len,
            chunks: vec![None; usize::from(count)],
            seen_last: false,
            last_progress: now,
            requested: None,
            lost_repeats: 0,
        });
        None
    }

    fn on_chunk(&mut self, now: Instant, index: u16, data: &[u8]) -> Option<(ParcelType, Vec<u8>)> {
        let collecting = self.collecting.as_mut()?;
        let slot = collecting
            .chunks
            .get_mut(usize::from(index).checked_sub(1)?)?;
        if slot.is_some() {
            return None; // duplicate
        }
        *slot = Some(data.to_vec());
        collecting.last_progress = now;
        collecting.lost_repeats = 0;
        if usize::from(index) == collecting.chunks.len() {
            collecting.seen_last = true;
        }
        match collecting.first_missing() {
            None => {
                let kind = collecting.kind;
                // Bytes past what the type carries can only be padding of the last chunk.
                let payload = collecting
                    .chunks
                    .iter()
                    .flatten()
                    .flatten()
                    .copied()
                    .take(collecting.max_len)
                    .collect();
                self.out.push_back(Message::Ack(Ack::Success).encode());
                self.disarm();
                Some((kind, payload))
            }
            Some(missing) => {
                if collecting.seen_last && collecting.requested != Some(missing) {
                    collecting.requested = Some(missing);
                    self.out
                        .push_back(Message::Ack(Ack::Lost(missing)).encode());
                }
                None
            }
        }
    }

    /// When [`Receiver::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.collecting
            .as_ref()
            .map(|c| c.last_progress + LOST_TIMEOUT)
    }

    /// Names the first missing chunk once 200 ms passed without progress.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(collecting) = self.collecting.as_mut() else {
            return;
        };
        if now < collecting.last_progress + LOST_TIMEOUT {
            return;
        }
        if collecting.lost_repeats >= MAX_LOST_REPEATS {
            self.collecting = None;
            return;
        }
        if let Some(missing) = collecting.first_missing() {
            collecting.requested = Some(missing);
            collecting.last_progress = now;
            collecting.lost_repeats += 1;
            self.out
                .push_back(Message::Ack(Ack::Lost(missing)).encode());
        }
    }

    /// The next AVDTP write or notification to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }
}

/// What a [`Channel`] finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The receiver answered our announce with `RCV_RDY`; the chunks are on their way.
    Accepted(ParcelType),
    /// Our parcel of this type was confirmed (`RCV_OK`).
    Sent(ParcelType),
    /// A whole parcel arrived.
    Received(ParcelType, Vec<u8>),
}

/// One side's AVDTP traffic: at most one parcel being sent and one being received.
///
/// Acknowledges go to the sender; announces, chunks and inline data to the receiver. The two never
/// compete, because each Mi-auth step has one side sending and the other receiving.
#[derive(Debug, Default)]
pub struct Channel {
    sender: Option<Sender>,
    receiver: Receiver,
    out: VecDeque<Vec<u8>>,
}

impl Channel {
    /// An idle channel.
    pub fn new() -> Channel {
        Channel::default()
    }

    /// Starts sending a parcel (replacing any unfinished one).
    pub fn send(&mut self, kind: ParcelType, payload: Vec<u8>) -> Result<(), ParcelError> {
        self.sender = Some(Sender::new(kind, payload)?);
        self.collect();
        Ok(())
    }

    /// Arms the receiver for one parcel (see [`Receiver::expect`]).
    pub fn expect(&mut self, now: Instant, kind: ParcelType, max_len: usize) {
        self.receiver.expect(now, kind, max_len);
        self.collect();
    }

    /// Stops sending and receiving; queued writes are kept.
    pub fn reset(&mut self) {
        self.sender = None;
        self.receiver = Receiver::new();
    }

    /// Feeds one AVDTP write/notification.
    ///
    /// `Err` with a non-fatal error means the message was malformed and has been dropped.
    pub fn handle(&mut self, now: Instant, bytes: &[u8]) -> Result<Option<Progress>, ParcelError> {
        let message = Message::parse(bytes)?;
        let progress = match message {
            Message::Ack(ack) => match self.sender.as_mut() {
                Some(sender) => {
                    let kind = sender.kind();
                    let was_accepted = sender.is_accepted();
                    let done = sender.handle_ack(ack);
                    let accepted = !was_accepted && sender.is_accepted();
                    self.collect();
                    if done? {
                        self.sender = None;
                        Some(Progress::Sent(kind))
                    } else if accepted {
                        Some(Progress::Accepted(kind))
                    } else {
                        None
                    }
                }
                None => None,
            },
            other => self
                .receiver
                .handle(now, &other)
                .map(|(kind, payload)| Progress::Received(kind, payload)),
        };
        self.collect();
        Ok(progress)
    }

    /// When [`Channel::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.receiver.poll_timeout()
    }

    /// Runs the receiver's lost-chunk timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.receiver.handle_timeout(now);
        self.collect();
    }

    /// The next AVDTP message to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    fn collect(&mut self) {
        if let Some(sender) = self.sender.as_mut() {
            while let Some(data) = sender.poll_transmit() {
                self.out.push_back(data);
            }
        }
        while let Some(data) = self.receiver.poll_transmit() {
            self.out.push_back(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_messages() {
        assert_eq!(
            Message::parse(&[0, 0, 0, 0x0C, 2, 0]),
            Ok(Message::Announce {
                kind: ParcelType::DEV_CONFIRMATION,
                count: 2
            })
        );
        assert_eq!(Message::parse(&[0, 0, 1, 1]), Ok(Message::Ack(Ack::Ready)));
        assert_eq!(
            Message::parse(&[0, 0, 1, 5, 3, 0]),
            Ok(Message::Ack(Ack::Lost(3)))
        );
        assert_eq!(
            Message::parse(&[0x01, 0x01, 0xAA]),
            Ok(Message::Chunk {
                index: 257,
                data: &[0xAA]
            })
        );
        assert_eq!(
            Message::parse(&[0, 0, 1, 5, 3]),
            Err(ParcelError::Truncated {
                what: "lost ack",
                expected: 6,
                found: 5
            })
        );
        assert!(matches!(
            Message::parse(&[
                1, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18
            ]),
            Err(ParcelError::ChunkTooLong {
                index: 1,
                found: 19
            })
        ));
    }

    #[test]
    fn receiver_cancels_a_count_beyond_the_type_buffer() {
        let now = Instant::now();
        let mut rx = Receiver::new();
        rx.expect(now, ParcelType::ECC_PUBKEY, 64);
        let announce = Message::Announce {
            kind: ParcelType::ECC_PUBKEY,
            count: 5,
        };
        assert_eq!(rx.handle(now, &announce), None);
        assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 4]));
        assert!(rx.is_armed());
    }

    #[test]
    fn receiver_answers_a_pending_announce_once_armed() {
        let now = Instant::now();
        let mut rx = Receiver::new();
        let announce = Message::Announce {
            kind: ParcelType::ECC_PUBKEY,
            count: 4,
        };
        rx.handle(now, &announce);
        assert_eq!(rx.poll_transmit(), None);
        rx.expect(now, ParcelType::ECC_PUBKEY, 64);
        assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 1]));
    }

    #[test]
    fn receiver_names_the_missing_chunk_after_200ms() {
        let t0 = Instant::now();
        let mut rx = Receiver::new();
        rx.expect(t0, ParcelType::DEV_CONFIRMATION, 32);
        rx.handle(
            t0,
            &Message::Announce {
                kind: ParcelType::DEV_CONFIRMATION,
                count: 2,
            },
        );
        assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 1]));
        rx.handle(
            t0,
            &Message::Chunk {
                index: 2,
                data: &[7; 14],
            },
        );
        // The last chunk came with chunk 1 missing: ask for it at once.
        assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 5, 1, 0]));
        assert_eq!(rx.poll_timeout(), Some(t0 + LOST_TIMEOUT));
        rx.handle_timeout(t0 + Duration::from_millis(199));
        assert_eq!(rx.poll_transmit(), None);
        rx.handle_timeout(t0 + LOST_TIMEOUT);
        assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 5, 1, 0]));
        let done = rx.handle(
            t0 + LOST_TIMEOUT,
            &Message::Chunk {
                index: 1,
                data: &[1; 18],
            },
        );
        let mut expected = vec![1u8; 18];
        expected.extend([7; 14]);
        assert_eq!(done, Some((ParcelType::DEV_CONFIRMATION, expected)));
        assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 0]));
        assert_eq!(rx.poll_timeout(), None);
    }

    #[test]
    fn receiver_gives_up_on_a_silent_sender() {
        let t0 = Instant::now();
        let mut rx = Receiver::new();
        rx.expect(t0, ParcelType::ECC_PUBKEY, 64);
        let announce = Message::Announce {
            kind: ParcelType::ECC_PUBKEY,
            count: 4,
        };
        rx.handle(t0, &announce);
        let mut asked = 0;
        while let Some(deadline) = rx.poll_timeout() {
            rx.handle_timeout(deadline);
            while let Some(m) = rx.poll_transmit() {
                if m == [0, 0, 1, 5, 1, 0] {
                    asked += 1;
                }
            }
            assert!(asked <= usize::from(MAX_LOST_REPEATS));
        }
        assert_eq!(asked, usize::from(MAX_LOST_REPEATS));
        assert!(rx.is_armed(), "a new announce may start over");
        rx.handle(t0, &announce);
        assert_eq!(rx.poll_transmit(), Some(vec![0, 0, 1, 1]));
    }

    #[test]
    fn sender_resends_lost_chunks_and_rejects_unknown_ones() {
        let mut tx = Sender::new(ParcelType::APP_RANDOM, vec![5; 16]).expect("short payload");
        assert_eq!(tx.poll_transmit(), Some(vec![0, 0, 0, 0x0B, 1, 0]));
        assert_eq!(tx.handle_ack(Ack::Ready), Ok(false));
        let chunk = tx.poll_transmit().expect("chunk 1");
        assert_eq!(chunk.len(), 18);
        assert_eq!(tx.handle_ack(Ack::Lost(1)), Ok(false));
        assert_eq!(tx.poll_transmit(), Some(chunk));
        assert_eq!(
            tx.handle_ack(Ack::Lost(2)),
            Err(ParcelError::LostOutOfRange {
                kind: ParcelType::APP_RANDOM,
                index: 2,
                count: 1
            })
        );
        assert_eq!(tx.handle_ack(Ack::Success), Ok(true));
        assert!(tx.is_done());
    }

    #[test]
    fn client_accepts_inline_dev_random() {
        let now = Instant::now();
        let mut ch = Channel::new();
        ch.expect(now, ParcelType::DEV_RANDOM, 16);
        let mut msg = vec![0, 0, 2, 0x0D];
        msg.extend([9u8; 16]);
        assert_eq!(
            ch.handle(now, &msg),
            Ok(Some(Progress::Received(
                ParcelType::DEV_RANDOM,
                vec![9; 16]
            )))
        );
        assert_eq!(ch.poll_transmit(), Some(vec![0, 0, 3, 0]));
    }
}
