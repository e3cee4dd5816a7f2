//! `[mqtt]` and `[spool]` as the pipeline's configuration, and the pipeline's start-up failures
//! as exit statuses.
//!
//! This is the one mapping from the daemon's configuration to the broker settings: the pipeline
//! and the Home Assistant discovery client both connect with what [`settings`] returns (through
//! [`m365_pipeline::MqttConfig::connect_params`] and its credentials), so the broker URL, TLS
//! and the password are handled the same way for both.
//!
//! The pipeline reads the MQTT password itself at every connection attempt (so a rotated secret
//! is picked up): from the environment variable or the password file, as configured. A password
//! written inline in `martinete.toml` is handed over as a value, which never prints.

use m365_pipeline::error::ConfigError as PipelineConfigError;
use m365_pipeline::{
    LastError, MqttConfig as WireMqtt, OutputConfig, PasswordSource as WirePassword,
    PipelineConfig, PipelineError, SpoolConfig as WireSpool,
};

use crate::config::{Config, PASSWORD_ENV, PasswordSource, ScooterEntry};
use crate::exit::ExitStatus;

/// Slots of the publish window kept for live records while a backlog drains.
const LIVE_RESERVED: u16 = 4;

/// The pipeline's settings.
#[derive(Debug)]
pub struct PipelineSettings {
    /// What `m365_pipeline::spawn` takes.
    pub config: PipelineConfig,
}

/// Maps the configuration of scooter `entry` onto its pipeline's (nothing in the mapping can
/// fail).
pub fn settings(config: &Config, entry: &ScooterEntry) -> PipelineSettings {
    let mqtt = &entry.mqtt;
    let password = match (&mqtt.password, &mqtt.password_source) {
        (_, Some(PasswordSource::Env)) => Some(WirePassword::Env(PASSWORD_ENV.to_owned())),
        (_, Some(PasswordSource::File(path))) => Some(WirePassword::File(path.clone())),
        (Some(secret), Some(PasswordSource::Inline) | None) => {
            Some(WirePassword::Value(secret.clone()))
        }
        (None, _) => None,
    };
    let tls = mqtt.tls.as_ref();
    let in_flight = mqtt.in_flight.max(1);
    let outputs = mqtt
        .topics()
        .into_iter()
        .map(|t| OutputConfig {
            topic: t.topic,
            encoding: t.encoding,
            // `[spool] batch`: records per message where the encoding batches (`compact`); the
            // pipeline caps `legacy` and `json` at one record per message.
            batch: Some(config.spool.batch as usize),
            linger_ms: Some(u64::try_from(mqtt.batch_window.as_millis()).unwrap_or(u64::MAX)),
            legacy_no_fix: mqtt.legacy_no_fix,
        })
        .collect();
    let wire = WireMqtt {
        broker: mqtt.broker.to_string(),
        protocol: mqtt.protocol,
        client: mqtt.client_id.clone(),
        username: mqtt.username.clone(),
        password,
        ca_file: tls.and_then(|t| t.ca_file.clone()),
        system_roots: tls.is_none_or(|t| t.system_roots),
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
        events_topic: mqtt.events_topic.clone(),
        status_interval: mqtt.status_interval.as_secs(),
        ..WireMqtt::default()
    };
    let spool = &config.spool;
    let spool = WireSpool {
        path: entry.spool_path.clone(),
        max_bytes: spool.max_bytes,
        max_age_s: Some(spool.max_age.as_secs()),
        sync: spool.sync,
        ..WireSpool::default()
    };
    PipelineSettings {
        config: PipelineConfig {
            spool,
            mqtt: wire,
            ..PipelineConfig::default()
        },
    }
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

/// Whether the pipeline's latest error is the broker refusing the credentials.
///
/// The pipeline keeps retrying with back-off whatever the reason; the daemon gives up on this
/// one because waiting cannot fix a wrong password.
pub fn is_auth_refusal(last_error: &LastError) -> bool {
    last_error.is_credentials_refused()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Encoding, MqttProtocol, Secret, SyncPolicy};
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
        let s = settings(&config, config.first());
        let mqtt = &s.config.mqtt;
        assert_eq!(mqtt.broker, "tcp://127.0.0.1:1999");
        assert_eq!(mqtt.protocol, MqttProtocol::V311);
        assert_eq!(mqtt.outputs.len(), 1);
        assert_eq!(mqtt.outputs[0].topic, "vehicle/1/realtime");
        assert_eq!(mqtt.outputs[0].encoding, Encoding::Legacy);
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
    fn an_inline_password_is_handed_over_as_a_value_that_never_prints() {
        let mut config = config("[mqtt]\nusername = \"u\"\n");
        config.scooters[0].mqtt.password = Some(Secret::new("s3cret"));
        config.scooters[0].mqtt.password_source = Some(PasswordSource::Inline);
        let s = settings(&config, config.first());
        let Some(WirePassword::Value(secret)) = s.config.mqtt.password.clone() else {
            panic!("{:?}", s.config.mqtt.password);
        };
        assert_eq!(secret.expose(), "s3cret");
        assert!(!format!("{s:?}").contains("s3cret"));
    }

    #[test]
    fn tls_settings_reach_the_connection_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["broker.example".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        let tls = config(&format!(
            "[mqtt]\nbroker = \"tls://broker.example\"\n[mqtt.tls]\nca_file = \"{}\"\n\
             system_roots = false\n",
            ca.display()
        ));
        let mqtt = settings(&tls, tls.first()).config.mqtt;
        assert_eq!(mqtt.ca_file.as_deref(), Some(ca.as_path()));
        assert!(!mqtt.system_roots);
        let params = mqtt.connect_params("c".into(), 1, None).unwrap();
        assert_eq!(
            (params.host.as_str(), params.port),
            ("broker.example", 8883)
        );
        assert!(params.tls.is_some());
        // Without [mqtt.tls] a TLS broker is checked against the system's root CAs.
        let plain_config = config("[mqtt]\nbroker = \"tcp://b\"\n");
        let plain = settings(&plain_config, plain_config.first()).config.mqtt;
        assert!(plain.system_roots);
        assert!(
            plain
                .connect_params("c".into(), 1, None)
                .unwrap()
                .tls
                .is_none()
        );
    }

    #[test]
    fn spool_batch_sets_the_records_per_message() {
        let config = config("[mqtt]\ntopic = \"t\"\nencoding = \"compact\"\n[spool]\nbatch = 7\n");
        let s = settings(&config, config.first());
        assert_eq!(s.config.mqtt.outputs[0].batch, Some(7));
        assert_eq!(s.config.mqtt.outputs[0].batch_size(), 7);
    }

    #[test]
    fn start_failures_have_their_exit_status() {
        let tls = PipelineError::Config(PipelineConfigError::Tls("bad".into()));
        assert_eq!(start_status(&tls), ExitStatus::TlsConfig);
        use m365_pipeline::{ErrorKind, RefusalReason};
        let refused = LastError::new(
            ErrorKind::Refused(RefusalReason::BadCredentials),
            "broker refused the credentials",
        );
        assert!(is_auth_refusal(&refused));
        // The kind decides, not the words.
        let outage = LastError::new(ErrorKind::Network, "refused the credentials");
        assert!(!is_auth_refusal(&outage));
    }
}
