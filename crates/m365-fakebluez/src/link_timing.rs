//! The link timing model: when a packet crosses the simulated radio link.
//!
//! A BLE connection exchanges packets only during *connection events*, one every connection
//! interval (7.5 ms to 4 s; phones and Linux typically get 15-50 ms), and a controller fits a
//! limited number of packets into one event. Throughput is therefore
//! `packets_per_event × 20 bytes / interval`, and a burst of notifications arrives in clumps at
//! event boundaries rather than evenly spread or all at once.
//!
//! The model here is deliberately small and pure (time is an argument, as durations since the
//! link came up):
//! - events happen at `k × interval`, `k = 0, 1, 2, ...`;
//! - a packet that is ready at time `t` goes out in the first event at or after `t` that still
//!   has room; every event carries at most `packets_per_event` packets, counting both
//!   directions (central writes and peripheral notifications share the budget);
//! - the answer to a request (a write request's response, a read's value) goes out no earlier
//!   than the event after the request's.
//!
//! [`LinkTiming::instant`] (the default) switches pacing off: every packet goes out when it is
//! ready, which is what unit tests want.

use std::time::Duration;

/// Pacing parameters of a simulated link.
///
/// The model: connection events happen every connection interval from the moment the link
/// comes up; a packet (write, write or read response, CCCD write, notification) goes out in the
/// first event at or after the moment it is ready that still has room; an event carries at most
/// `packets_per_event` packets, both directions together; the answer to a request goes out no
/// earlier than the event after the request's. Throughput is therefore
/// `packets_per_event × payload / interval`, and bursts arrive in clumps at event boundaries.
/// [`LinkTiming::instant`] (the default) turns pacing off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkTiming {
    /// `None`: instant delivery. `Some`: connection interval and packets per event (≥ 1).
    paced: Option<(Duration, u16)>,
}

impl LinkTiming {
    /// No pacing: packets are delivered as soon as they are produced.
    pub const fn instant() -> Self {
        LinkTiming { paced: None }
    }

    /// Connection events every `connection_interval`, at most `packets_per_event` packets in
    /// each. A zero interval means instant delivery; zero packets per event is taken as one.
    pub fn paced(connection_interval: Duration, packets_per_event: u16) -> Self {
        if connection_interval.is_zero() {
            return LinkTiming::instant();
        }
        LinkTiming {
            paced: Some((connection_interval, packets_per_event.max(1))),
        }
    }

    /// The connection interval, or `None` for instant delivery.
    pub fn connection_interval(&self) -> Option<Duration> {
        self.paced.map(|(interval, _)| interval)
    }

    /// Packets per connection event, or `None` for instant delivery.
    pub fn packets_per_event(&self) -> Option<u16> {
        self.paced.map(|(_, packets)| packets)
    }
}

/// What crossed a link so far, for tests and benchmarks that check the shape of throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Packets carried (writes, read and write responses, notifications).
    pub packets: u64,
    /// Connection events that carried at least one packet (0 when the link is instant).
    pub connection_events: u64,
}

/// The scheduler for one link: hands out slots in connection events, following the rules of
/// [`LinkTiming`]. Time is an argument, as the duration since the link came up. The fake keeps
/// one per connection, shared by both directions; a simulator that paces its own radio can use
/// one per direction.
#[derive(Debug, Clone)]
pub struct ConnectionEvents {
    timing: LinkTiming,
    /// Index of the latest event that got a packet.
    event: u64,
    /// Packets already placed in that event.
    used: u16,
    stats: LinkStats,
}

impl ConnectionEvents {
    /// A fresh link (time zero is when it came up).
    pub fn new(timing: LinkTiming) -> Self {
        ConnectionEvents {
            timing,
            event: 0,
            used: 0,
            stats: LinkStats::default(),
        }
    }

    /// Changes the pacing from now on.
    pub(crate) fn set_timing(&mut self, timing: LinkTiming) {
        self.timing = timing;
    }

    /// The totals so far.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Places one packet that is ready at `ready` and returns when it crosses the link.
    pub fn reserve(&mut self, ready: Duration) -> Duration {
        self.stats.packets += 1;
        let Some((interval, per_event)) = self.timing.paced else {
            return ready;
        };
        let first_possible = events_until(ready, interval);
        if first_possible > self.event || self.stats.connection_events == 0 {
            self.event = first_possible;
            self.used = 0;
        }
        if self.used >= per_event {
            self.event = self.event.saturating_add(1);
            self.used = 0;
        }
        if self.used == 0 {
            self.stats.connection_events += 1;
        }
        self.used += 1;
        event_time(self.event, interval)
    }

    /// Places the answer to a request that crossed the link at `request_sent`: no earlier than
    /// the next connection event.
    pub fn reserve_response(&mut self, request_sent: Duration) -> Duration {
        let ready = match self.timing.paced {
            Some((interval, _)) => request_sent.saturating_add(interval),
            None => request_sent,
        };
        self.reserve(ready)
    }
}

/// Index of the first event at or after `t`.
fn events_until(t: Duration, interval: Duration) -> u64 {
    let interval = interval.as_nanos().max(1);
    let index = t.as_nanos().div_ceil(interval);
    u64::try_from(index).unwrap_or(u64::MAX)
}

/// Start time of event `index`.
fn event_time(index: u64, interval: Duration) -> Duration {
    let nanos = interval.as_nanos().saturating_mul(u128::from(index));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn instant_link_delivers_when_ready() {
        let mut link = ConnectionEvents::new(LinkTiming::instant());
        assert_eq!(link.reserve(7 * MS), 7 * MS);
        assert_eq!(link.reserve_response(7 * MS), 7 * MS);
        assert_eq!(
            link.stats(),
            LinkStats {
                packets: 2,
                connection_events: 0
            }
        );
    }

    #[test]
    fn burst_fills_events_up_to_the_packet_budget() {
        let mut link = ConnectionEvents::new(LinkTiming::paced(15 * MS, 4));
        let times: Vec<_> = (0..10).map(|_| link.reserve(MS)).collect();
        // Ready at 1 ms: the event at 0 ms has passed, so events 1, 2, 3 (15, 30, 45 ms).
        let expected: Vec<_> = [15, 15, 15, 15, 30, 30, 30, 30, 45, 45]
            .iter()
            .map(|ms| MS * *ms)
            .collect();
        assert_eq!(times, expected);
        assert_eq!(link.stats().connection_events, 3);
        assert_eq!(link.stats().packets, 10);
    }

    #[test]
    fn packet_ready_on_an_event_boundary_uses_that_event() {
        let mut link = ConnectionEvents::new(LinkTiming::paced(10 * MS, 2));
        assert_eq!(link.reserve(Duration::ZERO), Duration::ZERO);
        assert_eq!(link.reserve(20 * MS), 20 * MS);
        assert_eq!(link.reserve(20 * MS), 20 * MS);
        assert_eq!(link.reserve(20 * MS), 30 * MS);
        assert_eq!(link.stats().connection_events, 3);
    }

    #[test]
    fn idle_gaps_do_not_carry_budget_over() {
        let mut link = ConnectionEvents::new(LinkTiming::paced(10 * MS, 1));
        assert_eq!(link.reserve(MS), 10 * MS);
        // Much later: the next free event is the first after the gap, not event 2.
        assert_eq!(link.reserve(95 * MS), 100 * MS);
        assert_eq!(link.stats().connection_events, 2);
    }

    #[test]
    fn response_goes_in_a_later_event() {
        let mut link = ConnectionEvents::new(LinkTiming::paced(20 * MS, 6));
        let sent = link.reserve(3 * MS);
        assert_eq!(sent, 20 * MS);
        assert_eq!(link.reserve_response(sent), 40 * MS);
        assert_eq!(link.stats().connection_events, 2);
    }

    #[test]
    fn degenerate_parameters_are_normalised() {
        assert_eq!(LinkTiming::paced(Duration::ZERO, 4), LinkTiming::instant());
        assert_eq!(LinkTiming::paced(MS, 0).packets_per_event(), Some(1));
        assert_eq!(LinkTiming::instant().connection_interval(), None);
    }
}
