//! `[commands]`: which remote commands the daemon accepts over MQTT (none by default), on which
//! topics, and how far ahead a command may expire; a `[[scooter]]` entry may replace the allow
//! list with its own `commands = [...]`. Remote control is off unless a list names a command.

use super::reader::{Located, Refusal, Section, describe};
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::de::DeValue;

pub(crate) const KEYS: &[&str] = &["allow", "topic", "result_topic", "max_ttl"];

/// Default command topic; `{id}` is the scooter id.
const DEFAULT_TOPIC: &str = "m365/{id}/command";
/// Default result topic; `{id}` is the scooter id.
const DEFAULT_RESULT_TOPIC: &str = "m365/{id}/command/result";
/// Default longest accepted expiry, counted from the moment a command arrives.
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(5 * 60);
/// The shortest `max_ttl` accepted: a scooter needs a few seconds to answer.
const MIN_MAX_TTL: Duration = Duration::from_secs(1);
/// The longest `max_ttl` accepted: a command older than a day is no remote control any more.
const MAX_MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// A remote command, as named in the configuration and in command messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommandName {
    /// `lock`: lock the scooter (ESC 0x70).
    Lock,
    /// `unlock`: unlock it (ESC 0x71).
    Unlock,
    /// `tail_light`: tail light always on or off (ESC 0x7D, read-modify-write).
    TailLight,
    /// `cruise`: cruise control on or off (ESC 0x7C).
    Cruise,
    /// `kers`: regenerative braking level (ESC 0x7B).
    Kers,
    /// `sample_now`: take and publish a telemetry sample at once.
    SampleNow,
    /// `power_off`: switch the scooter off (ESC 0x79); only the power button brings it back.
    PowerOff,
}

impl CommandName {
    /// Every command, in the order the documentation lists them.
    pub const ALL: [CommandName; 7] = [
        CommandName::Lock,
        CommandName::Unlock,
        CommandName::TailLight,
        CommandName::Cruise,
        CommandName::Kers,
        CommandName::SampleNow,
        CommandName::PowerOff,
    ];

    /// The name used in the configuration and in command messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandName::Lock => "lock",
            CommandName::Unlock => "unlock",
            CommandName::TailLight => "tail_light",
            CommandName::Cruise => "cruise",
            CommandName::Kers => "kers",
            CommandName::SampleNow => "sample_now",
            CommandName::PowerOff => "power_off",
        }
    }

    /// The command named `name` (exact spelling, as [`CommandName::as_str`] prints it).
    pub fn from_name(name: &str) -> Option<CommandName> {
        CommandName::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for CommandName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The effective `[commands]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandsConfig {
    /// Commands accepted for every scooter that does not list its own (none by default).
    pub allow: BTreeSet<CommandName>,
    /// Topic the commands for a scooter arrive on; `{id}` is replaced by the scooter id.
    pub topic: String,
    /// Topic every command's acknowledgement is published on; `{id}` as in `topic`.
    pub result_topic: String,
    /// The latest expiry accepted, counted from the command's arrival: a command meant to
    /// expire later is refused (`too_far_ahead`).
    pub max_ttl: Duration,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            allow: BTreeSet::new(),
            topic: DEFAULT_TOPIC.to_owned(),
            result_topic: DEFAULT_RESULT_TOPIC.to_owned(),
            max_ttl: DEFAULT_MAX_TTL,
        }
    }
}

impl CommandsConfig {
    /// The command topic of scooter `id`.
    pub fn topic_for(&self, id: &str) -> String {
        self.topic.replace("{id}", id)
    }

    /// The result topic of scooter `id`.
    pub fn result_topic_for(&self, id: &str) -> String {
        self.result_topic.replace("{id}", id)
    }
}

/// Reads the `[commands]` table.
pub(crate) fn read(section: &mut Section<'_, '_>) -> CommandsConfig {
    let d = CommandsConfig::default();
    let allow = read_allow(section, "allow").unwrap_or(d.allow);
    let topic = read_topic(section, "topic");
    let result_topic = read_topic(section, "result_topic");
    if let (Some(t), Some(r)) = (&topic, &result_topic)
        && t.value == r.value
    {
        section.problem(
            "result_topic",
            &r.span,
            "must differ from topic: results published on the command topic would come back as \
             commands",
        );
    }
    let topic = topic.map_or(d.topic, |t| t.value);
    let result_topic = result_topic.map_or(d.result_topic, |t| t.value);
    if topic == result_topic && !section.has("result_topic") {
        section.problem_here(
            "topic",
            format!("must differ from result_topic ({result_topic:?})"),
        );
    } else if topic == result_topic && !section.has("topic") {
        section.problem_here(
            "result_topic",
            format!("must differ from topic ({topic:?})"),
        );
    }
    CommandsConfig {
        allow,
        topic,
        result_topic,
        max_ttl: section
            .duration("max_ttl", MIN_MAX_TTL..=MAX_MAX_TTL)
            .map_or(d.max_ttl, |v| v.value),
    }
}

/// Reads an allow list (`["lock", "unlock"]`) at `key`: `[commands] allow`, or `commands` in a
/// `[[scooter]]` entry, where it replaces the `[commands]` list for that scooter. `None` when
/// the key is absent or its value is not a list; every unknown name is a problem placed at
/// that name.
pub(crate) fn read_allow(
    section: &mut Section<'_, '_>,
    key: &str,
) -> Option<BTreeSet<CommandName>> {
    let items = section.value(key, |v| match v {
        DeValue::Array(items) => Ok(items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => (Ok(s.to_string()), item.span()),
                other => (Err(describe(other)), item.span()),
            })
            .collect::<Vec<(Result<String, String>, Range<usize>)>>()),
        _ => Err(Refusal::Expected(
            "a list of command names such as [\"lock\", \"unlock\"]",
        )),
    })?;
    let mut allow = BTreeSet::new();
    for (item, span) in items.value {
        match item {
            Ok(name) => match CommandName::from_name(&name) {
                Some(command) => {
                    allow.insert(command);
                }
                None => section.problem(key, &span, unknown_name(&name)),
            },
            Err(found) => section.problem(
                key,
                &span,
                format!("expected a command name, found {found}"),
            ),
        }
    }
    Some(allow)
}

/// "unknown command …, expected one of …", with a suggestion when one is close.
fn unknown_name(name: &str) -> String {
    let all = CommandName::ALL
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let close = CommandName::ALL
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&name.to_ascii_lowercase(), c.as_str()),
                c.as_str(),
            )
        })
        .filter(|(distance, c)| *distance <= (c.len() / 4).clamp(1, 3))
        .min_by_key(|(distance, _)| *distance);
    match close {
        Some((_, c)) => {
            format!("unknown command {name:?} (did you mean \"{c}\"?); expected one of {all}")
        }
        None => format!("unknown command {name:?}; expected one of {all}"),
    }
}

/// A topic template: not empty, no wildcards (it is subscribed to and published on as is).
fn read_topic(section: &mut Section<'_, '_>, key: &str) -> Option<Located<String>> {
    section.value(key, |v| match v {
        DeValue::String(s) if s.trim().is_empty() => {
            Err(Refusal::Invalid("must not be empty".to_owned()))
        }
        DeValue::String(s) if s.contains(['+', '#', '\0']) => Err(Refusal::Invalid(format!(
            "must be a plain topic without the wildcards + and #, found {:?}",
            s.as_ref()
        ))),
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(Refusal::Expected("a topic string")),
    })
}

#[cfg(test)]
mod tests {
    use super::super::location::SourceMap;
    use super::super::reader::Diagnostics;
    use super::*;

    /// Reads `text`'s `[commands]` table (and its `[scooter]` table's `commands` key) the way
    /// the configuration reader does, returning the problems as `line:column: key: message`.
    fn read_text(text: &str) -> (CommandsConfig, Option<BTreeSet<CommandName>>, Vec<String>) {
        let source = SourceMap::new("t.toml", text);
        let document = toml::de::DeTable::parse(text).unwrap();
        let diag = Diagnostics::default();
        let (config, scooter) = {
            let mut top = Section::new(
                &diag,
                source,
                "",
                Some(document.get_ref()),
                &["commands", "scooter"],
            );
            let config = read(&mut top.table("commands", KEYS));
            let scooter = read_allow(&mut top.table("scooter", &["commands"]), "commands");
            (config, scooter)
        };
        let (problems, _) = diag.into_parts();
        let problems = problems
            .iter()
            .map(|p| {
                format!(
                    "{}:{}: {}: {}",
                    p.location.line, p.location.column, p.key, p.message
                )
            })
            .collect();
        (config, scooter, problems)
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let (config, scooter, problems) = read_text("");
        assert_eq!(config, CommandsConfig::default());
        assert!(config.allow.is_empty());
        assert_eq!(scooter, None);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.topic_for("abc"), "m365/abc/command");
        assert_eq!(config.result_topic_for("abc"), "m365/abc/command/result");
        assert_eq!(config.max_ttl, Duration::from_secs(300));
    }

    #[test]
    fn every_setting_is_read() {
        let (config, scooter, problems) = read_text(
            r#"
[commands]
allow = ["lock", "unlock", "tail_light", "cruise", "kers", "sample_now", "power_off", "lock"]
topic = "fleet/{id}/cmd"
result_topic = "fleet/{id}/cmd/ack"
max_ttl = "30s"
[scooter]
commands = ["sample_now"]
"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.allow, CommandName::ALL.into_iter().collect());
        assert_eq!(config.topic_for("s1"), "fleet/s1/cmd");
        assert_eq!(config.result_topic_for("s1"), "fleet/s1/cmd/ack");
        assert_eq!(config.max_ttl, Duration::from_secs(30));
        assert_eq!(scooter, Some(BTreeSet::from([CommandName::SampleNow])));
    }

    #[test]
    fn an_empty_scooter_list_allows_nothing_for_that_scooter() {
        let (config, scooter, problems) =
            read_text("[commands]\nallow = [\"lock\"]\n[scooter]\ncommands = []\n");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.allow, BTreeSet::from([CommandName::Lock]));
        assert_eq!(scooter, Some(BTreeSet::new()));
    }

    #[test]
    fn unknown_names_are_placed_at_the_name() {
        let (config, scooter, problems) = read_text(
            "[commands]\nallow = [\"lock\", \"unlok\", 3]\n[scooter]\ncommands = [\"reboot\"]\n",
        );
        assert_eq!(
            problems,
            [
                "2:18: [commands] allow: unknown command \"unlok\" (did you mean \"unlock\"?); \
                 expected one of \"lock\", \"unlock\", \"tail_light\", \"cruise\", \"kers\", \
                 \"sample_now\", \"power_off\"",
                "2:27: [commands] allow: expected a command name, found 3",
                "4:13: [scooter] commands: unknown command \"reboot\"; expected one of \"lock\", \
                 \"unlock\", \"tail_light\", \"cruise\", \"kers\", \"sample_now\", \"power_off\"",
            ]
        );
        // The good names are kept, so the rest of the reading goes on.
        assert_eq!(config.allow, BTreeSet::from([CommandName::Lock]));
        assert_eq!(scooter, Some(BTreeSet::new()));
    }

    #[test]
    fn wrong_shapes_and_values_are_problems() {
        let (config, _, problems) = read_text(
            "[commands]\nallow = \"lock\"\ntopic = \"m365/+/command\"\nresult_topic = \"\"\nmax_ttl = \"2d\"\n",
        );
        assert_eq!(
            problems,
            [
                "2:9: [commands] allow: expected a list of command names such as [\"lock\", \
                 \"unlock\"], found \"lock\"",
                "3:9: [commands] topic: must be a plain topic without the wildcards + and #, \
                 found \"m365/+/command\"",
                "4:16: [commands] result_topic: must not be empty",
                "5:11: [commands] max_ttl: must be between 1s and 1day, found 2days",
            ]
        );
        assert_eq!(config, CommandsConfig::default());
    }

    #[test]
    fn results_cannot_share_the_command_topic() {
        let (_, _, problems) =
            read_text("[commands]\ntopic = \"a/{id}\"\nresult_topic = \"a/{id}\"\n");
        assert_eq!(
            problems,
            [
                "3:16: [commands] result_topic: must differ from topic: results published on the \
              command topic would come back as commands"
            ]
        );
        let (_, _, problems) = read_text("[commands]\ntopic = \"m365/{id}/command/result\"\n");
        assert_eq!(
            problems,
            ["2:9: [commands] topic: must differ from result_topic (\"m365/{id}/command/result\")"]
        );
    }

    #[test]
    fn names_read_back_what_they_print() {
        for c in CommandName::ALL {
            assert_eq!(CommandName::from_name(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(CommandName::from_name("LOCK"), None);
    }
}
