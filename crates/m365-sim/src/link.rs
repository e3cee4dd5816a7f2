//! How fast bytes can cross the BLE link, as a pure model.
//!
//! A BLE connection exchanges packets only at connection events, one every connection interval
//! (7.5–100 ms; 30 ms is typical for a Linux central), and only a few packets fit in one event.
//! Every write and notification carries at most 20 bytes (default MTU). Behind the BLE module the
//! ESC answers after a short processing delay, the BMS (reached through the ESC) after a longer
//! one.
//!
//! # One serial bus behind the BLE module
//! The BLE module does not talk to the ESC and the BMS over separate lines: it relays every
//! request onto the scooter's one internal half-duplex serial bus, on which the ESC and the BMS
//! both sit (protocol.md, terminology: the BLE module "relays to the ESC and the BMS"; the DIR byte, not a
//! separate port, selects the controller, and the answer comes back on the same line). A half-
//! duplex line carries one transaction at a time, so requests written back to back are answered
//! one after another: a BMS answer is never produced while an ESC answer is. The simulated
//! scooter ([`crate::Scooter`]) and [`link_limit`]'s [`Pattern::Pipelined`] both follow this
//! rule, so rates measured against the simulator never exceed the model's limit. [`LinkClock`] says when each packet may leave; [`link_limit`] derives the theoretical
//! number of full telemetry samples per second for a request pattern, the ceiling the
//! benchmarks compare the client against.

use std::time::{Duration, Instant};

use m365_proto::gatt::ATT_PAYLOAD;

use crate::profile::Generation;
use crate::registers::Unit;

/// Shortest connection interval BLE allows.
pub const MIN_CONN_INTERVAL: Duration = Duration::from_micros(7_500);
/// Time the client's host stack needs between receiving an answer and queueing the next write:
/// small, but enough that the write misses the connection event that carried the answer.
pub const HOST_TURNAROUND: Duration = Duration::from_millis(1);
/// Longest connection interval this model accepts (a scooter link never runs slower).
pub const MAX_CONN_INTERVAL: Duration = Duration::from_millis(100);

/// Parameters of the link model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkTiming {
    /// Time between connection events.
    pub conn_interval: Duration,
    /// Packets per direction in one connection event.
    pub packets_per_event: u32,
    /// Bytes per packet.
    pub att_payload: usize,
    /// ESC processing delay between a request's arrival and its answer.
    pub esc_delay: Duration,
    /// BMS processing delay (relayed through the ESC, so longer).
    pub bms_delay: Duration,
}

impl Default for LinkTiming {
    fn default() -> Self {
        LinkTiming {
            conn_interval: Duration::from_millis(30),
            packets_per_event: 4,
            att_payload: ATT_PAYLOAD,
            esc_delay: Duration::from_millis(8),
            bms_delay: Duration::from_millis(15),
        }
    }
}

/// A link parameter out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Connection interval outside 7.5–100 ms.
    #[error("connection interval {0:?} is outside 7.5–100 ms")]
    ConnInterval(Duration),
    /// Zero packets per event.
    #[error("a connection event must carry at least one packet")]
    NoPackets,
}

impl LinkTiming {
    /// Default timing with connection interval `conn_interval` (7.5–100 ms).
    pub fn with_interval(conn_interval: Duration) -> Result<LinkTiming, LinkError> {
        LinkTiming {
            conn_interval,
            ..LinkTiming::default()
        }
        .validated()
    }

    /// `self` if every parameter is in range.
    pub fn validated(self) -> Result<LinkTiming, LinkError> {
        if !(MIN_CONN_INTERVAL..=MAX_CONN_INTERVAL).contains(&self.conn_interval) {
            return Err(LinkError::ConnInterval(self.conn_interval));
        }
        if self.packets_per_event == 0 {
            return Err(LinkError::NoPackets);
        }
        Ok(self)
    }

    /// Processing delay of `unit`.
    pub fn delay(&self, unit: Unit) -> Duration {
        match unit {
            Unit::Esc => self.esc_delay,
            Unit::Bms => self.bms_delay,
        }
    }

    /// Packets needed for a frame of `bytes` bytes.
    pub fn packets(&self, bytes: usize) -> usize {
        bytes.div_ceil(self.att_payload.max(1))
    }

    /// Notifications the scooter sends for an answer of `bytes` bytes: the frame's packets,
    /// plus the empty one that ends a frame whose last packet is full (protocol.md §2.3).
    pub fn answer_packets(&self, bytes: usize) -> usize {
        let full_last = bytes > 0 && bytes.is_multiple_of(self.att_payload.max(1));
        self.packets(bytes) + usize::from(full_last)
    }
}

/// Connection-event bookkeeping for one direction of one connection.
#[derive(Debug, Clone)]
pub struct LinkClock {
    timing: LinkTiming,
    anchor: Instant,
    /// Index of the last event that carried a packet, and how many it carried.
    last_event: Option<(u64, u32)>,
}

impl LinkClock {
    /// A clock whose connection events fall at `anchor + k × interval`.
    pub fn new(timing: LinkTiming, anchor: Instant) -> LinkClock {
        LinkClock {
            timing,
            anchor,
            last_event: None,
        }
    }

    /// The timing in use.
    pub fn timing(&self) -> &LinkTiming {
        &self.timing
    }

    /// When a packet that is ready at `ready` leaves: at the first connection event at or after
    /// `ready` that still has room, never before a packet scheduled earlier (order is kept).
    pub fn schedule(&mut self, ready: Instant) -> Instant {
        let interval = self.timing.conn_interval.as_nanos().max(1);
        let since = ready.saturating_duration_since(self.anchor).as_nanos();
        let mut event = u64::try_from(since.div_ceil(interval)).unwrap_or(u64::MAX);
        let mut used = 0;
        if let Some((last, count)) = self.last_event {
            if event < last {
                event = last;
            }
            if event == last {
                used = count;
            }
        }
        if used >= self.timing.packets_per_event {
            event = event.saturating_add(1);
            used = 0;
        }
        self.last_event = Some((event, used + 1));
        self.event_time(event)
    }

    fn event_time(&self, event: u64) -> Instant {
        let nanos = u128::from(event) * self.timing.conn_interval.as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.anchor + Duration::from_nanos(nanos)
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

/// Theoretical full samples per second over a link with `timing` for `reads` issued in
/// `pattern`, measured over `samples` consecutive samples after the first (so the phase of the
/// event grid averages out).
pub fn link_limit(
    timing: &LinkTiming,
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
                    t = exchange(&mut up, &mut down, timing, generation, *read, t)
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
                    let arrived = send(&mut up, timing, generation, 3, start);
                    let ready = arrived.max(bus_free) + timing.delay(read.unit);
                    bus_free = ready;
                    last = answer(
                        &mut down,
                        timing,
                        generation,
                        usize::from(read.len) + 2,
                        ready,
                    );
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
    timing: &LinkTiming,
    generation: Generation,
    read: Read,
    at: Instant,
) -> Instant {
    let arrived = send(up, timing, generation, 3, at);
    answer(
        down,
        timing,
        generation,
        usize::from(read.len) + 2,
        arrived + timing.delay(read.unit),
    )
}

/// Schedule the scooter's answer with LEN `len` ready at `ready` (its empty terminator
/// included); returns when its last frame packet leaves. The empty notification takes a slot
/// on the link but carries nothing the client waits for.
fn answer(
    clock: &mut LinkClock,
    timing: &LinkTiming,
    generation: Generation,
    len: usize,
    ready: Instant,
) -> Instant {
    let last = send(clock, timing, generation, len, ready);
    let wire = wire_len(generation, len);
    for _ in timing.packets(wire)..timing.answer_packets(wire) {
        clock.schedule(ready);
    }
    last
}

/// Schedule a frame with LEN `len` ready at `ready`; returns when its last packet leaves.
fn send(
    clock: &mut LinkClock,
    timing: &LinkTiming,
    generation: Generation,
    len: usize,
    ready: Instant,
) -> Instant {
    let mut last = ready;
    for _ in 0..timing.packets(wire_len(generation, len)) {
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
        assert!(LinkTiming::with_interval(ms(30)).is_ok());
        assert!(LinkTiming::with_interval(Duration::from_micros(7_500)).is_ok());
        assert_eq!(
            LinkTiming::with_interval(ms(5)),
            Err(LinkError::ConnInterval(ms(5)))
        );
        assert!(LinkTiming::with_interval(ms(101)).is_err());
        let none = LinkTiming {
            packets_per_event: 0,
            ..LinkTiming::default()
        };
        assert_eq!(none.validated(), Err(LinkError::NoPackets));
    }

    #[test]
    fn packets_leave_at_events_with_limited_room() {
        let t0 = Instant::now();
        let timing = LinkTiming {
            packets_per_event: 2,
            ..LinkTiming::default()
        };
        let mut c = LinkClock::new(timing, t0);
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
    fn wire_lengths_follow_the_generation() {
        assert_eq!(wire_len(Generation::MiAuth, 0x22), 50);
        assert_eq!(wire_len(Generation::Xor, 3), 13);
        assert_eq!(wire_len(Generation::Plain, 3), 9);
        assert_eq!(LinkTiming::default().packets(50), 3);
        // A frame ending on a full packet is followed by an empty one (§2.3).
        assert_eq!(LinkTiming::default().answer_packets(50), 3);
        assert_eq!(LinkTiming::default().answer_packets(40), 3);
        assert_eq!(LinkTiming::default().answer_packets(20), 2);
    }

    #[test]
    fn sequential_single_read_costs_whole_events() {
        // One small ESC read: the request leaves at an event, the answer (processing 8 ms) at
        // the next, and the following request at the one after: two intervals per sample.
        let timing = LinkTiming::default();
        let reads = [Read {
            unit: Unit::Esc,
            len: 2,
        }];
        let rate = link_limit(&timing, Generation::MiAuth, &reads, Pattern::Sequential, 20);
        assert!((rate - 1.0 / 0.060).abs() < 0.2, "{rate}");
    }

    #[test]
    fn pipelining_beats_sequential_and_shorter_intervals_are_faster() {
        let timing = LinkTiming::default();
        let seq = link_limit(
            &timing,
            Generation::MiAuth,
            &FULL_SAMPLE,
            Pattern::Sequential,
            20,
        );
        let pipe = link_limit(
            &timing,
            Generation::MiAuth,
            &FULL_SAMPLE,
            Pattern::Pipelined,
            20,
        );
        assert!(pipe > seq, "pipelined {pipe} vs sequential {seq}");
        let fast = LinkTiming::with_interval(Duration::from_micros(7_500)).unwrap_or_default();
        let quick = link_limit(
            &fast,
            Generation::MiAuth,
            &FULL_SAMPLE,
            Pattern::Sequential,
            20,
        );
        assert!(quick > seq);
        // Plain frames are shorter, so never slower.
        let plain = link_limit(
            &timing,
            Generation::Plain,
            &FULL_SAMPLE,
            Pattern::Sequential,
            20,
        );
        assert!(plain >= seq);
    }
}
