//! The entities that act on a scooter or report what happened to it: a lock, selects for KERS,
//! cruise control and the tail light, buttons for "sample now" and "power off", and an event
//! entity for the ride events. Each control exists only when the scooter's configuration allows
//! its command; each one sends a JSON command built by a Home Assistant template, with a unique
//! id and an expiry [`COMMAND_EXPIRY_S`] seconds ahead, so a command that waited too long (Home
//! Assistant offline, broker queue) is refused by the daemon instead of acting late.
//!
//! Cruise control and the tail light are selects (`off` / `on`) rather than switches: an MQTT
//! switch cannot template its command before Home Assistant 2024.8, and every command needs a
//! fresh id and expiry.

use m365_pipeline::EventKind;
use serde_json::{Map, Value, json};

use super::description::{ScooterDiscovery, StateEncoding};
use super::message::{Component, Device, DiscoveryMessage, insert_opt};
use crate::config::CommandName;

/// How far ahead of the moment Home Assistant sends it a command expires, in seconds.
pub const COMMAND_EXPIRY_S: u32 = 30;

/// The KERS levels, as the `kers` command and its result name them.
pub const KERS_LEVELS: [&str; 3] = ["weak", "medium", "strong"];
/// The options of the on/off selects.
const ON_OFF: [&str; 2] = ["off", "on"];

/// Every control entity a scooter can have: (platform, object id).
pub(super) const ENTITIES: &[(Component, &str)] = &[
    (Component::Lock, "lock_control"),
    (Component::Select, "kers"),
    (Component::Select, "cruise"),
    (Component::Select, "tail_light"),
    (Component::Button, "sample_now"),
    (Component::Button, "power_off"),
    (Component::Event, "event"),
];

/// The control and event entities of scooter `s`, in the order of [`ENTITIES`].
pub(super) fn messages(dev: &Device<'_>, s: &ScooterDiscovery) -> Vec<DiscoveryMessage> {
    let mut out = Vec::new();
    if let Some(command_topic) = s.command_topic.as_deref() {
        if s.can(CommandName::Lock) && s.can(CommandName::Unlock) {
            out.push(lock(dev, s, command_topic));
        }
        let selects = [
            (
                CommandName::Kers,
                "KERS",
                &KERS_LEVELS[..],
                Some("mdi:car-brake-alert"),
            ),
            (
                CommandName::Cruise,
                "Cruise control",
                &ON_OFF[..],
                Some("mdi:speedometer"),
            ),
            (
                CommandName::TailLight,
                "Tail light",
                &ON_OFF[..],
                Some("mdi:car-light-dimmed"),
            ),
        ];
        for (command, name, options, icon) in selects {
            if s.can(command) {
                out.push(select(dev, s, command_topic, command, name, options, icon));
            }
        }
        let buttons = [
            (
                CommandName::SampleNow,
                "Sample now",
                "mdi:refresh",
                Some("diagnostic"),
            ),
            (CommandName::PowerOff, "Power off", "mdi:power", None),
        ];
        for (command, name, icon, category) in buttons {
            if s.can(command) {
                let object_id = command.as_str();
                let mut p = control(dev, object_id, name, command_topic);
                p.insert(
                    "command_template".into(),
                    json!(command_template(&quoted(command.as_str()), None)),
                );
                p.insert("icon".into(), json!(icon));
                insert_opt(&mut p, "entity_category", category);
                out.push(dev.message(Component::Button, object_id, p));
            }
        }
    }
    if let Some(events) = &s.events_topic {
        let mut p = dev.common("event", "Event");
        p.insert("state_topic".into(), json!(events));
        p.insert("event_types".into(), json!(EventKind::NAMES));
        p.insert("value_template".into(), json!(event_template()));
        p.insert("icon".into(), json!("mdi:scooter-electric"));
        out.push(dev.message(Component::Event, "event", p));
    }
    out
}

/// The keys every control carries beside the common ones.
fn control(
    dev: &Device<'_>,
    object_id: &str,
    name: &str,
    command_topic: &str,
) -> Map<String, Value> {
    let mut p = dev.common(object_id, name);
    p.insert("command_topic".into(), json!(command_topic));
    // Commands are not retained: one that Home Assistant sent while the daemon was away must
    // not act when it comes back (and would have expired anyway).
    p.insert("retain".into(), json!(false));
    p.insert("qos".into(), json!(1));
    p
}

/// The lock: `lock` / `unlock` commands; its state is the telemetry's `locked` (every sample),
/// or the command results' `state.locked` when the telemetry topic is `legacy` (which has no
/// lock state), or what was last sent when there is neither.
fn lock(dev: &Device<'_>, s: &ScooterDiscovery, command_topic: &str) -> DiscoveryMessage {
    let object_id = "lock_control";
    let mut p = control(dev, object_id, "Lock", command_topic);
    // The command's name is the payload the template receives as `value`.
    p.insert("payload_lock".into(), json!(CommandName::Lock.as_str()));
    p.insert("payload_unlock".into(), json!(CommandName::Unlock.as_str()));
    p.insert(
        "command_template".into(),
        json!(command_template("value", None)),
    );
    p.insert("state_locked".into(), json!("LOCKED"));
    p.insert("state_unlocked".into(), json!("UNLOCKED"));
    match (s.state_encoding, s.result_topic.as_deref()) {
        (StateEncoding::Json, _) => {
            p.insert("state_topic".into(), json!(s.state_topic));
            p.insert("value_template".into(), json!(lock_state_template()));
        }
        (StateEncoding::Legacy, Some(results)) => {
            p.insert("state_topic".into(), json!(results));
            p.insert("value_template".into(), json!(lock_result_template()));
        }
        (StateEncoding::Legacy, None) => {
            p.insert("optimistic".into(), json!(true));
        }
    }
    dev.message(Component::Lock, object_id, p)
}

/// A select sending `command` with the chosen option as its value; its state is the command
/// results' `state.<command>` (KERS level, or `on` / `off` for a boolean).
fn select(
    dev: &Device<'_>,
    s: &ScooterDiscovery,
    command_topic: &str,
    command: CommandName,
    name: &str,
    options: &[&str],
    icon: Option<&str>,
) -> DiscoveryMessage {
    let object_id = command.as_str();
    let mut p = control(dev, object_id, name, command_topic);
    p.insert("options".into(), json!(options));
    p.insert(
        "command_template".into(),
        json!(command_template(&quoted(command.as_str()), Some("value"))),
    );
    match s.result_topic.as_deref() {
        Some(results) => {
            p.insert("state_topic".into(), json!(results));
            p.insert(
                "value_template".into(),
                json!(result_state_template(command.as_str(), options)),
            );
        }
        None => {
            p.insert("optimistic".into(), json!(true));
        }
    }
    insert_opt(&mut p, "icon", icon);
    if command == CommandName::Kers {
        p.insert("entity_category".into(), json!("config"));
    }
    dev.message(Component::Select, object_id, p)
}

/// A Jinja string literal.
fn quoted(s: &str) -> String {
    format!("'{s}'")
}

/// The command template: a JSON command with a unique id (`ha-<command>-<µs since the
/// epoch>-<random>`), the command (a Jinja expression), its value when it takes one, and an
/// expiry [`COMMAND_EXPIRY_S`] seconds from now in RFC 3339 UTC. Uses Home Assistant's `now()`,
/// `as_timestamp` and `timestamp_custom`.
fn command_template(command: &str, value: Option<&str>) -> String {
    let id = format!(
        "'ha-' ~ {command} ~ '-' ~ ((as_timestamp(now()) * 1000000) | int) ~ '-' ~ \
         (range(10000) | random)"
    );
    let expires = format!(
        "(as_timestamp(now()) + {COMMAND_EXPIRY_S}) | timestamp_custom('%Y-%m-%dT%H:%M:%SZ', \
         false)"
    );
    let value = value.map_or_else(String::new, |v| format!(", 'value': {v}"));
    format!("{{{{ {{'id': {id}, 'command': {command}{value}, 'expires': {expires}}} | tojson }}}}")
}

/// The lock's state from the telemetry: `LOCKED` / `UNLOCKED`, `None` (unknown) without a
/// reading.
fn lock_state_template() -> &'static str {
    "{% set v = value_json.locked %}{{ ('LOCKED' if v else 'UNLOCKED') if v is boolean else None }}"
}

/// The lock's state from a command result: `LOCKED` / `UNLOCKED` from `state.locked`; nothing
/// (the state stays) when the result carries no state.
fn lock_result_template() -> &'static str {
    "{% set s = value_json.state if value_json is mapping else none %}{{ ('LOCKED' if s.locked \
     else 'UNLOCKED') if s is mapping and s.locked is boolean else '' }}"
}

/// A select's state from a command result: `state.<key>` (a boolean as `on` / `off`). A result
/// without a state (a command that failed before reaching the scooter) keeps the current option
/// (`this.state`), or leaves it unknown (`None`) when there is none yet: a select logs an error
/// for anything else that is not an option.
fn result_state_template(key: &str, options: &[&str]) -> String {
    let list = options
        .iter()
        .map(|o| quoted(o))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{{% set s = value_json.state if value_json is mapping else none %}}\
         {{% set v = s.{key} if s is mapping else none %}}\
         {{% set v = ('on' if v else 'off') if v is boolean else v %}}\
         {{% set o = this.state if this is defined and this.state is defined else none %}}\
         {{{{ v if v in [{list}] else (o if o in [{list}] else None) }}}}"
    )
}

/// The event entity's template: `{"event_type": <name>, <the event's data>…}` for an event
/// message, nothing (ignored) for anything else.
fn event_template() -> &'static str {
    "{% set e = value_json if value_json is mapping else {} %}{% if e.type == 'event' and \
     e.event is string %}{{ dict(e.data if e.data is mapping else {}, event_type=e.event) | \
     tojson }}{% endif %}"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::homeassistant::entities::scooter_messages;

    fn scooter(allowed: &[CommandName]) -> ScooterDiscovery {
        let mut s = ScooterDiscovery::new("s1", "m365/s1/telemetry", StateEncoding::Json);
        s.command_topic = Some("m365/s1/command".into());
        s.result_topic = Some("m365/s1/command/result".into());
        s.allowed = allowed.iter().copied().collect();
        s
    }

    fn object_ids(s: &ScooterDiscovery) -> Vec<String> {
        scooter_messages("homeassistant", s, None)
            .into_iter()
            .filter(|m| {
                ENTITIES.iter().any(|(c, id)| {
                    m.topic
                        .ends_with(&format!("/{}/s1/{id}/config", c.as_str()))
                })
            })
            .map(|m| m.topic.split('/').nth(3).unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn each_control_needs_its_command_allowed() {
        assert!(object_ids(&scooter(&[])).is_empty());
        assert!(
            object_ids(&scooter(&[CommandName::Lock])).is_empty(),
            "a lock needs both lock and unlock"
        );
        assert_eq!(
            object_ids(&scooter(&[CommandName::Lock, CommandName::Unlock])),
            ["lock_control"]
        );
        assert_eq!(object_ids(&scooter(&CommandName::ALL)).len(), 6);
        let mut no_topic = scooter(&CommandName::ALL);
        no_topic.command_topic = None;
        assert!(object_ids(&no_topic).is_empty(), "nowhere to send commands");
    }

    #[test]
    fn events_need_an_events_topic() {
        let mut s = scooter(&[]);
        s.events_topic = Some("m365/s1/events".into());
        assert_eq!(object_ids(&s), ["event"]);
    }

    #[test]
    fn the_command_template_names_the_command_and_its_expiry() {
        let t = command_template("'kers'", Some("value"));
        assert!(t.starts_with("{{ {'id': 'ha-' ~ 'kers' ~ "), "{t}");
        assert!(t.contains("'command': 'kers', 'value': value, 'expires': "));
        assert!(t.contains("(as_timestamp(now()) + 30)"));
        assert!(t.ends_with("} | tojson }}"));
    }
}
