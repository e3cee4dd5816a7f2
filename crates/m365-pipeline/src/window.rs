//! The publish window: pure state that decides what to publish next, remembers which MQTT packet
//! id carries which spool rows, tells what may be deleted on each PUBACK and what to resend after
//! a reconnect. No I/O and no clock: the driver passes `now` and feeds it events, like
//! rumqttc's `MqttState` beside its event loop.
//!
//! Rules:
//! * At most `max_in_flight` messages are unacknowledged (records and control messages alike).
//! * **Live before backlog.** Records committed while connected are *live*; everything else in
//!   the spool is *backlog*, drained oldest first from a cursor. A live record is published as
//!   soon as a slot is free, newest first, and backlog messages may never occupy the last
//!   `live_reserved` slots, so a long backlog never starves live samples. Ordering per topic is
//!   recoverable from the sequence number.
//! * Packet ids are learnt in send order (the client library reports each outgoing publish), so
//!   submissions wait in a FIFO until their packet id is known.
//! * On disconnect, everything in flight is forgotten and the backlog cursor goes back to the
//!   start: every unacknowledged row is published again on the next connection (QoS 1 is
//!   at-least-once; duplicates carry the same record id).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::spool::RowId;

/// Per-output limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Records per message.
    pub batch: usize,
    /// Longest wait for a live batch to fill.
    pub linger: Duration,
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Read up to `limit` rows pending on `output` with an id above `after` (oldest first), pass
    /// their ids to [`PublishWindow::take_backlog`] and publish what it returns.
    Backlog {
        /// Output index.
        output: usize,
        /// Cursor: rows above this id.
        after: RowId,
        /// Rows to read (the batch size plus room for rows that turn out to be in flight).
        limit: usize,
        /// Rows to publish at most.
        batch: usize,
    },
    /// Read these rows and publish them in one message on `output`.
    Live {
        /// Output index.
        output: usize,
        /// Rows, ascending.
        rows: Vec<RowId>,
    },
}

/// Why a message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Backlog drain.
    Backlog,
    /// Live record(s).
    Live,
    /// Availability or status message.
    Control,
}

/// One submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Output index (meaningless for control messages).
    pub output: usize,
    /// Rows carried.
    pub rows: Vec<RowId>,
    /// Why it was sent.
    pub kind: Kind,
}

#[derive(Debug, Clone)]
struct OutputState {
    limits: OutputLimits,
    cursor: RowId,
    caught_up: bool,
    live: VecDeque<(RowId, Instant)>,
    in_flight_rows: HashSet<RowId>,
}

/// The window.
#[derive(Debug, Clone)]
pub struct PublishWindow {
    max_in_flight: usize,
    live_reserved: usize,
    live_capacity: usize,
    connected: bool,
    outputs: Vec<OutputState>,
    awaiting_pkid: VecDeque<Submitted>,
    in_flight: HashMap<u16, Submitted>,
    backlog_msgs: usize,
    next_output: usize,
}

impl PublishWindow {
    /// A window for `outputs` with `max_in_flight` messages of which `live_reserved` are kept
    /// for live records.
    pub fn new(max_in_flight: usize, live_reserved: usize, outputs: &[OutputLimits]) -> Self {
        let max_in_flight = max_in_flight.max(1);
        PublishWindow {
            max_in_flight,
            live_reserved: live_reserved.min(max_in_flight - 1),
            live_capacity: 256,
            connected: false,
            outputs: outputs
                .iter()
                .map(|l| OutputState {
                    limits: OutputLimits {
                        batch: l.batch.max(1),
                        linger: l.linger,
                    },
                    cursor: 0,
                    caught_up: false,
                    live: VecDeque::new(),
                    in_flight_rows: HashSet::new(),
                })
                .collect(),
            awaiting_pkid: VecDeque::new(),
            in_flight: HashMap::new(),
            backlog_msgs: 0,
            next_output: 0,
        }
    }

    /// The broker accepted the connection: start draining the backlog from the oldest row.
    pub fn on_connected(&mut self) {
        self.reset();
        self.connected = true;
    }

    /// The connection is gone: nothing is in flight any more; all unacknowledged rows will be
    /// published again after the next [`PublishWindow::on_connected`].
    pub fn on_disconnected(&mut self) {
        self.reset();
        self.connected = false;
    }

    fn reset(&mut self) {
        self.awaiting_pkid.clear();
        self.in_flight.clear();
        self.backlog_msgs = 0;
        for o in &mut self.outputs {
            o.cursor = 0;
            o.caught_up = false;
            o.in_flight_rows.clear();
        }
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Messages submitted and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.awaiting_pkid.len() + self.in_flight.len()
    }

    /// Rows were committed to the spool: they are live on every output.
    pub fn on_committed(&mut self, rows: &[RowId], now: Instant) {
        for o in &mut self.outputs {
            for &r in rows {
                o.live.push_back((r, now));
            }
            // Beyond the capacity the oldest live rows are left to the backlog drain, which
            // reaches every pending row; memory stays bounded.
            while o.live.len() > self.live_capacity {
                o.live.pop_front();
                o.caught_up = false;
            }
        }
    }

    /// The next thing to publish, if the window has room.
    pub fn poll(&mut self, now: Instant) -> Option<Plan> {
        if !self.connected || self.in_flight() >= self.max_in_flight {
            return None;
        }
        let n = self.outputs.len();
        for i in 0..n {
            let idx = (self.next_output + i) % n;
            if let Some(plan) = self.poll_live(idx, now) {
                self.next_output = (idx + 1) % n;
                return Some(plan);
            }
        }
        if self.backlog_msgs >= self.max_in_flight - self.live_reserved {
            return None;
        }
        for i in 0..n {
            let idx = (self.next_output + i) % n;
            let Some(o) = self.outputs.get(idx) else {
                continue;
            };
            if !o.caught_up {
                self.next_output = (idx + 1) % n;
                let batch = o.limits.batch;
                return Some(Plan::Backlog {
                    output: idx,
                    after: o.cursor,
                    limit: batch + o.in_flight_rows.len(),
                    batch,
                });
            }
        }
        None
    }

    fn poll_live(&mut self, idx: usize, now: Instant) -> Option<Plan> {
        let o = self.outputs.get_mut(idx)?;
        // Rows at or below the cursor were already handled by the backlog drain.
        let cursor = o.cursor;
        o.live.retain(|(r, _)| *r > cursor);
        let oldest = o.live.front()?.1;
        let full = o.live.len() >= o.limits.batch;
        if !full && now.saturating_duration_since(oldest) < o.limits.linger {
            return None;
        }
        // Newest first: take the most recent rows, publish them ascending.
        let take = o.live.len().min(o.limits.batch);
        let mut rows: Vec<RowId> = Vec::with_capacity(take);
        for _ in 0..take {
            if let Some((r, _)) = o.live.pop_back() {
                rows.push(r);
            }
        }
        rows.reverse();
        Some(Plan::Live { output: idx, rows })
    }

    /// Filters rows read for a [`Plan::Backlog`]: skips rows already in flight on that output,
    /// keeps at most `batch`, advances the cursor and returns the rows to publish (possibly
    /// none). `requested` is the `limit` of the plan.
    pub fn take_backlog(
        &mut self,
        output: usize,
        fetched: &[RowId],
        requested: usize,
        batch: usize,
    ) -> Vec<RowId> {
        let Some(o) = self.outputs.get_mut(output) else {
            return Vec::new();
        };
        let mut taken = Vec::with_capacity(batch);
        let mut last_seen = None;
        for &r in fetched {
            if taken.len() >= batch {
                break;
            }
            last_seen = Some(r);
            if !o.in_flight_rows.contains(&r) {
                taken.push(r);
            }
        }
        if let Some(last) = last_seen {
            o.cursor = o.cursor.max(last);
        }
        if fetched.len() < requested && last_seen == fetched.last().copied() {
            o.caught_up = true;
        }
        taken
    }

    /// The driver handed a message to the client library.
    pub fn on_submitted(&mut self, s: Submitted) {
        if s.kind != Kind::Control
            && let Some(o) = self.outputs.get_mut(s.output)
        {
            o.in_flight_rows.extend(s.rows.iter().copied());
        }
        if s.kind == Kind::Backlog {
            self.backlog_msgs += 1;
        }
        self.awaiting_pkid.push_back(s);
    }

    /// The client library reported sending a QoS 1 publish with `pkid`: binds it to the oldest
    /// submission still waiting for its packet id.
    pub fn on_packet_sent(&mut self, pkid: u16) {
        match self.awaiting_pkid.pop_front() {
            Some(s) => {
                if let Some(old) = self.in_flight.insert(pkid, s) {
                    // A reused packet id means the old message was never acknowledged in this
                    // connection; forget it so its rows are resent after a reconnect.
                    warn!(pkid, "packet id reused while in flight");
                    self.forget(old);
                }
            }
            None => warn!(pkid, "outgoing publish with no matching submission"),
        }
    }

    /// A PUBACK arrived: returns what it acknowledged (rows to mark in the spool).
    pub fn on_ack(&mut self, pkid: u16) -> Option<Submitted> {
        let s = self.in_flight.remove(&pkid)?;
        self.forget(s.clone());
        Some(s)
    }

    fn forget(&mut self, s: Submitted) {
        if s.kind == Kind::Backlog {
            self.backlog_msgs = self.backlog_msgs.saturating_sub(1);
        }
        if s.kind != Kind::Control
            && let Some(o) = self.outputs.get_mut(s.output)
        {
            for r in &s.rows {
                o.in_flight_rows.remove(r);
            }
        }
    }

    /// When a partially filled live batch must go out, if one is waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        // With no free slot, nothing can go out at the deadline anyway: the next PUBACK wakes
        // the driver instead (and a past deadline would make it spin).
        if !self.connected || self.in_flight() >= self.max_in_flight {
            return None;
        }
        self.outputs
            .iter()
            .filter_map(|o| o.live.front().map(|(_, t)| *t + o.limits.linger))
            .min()
    }

    /// Whether every output has drained its backlog in this connection.
    pub fn caught_up(&self) -> bool {
        self.outputs.iter().all(|o| o.caught_up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(batch: usize) -> Vec<OutputLimits> {
        vec![OutputLimits {
            batch,
            linger: Duration::from_secs(5),
        }]
    }

    /// Plays the driver against an in-memory "spool" of pending row ids.
    fn drive(w: &mut PublishWindow, pending: &[RowId], now: Instant) -> Vec<Submitted> {
        let mut sent = Vec::new();
        while let Some(plan) = w.poll(now) {
            let s = match plan {
                Plan::Backlog {
                    output,
                    after,
                    limit,
                    batch,
                } => {
                    let fetched: Vec<RowId> = pending
                        .iter()
                        .copied()
                        .filter(|r| *r > after)
                        .take(limit)
                        .collect();
                    let rows = w.take_backlog(output, &fetched, limit, batch);
                    if rows.is_empty() {
                        continue;
                    }
                    Submitted {
                        output,
                        rows,
                        kind: Kind::Backlog,
                    }
                }
                Plan::Live { output, rows } => Submitted {
                    output,
                    rows,
                    kind: Kind::Live,
                },
            };
            w.on_submitted(s.clone());
            sent.push(s);
        }
        sent
    }

    #[test]
    fn drains_backlog_in_order_within_the_window() {
        let now = Instant::now();
        let mut w = PublishWindow::new(4, 1, &one(1));
        w.on_connected();
        let pending: Vec<RowId> = (1..=10).collect();
        let sent = drive(&mut w, &pending, now);
        // 3 backlog slots (1 reserved for live).
        assert_eq!(
            sent.iter().map(|s| s.rows[0]).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        for (i, _) in sent.iter().enumerate() {
            w.on_packet_sent(i as u16 + 1);
        }
        let acked = w.on_ack(1).unwrap();
        assert_eq!(acked.rows, vec![1]);
        let pending: Vec<RowId> = (2..=10).collect();
        let sent = drive(&mut w, &pending, now);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].rows, vec![4]);
    }

    #[test]
    fn live_records_are_not_starved_by_backlog() {
        let now = Instant::now();
        let mut w = PublishWindow::new(4, 1, &one(1));
        w.on_connected();
        let mut pending: Vec<RowId> = (1..=100).collect();
        let first = drive(&mut w, &pending, now);
        assert_eq!(first.len(), 3);
        pending.push(101);
        w.on_committed(&[101], now);
        let next = drive(&mut w, &pending, now);
        assert_eq!(
            next,
            vec![Submitted {
                output: 0,
                rows: vec![101],
                kind: Kind::Live
            }]
        );
        assert!(w.poll(now).is_none(), "window full");
    }

    #[test]
    fn reconnect_resends_unacknowledged_rows_and_forgets_packet_ids() {
        let now = Instant::now();
        let mut w = PublishWindow::new(8, 2, &one(2));
        w.on_connected();
        let pending: Vec<RowId> = (1..=4).collect();
        let sent = drive(&mut w, &pending, now);
        assert_eq!(
            sent.iter().map(|s| s.rows.clone()).collect::<Vec<_>>(),
            vec![vec![1, 2], vec![3, 4]]
        );
        w.on_packet_sent(1);
        w.on_packet_sent(2);
        assert_eq!(w.on_ack(1).unwrap().rows, vec![1, 2]);
        w.on_disconnected();
        assert_eq!(w.in_flight(), 0);
        assert!(w.poll(now).is_none(), "nothing is sent while disconnected");
        assert!(
            w.on_ack(2).is_none(),
            "acks of the old connection are ignored"
        );
        w.on_connected();
        let sent = drive(&mut w, &[3, 4], now);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].rows, vec![3, 4]);
    }

    #[test]
    fn backlog_skips_rows_already_in_flight_as_live() {
        let now = Instant::now();
        let mut w = PublishWindow::new(8, 2, &one(1));
        w.on_connected();
        w.on_committed(&[5], now);
        let sent = drive(&mut w, &[1, 2, 5], now);
        let rows: Vec<RowId> = sent.iter().map(|s| s.rows[0]).collect();
        assert_eq!(
            rows,
            vec![5, 1, 2],
            "live first, then backlog without a duplicate"
        );
        assert!(w.caught_up());
    }

    #[test]
    fn live_batches_wait_for_linger_or_a_full_batch() {
        let t0 = Instant::now();
        let mut w = PublishWindow::new(8, 2, &one(3));
        w.on_connected();
        // Backlog empty.
        assert!(drive(&mut w, &[], t0).is_empty());
        w.on_committed(&[1, 2], t0);
        assert!(
            drive(&mut w, &[1, 2], t0).is_empty(),
            "batch not full, linger not over"
        );
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(5)));
        let later = t0 + Duration::from_secs(5);
        let sent = drive(&mut w, &[1, 2], later);
        assert_eq!(
            sent,
            vec![Submitted {
                output: 0,
                rows: vec![1, 2],
                kind: Kind::Live
            }]
        );
        w.on_committed(&[3, 4, 5], later);
        let sent = drive(&mut w, &[1, 2, 3, 4, 5], later);
        assert_eq!(sent[0].rows, vec![3, 4, 5]);
    }

    #[test]
    fn outputs_are_tracked_separately() {
        let now = Instant::now();
        let limits = vec![
            OutputLimits {
                batch: 1,
                linger: Duration::ZERO,
            },
            OutputLimits {
                batch: 10,
                linger: Duration::ZERO,
            },
        ];
        let mut w = PublishWindow::new(16, 2, &limits);
        w.on_connected();
        let sent = drive(&mut w, &[1, 2, 3], now);
        let out0: Vec<_> = sent
            .iter()
            .filter(|s| s.output == 0)
            .flat_map(|s| s.rows.clone())
            .collect();
        let out1: Vec<_> = sent
            .iter()
            .filter(|s| s.output == 1)
            .flat_map(|s| s.rows.clone())
            .collect();
        assert_eq!(out0, vec![1, 2, 3]);
        assert_eq!(out1, vec![1, 2, 3]);
        assert_eq!(sent.iter().filter(|s| s.output == 1).count(), 1);
    }

    #[test]
    fn control_messages_bind_packet_ids_in_order() {
        let now = Instant::now();
        let mut w = PublishWindow::new(4, 1, &one(1));
        w.on_connected();
        w.on_submitted(Submitted {
            output: 0,
            rows: vec![],
            kind: Kind::Control,
        });
        let sent = drive(&mut w, &[7], now);
        assert_eq!(sent[0].rows, vec![7]);
        w.on_packet_sent(1);
        w.on_packet_sent(2);
        assert_eq!(w.on_ack(1).unwrap().kind, Kind::Control);
        assert_eq!(w.on_ack(2).unwrap().rows, vec![7]);
        assert_eq!(w.in_flight(), 0);
    }
}
