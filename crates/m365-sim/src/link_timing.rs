//! When packets cross a simulated scooter's BLE link, and the sample rate that allows.
//!
//! A BLE connection exchanges packets only at connection events, one every connection interval
//! (7.5–100 ms for a scooter; 30 ms is typical for a Linux central), and only a few packets fit
//! in one event. Every write and notification carries at most 20 bytes (default MTU). The
//! parameters and the event scheduler are the fake BlueZ's ([`LinkTiming`],
//! [`ConnectionEvents`]): one model of connection events, whether the fake paces the link
//! (`m365-sim serve`) or the scooter does it itself (the in-process transport, where each
//! direction of the link gets its own [`LinkClock`]). Behind the BLE module the ESC and the BMS
//! answer after their processing delays ([`Processing`]).
//!
//! # One serial bus behind the BLE module
//! The BLE module does not talk to the ESC and the BMS over separate lines: it relays every
//! request onto the scooter's one internal half-duplex serial bus, on which the ESC and the BMS
//! both sit (protocol.md, terminology: the BLE module "relays to the ESC and the BMS"; the DIR
//! byte, not a separate port, selects the controller, and the answer comes back on the same
//! line). A half-duplex line carries one transaction at a time, so requests written back to back
//! are answered one after another: a BMS answer is never produced while an ESC answer is. The
//! simulated scooter ([`crate::Scooter`]) and [`link_limit`]'s [`Pattern::Pipelined`] both follow
//! this rule, so rates measured against the simulator never exceed the model's limit.
//! [`LinkClock`] says when each packet may leave; [`link_limit`] derives the theoretical number
//! of full telemetry samples per second for a request pattern, the ceiling the benchmarks compare
//! the client against.

use std::time::{Duration, Instant};

use m365_fakebluez::{ConnectionEvents, LinkTiming};
use m365_proto::gatt::ATT_PAYLOAD;

use crate::profile::Generation;
use crate::registers::Unit;

/// Time between a request's arrival and the controller's answer being ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processing {
    /// ESC.
    pub esc: Duration,
    /// BMS (relayed through the ESC, so slower).
    pub bms: Duration,
}

impl Processing {
    /// No delay at all.
    pub const NONE: Processing = Processing {
        esc: Duration::ZERO,
        bms: Duration::ZERO,
    };

    /// The delay of `unit`.
    pub fn delay(&self, unit: m365_proto::registers::Unit) -> Duration {
        match unit {
            m365_proto::registers::Unit::Esc => self.esc,
            m365_proto::registers::Unit::Bms => self.bms,
        }
    }
}

impl Default for Processing {
    /// Typical delays: 8 ms for the ESC, 15 ms for the BMS.
    fn default() -> Self {
        Processing {
            esc: Duration::from_millis(8),
            bms: Duration::from_millis(15),
        }
    }
}

/// Shortest connection interval BLE allows.
pub const MIN_CONN_INTERVAL: Duration = Duration::from_micros(7_500);
/// Longest connection interval this model accepts (a scooter link never runs slower).
pub const MAX_CONN_INTERVAL: Duration = Duration::from_millis(100);
/// The connection interval of a typical scooter link.
pub const DEFAULT_CONN_INTERVAL: Duration = Duration::from_millis(30);
/// Packets per direction in one connection event on a typical scooter link.
pub const DEFAULT_PACKETS_PER_EVENT: u16 = 4;
/// Time the client's host stack needs between receiving an answer and queueing the next write:
/// small, but enough that the write misses the connection event that carried the answer.
pub const HOST_TURNAROUND: Duration = Duration::from_millis(1);

/// A connection interval a scooter link cannot have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkTimingError {
    /// Connection interval outside 7.5–100 ms.
    #[error("connection interval {0:?} is outside 7.5–100 ms")]
    ConnInterval(Duration),
}

/// A typical scooter link: [`DEFAULT_CONN_INTERVAL`], [`DEFAULT_PACKETS_PER_EVENT`].
pub fn typical() -> LinkTiming {
    LinkTiming::paced(DEFAULT_CONN_INTERVAL, DEFAULT_PACKETS_PER_EVENT)
}

/// A scooter link with connection interval `conn_interval` (7.5–100 ms) and
/// [`DEFAULT_PACKETS_PER_EVENT`].
pub fn with_interval(conn_interval: Duration) -> Result<LinkTiming, LinkTimingError> {
    if !(MIN_CONN_INTERVAL..=MAX_CONN_INTERVAL).contains(&conn_interval) {
        return Err(LinkTimingError::ConnInterval(conn_interval));
    }
    Ok(LinkTiming::paced(conn_interval, DEFAULT_PACKETS_PER_EVENT))
}

/// Packets needed for a frame of `bytes` bytes.
pub fn packets(bytes: usize) -> usize {
    bytes.div_ceil(ATT_PAYLOAD)
}

/// Notifications the scooter sends for an answer of `bytes` bytes: the frame's packets, plus the
/// empty one that ends a frame whose last packet is full (protocol.md §2.3).
pub fn answer_packets(bytes: usize) -> usize {
    let full_last = bytes > 0 && bytes.is_multiple_of(ATT_PAYLOAD);
    packets(bytes) + usize::from(full_last)
}

/// Connection-event bookkeeping for one direction of one connection, on the clock the scooter
/// and the in-process transport use: [`ConnectionEvents`] with its time zero at `anchor`.
#[derive(Debug, Clone)]
pub struct LinkClock {
    timing: LinkTiming,
    anchor: Instant,
    events: ConnectionEvents,
}

impl LinkClock {
    /// A clock whose connection events fall at `anchor + k × interval`.
    pub fn new(timing: LinkTiming, anchor: Instant) -> LinkClock {
        LinkClock {
            timing,
            anchor,
            events: ConnectionEvents::new(timing),
        }
    }

    /// The timing in use.
    pub fn timing(&self) -> &LinkTiming {
        &self.timing
    }

    /// When a packet that is ready at `ready` leaves: at the first connection event at or after
    /// `ready` that still has room, never before a packet scheduled earlier (order is kept).
    /// With [`LinkTiming::instant`], at `ready`.
    pub fn schedule(&mut self, ready: Instant) -> Instant {
        let offset = self
            .events
            .reserve(ready.saturating_duration_since(self.anchor));
        self.anchor + offset
    }
}

/// One register read of a telemetry sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Read {
    /// Which controller.
    pub unit: Unit,
    /// Bytes requested.
    pub len: u8,
}

/// How the client issues the reads of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Each read waits for the previous answer.
    Sequential,
    /// All reads of a sample are written back to back; the sample ends with the last answer.
    Pipelined,
}

/// The reads of a full telemetry sample: motor block, range, battery block, cells and the
/// session times (§6.6, §6.7, §6.11).
pub const FULL_SAMPLE: [Read; 5] = [
    Read {
        unit: Unit::Esc,
        len: 0x20,
    },
    Read {
        unit: Unit::Esc,
        len: 0x02,
    },
    Read {
        unit: Unit::Esc,
        len: 0x04,
    },
    Read {
        unit: Unit::Bms,
        len: 0x0A,
    },
    Read {
        unit: Unit::Bms,
        len: 0x1E,
    },
];

/// Bytes on the wire of a frame whose LEN byte is `len` (§9).
pub fn wire_len(generation: Generation, len: usize) -> usize {
    match generation {
        Generation::MiAuth => len + 16,
        Generation::Xor => len + 10,
        Generation::Plain => len + 6,
    }
}

/// Theoretical full samples per second over a link with `timing` and controllers answering
/// after `processing`, for `reads` issued in `pattern`, measured over `samples` consecutive
/// samples after the first (so the phase of the event grid averages out).
pub fn link_limit(
    timing: &LinkTiming,
    processing: &Processing,
    generation: Generation,
    reads: &[Read],
    pattern: Pattern,
    samples: u32,
) -> f64 {
    if reads.is_empty() || samples == 0 {
        return 0.0;
    }
    let t0 = Instant::now();
    let mut up = LinkClock::new(*timing, t0);
    let mut down = LinkClock::new(*timing, t0);
    let mut start = t0;
    let mut first_end = None;
    let mut end = t0;
    for _ in 0..=samples {
        end = match pattern {
            Pattern::Sequential => {
                let mut t = start;
                for read in reads {
                    t = exchange(&mut up, &mut down, processing, generation, *read, t)
                        + HOST_TURNAROUND;
                }
                t
            }
            Pattern::Pipelined => {
                // Writes leave back to back; the BLE module relays them to one serial bus, so
                // the controllers answer one request at a time, in order.
                let mut bus_free = start;
                let mut last = start;
                for read in reads {
                    let arrived = send(&mut up, generation, 3, start);
                    let ready = arrived.max(bus_free) + processing.delay(read.unit);
                    bus_free = ready;
                    last = answer(&mut down, generation, usize::from(read.len) + 2, ready);
                }
                last + HOST_TURNAROUND
            }
        };
        if first_end.is_none() {
            first_end = Some(end);
        }
        start = end;
    }
    let first = first_end.unwrap_or(t0);
    let span = end.saturating_duration_since(first).as_secs_f64();
    if span > 0.0 {
        f64::from(samples) / span
    } else {
        f64::INFINITY
    }
}

/// One request/answer exchange starting at `at`; returns when the answer's last packet arrives.
fn exchange(
    up: &mut LinkClock,
    down: &mut LinkClock,
    processing: &Processing,
    generation: Generation,
    read: Read,
    at: Instant,
) -> Instant {
    let arrived = send(up, generation, 3, at);
    answer(
        down,
        generation,
        usize::from(read.len) + 2,
        arrived + processing.delay(read.unit),
    )
}

/// Schedule the scooter's answer with LEN `len` ready at `ready` (its empty terminator
/// included); returns when its last frame packet leaves. The empty notification takes a slot
/// on the link but carries nothing the client waits for.
fn answer(clock: &mut LinkClock, generation: Generation, len: usize, ready: Instant) -> Instant {
    let last = send(clock, generation, len, ready);
    let wire = wire_len(generation, len);
    for _ in packets(wire)..answer_packets(wire) {
        clock.schedule(ready);
    }
    last
}

/// Schedule a frame with LEN `len` ready at `ready`; returns when its last packet leaves.
fn send(clock: &mut LinkClock, generation: Generation, len: usize, ready: Instant) -> Instant {
    let mut last = ready;
    for _ in 0..packets(wire_len(generation, len)) {
        last = clock.schedule(ready);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn interval_is_validated() {
        assert_eq!(with_interval(ms(30)), Ok(typical()));
        assert!(with_interval(Duration::from_micros(7_500)).is_ok());
        assert_eq!(
            with_interval(ms(5)),
            Err(LinkTimingError::ConnInterval(ms(5)))
        );
        assert!(with_interval(ms(101)).is_err());
        assert_eq!(
            with_interval(ms(50)).map(|t| t.packets_per_event()),
            Ok(Some(DEFAULT_PACKETS_PER_EVENT))
        );
    }

    #[test]
    fn packets_leave_at_events_with_limited_room() {
        let t0 = Instant::now();
        let mut c = LinkClock::new(LinkTiming::paced(ms(30), 2), t0);
        // Ready just after event 0: waits for event 1 (30 ms).
        assert_eq!(c.schedule(t0 + ms(1)), t0 + ms(30));
        assert_eq!(c.schedule(t0 + ms(1)), t0 + ms(30));
        // Event 1 is full: the third goes at event 2.
        assert_eq!(c.schedule(t0 + ms(1)), t0 + ms(60));
        // Order is kept: a packet ready earlier than the last one still leaves after it.
        assert_eq!(c.schedule(t0), t0 + ms(60));
        assert_eq!(c.schedule(t0 + ms(200)), t0 + ms(210));
    }

    #[test]
    fn an_instant_link_sends_when_ready() {
        let t0 = Instant::now();
        let mut c = LinkClock::new(LinkTiming::instant(), t0);
        for _ in 0..10 {
            assert_eq!(c.schedule(t0 + ms(7)), t0 + ms(7));
        }
    }

    #[test]
    fn wire_lengths_follow_the_generation() {
        assert_eq!(wire_len(Generation::MiAuth, 0x22), 50);
        assert_eq!(wire_len(Generation::Xor, 3), 13);
        assert_eq!(wire_len(Generation::Plain, 3), 9);
        assert_eq!(packets(50), 3);
        // A frame ending on a full packet is followed by an empty one (§2.3).
        assert_eq!(answer_packets(50), 3);
        assert_eq!(answer_packets(40), 3);
        assert_eq!(answer_packets(20), 2);
    }

    #[test]
    fn sequential_single_read_costs_whole_events() {
        // One small ESC read: the request leaves at an event, the answer (processing 8 ms) at
        // the next, and the following request at the one after: two intervals per sample.
        let reads = [Read {
            unit: Unit::Esc,
            len: 2,
        }];
        let rate = link_limit(
            &typical(),
            &Processing::default(),
            Generation::MiAuth,
            &reads,
            Pattern::Sequential,
            20,
        );
        assert!((rate - 1.0 / 0.060).abs() < 0.2, "{rate}");
    }

    #[test]
    fn pipelining_beats_sequential_and_shorter_intervals_are_faster() {
        let processing = Processing::default();
        let limit = |timing: &LinkTiming, generation, pattern| {
            link_limit(timing, &processing, generation, &FULL_SAMPLE, pattern, 20)
        };
        let timing = typical();
        let seq = limit(&timing, Generation::MiAuth, Pattern::Sequential);
        let pipe = limit(&timing, Generation::MiAuth, Pattern::Pipelined);
        assert!(pipe > seq, "pipelined {pipe} vs sequential {seq}");
        let fast = with_interval(MIN_CONN_INTERVAL).expect("in range");
        let quick = limit(&fast, Generation::MiAuth, Pattern::Sequential);
        assert!(quick > seq);
        // Plain frames are shorter, so never slower.
        let plain = limit(&timing, Generation::Plain, Pattern::Sequential);
        assert!(plain >= seq);
    }
}
