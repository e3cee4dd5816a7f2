//! One request/response exchange over the UART as a sans-IO machine: which requests to send in
//! which round, which open request an arriving frame answers, when to retry, and when the
//! exchange is over. The client's async loop (`m365-ble`'s session) only moves bytes and time.
//!
//! - **Pipelining**: every request of a round is sent back to back; the BLE module queues them,
//!   so independent reads share connection events instead of costing a round trip each.
//! - **Matching** ([`Exchange::handle_frame`]): a frame answers the first open request it
//!   answers exactly (same unit, RW, register and length, [`Expect`]); failing that, the first
//!   open request it can stand for ([`is_usable_answer`]: real scooters answer with RW 0x02 or
//!   another length, protocol.md §5.3, §4.6.5), but a one-byte write acknowledgement is never
//!   taken for register data. Anything else is unrelated.
//! - **Retries**: reads still unanswered `request_timeout` after a round was sent are sent
//!   again (the caller seals each send with a fresh counter, §4.6.6), at most `retries` times.
//!   Acknowledged writes wait at most `ack_timeout` for their acknowledgement and are never
//!   repeated (§11a Q7: the read-back decides).
//! - **Probe deadline**: with [`ExchangeConfig::first_answer_timeout`], an exchange on a reused
//!   session fails fast when no valid frame at all comes back.
//!
//! Driving it:
//! ```
//! use std::time::{Duration, Instant};
//! use m365_proto::exchange::{Exchange, ExchangeConfig, Matched, Outcome};
//! use m365_proto::frame::Frame;
//! use m365_proto::registers::esc;
//!
//! let t0 = Instant::now();
//! let mut ex = Exchange::new(vec![esc::read_range()], ExchangeConfig::default(), t0);
//! let send = ex.poll_transmit().expect("one request to send");
//! assert!(!send.retry);
//! ex.round_sent(t0);
//! assert_eq!(ex.poll_timeout(), Some(t0 + Duration::from_secs(2)));
//! let answer = Frame::new(0x23, 0x01, 0x25, vec![0x10, 0x00])?;
//! assert_eq!(ex.handle_frame(t0, answer.clone()), Matched::Answer(0));
//! assert_eq!(ex.poll_outcome(), Some(Outcome::Answered(vec![Some(answer)])));
//! # Ok::<(), m365_proto::frame::FrameError>(())
//! ```

use std::time::{Duration, Instant};

use crate::frame::{Frame, RW_READ, RW_WRITE_ACK};
use crate::registers::answer::{self, expected_len, reply_dir};
use crate::registers::write::WriteAck;

/// The answer a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expect {
    /// Reply DIR (0x23 ESC, 0x24 BLE, 0x25 BMS).
    pub dir: u8,
    /// RW of the answer (read 0x01, acknowledged write 0x02).
    pub rw: u8,
    /// First register.
    pub attr: u8,
    /// Payload bytes.
    pub len: usize,
}

impl Expect {
    /// What answers `request`; `None` for requests that get no answer (RW 0x03 writes).
    pub fn of(request: &Frame) -> Option<Expect> {
        Some(Expect {
            dir: reply_dir(request.dir)?,
            rw: request.rw,
            attr: request.attr,
            len: expected_len(request)?,
        })
    }

    /// Whether `frame` is exactly this answer: same unit, RW, register and length. Answers
    /// that differ in RW or length may still be usable: see [`is_usable_answer`].
    pub fn matches(&self, frame: &Frame) -> bool {
        frame.dir == self.dir
            && frame.rw == self.rw
            && frame.attr == self.attr
            && frame.payload.len() == self.len
    }
}

/// Whether `frame` can stand for the answer to `request` although it is not the exact one
/// (protocol.md §5.3, §4.6.5: real scooters answer with RW 0x01 or 0x02, and not always with
/// the length asked for). Same unit and register as [`answer::is_answer`], and beyond that:
/// an answer to a read must carry at least one whole register, so a one-byte write
/// acknowledgement never passes as register data; an answer to an acknowledged write must
/// decode as an acknowledgement ([`WriteAck::decode`]), so read data never passes as one.
pub fn is_usable_answer(request: &Frame, frame: &Frame) -> bool {
    answer::is_answer(request, frame)
        && match request.rw {
            RW_READ => frame.payload.len() >= 2,
            RW_WRITE_ACK => WriteAck::decode(frame).is_ok(),
            _ => false,
        }
}

/// What a request needs before its exchange can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A read: answered, or retried, or the exchange fails.
    Answer,
    /// An acknowledged write (RW 0x02): the acknowledgement is waited for `ack_timeout` and
    /// never retried; without it the caller's read-back decides (§11a Q7).
    Ack,
    /// An unacknowledged write (RW 0x03): sent once, nothing comes back.
    Nothing,
}

impl Need {
    fn of(request: &Frame) -> Need {
        match Expect::of(request) {
            None => Need::Nothing,
            Some(_) if request.rw == RW_WRITE_ACK => Need::Ack,
            Some(_) => Need::Answer,
        }
    }
}

/// Limits of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// How long to wait for the answers after the last request of a round was sent.
    pub request_timeout: Duration,
    /// Rounds after the first for requests still unanswered.
    pub retries: u32,
    /// How long an acknowledged write (RW 0x02) waits for its acknowledgement before the
    /// read-back decides instead (§11a Q7: about a second).
    pub ack_timeout: Duration,
    /// When set, the exchange fails ([`Outcome::NoFirstAnswer`]) if no valid frame at all
    /// came this long after it started: the probe of a reused session.
    pub first_answer_timeout: Option<Duration>,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            request_timeout: Duration::from_secs(2),
            retries: 2,
            ack_timeout: Duration::from_secs(1),
            first_answer_timeout: None,
        }
    }
}

/// A request to seal and send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Its index in the exchange's requests.
    pub index: usize,
    /// The request.
    pub frame: Frame,
    /// Whether this is a retry (a later round).
    pub retry: bool,
    /// Set on the first send of a later round: drop any partial frame of the lost answers
    /// first, so it cannot swallow the retry's answer.
    pub discard_partial: bool,
}

/// What an arriving frame was to the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched {
    /// It answers the request at this index.
    Answer(usize),
    /// It answers nothing still open.
    Unrelated,
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every read was answered; answers in request order (`None` for requests that expect no
    /// answer, and for acknowledged writes whose acknowledgement did not come in time).
    Answered(Vec<Option<Frame>>),
    /// Some reads stayed unanswered after every round.
    Unanswered {
        /// `(dir, attr)` of each unanswered read.
        missing: Vec<(u8, u8)>,
        /// Rounds sent.
        rounds: u32,
        /// Whether any request at all was answered (none: the link may be dead without the
        /// radio knowing yet).
        any_answered: bool,
    },
    /// No valid frame came within [`ExchangeConfig::first_answer_timeout`].
    NoFirstAnswer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sending round `round`; `next` is the next request index to consider.
    Sending { next: usize },
    /// Waiting for answers until `deadline`.
    Waiting { deadline: Instant },
    /// Over; the outcome waits in `outcome`.
    Done,
}

/// One exchange. See the module documentation.
#[derive(Debug)]
pub struct Exchange {
    requests: Vec<Frame>,
    needs: Vec<Need>,
    answers: Vec<Option<Frame>>,
    config: ExchangeConfig,
    ack_deadline: Instant,
    probe_deadline: Option<Instant>,
    round: u32,
    state: State,
    outcome: Option<Outcome>,
}

impl Exchange {
    /// An exchange of `requests` starting at `now`.
    pub fn new(requests: Vec<Frame>, config: ExchangeConfig, now: Instant) -> Exchange {
        let needs = requests.iter().map(Need::of).collect();
        Exchange {
            answers: vec![None; requests.len()],
            requests,
            needs,
            config,
            ack_deadline: now + config.ack_timeout,
            probe_deadline: config.first_answer_timeout.map(|t| now + t),
            round: 0,
            state: State::Sending { next: 0 },
            outcome: None,
        }
    }

    /// The requests, in order.
    pub fn requests(&self) -> &[Frame] {
        &self.requests
    }

    /// The next request to send in this round, if any. Round 0 sends everything; later rounds
    /// only the reads still unanswered. Call [`Exchange::round_sent`] when none is left.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let State::Sending { next } = self.state else {
            return None;
        };
        let round = self.round;
        let index = (next..self.requests.len()).find(|&i| {
            round == 0
                || (self.needs.get(i) == Some(&Need::Answer)
                    && self.answers.get(i).is_some_and(Option::is_none))
        })?;
        self.state = State::Sending { next: index + 1 };
        let frame = self.requests.get(index)?.clone();
        let first_of_round = !(0..index).any(|i| {
            round == 0
                || (self.needs.get(i) == Some(&Need::Answer)
                    && self.answers.get(i).is_some_and(Option::is_none))
        });
        Some(Transmit {
            index,
            frame,
            retry: round > 0,
            discard_partial: round > 0 && first_of_round,
        })
    }

    /// Every request of the round was handed to the radio at `now`: the wait for answers
    /// starts.
    pub fn round_sent(&mut self, now: Instant) {
        if matches!(self.state, State::Sending { .. }) {
            self.state = State::Waiting {
                deadline: now + self.config.request_timeout,
            };
            self.settle(now);
        }
    }

    /// A decoded UART frame arrived at `now`.
    pub fn handle_frame(&mut self, now: Instant, frame: Frame) -> Matched {
        if self.state == State::Done {
            return Matched::Unrelated;
        }
        // Any frame that decrypted proves the session is the scooter's.
        self.probe_deadline = None;
        let matched = match self.slot_for(&frame) {
            Some(i) => {
                if let Some(slot) = self.answers.get_mut(i) {
                    *slot = Some(frame);
                }
                Matched::Answer(i)
            }
            None => Matched::Unrelated,
        };
        if matches!(self.state, State::Waiting { .. }) {
            self.settle(now);
        }
        matched
    }

    /// When [`Exchange::handle_timeout`] must be called next (`None`: nothing to wait for,
    /// e.g. requests still to send, or over).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let State::Waiting { deadline } = self.state else {
            return None;
        };
        let until = if self.open(Need::Answer) {
            deadline
        } else {
            self.ack_deadline
        };
        Some(self.probe_deadline.map_or(until, |p| p.min(until)))
    }

    /// Time passed to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Waiting { deadline } = self.state else {
            return;
        };
        if self.probe_deadline.is_some_and(|p| now >= p) {
            self.finish(Outcome::NoFirstAnswer);
            return;
        }
        if self.open(Need::Answer) && now >= deadline {
            self.end_round();
            return;
        }
        self.settle(now);
    }

    /// The outcome, once the exchange is over (taken once).
    pub fn poll_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    /// Whether the exchange is over.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn open(&self, need: Need) -> bool {
        self.needs
            .iter()
            .zip(&self.answers)
            .any(|(n, a)| *n == need && a.is_none())
    }

    /// Ends the exchange when nothing keeps it open any more.
    fn settle(&mut self, now: Instant) {
        if self.open(Need::Answer) || (self.open(Need::Ack) && now < self.ack_deadline) {
            return;
        }
        let answers = std::mem::take(&mut self.answers);
        self.finish(Outcome::Answered(answers));
    }

    fn end_round(&mut self) {
        if self.round >= self.config.retries {
            let missing = self
                .requests
                .iter()
                .zip(&self.needs)
                .zip(&self.answers)
                .filter(|((_, n), a)| **n == Need::Answer && a.is_none())
                .map(|((r, _), _)| (r.dir, r.attr))
                .collect();
            let any_answered = self.answers.iter().any(Option::is_some);
            self.finish(Outcome::Unanswered {
                missing,
                rounds: self.round + 1,
                any_answered,
            });
            return;
        }
        self.round += 1;
        self.state = State::Sending { next: 0 };
    }

    fn finish(&mut self, outcome: Outcome) {
        self.state = State::Done;
        self.outcome = Some(outcome);
    }

    /// The open request `frame` answers: the first one it answers exactly, else the first one
    /// it can stand for ([`is_usable_answer`]).
    fn slot_for(&self, frame: &Frame) -> Option<usize> {
        let open = |i: &usize| self.answers.get(*i).is_some_and(Option::is_none);
        let n = self.requests.len();
        let exact = (0..n).filter(open).find(|&i| {
            self.requests
                .get(i)
                .is_some_and(|r| answer::is_exact_answer(r, frame))
        });
        exact.or_else(|| {
            (0..n).filter(open).find(|&i| {
                self.requests
                    .get(i)
                    .is_some_and(|r| is_usable_answer(r, frame))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registers::settings::KersLevel;
    use crate::registers::{Unit, bms, esc, read_unit, write};

    const MS: Duration = Duration::from_millis(1);

    fn drain(ex: &mut Exchange) -> Vec<Transmit> {
        std::iter::from_fn(|| ex.poll_transmit()).collect()
    }

    #[test]
    fn expectations_follow_unit_rw_attr_and_length() {
        let e = Expect::of(&esc::read_motor_info()).unwrap();
        assert_eq!((e.dir, e.rw, e.attr, e.len), (0x23, 0x01, 0xB0, 0x20));
        let b = Expect::of(&bms::read_battery_info()).unwrap();
        assert_eq!((b.dir, b.attr, b.len), (0x25, 0x31, 0x0A));
        assert!(Expect::of(&write::lock(write::WriteMode::NoAck)).is_none());
        let ack = Expect::of(&write::lock(write::WriteMode::Ack)).unwrap();
        assert_eq!((ack.rw, ack.len), (0x02, 1));

        let good = Frame::new(0x25, 0x01, 0x31, vec![0; 10]).unwrap();
        assert!(b.matches(&good));
        let short = Frame::new(0x25, 0x01, 0x31, vec![0; 8]).unwrap();
        assert!(!b.matches(&short), "another length is not the exact answer");
        let other_unit = Frame::new(0x23, 0x01, 0x31, vec![0; 10]).unwrap();
        assert!(!b.matches(&other_unit));
    }

    #[test]
    fn usable_answers_differ_in_rw_or_length_but_never_pass_an_ack_for_data() {
        let read = bms::read_battery_info();
        let data = |rw, len| Frame::new(0x25, rw, 0x31, vec![7; len]).unwrap();
        assert!(is_usable_answer(&read, &data(0x01, 10)));
        assert!(is_usable_answer(&read, &data(0x02, 10)), "RW 0x02");
        assert!(is_usable_answer(&read, &data(0x01, 12)), "longer");
        assert!(is_usable_answer(&read, &data(0x01, 8)), "shorter");
        assert!(!is_usable_answer(&read, &data(0x02, 1)), "a write ack");
        assert!(!is_usable_answer(&read, &data(0x01, 1)), "one byte");
        assert!(!is_usable_answer(&read, &data(0x03, 10)), "RW 0x03");
        let other_reg = Frame::new(0x25, 0x01, 0x32, vec![7; 10]).unwrap();
        assert!(!is_usable_answer(&read, &other_reg));

        let kers = write::kers(KersLevel::Strong, write::WriteMode::Ack);
        let ack = |rw, len| Frame::new(0x23, rw, 0x7B, vec![1; len]).unwrap();
        assert!(is_usable_answer(&kers, &ack(0x02, 1)));
        assert!(is_usable_answer(&kers, &ack(0x01, 1)), "RW 0x01 ack");
        assert!(is_usable_answer(&kers, &ack(0x02, 2)), "trailing byte");
        assert!(!is_usable_answer(&kers, &ack(0x01, 2)), "read data");
        let no_ack = write::kers(KersLevel::Strong, write::WriteMode::NoAck);
        assert!(!is_usable_answer(&no_ack, &ack(0x02, 1)));
    }

    #[test]
    fn exact_answers_are_placed_first_then_usable_ones_in_request_order() {
        let t0 = Instant::now();
        let requests = vec![
            write::kers(KersLevel::Strong, write::WriteMode::Ack),
            read_unit(Unit::Esc, 0x7B, 6),
            read_unit(Unit::Esc, 0x7B, 2),
        ];
        let mut ex = Exchange::new(requests, ExchangeConfig::default(), t0);
        assert_eq!(drain(&mut ex).len(), 3);
        ex.round_sent(t0);
        let short = Frame::new(0x23, 0x01, 0x7B, vec![0; 2]).unwrap();
        assert_eq!(
            ex.handle_frame(t0, short),
            Matched::Answer(2),
            "exact first"
        );
        let long = Frame::new(0x23, 0x01, 0x7B, vec![0; 4]).unwrap();
        assert_eq!(
            ex.handle_frame(t0, long),
            Matched::Answer(1),
            "skips the write"
        );
        assert!(!ex.is_done(), "the acknowledgement is still awaited");
        let ack = Frame::new(0x23, 0x02, 0x7B, vec![1]).unwrap();
        assert_eq!(ex.handle_frame(t0, ack.clone()), Matched::Answer(0));
        assert!(ex.is_done());
        assert_eq!(ex.handle_frame(t0, ack), Matched::Unrelated, "a second ack");
    }

    #[test]
    fn unanswered_reads_are_retried_alone_then_the_exchange_fails_naming_them() {
        let t0 = Instant::now();
        let config = ExchangeConfig {
            retries: 1,
            ..ExchangeConfig::default()
        };
        let requests = vec![esc::read_range(), bms::read_battery_info()];
        let mut ex = Exchange::new(requests, config, t0);
        let first = drain(&mut ex);
        assert_eq!(first.iter().map(|t| t.index).collect::<Vec<_>>(), [0, 1]);
        assert!(first.iter().all(|t| !t.retry && !t.discard_partial));
        ex.round_sent(t0);
        let range = Frame::new(0x23, 0x01, 0x25, vec![0x10, 0]).unwrap();
        ex.handle_frame(t0 + MS, range);
        let deadline = ex.poll_timeout().unwrap();
        assert_eq!(deadline, t0 + config.request_timeout);
        ex.handle_timeout(deadline - MS);
        assert!(ex.poll_transmit().is_none(), "not yet");
        ex.handle_timeout(deadline);
        let retry = drain(&mut ex);
        assert_eq!(retry.len(), 1, "only the unanswered read");
        assert_eq!(retry[0].index, 1);
        assert!(retry[0].retry && retry[0].discard_partial);
        ex.round_sent(deadline);
        ex.handle_timeout(deadline + config.request_timeout);
        assert_eq!(
            ex.poll_outcome(),
            Some(Outcome::Unanswered {
                missing: vec![(0x22, 0x31)],
                rounds: 2,
                any_answered: true,
            })
        );
        assert!(ex.poll_transmit().is_none() && ex.poll_timeout().is_none());
    }

    #[test]
    fn acknowledged_writes_wait_for_their_ack_only_until_the_ack_timeout() {
        let t0 = Instant::now();
        let config = ExchangeConfig::default();
        let mut ex = Exchange::new(vec![write::lock(write::WriteMode::Ack)], config, t0);
        assert_eq!(drain(&mut ex).len(), 1);
        ex.round_sent(t0 + MS);
        assert_eq!(ex.poll_timeout(), Some(t0 + config.ack_timeout));
        ex.handle_timeout(t0 + config.ack_timeout);
        assert_eq!(ex.poll_outcome(), Some(Outcome::Answered(vec![None])));
    }

    #[test]
    fn writes_without_an_answer_end_the_exchange_once_sent() {
        let t0 = Instant::now();
        let mut ex = Exchange::new(
            vec![write::lock(write::WriteMode::NoAck)],
            ExchangeConfig::default(),
            t0,
        );
        assert_eq!(drain(&mut ex).len(), 1);
        assert!(!ex.is_done(), "not before the round is sent");
        ex.round_sent(t0);
        assert_eq!(ex.poll_outcome(), Some(Outcome::Answered(vec![None])));
    }

    #[test]
    fn a_silent_reused_session_fails_at_the_probe_deadline_and_any_frame_lifts_it() {
        let t0 = Instant::now();
        let config = ExchangeConfig {
            first_answer_timeout: Some(Duration::from_millis(500)),
            ..ExchangeConfig::default()
        };
        let mut ex = Exchange::new(vec![esc::read_range()], config, t0);
        drain(&mut ex);
        ex.round_sent(t0);
        assert_eq!(ex.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        ex.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(ex.poll_outcome(), Some(Outcome::NoFirstAnswer));

        let mut ex = Exchange::new(vec![esc::read_range()], config, t0);
        drain(&mut ex);
        ex.round_sent(t0);
        let stray = Frame::new(0x23, 0x01, 0x99, vec![0, 0]).unwrap();
        assert_eq!(ex.handle_frame(t0 + MS, stray), Matched::Unrelated);
        assert_eq!(ex.poll_timeout(), Some(t0 + config.request_timeout));
    }

    #[test]
    fn nothing_answered_in_any_round_is_reported_as_such() {
        let t0 = Instant::now();
        let config = ExchangeConfig {
            retries: 0,
            ..ExchangeConfig::default()
        };
        let mut ex = Exchange::new(vec![esc::read_range()], config, t0);
        drain(&mut ex);
        ex.round_sent(t0);
        ex.handle_timeout(t0 + config.request_timeout);
        assert!(matches!(
            ex.poll_outcome(),
            Some(Outcome::Unanswered {
                any_answered: false,
                rounds: 1,
                ..
            })
        ));
    }
}
