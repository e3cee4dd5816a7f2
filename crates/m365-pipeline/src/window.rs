//! The publish window: pure state that decides what to publish next, remembers which MQTT packet
//! id carries which spool rows, tells what may be deleted on each PUBACK and what to resend after
//! a reconnect. No I/O and no clock: the driver passes `now` and feeds it events, like
//! rumqttc's `MqttState` beside its event loop.
//!
//! Rules:
//! * At most `max_in_flight` messages are unacknowledged (records and control messages alike).
//! * **Oldest first.** Every row is published in ascending row id (commit order) within its
//!   run: the *backlog* (every row pending when the connection came up, read from the spool with
//!   a cursor) and the *live* rows (committed while connected, queued in memory). Rows committed
//!   while disconnected are backlog, never live.
//! * **Live rows are not starved.** While a backlog drains, live rows may take any free slot
//!   and backlog messages never occupy the last `live_reserved` slots. The price is order across
//!   the two runs: a subscriber sees the backlog ascending and the live rows ascending,
//!   interleaved, every live row newer than every backlog row committed before the connection.
//!   A backlog that fits in the backlog share of the window goes out at once on connection,
//!   before any live row, so short outages keep one ascending sequence.
//! * **Bounded live queue.** When more than `live_capacity` live rows wait (the broker is slower
//!   than the sampler), the live queue stops taking rows and the newer ones are left to the
//!   backlog drain, which reaches every pending row in order; live queuing resumes once the
//!   drain has caught up. Memory stays bounded and the order is kept.
//! * **One plan, one message.** A plan may name rows the driver cannot put in one message (a
//!   ride event and telemetry never share one); the driver publishes the leading part and hands
//!   the rest back ([`PublishWindow::give_back`]), which is planned again first, so every
//!   submission is still one publish and one PUBACK.
//! * Packet ids are learnt in send order (the client library reports each outgoing publish), so
//!   submissions wait in a FIFO until their packet id is known.
//! * On disconnect, everything in flight and queued live is forgotten and the backlog cursor goes
//!   back to the start: every unacknowledged row is published again, oldest first, on the next
//!   connection (QoS 1 is at-least-once; a resend carries the same record id).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::spool::RowId;

/// Per-output limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputLimits {
    /// Records per message.
    pub batch: usize,
    /// Longest wait for a live batch to fill.
    pub linger: Duration,
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
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
pub(crate) enum Kind {
    /// Backlog drain.
    Backlog,
    /// Live record(s).
    Live,
    /// Availability or status message.
    Control,
}

/// One submitted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Submitted {
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
    /// The live queue overflowed: newer rows are left to the backlog until it catches up.
    live_paused: bool,
    /// The rows (with their commit times) of the latest live plan, for [`PublishWindow::give_back`].
    last_live: Vec<(RowId, Instant)>,
    in_flight_rows: HashSet<RowId>,
}

/// The window.
#[derive(Debug, Clone)]
pub(crate) struct PublishWindow {
    max_in_flight: usize,
    live_reserved: usize,
    live_capacity: usize,
    connected: bool,
    outputs: Vec<OutputState>,
    awaiting_pkid: VecDeque<Submitted>,
    in_flight: HashMap<u16, Submitted>,
    backlog_msgs: usize,
    next_output: usize,
    no_linger: bool,
}

impl PublishWindow {
    /// A window for `outputs` with `max_in_flight` messages of which `live_reserved` are kept
    /// for live records.
    pub(crate) fn new(
        max_in_flight: usize,
        live_reserved: usize,
        outputs: &[OutputLimits],
    ) -> Self {
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
                    live_paused: false,
                    last_live: Vec::new(),
                    in_flight_rows: HashSet::new(),
                })
                .collect(),
            awaiting_pkid: VecDeque::new(),
            in_flight: HashMap::new(),
            backlog_msgs: 0,
            next_output: 0,
            no_linger: false,
        }
    }

    /// The broker accepted the connection: start draining the backlog from the oldest row.
    pub(crate) fn on_connected(&mut self) {
        self.reset();
        self.connected = true;
    }

    /// The connection is gone: nothing is in flight any more; all unacknowledged rows will be
    /// published again after the next [`PublishWindow::on_connected`].
    pub(crate) fn on_disconnected(&mut self) {
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
            o.live.clear();
            o.live_paused = false;
            o.last_live.clear();
            o.in_flight_rows.clear();
        }
    }

    /// Whether the broker connection is up.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    /// Messages submitted and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> usize {
        self.awaiting_pkid.len() + self.in_flight.len()
    }

    /// Rows were committed to the spool (ascending). While connected they are live on every
    /// output; while disconnected they are backlog for the next connection.
    pub(crate) fn on_committed(&mut self, rows: &[RowId], now: Instant) {
        if !self.connected {
            return;
        }
        for o in &mut self.outputs {
            for &r in rows {
                if o.live_paused {
                    break;
                }
                if o.live.len() >= self.live_capacity {
                    // Left to the backlog drain, which reads every pending row in order; the
                    // queue stays bounded and no newer row may overtake these.
                    o.live_paused = true;
                    o.caught_up = false;
                    break;
                }
                o.live.push_back((r, now));
            }
        }
    }

    /// Shutting down: partial live batches go out at once instead of waiting for their linger.
    pub(crate) fn stop_lingering(&mut self) {
        self.no_linger = true;
    }

    /// Sets how many live rows per output may wait in memory (default 256).
    #[cfg(test)]
    pub(crate) fn set_live_capacity(&mut self, rows: usize) {
        self.live_capacity = rows.max(1);
    }

    /// The next thing to publish, if the window has room.
    pub(crate) fn poll(&mut self, now: Instant) -> Option<Plan> {
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
        if !full && !self.no_linger && now.saturating_duration_since(oldest) < o.limits.linger {
            return None;
        }
        // Oldest first, so one topic sees the live rows in commit order.
        let take = o.live.len().min(o.limits.batch);
        o.last_live.clear();
        o.last_live.extend(o.live.drain(..take));
        let rows: Vec<RowId> = o.last_live.iter().map(|(r, _)| *r).collect();
        Some(Plan::Live { output: idx, rows })
    }

    /// The driver published only the leading part of the latest plan for `output` (of `kind`):
    /// `rows`, the ascending tail it did not publish, are planned again before anything newer.
    /// Live rows go back to the front of the live queue with their commit times (so a batch
    /// whose linger is over still goes out at once); backlog rows are read again, the cursor
    /// moving back to just before them.
    pub(crate) fn give_back(&mut self, output: usize, kind: Kind, rows: &[RowId]) {
        let (Some(&first), Some(o)) = (rows.first(), self.outputs.get_mut(output)) else {
            return;
        };
        match kind {
            Kind::Live => {
                for &r in rows.iter().rev() {
                    let committed = o
                        .last_live
                        .iter()
                        .find(|(x, _)| *x == r)
                        .or(o.last_live.first())
                        .map(|(_, t)| *t);
                    if let Some(t) = committed {
                        o.live.push_front((r, t));
                    }
                }
            }
            Kind::Backlog => {
                o.cursor = o.cursor.min(first.saturating_sub(1));
                o.caught_up = false;
            }
            Kind::Control => {}
        }
    }

    /// Filters rows read for a [`Plan::Backlog`]: skips rows already in flight on that output,
    /// keeps at most `batch`, advances the cursor and returns the rows to publish (possibly
    /// none). `requested` is the `limit` of the plan.
    pub(crate) fn take_backlog(
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
            // Every pending row has been seen: newer commits can go live again.
            o.live_paused = false;
        }
        taken
    }

    /// The driver handed a message to the client library.
    pub(crate) fn on_submitted(&mut self, s: Submitted) {
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
    pub(crate) fn on_packet_sent(&mut self, pkid: u16) {
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
    pub(crate) fn on_ack(&mut self, pkid: u16) -> Option<Submitted> {
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
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
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
    #[cfg(test)]
    pub(crate) fn caught_up(&self) -> bool {
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

    #[test]
    fn rows_given_back_are_planned_again_first() {
        let t0 = Instant::now();
        let mut w = PublishWindow::new(8, 2, &one(4));
        w.on_connected();
        // Backlog: rows 1..=6 pending, the driver publishes only 1 and 2 of the first plan.
        let Some(Plan::Backlog {
            output,
            after,
            limit,
            batch,
        }) = w.poll(t0)
        else {
            panic!("a backlog plan first");
        };
        let fetched: Vec<RowId> = (1..=6).filter(|r| *r > after).take(limit).collect();
        let rows = w.take_backlog(output, &fetched, limit, batch);
        assert_eq!(rows, vec![1, 2, 3, 4]);
        w.give_back(0, Kind::Backlog, &[3, 4]);
        w.on_submitted(Submitted {
            output: 0,
            rows: vec![1, 2],
            kind: Kind::Backlog,
        });
        let sent = drive(&mut w, &[1, 2, 3, 4, 5, 6], t0);
        assert_eq!(rows_of(&sent), vec![3, 4, 5, 6], "read again from row 3");
        assert!(w.caught_up());

        // Live: a full batch of four, of which only row 7 is published.
        w.on_committed(&[7, 8, 9, 10], t0);
        let later = t0 + Duration::from_millis(10);
        assert_eq!(
            w.poll(later),
            Some(Plan::Live {
                output: 0,
                rows: vec![7, 8, 9, 10]
            })
        );
        w.give_back(0, Kind::Live, &[8, 9, 10]);
        w.on_submitted(Submitted {
            output: 0,
            rows: vec![7],
            kind: Kind::Live,
        });
        w.on_committed(&[11], later);
        // Three rows given back plus one new: a full batch again, oldest first.
        assert_eq!(
            w.poll(later),
            Some(Plan::Live {
                output: 0,
                rows: vec![8, 9, 10, 11]
            })
        );
        // Given back alone, they keep their commit time: due when its linger is over.
        w.give_back(0, Kind::Live, &[9, 10, 11]);
        assert_eq!(w.next_deadline(), Some(t0 + Duration::from_secs(5)));
    }

    fn rows_of(sent: &[Submitted]) -> Vec<RowId> {
        sent.iter().flat_map(|s| s.rows.clone()).collect()
    }

    /// Acknowledges every submitted message (packet ids bound in send order first).
    fn ack_all(w: &mut PublishWindow, sent: &[Submitted], next_pkid: &mut u16) -> Vec<RowId> {
        let mut acked = Vec::new();
        for _ in sent {
            w.on_packet_sent(*next_pkid);
            acked.extend(w.on_ack(*next_pkid).unwrap().rows);
            *next_pkid += 1;
        }
        acked
    }

    #[test]
    fn one_commit_batch_goes_out_in_row_order() {
        let now = Instant::now();
        let mut w = PublishWindow::new(8, 2, &one(1));
        w.on_connected();
        assert!(drive(&mut w, &[], now).is_empty(), "empty backlog");
        w.on_committed(&[1, 2, 3, 4], now);
        let sent = drive(&mut w, &[1, 2, 3, 4], now);
        assert_eq!(rows_of(&sent), vec![1, 2, 3, 4]);
        assert!(sent.iter().all(|s| s.kind == Kind::Live));
    }

    #[test]
    fn rows_committed_while_disconnected_replay_oldest_first() {
        let now = Instant::now();
        let mut w = PublishWindow::new(8, 2, &one(1));
        w.on_connected();
        drive(&mut w, &[], now);
        // Two rows live and in flight when the connection drops, unacknowledged.
        w.on_committed(&[1, 2], now);
        assert_eq!(rows_of(&drive(&mut w, &[1, 2], now)), vec![1, 2]);
        w.on_disconnected();
        w.on_committed(&[3, 4], now);
        w.on_committed(&[5], now);
        w.on_connected();
        let sent = drive(&mut w, &[1, 2, 3, 4, 5], now);
        assert_eq!(rows_of(&sent), vec![1, 2, 3, 4, 5]);
        assert!(sent.iter().all(|s| s.kind == Kind::Backlog));
        assert!(w.caught_up());
    }

    #[test]
    fn live_rows_queued_at_a_disconnect_become_backlog() {
        let now = Instant::now();
        // Window of one: rows 2 and 3 wait in the live queue behind row 1.
        let mut w = PublishWindow::new(1, 0, &one(1));
        w.on_connected();
        drive(&mut w, &[], now);
        w.on_committed(&[1, 2, 3], now);
        assert_eq!(rows_of(&drive(&mut w, &[1, 2, 3], now)), vec![1]);
        w.on_disconnected();
        w.on_committed(&[4], now);
        w.on_connected();
        let mut pkid = 1;
        let mut pending: Vec<RowId> = vec![1, 2, 3, 4];
        let mut order = Vec::new();
        while !pending.is_empty() {
            let sent = drive(&mut w, &pending, now);
            assert!(!sent.is_empty(), "stalled with {pending:?} pending");
            order.extend(rows_of(&sent));
            for r in ack_all(&mut w, &sent, &mut pkid) {
                pending.retain(|p| *p != r);
            }
        }
        assert_eq!(order, vec![1, 2, 3, 4]);
    }

    #[test]
    fn a_draining_backlog_and_live_rows_are_each_in_order() {
        let now = Instant::now();
        let mut w = PublishWindow::new(4, 1, &one(1));
        let mut pending: Vec<RowId> = (1..=20).collect();
        w.on_connected();
        let mut pkid = 1;
        let mut order = Vec::new();
        let mut next_row = 21;
        while !pending.is_empty() || next_row <= 30 {
            // One live row committed per round trip while the backlog drains.
            if next_row <= 30 {
                pending.push(next_row);
                w.on_committed(&[next_row], now);
                next_row += 1;
            }
            let sent = drive(&mut w, &pending, now);
            order.extend(rows_of(&sent));
            for r in ack_all(&mut w, &sent, &mut pkid) {
                pending.retain(|p| *p != r);
            }
        }
        let backlog: Vec<RowId> = order.iter().copied().filter(|r| *r <= 20).collect();
        let live: Vec<RowId> = order.iter().copied().filter(|r| *r > 20).collect();
        assert_eq!(backlog, (1..=20).collect::<Vec<_>>());
        assert_eq!(live, (21..=30).collect::<Vec<_>>());
        let first_live = order.iter().position(|r| *r > 20).unwrap();
        assert!(
            first_live < order.iter().position(|r| *r == 20).unwrap(),
            "live rows were not held back by the backlog: {order:?}"
        );
    }

    #[test]
    fn an_overflowing_live_queue_falls_back_to_the_ordered_drain() {
        let now = Instant::now();
        let mut w = PublishWindow::new(2, 1, &one(1));
        w.set_live_capacity(3);
        w.on_connected();
        drive(&mut w, &[], now);
        let mut pending: Vec<RowId> = Vec::new();
        let mut order = Vec::new();
        let mut pkid = 1;
        // Ten rows committed in one go against a window of two: seven overflow the live queue.
        pending.extend(1..=10);
        w.on_committed(&(1..=10).collect::<Vec<_>>(), now);
        let mut rounds = 0;
        while !pending.is_empty() {
            rounds += 1;
            assert!(rounds < 100, "stalled with {pending:?} pending");
            if rounds == 3 {
                // A later commit while the fallback drain runs: it must not overtake.
                pending.push(11);
                w.on_committed(&[11], now);
            }
            let sent = drive(&mut w, &pending, now);
            order.extend(rows_of(&sent));
            for r in ack_all(&mut w, &sent, &mut pkid) {
                pending.retain(|p| *p != r);
            }
        }
        assert_eq!(order, (1..=11).collect::<Vec<_>>());
        assert!(!w.caught_up(), "the drain has not yet seen the end");
        assert!(drive(&mut w, &[], now).is_empty());
        assert!(w.caught_up());
        w.on_committed(&[12], now);
        let sent = drive(&mut w, &[12], now);
        assert_eq!(sent[0].kind, Kind::Live, "live again once caught up");
    }
}
