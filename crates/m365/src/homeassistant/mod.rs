//! Home Assistant MQTT discovery: the retained `…/config` messages that make Home Assistant
//! create the scooter as a device with its sensors, and the short-lived client that publishes
//! them at start-up.
//!
//! - [`entities`] is the pure table: from a [`Discovery`] (built by [`Discovery::from_config`])
//!   [`messages`] returns one [`DiscoveryMessage`] per entity. Entities read their state from a
//!   telemetry topic the daemon already publishes, so nothing extra goes on the wire per record:
//!   the `json` topic when one is configured (it carries every reading), else a `legacy` one
//!   (fewer readings, and different key names). A configuration with only `compact` topics
//!   cannot feed Home Assistant: its payload is compressed.
//! - [`publisher`]: [`spawn_publisher`] publishes the messages retained with QoS 1 over a
//!   connection of its own (same broker, credentials and TLS as the pipeline, set up by the same
//!   function; its own client id), so the telemetry connection never waits for it. Failures are
//!   logged once and retried with back-off until the broker has acknowledged every message; then
//!   the client disconnects. Because the messages are retained, a restarted Home Assistant finds
//!   them on its own: there is no need to watch its birth message.

pub mod entities;
pub mod publisher;

use m365_pipeline::MqttConfig as WireMqtt;
use tokio::task::JoinHandle;

use crate::config::Config;

pub use entities::{
    DeviceInfo, Discovery, DiscoveryMessage, PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE,
    StateEncoding, messages,
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

/// What `m365 run` calls once the pipeline is up: with `[homeassistant] discovery = true`,
/// starts publishing the discovery messages for the configured scooter and returns the task
/// (abort it at shutdown). A configuration Home Assistant cannot be fed from is said once, and
/// telemetry goes on without discovery.
pub fn start(config: &Config, mqtt: &WireMqtt) -> Option<JoinHandle<()>> {
    if !config.homeassistant.discovery {
        return None;
    }
    let scooter_id = &config.telemetry.scooter_id;
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
