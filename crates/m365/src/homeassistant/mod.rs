//! Home Assistant MQTT discovery: the retained `…/config` messages that make Home Assistant
//! create the gateway and each scooter as devices with their sensors and controls, and the
//! clients that publish them.
//!
//! - [`description`]: the plain values discovery works from, [`GatewayDiscovery`] and one
//!   [`ScooterDiscovery`] per scooter (topics, allowed [`Command`]s, model and firmware). The
//!   daemon builds them from its configuration; nothing here reads it.
//! - [`entities`] is the pure table: [`messages_for`] returns one [`DiscoveryMessage`] per
//!   entity. Sensors read their state from a telemetry topic the daemon already publishes, so
//!   nothing extra goes on the wire per record: the `json` topic when one is configured (it
//!   carries every reading), else a `legacy` one (fewer readings, other key names). A
//!   configuration with only `compact` topics cannot feed Home Assistant: its payload is
//!   compressed. The controls (lock, KERS, cruise, tail light, buttons) and the event entity are
//!   published only for the commands the scooter allows and the topics it has.
//! - [`announcer`]: [`spawn_announcer`] keeps the configs in place over a connection of its own:
//!   published on every connection, again when Home Assistant announces itself on
//!   `<prefix>/status`, again for a scooter whose description changed; configs of scooters that
//!   left the configuration are removed.
//! - [`publisher`]: the earlier one-shot publisher behind [`start`], the single-scooter entry
//!   point `m365 run` used before the announcer.

pub mod announcer;
mod controls;
pub mod description;
pub mod entities;
pub mod publisher;
mod state_file;

use m365_pipeline::MqttConfig as WireMqtt;
use tokio::task::JoinHandle;

use crate::config::Config;

pub use announcer::{AnnouncerSettings, STATE_FILE_NAME, spawn_announcer};
pub use controls::{COMMAND_EXPIRY_S, KERS_LEVELS};
pub use description::{
    Command, GatewayDiscovery, ScooterDiscovery, UnknownCommand, node_id, state_topic,
    update_device,
};
pub use entities::{
    DeviceInfo, Discovery, DiscoveryMessage, PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE,
    StateEncoding, TEXT_UNKNOWN, gateway_config_topics, messages, messages_for,
    possible_config_topics,
};
pub use publisher::spawn_publisher;

/// Why discovery cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Every configured topic carries `compact`, which Home Assistant cannot template.
    #[error(
        "Home Assistant discovery needs a topic with encoding \"json\" or \"legacy\"; \
         every configured topic is \"compact\""
    )]
    NoReadableTopic,
    /// The broker settings are unusable (URL, TLS files).
    #[error("cannot prepare the Home Assistant discovery connection: {0}")]
    Broker(#[from] m365_pipeline::error::ConfigError),
}

/// The single-scooter entry point: with `[homeassistant] discovery = true`, publishes the
/// discovery messages of the configuration's first scooter once and returns the task (abort it
/// at shutdown). A configuration Home Assistant cannot be fed from is said once, and telemetry
/// goes on without discovery. [`spawn_announcer`] replaces it for several scooters.
pub fn start(config: &Config, mqtt: &WireMqtt) -> Option<JoinHandle<()>> {
    if !config.homeassistant.discovery {
        return None;
    }
    let scooter_id = &config.first().id;
    let status_topic = mqtt
        .status_topic
        .as_deref()
        .map(|t| t.replace("{scooter_id}", scooter_id));
    let started = Discovery::from_config(config, status_topic)
        .and_then(|d| spawn_publisher(mqtt, messages(&d)).map(|task| (d, task)));
    match started {
        Ok((d, task)) => {
            tracing::info!(
                prefix = %d.prefix,
                state_topic = %d.state_topic,
                "publishing Home Assistant discovery"
            );
            Some(task)
        }
        Err(error) => {
            tracing::warn!(%error, "Home Assistant discovery is not published");
            None
        }
    }
}
