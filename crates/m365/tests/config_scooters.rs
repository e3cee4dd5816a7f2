//! Several scooters in one configuration: `[[scooter]]` entries with their own ids, tokens,
//! sampling, commands, topics and spools, and every way such a file can be wrong, each named
//! with `file:line:column`.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use m365::config::{self, CommandName, Config, ConfigError};

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Config {
    match config::parse("m.toml", text, &no_env) {
        Ok((config, warnings)) => {
            assert!(warnings.is_empty(), "{warnings:?}");
            config
        }
        Err(e) => panic!("{e}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match config::parse("m.toml", text, &no_env) {
        Ok(_) => panic!("expected an invalid configuration:\n{text}"),
        Err(ConfigError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        Err(other) => vec![other.to_string()],
    }
}

const TWO: &str = r#"
[[scooter]]
id = "blue"
mac = "D5:01:45:37:ED:FD"

[[scooter]]
id = "red"
mac = "C7:B8:DC:3B:A1:B2"
interval = "2s"
parked_interval = "1m"
heartbeat = "0s"
commands = ["lock", "unlock"]
token_file_path = "/var/lib/m365/red.token"

[telemetry]
interval = "1s"

[commands]
allow = ["sample_now"]

[spool]
path = "/var/lib/m365/spool.sqlite"
"#;

#[test]
fn each_scooter_gets_its_own_id_token_sampling_commands_topics_and_spool() {
    let config = parse(TWO);
    assert_eq!(config.scooters.len(), 2);
    let (blue, red) = (&config.scooters[0], &config.scooters[1]);
    assert_eq!((blue.id.as_str(), red.id.as_str()), ("blue", "red"));
    // Tokens: the default is per scooter; an explicit one is kept.
    assert_eq!(blue.link.token_file, PathBuf::from(".mi-token-blue"));
    assert_eq!(
        red.link.token_file,
        PathBuf::from("/var/lib/m365/red.token")
    );
    // Sampling: inherited from [telemetry], or the entry's own.
    assert_eq!(blue.telemetry.interval, Duration::from_secs(1));
    assert_eq!(blue.telemetry.parked_interval, Duration::from_secs(30));
    assert_eq!(red.telemetry.interval, Duration::from_secs(2));
    assert_eq!(red.telemetry.parked_interval, Duration::from_secs(60));
    assert_eq!(red.telemetry.heartbeat, Duration::ZERO);
    // Commands: [commands] allow, or the entry's list instead.
    assert_eq!(
        blue.commands.iter().copied().collect::<Vec<_>>(),
        [CommandName::SampleNow]
    );
    assert_eq!(
        red.commands.iter().copied().collect::<Vec<_>>(),
        [CommandName::Lock, CommandName::Unlock]
    );
    // Topics and client ids name the scooter.
    assert_eq!(blue.mqtt.topic, "m365/blue/telemetry");
    assert_eq!(red.mqtt.client_id, "m365-red");
    assert_eq!(red.mqtt.availability_topic, "m365/red/availability");
    assert_eq!(red.mqtt.events_topic.as_deref(), Some("m365/red/events"));
    // Spools side by side.
    assert_eq!(
        blue.spool_path,
        PathBuf::from("/var/lib/m365/spool-blue.sqlite")
    );
    assert_eq!(
        red.spool_path,
        PathBuf::from("/var/lib/m365/spool-red.sqlite")
    );
    // The rendered configuration reads back the same.
    let rendered = config::render(&config);
    assert_eq!(parse(&rendered), config, "{rendered}");
}

#[test]
fn one_scooter_keeps_the_earlier_names_and_paths() {
    let config = parse("[scooter]\nmac = \"D5:01:45:37:ED:FD\"\n");
    let only = config.first();
    assert_eq!(only.id, "d5014537edfd");
    assert_eq!(only.link.token_file, PathBuf::from(".mi-token"));
    assert_eq!(only.spool_path, config.spool.path);
    // A single [[scooter]] entry is the same as the table.
    let entry = parse("[[scooter]]\nmac = \"D5:01:45:37:ED:FD\"\n");
    assert_eq!(entry.scooters, config.scooters);
    // `id` in the table names it too.
    assert_eq!(parse("[scooter]\nid = \"mine\"\n").first().id, "mine");
}

#[test]
fn what_must_differ_between_scooters_is_checked_where_it_is_written() {
    let text = "[[scooter]]\nid = \"a\"\nmac = \"D5:01:45:37:ED:FD\"\n\
                [[scooter]]\nid = \"a\"\nmac = \"D5:01:45:37:ED:FD\"\n\
                [[scooter]]\nid = \"c\"\n";
    assert_eq!(
        errors(text),
        [
            "m.toml:5:6: [scooter] id: another [[scooter]] already has the id \"a\"; each needs its own",
            "m.toml:6:7: [scooter] mac: D5:01:45:37:ED:FD is listed twice",
            "m.toml:7:1: [scooter] mac: with several scooters each [[scooter]] needs its mac (the \
             first scooter found by name could be any of them)",
        ]
    );
    let shared_token = "[[scooter]]\nmac = \"D5:01:45:37:ED:FD\"\ntoken_file_path = \"t\"\n\
                        [[scooter]]\nmac = \"C7:B8:DC:3B:A1:B2\"\ntoken_file_path = \"t\"\n";
    assert_eq!(
        errors(shared_token),
        [
            "m.toml:6:19: [scooter] token_file_path: t is the token file of another [[scooter]]; \
          each scooter pairs with its own"
        ]
    );
}

#[test]
fn shared_topics_and_a_single_id_are_refused_with_several_scooters() {
    let text = "[[scooter]]\nmac = \"D5:01:45:37:ED:FD\"\n[[scooter]]\nmac = \"C7:B8:DC:3B:A1:B2\"\n\
                [telemetry]\nscooter_id = \"x\"\n\
                [mqtt]\ntopic = \"vehicle/1/realtime\"\n\
                [commands]\nresult_topic = \"results\"\n";
    let errors = errors(text);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with("m.toml:6:14: [telemetry] scooter_id: with several scooters"),
        "{errors:?}"
    );
    assert!(
        errors[1]
            .starts_with("m.toml:8:9: [mqtt] topic: with several scooters this must contain {id}"),
        "{errors:?}"
    );
    assert!(
        errors[2].starts_with("m.toml:10:16: [commands] result_topic: with several scooters"),
        "{errors:?}"
    );
}

#[test]
fn sampling_values_are_checked() {
    assert_eq!(
        errors("[telemetry]\ninterval = \"10s\"\nparked_interval = \"5s\"\n"),
        ["m.toml:3:19: [telemetry] parked_interval: must not be shorter than interval (10s)"]
    );
    assert_eq!(
        errors("[[scooter]]\nid = \"a b\"\n"),
        [
            "m.toml:2:6: [scooter] id: is used inside MQTT topics, so it cannot contain '/', '+', \
          '#', braces or spaces, found \"a b\""
        ]
    );
    // An inherited parked interval follows a longer interval.
    let config = parse("[telemetry]\ninterval = \"1m\"\n");
    assert_eq!(
        config.first().telemetry.parked_interval,
        Duration::from_secs(60)
    );
}
