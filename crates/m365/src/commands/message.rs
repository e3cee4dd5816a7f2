//! A command message as it arrives over MQTT, parsed into a typed [`Command`], and every reason
//! a command can be refused ([`Refusal`], each with a stable snake_case code for automations).
//!
//! The payload is a JSON object:
//! `{"id": "…", "command": "kers", "value": "strong", "expires": "2025-06-01T12:00:00Z"}`, or
//! with `"ttl": 30` (seconds from arrival) instead of `expires`. Anything else is refused as
//! `malformed`; when the id can still be read, the refusal carries it.

use std::fmt;
use std::time::{Duration, SystemTime};

use m365_gps::chrono::DateTime;
use m365_proto::registers::settings::KersLevel;
use serde_json::{Map, Value};

use crate::config::CommandName;

/// The largest payload read; anything longer is no command of ours.
pub const MAX_PAYLOAD: usize = 4096;
/// The longest id accepted, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// The fields a command message may have.
const FIELDS: &[&str] = &["id", "command", "value", "expires", "ttl"];

/// A command's id, chosen by the sender: 1 to [`MAX_ID_CHARS`] characters, none of them a
/// control character. It names the acknowledgement and guards against replays.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(String);

impl CommandId {
    /// Checks `id`.
    pub fn new(id: &str) -> Result<CommandId, MessageError> {
        if id.is_empty() {
            return Err(MessageError::BadId("it is empty"));
        }
        if id.chars().count() > MAX_ID_CHARS {
            return Err(MessageError::BadId("it is longer than 128 characters"));
        }
        if id.chars().any(char::is_control) {
            return Err(MessageError::BadId("it contains control characters"));
        }
        Ok(CommandId(id.to_owned()))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Lock the scooter.
    Lock,
    /// Unlock it.
    Unlock,
    /// Tail light always on (`true`) or lit only when braking (`false`).
    TailLight(bool),
    /// Cruise control on or off.
    Cruise(bool),
    /// Regenerative braking level.
    Kers(KersLevel),
    /// Take and publish a telemetry sample now.
    SampleNow,
    /// Switch the scooter off.
    PowerOff,
}

impl Action {
    /// The command's name, as allow lists name it.
    pub fn name(&self) -> CommandName {
        match self {
            Action::Lock => CommandName::Lock,
            Action::Unlock => CommandName::Unlock,
            Action::TailLight(_) => CommandName::TailLight,
            Action::Cruise(_) => CommandName::Cruise,
            Action::Kers(_) => CommandName::Kers,
            Action::SampleNow => CommandName::SampleNow,
            Action::PowerOff => CommandName::PowerOff,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |on: bool| if on { "on" } else { "off" };
        match self {
            Action::TailLight(on) | Action::Cruise(on) => {
                write!(f, "{} {}", self.name(), on_off(*on))
            }
            Action::Kers(level) => write!(f, "kers {level}"),
            _ => f.write_str(self.name().as_str()),
        }
    }
}

/// A well-formed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Its id.
    pub id: CommandId,
    /// What it does.
    pub action: Action,
    /// When it stops being valid: it must be carried out before then, or is refused.
    pub expires: SystemTime,
}

/// What is wrong with a command message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Longer than [`MAX_PAYLOAD`].
    #[error("the message is {0} bytes long, more than the 4096 accepted")]
    TooLarge(usize),
    /// Not JSON at all.
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("the message is not a JSON object")]
    NotAnObject,
    /// No `id`.
    #[error("the message has no \"id\"")]
    MissingId,
    /// An `id` that is not a string.
    #[error("\"id\" must be a string")]
    IdNotAString,
    /// An unusable `id`.
    #[error("\"id\" is unusable: {0}")]
    BadId(&'static str),
    /// No `command`.
    #[error("the message has no \"command\"")]
    MissingCommand,
    /// A `command` that names no command.
    #[error(
        "unknown command {0}; expected one of lock, unlock, tail_light, cruise, kers, sample_now, power_off"
    )]
    UnknownCommand(String),
    /// A command that needs a `value` came without one.
    #[error("{0} needs a \"value\"")]
    MissingValue(CommandName),
    /// A `value` that does not fit the command.
    #[error("{command} takes {expected} as \"value\", found {found}")]
    BadValue {
        /// The command.
        command: CommandName,
        /// What it takes.
        expected: &'static str,
        /// What was sent (as JSON).
        found: String,
    },
    /// A `value` for a command that takes none.
    #[error("{0} takes no \"value\"")]
    UnexpectedValue(CommandName),
    /// Neither `expires` nor `ttl`.
    #[error("the message needs \"expires\" (an RFC 3339 time) or \"ttl\" (seconds)")]
    NoExpiry,
    /// Both `expires` and `ttl`.
    #[error("the message has both \"expires\" and \"ttl\"; send only one")]
    BothExpiries,
    /// An `expires` that is no RFC 3339 time.
    #[error("\"expires\" must be an RFC 3339 time such as \"2025-06-01T12:00:00Z\", found {0}")]
    BadExpires(String),
    /// A `ttl` that is no usable number of seconds.
    #[error("\"ttl\" must be a number of seconds from 0 up, found {0}")]
    BadTtl(String),
    /// A field this version does not know.
    #[error("unknown field {0:?}; a command has id, command, value, and expires or ttl")]
    UnknownField(String),
}

/// A message that is no command, with its id when that could still be read (the refusal is
/// then acknowledged under it; without one it can only be logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The id, when readable.
    pub id: Option<CommandId>,
    /// What is wrong.
    pub error: MessageError,
}

/// Why a command was not carried out. Every refusal is acknowledged once, under
/// [`Refusal::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `malformed`: the message is no valid command.
    #[error("{0}")]
    Malformed(MessageError),
    /// `not_allowed`: the configuration does not allow this command for this scooter.
    #[error("{0} is not allowed for this scooter (see [commands] allow in the configuration)")]
    NotAllowed(CommandName),
    /// `expired`: it arrived after its expiry.
    #[error("the command expired at {} before it could be carried out", rfc3339(*.0))]
    Expired(SystemTime),
    /// `too_far_ahead`: its expiry is further ahead than `[commands] max_ttl`.
    #[error("the command expires {}s from now, later than the {}s accepted (max_ttl)", .ahead.as_secs(), .max.as_secs())]
    TooFarAhead {
        /// How far ahead it expires.
        ahead: Duration,
        /// The longest accepted.
        max: Duration,
    },
    /// `replayed`: a command with this id was seen before (and has not expired yet).
    #[error("a command with this id was already received; every command needs a new id")]
    Replayed,
    /// `busy`: the scooter has too many commands waiting.
    #[error("the scooter has too many commands waiting; try again later")]
    Busy,
    /// `offline`: the scooter was not reachable before the command expired.
    #[error("the scooter was not reachable before the command expired at {}", rfc3339(*.0))]
    Offline(SystemTime),
    /// `failed`: the scooter was reached, but the command did not take effect (or its outcome
    /// could not be confirmed).
    #[error("{0}")]
    Failed(String),
    /// `timeout`: the scooter started the command but did not confirm it in time; its outcome
    /// is unknown.
    #[error("the scooter started the command but did not confirm it within {}s of its expiry; its outcome is unknown", .0.as_secs())]
    Timeout(Duration),
}

impl Refusal {
    /// Every code, as [`Refusal::code`] gives them.
    pub const CODES: [&'static str; 9] = [
        "malformed",
        "not_allowed",
        "expired",
        "too_far_ahead",
        "replayed",
        "busy",
        "offline",
        "failed",
        "timeout",
    ];

    /// The stable code automations match on.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::NotAllowed(_) => "not_allowed",
            Refusal::Expired(_) => "expired",
            Refusal::TooFarAhead { .. } => "too_far_ahead",
            Refusal::Replayed => "replayed",
            Refusal::Busy => "busy",
            Refusal::Offline(_) => "offline",
            Refusal::Failed(_) => "failed",
            Refusal::Timeout(_) => "timeout",
        }
    }
}

/// A time as RFC 3339 in UTC, to the second.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    if t < SystemTime::UNIX_EPOCH {
        return "1970-01-01T00:00:00Z".to_owned();
    }
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parses a command `payload` received at `received` (which a `ttl` counts from).
pub fn parse(payload: &[u8], received: SystemTime) -> Result<Command, Malformed> {
    let bare = |error| Malformed { id: None, error };
    if payload.len() > MAX_PAYLOAD {
        return Err(bare(MessageError::TooLarge(payload.len())));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| bare(MessageError::NotJson(e.to_string())))?;
    let Value::Object(fields) = value else {
        return Err(bare(MessageError::NotAnObject));
    };
    let id = match fields.get("id") {
        None => return Err(bare(MessageError::MissingId)),
        Some(Value::String(id)) => CommandId::new(id).map_err(bare)?,
        Some(_) => return Err(bare(MessageError::IdNotAString)),
    };
    match parse_fields(&fields, received) {
        Ok((action, expires)) => Ok(Command {
            id,
            action,
            expires,
        }),
        Err(error) => Err(Malformed {
            id: Some(id),
            error,
        }),
    }
}

fn parse_fields(
    fields: &Map<String, Value>,
    received: SystemTime,
) -> Result<(Action, SystemTime), MessageError> {
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(MessageError::UnknownField(unknown.clone()));
    }
    let name = match fields.get("command") {
        None | Some(Value::Null) => return Err(MessageError::MissingCommand),
        Some(Value::String(name)) => CommandName::from_name(name)
            .ok_or_else(|| MessageError::UnknownCommand(Value::from(name.as_str()).to_string()))?,
        Some(other) => return Err(MessageError::UnknownCommand(other.to_string())),
    };
    let value = fields.get("value").filter(|v| !v.is_null());
    let action = match name {
        CommandName::Lock => no_value(name, value, Action::Lock)?,
        CommandName::Unlock => no_value(name, value, Action::Unlock)?,
        CommandName::SampleNow => no_value(name, value, Action::SampleNow)?,
        CommandName::PowerOff => no_value(name, value, Action::PowerOff)?,
        CommandName::TailLight => Action::TailLight(on_off(name, value)?),
        CommandName::Cruise => Action::Cruise(on_off(name, value)?),
        CommandName::Kers => Action::Kers(kers(value)?),
    };
    let expires = match (fields.get("expires"), fields.get("ttl")) {
        (None, None) => return Err(MessageError::NoExpiry),
        (Some(_), Some(_)) => return Err(MessageError::BothExpiries),
        (Some(expires), None) => expiry_time(expires)?,
        (None, Some(ttl)) => {
            let bad = || MessageError::BadTtl(ttl.to_string());
            let seconds = ttl.as_f64().filter(|s| *s >= 0.0).ok_or_else(bad)?;
            let ttl = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
            received.checked_add(ttl).ok_or_else(bad)?
        }
    };
    Ok((action, expires))
}

fn no_value(
    name: CommandName,
    value: Option<&Value>,
    action: Action,
) -> Result<Action, MessageError> {
    match value {
        None => Ok(action),
        Some(_) => Err(MessageError::UnexpectedValue(name)),
    }
}

fn on_off(name: CommandName, value: Option<&Value>) -> Result<bool, MessageError> {
    let value = value.ok_or(MessageError::MissingValue(name))?;
    let bad = || MessageError::BadValue {
        command: name,
        expected: "\"on\", \"off\", true or false",
        found: value.to_string(),
    };
    match value {
        Value::Bool(on) => Ok(*on),
        Value::String(s) if s.eq_ignore_ascii_case("on") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("off") => Ok(false),
        _ => Err(bad()),
    }
}

fn kers(value: Option<&Value>) -> Result<KersLevel, MessageError> {
    let value = value.ok_or(MessageError::MissingValue(CommandName::Kers))?;
    let level = value.as_str().and_then(|s| {
        [KersLevel::Weak, KersLevel::Medium, KersLevel::Strong]
            .into_iter()
            .find(|l| l.to_string().eq_ignore_ascii_case(s))
    });
    level.ok_or_else(|| MessageError::BadValue {
        command: CommandName::Kers,
        expected: "\"weak\", \"medium\" or \"strong\"",
        found: value.to_string(),
    })
}

fn expiry_time(value: &Value) -> Result<SystemTime, MessageError> {
    let bad = || MessageError::BadExpires(value.to_string());
    let text = value.as_str().ok_or_else(bad)?;
    let time = DateTime::parse_from_rfc3339(text).map_err(|_| bad())?;
    Ok(SystemTime::from(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2025-06-01T12:00:00Z.
    const NOON: u64 = 1_748_779_200;

    fn ok(payload: &str) -> Command {
        parse(payload.as_bytes(), at(NOON)).unwrap_or_else(|e| panic!("{payload}: {e:?}"))
    }

    fn bad(payload: &str) -> Malformed {
        parse(payload.as_bytes(), at(NOON)).expect_err(payload)
    }

    #[test]
    fn every_action_is_read() {
        let cases = [
            (r#""command":"lock""#, Action::Lock),
            (r#""command":"unlock","value":null"#, Action::Unlock),
            (
                r#""command":"tail_light","value":"on""#,
                Action::TailLight(true),
            ),
            (
                r#""command":"tail_light","value":false"#,
                Action::TailLight(false),
            ),
            (r#""command":"cruise","value":true"#, Action::Cruise(true)),
            (r#""command":"cruise","value":"OFF""#, Action::Cruise(false)),
            (
                r#""command":"kers","value":"weak""#,
                Action::Kers(KersLevel::Weak),
            ),
            (
                r#""command":"kers","value":"medium""#,
                Action::Kers(KersLevel::Medium),
            ),
            (
                r#""command":"kers","value":"Strong""#,
                Action::Kers(KersLevel::Strong),
            ),
            (r#""command":"sample_now""#, Action::SampleNow),
            (r#""command":"power_off""#, Action::PowerOff),
        ];
        for (fields, action) in cases {
            let c = ok(&format!(r#"{{"id":"a-1",{fields},"ttl":30}}"#));
            assert_eq!(c.action, action, "{fields}");
            assert_eq!(c.id.as_str(), "a-1");
            assert_eq!(c.expires, at(NOON + 30));
        }
    }

    #[test]
    fn expiry_is_a_time_or_a_ttl_from_arrival() {
        let c = ok(r#"{"id":"x","command":"lock","expires":"2025-06-01T12:05:00Z"}"#);
        assert_eq!(c.expires, at(NOON + 300));
        let c = ok(r#"{"id":"x","command":"lock","expires":"2025-06-01T14:05:00.5+02:00"}"#);
        assert_eq!(c.expires, at(NOON + 300) + Duration::from_millis(500));
        let c = ok(r#"{"id":"x","command":"lock","ttl":1.5}"#);
        assert_eq!(c.expires, at(NOON) + Duration::from_millis(1500));
        let c = ok(r#"{"id":"x","command":"lock","ttl":0}"#);
        assert_eq!(c.expires, at(NOON));
    }

    #[test]
    fn malformed_messages_keep_a_readable_id() {
        let cases = [
            (r#"{"id":"x","ttl":5}"#, MessageError::MissingCommand),
            (
                r#"{"id":"x","command":"reboot","ttl":5}"#,
                MessageError::UnknownCommand("\"reboot\"".into()),
            ),
            (
                r#"{"id":"x","command":7,"ttl":5}"#,
                MessageError::UnknownCommand("7".into()),
            ),
            (
                r#"{"id":"x","command":"cruise","ttl":5}"#,
                MessageError::MissingValue(CommandName::Cruise),
            ),
            (
                r#"{"id":"x","command":"cruise","value":"yes","ttl":5}"#,
                MessageError::BadValue {
                    command: CommandName::Cruise,
                    expected: "\"on\", \"off\", true or false",
                    found: "\"yes\"".into(),
                },
            ),
            (
                r#"{"id":"x","command":"kers","value":2,"ttl":5}"#,
                MessageError::BadValue {
                    command: CommandName::Kers,
                    expected: "\"weak\", \"medium\" or \"strong\"",
                    found: "2".into(),
                },
            ),
            (
                r#"{"id":"x","command":"lock","value":true,"ttl":5}"#,
                MessageError::UnexpectedValue(CommandName::Lock),
            ),
            (r#"{"id":"x","command":"lock"}"#, MessageError::NoExpiry),
            (
                r#"{"id":"x","command":"lock","ttl":5,"expires":"2025-06-01T12:05:00Z"}"#,
                MessageError::BothExpiries,
            ),
            (
                r#"{"id":"x","command":"lock","expires":"tomorrow"}"#,
                MessageError::BadExpires("\"tomorrow\"".into()),
            ),
            (
                r#"{"id":"x","command":"lock","expires":1748779500}"#,
                MessageError::BadExpires("1748779500".into()),
            ),
            (
                r#"{"id":"x","command":"lock","ttl":-1}"#,
                MessageError::BadTtl("-1".into()),
            ),
            (
                r#"{"id":"x","command":"lock","ttl":"5"}"#,
                MessageError::BadTtl("\"5\"".into()),
            ),
            (
                r#"{"id":"x","command":"lock","ttl":1e300}"#,
                MessageError::BadTtl("1e+300".into()),
            ),
            (
                r#"{"id":"x","command":"lock","ttl":5,"expire":"soon"}"#,
                MessageError::UnknownField("expire".into()),
            ),
        ];
        for (payload, error) in cases {
            let m = bad(payload);
            assert_eq!(m.id.as_ref().map(CommandId::as_str), Some("x"), "{payload}");
            assert_eq!(m.error, error, "{payload}");
        }
    }

    #[test]
    fn without_a_readable_id_there_is_nobody_to_answer() {
        let long = "é".repeat(129);
        let cases = [
            ("".to_owned(), "not JSON"),
            ("lock".to_owned(), "not JSON"),
            ("[1,2]".to_owned(), "not a JSON object"),
            (r#"{"command":"lock","ttl":5}"#.to_owned(), "no \"id\""),
            (
                r#"{"id":5,"command":"lock","ttl":5}"#.to_owned(),
                "must be a string",
            ),
            (r#"{"id":"","command":"lock","ttl":5}"#.to_owned(), "empty"),
            (
                r#"{"id":"a\nb","command":"lock","ttl":5}"#.to_owned(),
                "control",
            ),
            (
                format!(r#"{{"id":"{long}","command":"lock","ttl":5}}"#),
                "longer",
            ),
            (" ".repeat(MAX_PAYLOAD + 1), "4096"),
        ];
        for (payload, says) in cases {
            let m = bad(&payload);
            assert_eq!(m.id, None, "{payload}");
            assert!(m.error.to_string().contains(says), "{payload}: {}", m.error);
        }
        // Bytes that are not UTF-8 are refused like any other garbage.
        let m = parse(&[0xFF, 0xFE, b'{'], at(NOON)).unwrap_err();
        assert!(matches!(m.error, MessageError::NotJson(_)));
        // The longest id accepted.
        let id = "é".repeat(128);
        assert_eq!(
            ok(&format!(r#"{{"id":"{id}","command":"lock","ttl":5}}"#))
                .id
                .as_str(),
            id
        );
    }

    #[test]
    fn refusal_codes_are_stable_and_distinct() {
        let t = at(NOON);
        let refusals = [
            Refusal::Malformed(MessageError::NoExpiry),
            Refusal::NotAllowed(CommandName::PowerOff),
            Refusal::Expired(t),
            Refusal::TooFarAhead {
                ahead: Duration::from_secs(600),
                max: Duration::from_secs(300),
            },
            Refusal::Replayed,
            Refusal::Busy,
            Refusal::Offline(t),
            Refusal::Failed("no answer".into()),
            Refusal::Timeout(Duration::from_secs(120)),
        ];
        let codes: Vec<_> = refusals.iter().map(Refusal::code).collect();
        assert_eq!(codes, Refusal::CODES);
        assert_eq!(
            Refusal::Expired(t).to_string(),
            "the command expired at 2025-06-01T12:00:00Z before it could be carried out"
        );
        assert_eq!(
            Refusal::NotAllowed(CommandName::PowerOff).to_string(),
            "power_off is not allowed for this scooter (see [commands] allow in the configuration)"
        );
        assert_eq!(
            Refusal::TooFarAhead {
                ahead: Duration::from_secs(600),
                max: Duration::from_secs(300)
            }
            .to_string(),
            "the command expires 600s from now, later than the 300s accepted (max_ttl)"
        );
    }

    #[test]
    fn actions_print_with_their_values() {
        assert_eq!(Action::Cruise(true).to_string(), "cruise on");
        assert_eq!(Action::TailLight(false).to_string(), "tail_light off");
        assert_eq!(Action::Kers(KersLevel::Strong).to_string(), "kers strong");
        assert_eq!(Action::PowerOff.to_string(), "power_off");
    }
}
