//! The acknowledgement every command gets, exactly once, on its scooter's result topic, and the
//! scooter's control state it reports as read back after the command.
//!
//! ```json
//! {"id": "c-17", "ok": true,
//!  "state": {"powered": true, "locked": true, "cruise": false, "tail_light": false, "kers": "medium"},
//!  "error": null}
//! {"id": "c-18", "ok": false, "state": null,
//!  "error": {"code": "offline", "message": "the scooter was not reachable before …"}}
//! ```
//!
//! `kers` is `"weak"`, `"medium"` or `"strong"`, or the register's number when the scooter
//! reports a level outside those three.

use m365_proto::registers::settings::KersLevel;
use serde::Serialize;

use super::message::{CommandId, Refusal};

/// The settings a command changes, as read back from the scooter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlState {
    /// Whether the scooter is on. `false` only right after `power_off`: the other fields are
    /// then as read just before switching it off (the scooter keeps them).
    pub powered: bool,
    /// Locked (motor info status bit 0x0002).
    pub locked: bool,
    /// Cruise control on (ESC 0x7C).
    pub cruise: bool,
    /// Tail light always on (bit 0x0002 of ESC 0x7D).
    pub tail_light: bool,
    /// Regenerative braking level (ESC 0x7B).
    pub kers: KersLevel,
}

/// One command's acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The scooter it concerns (its result topic; not part of the payload).
    pub scooter_id: String,
    /// The command's id.
    pub id: CommandId,
    /// The state read back after the command, or why it was refused.
    pub outcome: Result<ControlState, Refusal>,
}

#[derive(Serialize)]
struct Wire<'a> {
    id: &'a str,
    ok: bool,
    state: Option<WireState>,
    error: Option<WireError<'a>>,
}

#[derive(Serialize)]
struct WireState {
    powered: bool,
    locked: bool,
    cruise: bool,
    tail_light: bool,
    kers: WireKers,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireKers {
    Named(&'static str),
    Raw(u16),
}

#[derive(Serialize)]
struct WireError<'a> {
    code: &'a str,
    message: String,
}

impl CommandResult {
    /// Whether the command was carried out.
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The refusal code, for failures.
    pub fn code(&self) -> Option<&'static str> {
        self.outcome.as_ref().err().map(Refusal::code)
    }

    /// The JSON payload published on the result topic.
    pub fn payload(&self) -> Vec<u8> {
        let wire = Wire {
            id: self.id.as_str(),
            ok: self.outcome.is_ok(),
            state: self.outcome.as_ref().ok().map(|s| WireState {
                powered: s.powered,
                locked: s.locked,
                cruise: s.cruise,
                tail_light: s.tail_light,
                kers: match s.kers {
                    KersLevel::Weak => WireKers::Named("weak"),
                    KersLevel::Medium => WireKers::Named("medium"),
                    KersLevel::Strong => WireKers::Named("strong"),
                    KersLevel::Other(raw) => WireKers::Raw(raw),
                },
            }),
            error: self.outcome.as_ref().err().map(|r| WireError {
                code: r.code(),
                message: r.to_string(),
            }),
        };
        // Plain structures of strings, booleans and numbers always serialise.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::time::{Duration, SystemTime};

    fn payload(outcome: Result<ControlState, Refusal>) -> Value {
        let result = CommandResult {
            scooter_id: "s1".into(),
            id: CommandId::new("c-17").unwrap(),
            outcome,
        };
        serde_json::from_slice(&result.payload()).unwrap()
    }

    #[test]
    fn a_success_carries_the_state_read_back() {
        let state = ControlState {
            powered: true,
            locked: true,
            cruise: false,
            tail_light: true,
            kers: KersLevel::Medium,
        };
        assert_eq!(
            payload(Ok(state)),
            json!({
                "id": "c-17",
                "ok": true,
                "state": {"powered": true, "locked": true, "cruise": false, "tail_light": true, "kers": "medium"},
                "error": null
            })
        );
        let odd = ControlState {
            kers: KersLevel::Other(7),
            ..state
        };
        assert_eq!(payload(Ok(odd))["state"]["kers"], json!(7));
    }

    #[test]
    fn a_refusal_carries_its_code_and_message() {
        let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_779_200);
        assert_eq!(
            payload(Err(Refusal::Offline(expiry))),
            json!({
                "id": "c-17",
                "ok": false,
                "state": null,
                "error": {
                    "code": "offline",
                    "message": "the scooter was not reachable before the command expired at 2025-06-01T12:00:00Z"
                }
            })
        );
    }
}
