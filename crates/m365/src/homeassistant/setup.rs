//! From the daemon's configuration to a running announcer: [`descriptions`] describes every
//! configured scooter (the topic its sensors read, its availability, status, events, command
//! and result topics, the commands it allows, GPS), [`gateway_id`] names the gateway after the
//! host, and [`start`] hands both to [`spawn_announcer`] when `[homeassistant] discovery` is on.
//! The broker settings come in from the caller (the pipeline's, as the daemon maps them), so
//! this module reads the configuration but nothing of the daemon.

use std::path::Path;

use m365_pipeline::MqttConfig as WireMqtt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::DiscoveryError;
use super::announcer::{AnnouncerSettings, STATE_FILE_NAME, spawn_announcer};
use super::description::{GatewayDiscovery, ScooterDiscovery, state_topic};
use crate::config::{Config, Encoding, GpsSource};

/// The description of every configured scooter, in configuration order. Each one's sensors read
/// its first `json` topic, else its first `legacy` one (see [`state_topic`]); `status_topic` is
/// the pipeline's status topic with `{scooter_id}` in it (its
/// [`m365_pipeline::MqttConfig::status_topic`]), `None` when the pipeline publishes none. Model
/// and firmware are unknown until the scooter reports them ([`super::update_device`]).
///
/// Fails with [`DiscoveryError::NoReadableTopic`] when a scooter has only `compact` topics: the
/// topics are `[mqtt]`'s, the same for every scooter, so then no scooter can feed Home
/// Assistant.
pub fn descriptions(
    config: &Config,
    status_topic: Option<&str>,
) -> Result<Vec<ScooterDiscovery>, DiscoveryError> {
    let gps = config.gps.source != GpsSource::None;
    config
        .scooters
        .iter()
        .map(|entry| {
            let topics = entry.mqtt.topics();
            let (topic, encoding) =
                state_topic(topics.iter().map(|t| (t.topic.as_str(), t.encoding)))
                    .ok_or(DiscoveryError::NoReadableTopic)?;
            let mut s = ScooterDiscovery::new(&entry.id, topic, encoding);
            s.mac = entry.link.mac.map(|m| m.to_string());
            s.availability_topic = Some(entry.mqtt.availability_topic.clone());
            s.status_topic = status_topic.map(|t| t.replace("{scooter_id}", &entry.id));
            // Events go out in the main topic's encoding; Home Assistant reads them as JSON.
            if entry.mqtt.encoding == Encoding::Json {
                s.events_topic = entry.mqtt.events_topic.clone();
            }
            if !entry.commands.is_empty() {
                s.command_topic = Some(config.commands.topic_for(&entry.id));
                s.result_topic = Some(config.commands.result_topic_for(&entry.id));
            }
            s.allowed = entry.commands.clone();
            s.gps = gps;
            Ok(s)
        })
        .collect()
}

/// With `[homeassistant] discovery = true`, starts the announcer that keeps every scooter's
/// discovery configs on the broker of `mqtt` (the pipeline's settings of the first scooter; the
/// announcer has a connection of its own), with its state file [`STATE_FILE_NAME`] in
/// `state_dir`. Returns its task (abort it at shutdown) and the sender of the descriptions it
/// announces, for [`super::update_device`] once a scooter's model and firmware are known.
///
/// `(None, None)` when discovery is off, or when it cannot be set up: a configuration Home
/// Assistant cannot be fed from (only `compact` topics) or unusable broker settings are said
/// once, and telemetry goes on without discovery.
pub fn start(
    config: &Config,
    mqtt: &WireMqtt,
    state_dir: &Path,
) -> (
    Option<JoinHandle<()>>,
    Option<watch::Sender<Vec<ScooterDiscovery>>>,
) {
    if !config.homeassistant.discovery {
        return (None, None);
    }
    let scooters = match descriptions(config, mqtt.status_topic.as_deref()) {
        Ok(scooters) => scooters,
        Err(error) => {
            tracing::warn!(%error, "Home Assistant discovery is not published");
            return (None, None);
        }
    };
    let (tx, rx) = watch::channel(scooters);
    let settings = AnnouncerSettings {
        prefix: config.homeassistant.prefix.clone(),
        gateway: GatewayDiscovery::new(gateway_id()),
        state_file: Some(state_dir.join(STATE_FILE_NAME)),
    };
    match spawn_announcer(mqtt, settings, rx) {
        Ok(task) => {
            tracing::info!(
                prefix = %config.homeassistant.prefix,
                "publishing Home Assistant discovery"
            );
            (Some(task), Some(tx))
        }
        Err(error) => {
            tracing::warn!(%error, "Home Assistant discovery is not published");
            (None, None)
        }
    }
}

/// The gateway's id in Home Assistant: the host name (letters, digits and `-` kept, anything
/// else as `_`), else `m365`.
pub fn gateway_id() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    host_id(&name)
}

/// The gateway id for host name `name`.
fn host_id(name: &str) -> String {
    let id: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() { "m365".to_owned() } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_is_named_after_the_host() {
        assert_eq!(host_id("raspberrypi\n"), "raspberrypi");
        assert_eq!(host_id("pi.local"), "pi_local");
        assert_eq!(host_id("  \n"), "m365");
        assert!(!gateway_id().is_empty());
    }
}
