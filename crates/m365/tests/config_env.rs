//! Secrets can come from the environment or a file instead of `martinete.toml`, and the spool
//! follows systemd's state directory.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365::config::{self, PasswordSource};
use std::collections::HashMap;
use std::path::Path;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| map.get(name).cloned()
}

#[test]
fn the_environment_overrides_the_file_password_and_username() {
    let text = "[mqtt]\nusername = \"file-user\"\npassword = \"file-password\"\n";
    let env = env_of(&[
        ("M365_MQTT_PASSWORD", "env-password"),
        ("M365_MQTT_USERNAME", "env-user"),
    ]);
    let (config, warnings) = config::parse("m.toml", text, &env).expect("valid");
    assert!(warnings.is_empty());
    assert_eq!(config.mqtt.username.as_deref(), Some("env-user"));
    assert_eq!(
        config.mqtt.password.as_ref().map(|p| p.expose()),
        Some("env-password")
    );
    assert_eq!(config.mqtt.password_source, Some(PasswordSource::Env));

    // Without the variables, the file's values are used.
    let (config, _) = config::parse("m.toml", text, &env_of(&[])).expect("valid");
    assert_eq!(config.mqtt.username.as_deref(), Some("file-user"));
    assert_eq!(
        config.mqtt.password.as_ref().map(|p| p.expose()),
        Some("file-password")
    );
    assert_eq!(config.mqtt.password_source, Some(PasswordSource::Inline));
}

#[test]
fn an_empty_variable_does_not_override() {
    let text = "[mqtt]\npassword = \"file-password\"\n";
    let (config, _) =
        config::parse("m.toml", text, &env_of(&[("M365_MQTT_PASSWORD", "")])).expect("valid");
    assert_eq!(
        config.mqtt.password.as_ref().map(|p| p.expose()),
        Some("file-password")
    );
}

#[test]
fn a_password_file_is_read_without_its_final_newline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("mqtt-password");
    std::fs::write(&file, "pa ss\n").expect("write");
    let text = format!("[mqtt]\npassword_file = \"{}\"\n", file.display());
    let (config, _) = config::parse("m.toml", &text, &env_of(&[])).expect("valid");
    assert_eq!(
        config.mqtt.password.as_ref().map(|p| p.expose()),
        Some("pa ss")
    );
    assert_eq!(
        config.mqtt.password_source,
        Some(PasswordSource::File(file.clone()))
    );
    // The secret never shows in Debug output.
    assert!(!format!("{config:?}").contains("pa ss"));
}

#[test]
fn the_spool_defaults_to_systemds_state_directory() {
    let (config, _) = config::parse(
        "m.toml",
        "",
        &env_of(&[("STATE_DIRECTORY", "/var/lib/m365-test:/var/lib/other")]),
    )
    .expect("valid");
    assert_eq!(
        config.spool.path,
        Path::new("/var/lib/m365-test/spool.sqlite")
    );
    let (config, _) = config::parse("m.toml", "", &env_of(&[])).expect("valid");
    assert_eq!(config.spool.path, Path::new("/var/lib/m365/spool.sqlite"));
}

#[test]
fn an_explicit_path_that_does_not_exist_is_a_read_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.toml");
    let err = config::load(Some(&missing)).expect_err("missing file");
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read the configuration: ",
            missing.display()
        )),
        "{err}"
    );
}
