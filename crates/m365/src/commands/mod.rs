//! Remote commands over MQTT (lock, unlock, tail light, cruise, KERS, sample now, power off):
//! off by default, allowed per command in the configuration (`[commands] allow`, or a
//! scooter's own `commands`). `docs/commands.md` is the user's side of it.
//!
//! The parts, each in its own file:
//! - [`message`]: a command payload parsed into a typed [`Command`], and the [`Refusal`]s with
//!   their stable codes.
//! - [`result`]: the acknowledgement published for every command, and the scooter's
//!   [`ControlState`] it carries.
//! - [`replay`]: the ids already seen, kept until they expire and across restarts.
//! - [`desk`]: the pure state machine between the MQTT side and the scooters (allow lists,
//!   expiry, replay, exactly one acknowledgement per command).
//! - [`mod@execute`]: a command carried out on a [`m365_ble::ScooterLink`] and its state read back.
//! - [`listener`]: the long-lived MQTT task that ties it together.
//!
//! The scooter side (the task that owns the link) receives [`CommandRequest`]s: it calls
//! [`CommandRequest::start`] right before touching the scooter (which fails once the command
//! expired: it was refused as `offline` then), carries the command out with
//! [`execute::execute`], and answers with [`CommandRequest::finish`].

pub mod desk;
pub mod execute;
pub mod listener;
pub mod message;
pub mod replay;
pub mod result;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

pub use crate::config::{CommandName, CommandsConfig};
pub use desk::{Decision, Desk};
pub use execute::{execute, read_state};
pub use listener::{Listener, ListenerError, ListenerStatus, ScooterCommands, spawn};
pub use message::{Action, Command, CommandId, Malformed, MessageError, Refusal};
pub use replay::{REPLAY_FILE, ReplayFile, ReplayFileError, ReplayMemory};
pub use result::{CommandResult, ControlState};

/// The claim of a request: nobody has acted on it yet.
const WAITING: u8 = 0;
/// The scooter side started carrying it out: only its answer ends it now.
const STARTED: u8 = 1;
/// The listener refused it (it expired while waiting): the scooter side must not start it.
const WITHDRAWN: u8 = 2;

/// A command handed to the scooter side, with the way back for its outcome.
///
/// The scooter side calls [`CommandRequest::start`] right before carrying the command out and
/// skips it when that returns `false`, then answers with [`CommandRequest::finish`]. A request
/// dropped unanswered is reported back too: before `start`, the command keeps waiting for its
/// expiry (and is refused as `offline` then); after it, it is refused as `failed`.
#[derive(Debug)]
pub struct CommandRequest {
    command: Command,
    claim: Arc<AtomicU8>,
    replies: mpsc::UnboundedSender<Reply>,
    answered: bool,
}

/// What the scooter side sent back about one [`CommandRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The command's id.
    pub id: CommandId,
    /// The state read back after carrying it out, or why it failed; `None` when the request
    /// was dropped without an answer.
    pub outcome: Option<Result<ControlState, String>>,
    /// Whether [`CommandRequest::start`] had succeeded.
    pub started: bool,
}

impl CommandRequest {
    /// A request for `command` whose answer goes to `replies`.
    pub fn new(command: Command, replies: mpsc::UnboundedSender<Reply>) -> CommandRequest {
        CommandRequest {
            command,
            claim: Arc::new(AtomicU8::new(WAITING)),
            replies,
            answered: false,
        }
    }

    /// The command to carry out.
    pub fn command(&self) -> &Command {
        &self.command
    }

    /// Claims the command for carrying out, right before touching the scooter. `false` when it
    /// expired (or was already refused as `offline`): then the scooter side must skip it. Once
    /// this returned `true` the command is no longer refused at its expiry; only
    /// [`CommandRequest::finish`] (or dropping the request) ends it.
    pub fn start(&self) -> bool {
        self.start_at(SystemTime::now())
    }

    /// [`CommandRequest::start`] at `now`.
    pub fn start_at(&self, now: SystemTime) -> bool {
        if now >= self.command.expires {
            return self.claim.load(Ordering::Acquire) == STARTED;
        }
        match self
            .claim
            .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == STARTED,
        }
    }

    /// Answers with the state read back after carrying the command out, or why it failed (a
    /// message for people: it goes into the acknowledgement).
    pub fn finish(mut self, outcome: Result<ControlState, String>) {
        self.answered = true;
        let reply = Reply {
            id: self.command.id.clone(),
            outcome: Some(outcome),
            started: self.claim.load(Ordering::Acquire) == STARTED,
        };
        // A listener that is gone has nobody to acknowledge to.
        let _ = self.replies.send(reply);
    }

    /// The shared claim, kept by the listener to withdraw the command at its expiry.
    fn claim(&self) -> Arc<AtomicU8> {
        self.claim.clone()
    }

    /// Marks the request as answered some other way (the listener refused it itself).
    fn forget(mut self) {
        self.answered = true;
    }
}

impl Drop for CommandRequest {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let _ = self.replies.send(Reply {
            id: self.command.id.clone(),
            outcome: None,
            started: self.claim.load(Ordering::Acquire) == STARTED,
        });
    }
}

/// Withdraws a command that is still waiting: `true` when it was (or already had been), `false`
/// when the scooter side started it.
fn withdraw(claim: &AtomicU8) -> bool {
    match claim.compare_exchange(WAITING, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => true,
        Err(current) => current == WITHDRAWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn request(expires: SystemTime) -> (CommandRequest, mpsc::UnboundedReceiver<Reply>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let command = Command {
            id: CommandId::new("c1").unwrap(),
            action: Action::Lock,
            expires,
        };
        (CommandRequest::new(command, tx), rx)
    }

    #[test]
    fn a_started_request_cannot_be_withdrawn_and_a_withdrawn_one_cannot_start() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let (started, _rx) = request(t0 + Duration::from_secs(10));
        assert!(started.start_at(t0));
        assert!(started.start_at(t0), "starting twice is harmless");
        assert!(!withdraw(&started.claim()));
        // Past its expiry a started command is still the scooter side's.
        assert!(started.start_at(t0 + Duration::from_secs(60)));

        let (withdrawn, _rx) = request(t0 + Duration::from_secs(10));
        assert!(withdraw(&withdrawn.claim()));
        assert!(withdraw(&withdrawn.claim()));
        assert!(!withdrawn.start_at(t0));

        let (late, _rx) = request(t0 + Duration::from_secs(10));
        assert!(!late.start_at(t0 + Duration::from_secs(10)), "expired");
        assert!(withdraw(&late.claim()));
    }

    #[test]
    fn every_request_answers_once_finished_or_dropped() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let (r, mut rx) = request(t0 + Duration::from_secs(10));
        assert!(r.start_at(t0));
        let state = ControlState {
            powered: true,
            locked: true,
            cruise: false,
            tail_light: false,
            kers: m365_proto::registers::settings::KersLevel::Medium,
        };
        r.finish(Ok(state));
        let reply = rx.try_recv().unwrap();
        assert_eq!(reply.outcome, Some(Ok(state)));
        assert!(reply.started);
        assert!(
            rx.try_recv().is_err(),
            "finishing does not also report a drop"
        );

        let (r, mut rx) = request(t0 + Duration::from_secs(10));
        drop(r);
        let reply = rx.try_recv().unwrap();
        assert_eq!((reply.outcome, reply.started), (None, false));

        let (r, mut rx) = request(t0 + Duration::from_secs(10));
        r.forget();
        assert!(rx.try_recv().is_err());
    }
}
