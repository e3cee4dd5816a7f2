//! The desk between the MQTT side and the scooters, as a pure state machine (no I/O, time
//! passed in): it decides for each message whether the command is carried out, keeps the
//! commands handed to scooters until they are answered, and makes sure every command id gets
//! exactly one acknowledgement, whichever comes first of its answer and its expiry.
//!
//! Checks, in order: the message is a command ([`Refusal::Malformed`]); the scooter is served
//! and allows the command ([`Refusal::NotAllowed`]); it has not expired
//! ([`Refusal::Expired`]); it does not expire further ahead than `max_ttl`
//! ([`Refusal::TooFarAhead`]); its id is new ([`Refusal::Replayed`]); the replay memory has
//! room ([`Refusal::Busy`]). A command that passes is remembered and handed out
//! ([`Decision::Dispatch`]); it then ends with [`Desk::completed`], [`Desk::refuse`] or
//! [`Desk::expired`], each of which acknowledges it only if nothing else did before.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use super::message::{self, Command, CommandId, Malformed, Refusal};
use super::replay::ReplayMemory;
use super::result::{CommandResult, ControlState};
use crate::config::CommandName;

/// How long a command the scooter side started is waited for past its expiry before it is
/// refused as `timeout`: a write interrupted by a lost link is retried after the reconnect.
pub const DEFAULT_RUN_GRACE: Duration = Duration::from_secs(120);

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Hand the command to scooter `scooter_id`.
    Dispatch {
        /// The scooter.
        scooter_id: String,
        /// The command.
        command: Command,
    },
    /// Publish this refusal.
    Refuse(CommandResult),
    /// A message without a readable id: there is nobody to acknowledge, only a log line.
    Ignore(Malformed),
}

#[derive(Debug, Clone)]
struct Pending {
    scooter_id: String,
    expires: SystemTime,
    /// The scooter side started it: it is waited for until `expires + run_grace`.
    started: bool,
}

/// The desk. See the module documentation.
#[derive(Debug, Clone)]
pub struct Desk {
    allow: HashMap<String, BTreeSet<CommandName>>,
    max_ttl: Duration,
    run_grace: Duration,
    seen: ReplayMemory,
    pending: BTreeMap<CommandId, Pending>,
}

impl Desk {
    /// A desk for `scooters` (id and allowed commands), accepting expiries up to `max_ttl`
    /// ahead, remembering the ids in `seen` (as loaded at start-up).
    pub fn new(
        scooters: impl IntoIterator<Item = (String, BTreeSet<CommandName>)>,
        max_ttl: Duration,
        seen: ReplayMemory,
    ) -> Desk {
        Desk {
            allow: scooters.into_iter().collect(),
            max_ttl,
            run_grace: DEFAULT_RUN_GRACE,
            seen,
            pending: BTreeMap::new(),
        }
    }

    /// Sets how long a started command is waited for past its expiry.
    pub fn with_run_grace(mut self, run_grace: Duration) -> Desk {
        self.run_grace = run_grace;
        self
    }

    /// Decides about `payload` received at `now` on the command topic of `scooter_id`.
    pub fn on_message(&mut self, scooter_id: &str, payload: &[u8], now: SystemTime) -> Decision {
        let refuse = |id: CommandId, refusal| {
            Decision::Refuse(CommandResult {
                scooter_id: scooter_id.to_owned(),
                id,
                outcome: Err(refusal),
            })
        };
        let command = match message::parse(payload, now) {
            Ok(command) => command,
            Err(Malformed {
                id: Some(id),
                error,
            }) => {
                return refuse(id, Refusal::Malformed(error));
            }
            Err(malformed) => return Decision::Ignore(malformed),
        };
        let name = command.action.name();
        let allowed = self
            .allow
            .get(scooter_id)
            .is_some_and(|allow| allow.contains(&name));
        if !allowed {
            return refuse(command.id, Refusal::NotAllowed(name));
        }
        if command.expires <= now {
            return refuse(command.id, Refusal::Expired(command.expires));
        }
        let ahead = command
            .expires
            .duration_since(now)
            .unwrap_or(Duration::ZERO);
        if ahead > self.max_ttl {
            return refuse(
                command.id,
                Refusal::TooFarAhead {
                    ahead,
                    max: self.max_ttl,
                },
            );
        }
        if self.seen.contains(&command.id, now) || self.pending.contains_key(&command.id) {
            return refuse(command.id, Refusal::Replayed);
        }
        if !self.seen.remember(command.id.clone(), command.expires, now) {
            return refuse(command.id, Refusal::Busy);
        }
        self.pending.insert(
            command.id.clone(),
            Pending {
                scooter_id: scooter_id.to_owned(),
                expires: command.expires,
                started: false,
            },
        );
        Decision::Dispatch {
            scooter_id: scooter_id.to_owned(),
            command,
        }
    }

    /// The scooter side answered command `id`: the state read back, or why it failed. The
    /// acknowledgement, unless the command was already acknowledged (or never dispatched).
    pub fn completed(
        &mut self,
        id: &CommandId,
        outcome: Result<ControlState, String>,
    ) -> Option<CommandResult> {
        self.finish(id, outcome.map_err(Refusal::Failed))
    }

    /// Refuses a dispatched command (e.g. `busy` when its scooter's queue is full, `failed`
    /// when its id could not be recorded): the acknowledgement, unless it was already given.
    pub fn refuse(&mut self, id: &CommandId, refusal: Refusal) -> Option<CommandResult> {
        self.finish(id, Err(refusal))
    }

    /// The scooter side started command `id`: from now on it is waited for past its expiry.
    pub fn started(&mut self, id: &CommandId) {
        if let Some(p) = self.pending.get_mut(id) {
            p.started = true;
        }
    }

    /// The acknowledgements due at `now`: every command not started whose expiry has passed is
    /// refused as `offline`, every started one not answered within the run grace after its
    /// expiry as `timeout`. `withdraw` is asked, for each command not known to be started,
    /// whether it can still be withdrawn from its scooter; `false` means the scooter side has
    /// just started it, and it is waited for instead.
    pub fn expired(
        &mut self,
        now: SystemTime,
        mut withdraw: impl FnMut(&CommandId) -> bool,
    ) -> Vec<CommandResult> {
        let due: Vec<CommandId> = self
            .pending
            .iter()
            .filter(|(_, p)| self.deadline(p) <= now)
            .map(|(id, _)| id.clone())
            .collect();
        let run_grace = self.run_grace;
        let mut results = Vec::new();
        for id in due {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            let refusal = if p.started {
                Refusal::Timeout(run_grace)
            } else if withdraw(&id) {
                Refusal::Offline(p.expires)
            } else {
                p.started = true;
                if p.expires.checked_add(run_grace).unwrap_or(p.expires) > now {
                    continue;
                }
                Refusal::Timeout(run_grace)
            };
            results.extend(self.finish(&id, Err(refusal)));
        }
        results
    }

    /// When [`Desk::expired`] has something to do next, if anything is pending.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.pending.values().map(|p| self.deadline(p)).min()
    }

    /// Commands dispatched and not acknowledged yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether command `id` is dispatched and not acknowledged yet.
    pub fn is_pending(&self, id: &CommandId) -> bool {
        self.pending.contains_key(id)
    }

    /// The ids remembered, to be saved before a command is handed out.
    pub fn seen(&self) -> &ReplayMemory {
        &self.seen
    }

    fn deadline(&self, p: &Pending) -> SystemTime {
        self.deadline_of(p.expires, p.started)
    }

    fn deadline_of(&self, expires: SystemTime, started: bool) -> SystemTime {
        if started {
            expires.checked_add(self.run_grace).unwrap_or(expires)
        } else {
            expires
        }
    }

    fn finish(
        &mut self,
        id: &CommandId,
        outcome: Result<ControlState, Refusal>,
    ) -> Option<CommandResult> {
        let p = self.pending.remove(id)?;
        Some(CommandResult {
            scooter_id: p.scooter_id,
            id: id.clone(),
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::message::MessageError;
    use m365_proto::registers::settings::KersLevel;

    const T0: u64 = 1_748_779_200;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn desk() -> Desk {
        Desk::new(
            [
                (
                    "s1".to_owned(),
                    BTreeSet::from([CommandName::Lock, CommandName::Kers]),
                ),
                ("s2".to_owned(), BTreeSet::new()),
            ],
            Duration::from_secs(300),
            ReplayMemory::new(),
        )
    }

    fn id(s: &str) -> CommandId {
        CommandId::new(s).unwrap()
    }

    fn state() -> ControlState {
        ControlState {
            powered: true,
            locked: true,
            cruise: false,
            tail_light: false,
            kers: KersLevel::Medium,
        }
    }

    /// The refusal code of a decision, or "dispatch" / "ignore".
    fn code(d: &Decision) -> &'static str {
        match d {
            Decision::Dispatch { .. } => "dispatch",
            Decision::Refuse(r) => r.code().unwrap_or("ok?"),
            Decision::Ignore(_) => "ignore",
        }
    }

    #[test]
    fn a_valid_allowed_command_is_dispatched() {
        let mut d = desk();
        let decision = d.on_message(
            "s1",
            br#"{"id":"c1","command":"kers","value":"strong","ttl":30}"#,
            at(T0),
        );
        let Decision::Dispatch {
            scooter_id,
            command,
        } = decision
        else {
            panic!("{decision:?}");
        };
        assert_eq!(scooter_id, "s1");
        assert_eq!(command.id, id("c1"));
        assert_eq!(command.expires, at(T0 + 30));
        assert!(d.is_pending(&id("c1")));
        assert_eq!(d.next_deadline(), Some(at(T0 + 30)));
        assert!(d.seen().contains(&id("c1"), at(T0)));
    }

    #[test]
    fn every_refusal_before_dispatch() {
        let mut d = desk();
        let now = at(T0);
        let cases: [(&str, &[u8], &str); 8] = [
            ("s1", br#"{"id":"m","command":"fly","ttl":5}"#, "malformed"),
            ("s1", br#"{"command":"lock","ttl":5}"#, "ignore"),
            (
                "s1",
                br#"{"id":"n","command":"unlock","ttl":5}"#,
                "not_allowed",
            ),
            (
                "s2",
                br#"{"id":"n2","command":"lock","ttl":5}"#,
                "not_allowed",
            ),
            (
                "nobody",
                br#"{"id":"n3","command":"lock","ttl":5}"#,
                "not_allowed",
            ),
            (
                "s1",
                br#"{"id":"e","command":"lock","expires":"2025-06-01T11:59:59Z"}"#,
                "expired",
            ),
            ("s1", br#"{"id":"e0","command":"lock","ttl":0}"#, "expired"),
            (
                "s1",
                br#"{"id":"f","command":"lock","ttl":301}"#,
                "too_far_ahead",
            ),
        ];
        for (scooter, payload, expected) in cases {
            let decision = d.on_message(scooter, payload, now);
            assert_eq!(
                code(&decision),
                expected,
                "{}",
                String::from_utf8_lossy(payload)
            );
            if let Decision::Refuse(r) = &decision {
                assert_eq!(r.scooter_id, scooter);
                assert!(!r.ok());
            }
        }
        // Refused commands are neither pending nor remembered: none is acknowledged again.
        assert_eq!(d.pending(), 0);
        assert!(d.seen().is_empty());
        assert!(d.expired(at(T0 + 3600), |_| true).is_empty());
        // The malformed one keeps its id and says what is wrong.
        let Decision::Refuse(r) = d.on_message("s1", br#"{"id":"m","command":"fly","ttl":5}"#, now)
        else {
            panic!()
        };
        assert_eq!(r.id, id("m"));
        assert_eq!(
            r.outcome,
            Err(Refusal::Malformed(MessageError::UnknownCommand(
                "\"fly\"".into()
            )))
        );
        // Exactly at max_ttl is accepted.
        let decision = d.on_message("s1", br#"{"id":"edge","command":"lock","ttl":300}"#, now);
        assert_eq!(code(&decision), "dispatch");
    }

    #[test]
    fn a_seen_id_is_replayed_while_pending_after_answer_and_after_restart() {
        let mut d = desk();
        let msg = br#"{"id":"r","command":"lock","ttl":60}"#;
        assert_eq!(code(&d.on_message("s1", msg, at(T0))), "dispatch");
        assert_eq!(code(&d.on_message("s1", msg, at(T0 + 1))), "replayed");
        // The same id for another scooter, another command: still a replay.
        assert_eq!(
            code(&d.on_message(
                "s1",
                br#"{"id":"r","command":"kers","value":"weak","ttl":60}"#,
                at(T0 + 1)
            )),
            "replayed"
        );
        assert!(d.completed(&id("r"), Ok(state())).is_some());
        assert_eq!(code(&d.on_message("s1", msg, at(T0 + 2))), "replayed");
        // A desk started again with the saved memory still knows it.
        let mut again = Desk::new(
            [("s1".to_owned(), BTreeSet::from([CommandName::Lock]))],
            Duration::from_secs(300),
            d.seen().clone(),
        );
        assert_eq!(code(&again.on_message("s1", msg, at(T0 + 3))), "replayed");
        // Re-sent a day later with a ttl, it is new again (the memory keeps ids a day).
        assert_eq!(
            code(&again.on_message("s1", msg, at(T0 + 86_400 + 1))),
            "dispatch"
        );
    }

    #[test]
    fn a_full_replay_memory_refuses_as_busy() {
        let mut d = desk();
        for i in 0..crate::commands::replay::MAX_REMEMBERED {
            let msg = format!(r#"{{"id":"c{i}","command":"lock","ttl":300}}"#);
            assert_eq!(
                code(&d.on_message("s1", msg.as_bytes(), at(T0))),
                "dispatch"
            );
        }
        let decision = d.on_message(
            "s1",
            br#"{"id":"one-more","command":"lock","ttl":300}"#,
            at(T0),
        );
        assert_eq!(code(&decision), "busy");
        assert!(!d.is_pending(&id("one-more")));
    }

    #[test]
    fn exactly_one_acknowledgement_whatever_comes_first() {
        let mut d = desk();
        let lock = |n: &str| format!(r#"{{"id":"{n}","command":"lock","ttl":10}}"#);
        for n in ["done", "late", "gone", "refused", "failed"] {
            assert_eq!(
                code(&d.on_message("s1", lock(n).as_bytes(), at(T0))),
                "dispatch"
            );
        }
        // Answered: once.
        let r = d.completed(&id("done"), Ok(state())).unwrap();
        assert_eq!((r.ok(), r.outcome.clone()), (true, Ok(state())));
        assert_eq!(d.completed(&id("done"), Ok(state())), None);
        assert_eq!(d.refuse(&id("done"), Refusal::Busy), None);
        // Failed on the scooter: once, as `failed` with the message.
        let r = d
            .completed(&id("failed"), Err("write not confirmed".into()))
            .unwrap();
        assert_eq!(
            r.outcome,
            Err(Refusal::Failed("write not confirmed".into()))
        );
        assert_eq!(d.completed(&id("failed"), Ok(state())), None);
        // Refused by the listener (queue full): once.
        assert_eq!(r.code(), Some("failed"));
        let r = d.refuse(&id("refused"), Refusal::Busy).unwrap();
        assert_eq!(r.code(), Some("busy"));
        assert_eq!(d.completed(&id("refused"), Ok(state())), None);
        // Nothing is due before the expiry.
        assert!(d.expired(at(T0 + 9), |_| true).is_empty());
        // At the expiry the waiting ones are refused as offline, once; a late answer is dropped.
        let results = d.expired(at(T0 + 10), |_| true);
        let mut ids: Vec<_> = results.iter().map(|r| r.id.as_str().to_owned()).collect();
        ids.sort();
        assert_eq!(ids, ["gone", "late"]);
        assert!(
            results
                .iter()
                .all(|r| r.outcome == Err(Refusal::Offline(at(T0 + 10))))
        );
        assert_eq!(d.completed(&id("late"), Ok(state())), None);
        assert!(d.expired(at(T0 + 1000), |_| true).is_empty());
        assert_eq!(d.pending(), 0);
        assert_eq!(d.next_deadline(), None);
        // Never acknowledged: ids that were never dispatched.
        assert_eq!(d.completed(&id("unknown"), Ok(state())), None);
    }

    #[test]
    fn a_started_command_is_waited_for_past_its_expiry() {
        let mut d = desk().with_run_grace(Duration::from_secs(60));
        let msg = |n: &str| format!(r#"{{"id":"{n}","command":"lock","ttl":10}}"#);
        for n in ["told", "racing", "stuck"] {
            assert_eq!(
                code(&d.on_message("s1", msg(n).as_bytes(), at(T0))),
                "dispatch"
            );
        }
        // The listener learnt that "told" started; "racing" starts just as it expires (the
        // withdrawal fails); "stuck" starts and never answers.
        d.started(&id("told"));
        d.started(&id("stuck"));
        let results = d.expired(at(T0 + 10), |id| id.as_str() != "racing");
        assert!(results.is_empty(), "{results:?}");
        assert_eq!(d.next_deadline(), Some(at(T0 + 70)));
        assert!(d.completed(&id("told"), Ok(state())).unwrap().ok());
        let r = d.completed(&id("racing"), Ok(state())).unwrap();
        assert!(r.ok());
        let results = d.expired(at(T0 + 70), |_| {
            panic!("started commands are not withdrawn")
        });
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].id, id("stuck"));
        assert_eq!(results[0].code(), Some("timeout"));
        assert_eq!(d.completed(&id("stuck"), Ok(state())), None);
    }
}
