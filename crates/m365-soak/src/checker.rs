//! The checker's logic, pure: what a subscriber saw per scooter, judged against the delivery
//! guarantees of `docs/telemetry-schema.md` §4.
//!
//! - **None lost**: every sequence number the spool handed out (its numbering at the end) was
//!   delivered, or is still in the spool at the end (then it is *pending*, not lost).
//! - **Duplicates** carry the record id of the first delivery (same `seq`, other id is a
//!   conflict: numbering went back) and arrive only around a disruption: a start of that
//!   scooter's client (after a kill, an exit) or of the broker, within a window.
//! - **Order within a connection** (from one `online` on the availability topic to the next):
//!   first deliveries are the backlog (ascending) interleaved with live records (ascending),
//!   every live record newer than every backlog record. Anything else is out of order.
//! - **Spool within its bounds**: the status topic's `spool_bytes` stays within `max_bytes`,
//!   and `dropped_spool` stays 0 (a dropped record is a lost one).
//! - **Timestamps**: a record stamped `system` is never before 2020 (the clock rule).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};

/// One telemetry message as received.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivery {
    /// Its sequence number.
    pub(crate) seq: u64,
    /// Its record id (UUID v7).
    pub(crate) record_id: String,
    /// When it arrived, from the start of the soak.
    pub(crate) at: Duration,
    /// Its timestamp.
    pub(crate) ts: Option<DateTime<Utc>>,
    /// `system`, `gps` or `untrusted_system`.
    pub(crate) ts_source: String,
}

/// Something the subscriber saw for one scooter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Observation {
    /// A record.
    Record(Delivery),
    /// `online` on the availability topic: the client (re)connected.
    Online(Duration),
    /// A status message.
    Status {
        /// `spool_bytes`.
        spool_bytes: u64,
        /// `dropped_spool`.
        dropped_spool: u64,
    },
}

/// The spool's state at the end of the run (after the client stopped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SpoolEnd {
    /// The next sequence number it would hand out: `1..next_seq` were sampled.
    pub(crate) next_seq: u64,
    /// Sequence numbers still waiting in it.
    pub(crate) pending: BTreeSet<u64>,
}

/// Limits the checks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A duplicate is explained by a disruption that came at most this long before it.
    pub(crate) dup_window: Duration,
    /// `[spool] max_bytes` of the clients.
    pub(crate) max_bytes: u64,
}

/// A second (or later) delivery of a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Duplicate {
    seq: u64,
    at: Duration,
    same_id: bool,
}

/// What one scooter's subscriber saw.
#[derive(Debug, Default)]
struct ScooterLog {
    first: BTreeMap<u64, (String, Duration)>,
    duplicates: Vec<Duplicate>,
    /// First deliveries per connection, in arrival order.
    segments: Vec<Vec<u64>>,
    disruptions: Vec<Duration>,
    max_spool_bytes: u64,
    max_dropped: u64,
    ts_sources: BTreeMap<String, u64>,
    early_system_ts: Vec<u64>,
}

/// Collects observations and judges them.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    scooters: HashMap<String, ScooterLog>,
    /// Disruptions of every scooter (broker starts, the checker's own reconnections).
    global: Vec<Duration>,
}

/// The verdict for one scooter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Sequence numbers handed out.
    pub(crate) sampled: u64,
    /// Distinct sequence numbers delivered.
    pub(crate) delivered: u64,
    /// Sampled, never delivered and not in the spool.
    pub(crate) lost: Vec<u64>,
    /// Still in the spool at the end.
    pub(crate) pending: u64,
    /// Deliveries beyond the first.
    pub(crate) duplicates: u64,
    /// Connections seen (`online` messages).
    pub(crate) connections: u64,
    /// Largest `spool_bytes` reported.
    pub(crate) max_spool_bytes: u64,
    /// Records by timestamp source.
    pub(crate) ts_sources: BTreeMap<String, u64>,
    /// Every broken rule, in words.
    pub(crate) violations: Vec<String>,
}

impl Checker {
    /// An empty checker.
    pub(crate) fn new() -> Self {
        Checker::default()
    }

    /// Records what the subscriber saw for `scooter`.
    pub(crate) fn observe(&mut self, scooter: &str, observation: Observation) {
        let log = self.scooters.entry(scooter.to_owned()).or_default();
        match observation {
            Observation::Record(d) => log.record(d),
            Observation::Online(_) => log.segments.push(Vec::new()),
            Observation::Status {
                spool_bytes,
                dropped_spool,
            } => {
                log.max_spool_bytes = log.max_spool_bytes.max(spool_bytes);
                log.max_dropped = log.max_dropped.max(dropped_spool);
            }
        }
    }

    /// A disruption at `at`: of one scooter's client, or of all (`None`: the broker).
    pub(crate) fn disruption(&mut self, scooter: Option<&str>, at: Duration) {
        match scooter {
            Some(s) => self
                .scooters
                .entry(s.to_owned())
                .or_default()
                .disruptions
                .push(at),
            None => self.global.push(at),
        }
    }

    /// Whether every sequence number below `next_seq` has been delivered to `scooter`.
    pub(crate) fn delivered_below(&self, scooter: &str, next_seq: u64) -> bool {
        let Some(log) = self.scooters.get(scooter) else {
            return next_seq <= 1;
        };
        next_seq <= 1 || log.first.range(1..next_seq).count() as u64 == next_seq - 1
    }

    /// How many sequence numbers below `end.next_seq` are neither delivered nor pending.
    pub(crate) fn undelivered(&self, scooter: &str, end: &SpoolEnd) -> u64 {
        let log = self.scooters.get(scooter);
        (1..end.next_seq)
            .filter(|s| !end.pending.contains(s))
            .filter(|s| log.is_none_or(|l| !l.first.contains_key(s)))
            .count() as u64
    }

    /// The verdict for `scooter`, given its spool at the end (`None`: unreadable).
    pub(crate) fn verdict(&self, scooter: &str, end: Option<&SpoolEnd>, limits: Limits) -> Verdict {
        let empty = ScooterLog::default();
        let log = self.scooters.get(scooter).unwrap_or(&empty);
        let mut v = Verdict {
            delivered: log.first.len() as u64,
            duplicates: log.duplicates.len() as u64,
            connections: log.segments.len() as u64,
            max_spool_bytes: log.max_spool_bytes,
            ts_sources: log.ts_sources.clone(),
            ..Verdict::default()
        };
        let max_delivered = log.first.keys().next_back().copied().unwrap_or(0);
        let pending = end.map(|e| e.pending.clone()).unwrap_or_default();
        v.pending = pending.len() as u64;
        match end {
            Some(e) => v.sampled = e.next_seq.saturating_sub(1).max(max_delivered),
            None => {
                v.sampled = max_delivered;
                v.violations
                    .push("the spool could not be read at the end".to_owned());
            }
        }
        v.lost = (1..=v.sampled)
            .filter(|s| !log.first.contains_key(s) && !pending.contains(s))
            .collect();
        if !v.lost.is_empty() {
            v.violations.push(format!(
                "{} records lost: seq {}",
                v.lost.len(),
                ranges(&v.lost)
            ));
        }
        if v.sampled == 0 {
            v.violations.push("no record was sampled".to_owned());
        }
        if !pending.is_empty() {
            v.violations.push(format!(
                "{} records still in the spool at the end: seq {}",
                pending.len(),
                ranges(&pending.iter().copied().collect::<Vec<_>>())
            ));
        }
        let conflicts: Vec<u64> = log
            .duplicates
            .iter()
            .filter(|d| !d.same_id)
            .map(|d| d.seq)
            .collect();
        if !conflicts.is_empty() {
            v.violations.push(format!(
                "{} sequence numbers delivered with two record ids (numbering went back): seq {}",
                conflicts.len(),
                ranges(&conflicts)
            ));
        }
        let unexplained: Vec<&Duplicate> = log
            .duplicates
            .iter()
            .filter(|d| d.same_id)
            .filter(|d| {
                !log.disruptions
                    .iter()
                    .chain(&self.global)
                    .any(|&at| at <= d.at && d.at <= at + limits.dup_window)
            })
            .collect();
        if let Some(first) = unexplained.first() {
            v.violations.push(format!(
                "{} duplicates with no kill, restart or broker restart in the {:?} before them \
                 (first: seq {} at +{:.1}s)",
                unexplained.len(),
                limits.dup_window,
                first.seq,
                first.at.as_secs_f64()
            ));
        }
        for (n, segment) in log.segments.iter().enumerate() {
            if let Err(why) = backlog_and_live(segment) {
                v.violations
                    .push(format!("connection {}: out of order: {why}", n + 1));
            }
        }
        if log.max_spool_bytes > limits.max_bytes {
            v.violations.push(format!(
                "spool_bytes {} above max_bytes {}",
                log.max_spool_bytes, limits.max_bytes
            ));
        }
        if log.max_dropped > 0 {
            v.violations.push(format!(
                "the spool dropped {} records (dropped_spool)",
                log.max_dropped
            ));
        }
        if !log.early_system_ts.is_empty() {
            v.violations.push(format!(
                "{} records stamped `system` before 2020: seq {}",
                log.early_system_ts.len(),
                ranges(&log.early_system_ts)
            ));
        }
        v
    }
}

impl ScooterLog {
    fn record(&mut self, d: Delivery) {
        if let Some((id, _)) = self.first.get(&d.seq) {
            self.duplicates.push(Duplicate {
                seq: d.seq,
                at: d.at,
                same_id: *id == d.record_id,
            });
            return;
        }
        *self.ts_sources.entry(d.ts_source.clone()).or_default() += 1;
        if d.ts_source == "system" && d.ts.is_some_and(|ts| ts < trusted_from()) {
            self.early_system_ts.push(d.seq);
        }
        if self.segments.is_empty() {
            // Records before the first `online` seen (the subscriber joined late).
            self.segments.push(Vec::new());
        }
        if let Some(segment) = self.segments.last_mut() {
            segment.push(d.seq);
        }
        self.first.insert(d.seq, (d.record_id, d.at));
    }
}

/// 2020-01-01T00:00:00Z: a system clock before it is not trusted.
fn trusted_from() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether `seqs` (distinct, in arrival order) is an ascending backlog interleaved with
/// ascending live records that are all newer than the backlog.
///
/// That holds exactly when some threshold splits it into two ascending runs, i.e. when every
/// number that arrived after a larger one (it must be backlog) is below every number that
/// arrived before a smaller one (it must be live).
pub(crate) fn backlog_and_live(seqs: &[u64]) -> Result<(), String> {
    let mut late_backlog: Option<(u64, u64)> = None; // (max such number, the larger one before it)
    let mut prefix_max = 0u64;
    for &s in seqs {
        if prefix_max > s && late_backlog.is_none_or(|(m, _)| s > m) {
            late_backlog = Some((s, prefix_max));
        }
        prefix_max = prefix_max.max(s);
    }
    let mut early_live: Option<u64> = None;
    let mut suffix_min = u64::MAX;
    for &s in seqs.iter().rev() {
        if suffix_min < s {
            early_live = Some(early_live.map_or(s, |m| m.min(s)));
        }
        suffix_min = suffix_min.min(s);
    }
    match (late_backlog, early_live) {
        (Some((y, before)), Some(x)) if y >= x => Err(format!(
            "seq {y} arrived after seq {before}, and is not older than live seq {x}"
        )),
        _ => Ok(()),
    }
}

/// `1-3, 7, 9-10` for `[1, 2, 3, 7, 9, 10]` (at most 12 ranges, then `…`).
pub(crate) fn ranges(seqs: &[u64]) -> String {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.len() > 12 {
        out.truncate(12);
        out.push("…".to_owned());
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        dup_window: Duration::from_secs(30),
        max_bytes: 4 << 20,
    };

    fn rec(seq: u64, at_s: u64) -> Observation {
        rec_id(seq, at_s, &format!("id-{seq}"))
    }

    fn rec_id(seq: u64, at_s: u64, id: &str) -> Observation {
        Observation::Record(Delivery {
            seq,
            record_id: id.to_owned(),
            at: Duration::from_secs(at_s),
            ts: Some(Utc::now()),
            ts_source: "system".to_owned(),
        })
    }

    fn end(next_seq: u64) -> SpoolEnd {
        SpoolEnd {
            next_seq,
            pending: BTreeSet::new(),
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let mut c = Checker::new();
        c.observe("a", Observation::Online(Duration::ZERO));
        for s in 1..=10 {
            c.observe("a", rec(s, s));
        }
        let v = c.verdict("a", Some(&end(11)), LIMITS);
        assert_eq!(v.violations, Vec::<String>::new());
        assert_eq!((v.sampled, v.delivered, v.lost.len()), (10, 10, 0));
        assert!(c.delivered_below("a", 11));
        assert!(!c.delivered_below("a", 12));
    }

    #[test]
    fn gaps_and_records_never_sent_are_lost_and_pending_ones_are_not() {
        let mut c = Checker::new();
        c.observe("a", Observation::Online(Duration::ZERO));
        for s in [1, 2, 3, 6, 7] {
            c.observe("a", rec(s, s));
        }
        // 4 and 5 never arrived; the spool numbered up to 9 and still holds 9.
        let spool = SpoolEnd {
            next_seq: 10,
            pending: [9].into(),
        };
        let v = c.verdict("a", Some(&spool), LIMITS);
        assert_eq!(v.lost, vec![4, 5, 8]);
        assert_eq!(v.pending, 1);
        assert!(
            v.violations
                .iter()
                .any(|m| m.contains("3 records lost: seq 4-5, 8"))
        );
        assert!(
            v.violations
                .iter()
                .any(|m| m.contains("still in the spool"))
        );
    }

    #[test]
    fn duplicates_pass_only_around_a_disruption_and_only_with_the_same_id() {
        let mut c = Checker::new();
        c.observe("a", Observation::Online(Duration::ZERO));
        for s in 1..=5 {
            c.observe("a", rec(s, s));
        }
        // The client was killed and restarted at 20 s: a resend of 4 and 5 is expected.
        c.disruption(Some("a"), Duration::from_secs(20));
        c.observe("a", Observation::Online(Duration::from_secs(21)));
        c.observe("a", rec(4, 22));
        c.observe("a", rec(5, 22));
        c.observe("a", rec(6, 23));
        let v = c.verdict("a", Some(&end(7)), LIMITS);
        assert_eq!(v.violations, Vec::<String>::new(), "{v:?}");
        assert_eq!(v.duplicates, 2);

        // Long after any disruption, a resend is a violation.
        c.observe("a", rec(6, 200));
        let v = c.verdict("a", Some(&end(7)), LIMITS);
        assert!(
            v.violations
                .iter()
                .any(|m| m.starts_with("1 duplicates with no kill")),
            "{v:?}"
        );

        // A broker restart explains duplicates of every scooter.
        let mut c = Checker::new();
        c.observe("b", rec(1, 1));
        c.disruption(None, Duration::from_secs(50));
        c.observe("b", rec(1, 51));
        assert_eq!(
            c.verdict("b", Some(&end(2)), LIMITS).violations,
            Vec::<String>::new()
        );

        // The same seq with another record id: numbering went back.
        c.observe("b", rec_id(1, 52, "other"));
        let v = c.verdict("b", Some(&end(2)), LIMITS);
        assert!(
            v.violations.iter().any(|m| m.contains("two record ids")),
            "{v:?}"
        );
    }

    #[test]
    fn order_is_checked_per_connection() {
        // Backlog 3, 4, 5 interleaved with live 8, 9, 10 passes.
        assert!(backlog_and_live(&[3, 8, 4, 9, 5, 10]).is_ok());
        assert!(backlog_and_live(&[1, 2, 3]).is_ok());
        assert!(backlog_and_live(&[]).is_ok());
        // A backlog record not older than a live one does not.
        assert!(backlog_and_live(&[3, 8, 4, 9, 10, 9_000, 8_500]).is_err());
        let err = backlog_and_live(&[5, 7, 6, 4]).unwrap_err();
        assert!(err.contains("seq 6"), "{err}");
        assert!(backlog_and_live(&[2, 1, 4, 3]).is_err());

        let mut c = Checker::new();
        c.observe("a", Observation::Online(Duration::ZERO));
        for s in [1, 2, 3] {
            c.observe("a", rec(s, s));
        }
        // A new connection may start lower (not checked across connections)…
        c.observe("a", Observation::Online(Duration::from_secs(10)));
        for s in [5, 4, 6] {
            c.observe("a", rec(s, 10 + s));
        }
        let v = c.verdict("a", Some(&end(7)), LIMITS);
        assert_eq!(v.violations, Vec::<String>::new(), "{v:?}");
        assert_eq!(v.connections, 2);
        // …but within one, a swap that is no backlog/live interleave fails.
        c.observe("a", Observation::Online(Duration::from_secs(30)));
        for s in [8, 7, 10, 9] {
            c.observe("a", rec(s, 30 + s));
        }
        let v = c.verdict("a", Some(&end(11)), LIMITS);
        assert!(
            v.violations.iter().any(|m| m.starts_with("connection 3")),
            "{v:?}"
        );
    }

    #[test]
    fn spool_bounds_and_timestamps_are_checked() {
        let mut c = Checker::new();
        c.observe("a", rec(1, 1));
        c.observe(
            "a",
            Observation::Status {
                spool_bytes: (4 << 20) + 1,
                dropped_spool: 2,
            },
        );
        c.observe(
            "a",
            Observation::Record(Delivery {
                seq: 2,
                record_id: "x".into(),
                at: Duration::from_secs(2),
                ts: Utc.with_ymd_and_hms(2019, 6, 1, 12, 0, 0).single(),
                ts_source: "system".into(),
            }),
        );
        c.observe(
            "a",
            Observation::Record(Delivery {
                seq: 3,
                record_id: "y".into(),
                at: Duration::from_secs(3),
                ts: Utc.with_ymd_and_hms(2019, 6, 1, 12, 0, 0).single(),
                ts_source: "untrusted_system".into(),
            }),
        );
        let v = c.verdict("a", Some(&end(4)), LIMITS);
        assert!(
            v.violations.iter().any(|m| m.contains("above max_bytes")),
            "{v:?}"
        );
        assert!(
            v.violations.iter().any(|m| m.contains("dropped 2")),
            "{v:?}"
        );
        assert!(
            v.violations
                .iter()
                .any(|m| m.contains("1 records stamped `system` before 2020: seq 2")),
            "{v:?}"
        );
        assert_eq!(v.ts_sources.get("untrusted_system"), Some(&1));
    }

    #[test]
    fn a_scooter_that_sampled_nothing_fails() {
        let c = Checker::new();
        let v = c.verdict("z", Some(&end(1)), LIMITS);
        assert!(v.violations.iter().any(|m| m == "no record was sampled"));
        let v = c.verdict("z", None, LIMITS);
        assert!(v.violations.iter().any(|m| m.contains("could not be read")));
    }

    #[test]
    fn ranges_are_short() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
        assert_eq!(ranges(&[]), "");
        let many: Vec<u64> = (0..40).map(|n| n * 2).collect();
        assert!(ranges(&many).ends_with('…'));
    }
}
