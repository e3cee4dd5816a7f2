//! `[mqtt]` and `[spool]` as the pipeline's configuration, and the pipeline's start-up failures
//! as exit statuses.
//!
//! The pipeline reads the MQTT password itself at every connection attempt (so a rotated secret
//! is picked up): from the environment variable or the password file, as configured. A password
//! written inline in `martinete.toml` has no such source, so it is handed over through a file
//! readable only by this user in a private temporary directory, removed when the daemon ends.

use m365_pipeline::error::ConfigError as PipelineConfigError;
use m365_pipeline::{
    Encoding as WireEncoding, MqttConfig as WireMqtt, MqttProtocol as WireProtocol, OutputConfig,
    PasswordSource as WirePassword, PipelineConfig, PipelineError, SpoolConfig as WireSpool,
    SyncPolicy,
};
use std::io::Write as _;

use crate::config::{Config, Encoding, MqttProtocol, PASSWORD_ENV, PasswordSource, SpoolSync};
use crate::exit::ExitStatus;

/// Slots of the publish window kept for live records while a backlog drains.
const LIVE_RESERVED: u16 = 4;

/// The pipeline's settings, plus the private directory that holds an inline password (kept
/// alive as long as the pipeline runs).
#[derive(Debug)]
pub struct PipelineSettings {
    /// What `m365_pipeline::spawn` takes.
    pub config: PipelineConfig,
    /// Holds the inline password file, if any; removed when dropped.
    pub secret_dir: Option<tempfile::TempDir>,
}

/// Maps the configuration onto the pipeline's.
pub fn settings(config: &Config) -> std::io::Result<PipelineSettings> {
    let mqtt = &config.mqtt;
    let (password, secret_dir) = match (&mqtt.password, &mqtt.password_source) {
        (_, Some(PasswordSource::Env)) => (Some(WirePassword::Env(PASSWORD_ENV.to_owned())), None),
        (_, Some(PasswordSource::File(path))) => (Some(WirePassword::File(path.clone())), None),
        (Some(secret), Some(PasswordSource::Inline) | None) => {
            let dir = tempfile::Builder::new().prefix("m365-").tempdir()?;
            let path = dir.path().join("mqtt-password");
            write_private(&path, secret.expose())?;
            (Some(WirePassword::File(path)), Some(dir))
        }
        (None, _) => (None, None),
    };
    let tls = mqtt.tls.as_ref();
    let in_flight = mqtt.in_flight.max(1);
    let outputs = mqtt
        .topics()
        .into_iter()
        .map(|t| OutputConfig {
            topic: t.topic,
            encoding: match t.encoding {
                Encoding::Legacy => WireEncoding::Legacy,
                Encoding::Json => WireEncoding::Json,
                Encoding::Compact => WireEncoding::Compact,
            },
            batch: None,
            linger_ms: None,
        })
        .collect();
    let wire = WireMqtt {
        broker: mqtt.broker.to_string(),
        protocol: match mqtt.protocol {
            MqttProtocol::V311 => WireProtocol::V311,
            MqttProtocol::V5 => WireProtocol::V5,
        },
        client: mqtt.client_id.clone(),
        username: mqtt.username.clone(),
        password,
        ca_file: tls.and_then(|t| t.ca_file.clone()),
        client_cert: tls.and_then(|t| t.client_cert.clone()),
        client_key: tls.and_then(|t| t.client_key.clone()),
        keep_alive: mqtt.keep_alive.as_secs(),
        reconnect_min: mqtt.reconnect_min.as_secs_f64(),
        reconnect_max: mqtt.reconnect_max.as_secs_f64(),
        max_in_flight: in_flight,
        // The window must keep at least one slot for the backlog.
        live_reserved: LIVE_RESERVED.min(in_flight - 1),
        outputs,
        availability_topic: Some(mqtt.availability_topic.clone()),
        ..WireMqtt::default()
    };
    let spool = &config.spool;
    let spool = WireSpool {
        path: spool.path.clone(),
        max_bytes: spool.max_bytes,
        max_age_s: Some(spool.max_age.as_secs()),
        sync: match spool.sync {
            SpoolSync::Always => SyncPolicy::Always,
            SpoolSync::Normal => SyncPolicy::Normal,
        },
        ..WireSpool::default()
    };
    Ok(PipelineSettings {
        config: PipelineConfig {
            spool,
            mqtt: wire,
            ..PipelineConfig::default()
        },
        secret_dir,
    })
}

fn write_private(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(secret.as_bytes())
}

/// The exit status for a pipeline that cannot start.
pub fn start_status(error: &PipelineError) -> ExitStatus {
    match error {
        PipelineError::Spool(_) => ExitStatus::SpoolUnusable,
        PipelineError::Config(
            PipelineConfigError::Tls(_)
            | PipelineConfigError::ClientAuth
            | PipelineConfigError::File { .. },
        ) => ExitStatus::TlsConfig,
        PipelineError::Config(_) => ExitStatus::Config,
    }
}

/// Whether the pipeline's latest connection error says the broker refused the credentials.
///
/// The pipeline keeps retrying with back-off whatever the reason; the daemon gives up on this
/// one because waiting cannot fix a wrong password. The pipeline reports its last error as text
/// only, so this matches the wording of its "refused the credentials" close reason.
pub fn is_auth_refusal(last_error: &str) -> bool {
    last_error.contains("refused the credentials")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::path::PathBuf;

    fn config(text: &str) -> Config {
        crate::config::parse("test.toml", text, &|_| None)
            .expect("valid configuration")
            .0
    }

    #[test]
    fn topics_broker_and_spool_are_carried_over() {
        let config = config(
            r#"
            [scooter]
            mac = "D5:01:45:37:ED:FD"
            [mqtt]
            broker = "tcp://127.0.0.1:1999"
            topic = "vehicle/1/realtime"
            encoding = "legacy"
            in_flight = 2
            protocol = "3.1.1"
            [spool]
            path = "spool.sqlite"
            sync = "always"
            "#,
        );
        let s = settings(&config).unwrap();
        assert!(s.secret_dir.is_none());
        let mqtt = &s.config.mqtt;
        assert_eq!(mqtt.broker, "tcp://127.0.0.1:1999");
        assert_eq!(mqtt.protocol, WireProtocol::V311);
        assert_eq!(mqtt.outputs.len(), 1);
        assert_eq!(mqtt.outputs[0].topic, "vehicle/1/realtime");
        assert_eq!(mqtt.outputs[0].encoding, WireEncoding::Legacy);
        assert_eq!((mqtt.max_in_flight, mqtt.live_reserved), (2, 1));
        assert_eq!(
            mqtt.availability_topic.as_deref(),
            Some("m365/d5014537edfd/availability")
        );
        mqtt.validate().unwrap();
        assert_eq!(s.config.spool.path, PathBuf::from("spool.sqlite"));
        assert_eq!(s.config.spool.sync, SyncPolicy::Always);
    }

    #[test]
    fn an_inline_password_goes_through_a_private_file() {
        let mut config = config("[mqtt]\nusername = \"u\"\n");
        config.mqtt.password = Some(Secret::new("s3cret"));
        config.mqtt.password_source = Some(PasswordSource::Inline);
        let s = settings(&config).unwrap();
        let Some(WirePassword::File(path)) = s.config.mqtt.password.clone() else {
            panic!("{:?}", s.config.mqtt.password);
        };
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by the owner only");
        drop(s);
        assert!(!path.exists(), "removed with the settings");
    }

    #[test]
    fn start_failures_have_their_exit_status() {
        let tls = PipelineError::Config(PipelineConfigError::Tls("bad".into()));
        assert_eq!(start_status(&tls), ExitStatus::TlsConfig);
        assert!(is_auth_refusal(
            "broker refused the credentials: bad user name or password"
        ));
        assert!(!is_auth_refusal("connection refused"));
    }
}
