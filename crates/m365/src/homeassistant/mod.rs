//! Home Assistant MQTT discovery: the retained `…/config` messages that make Home Assistant
//! create the gateway and each scooter as devices with their sensors and controls, and the
//! client that keeps them on the broker.
//!
//! - [`description`]: the plain values discovery works from, [`GatewayDiscovery`] and one
//!   [`ScooterDiscovery`] per scooter (topics, allowed commands, model and firmware), and
//!   [`update_device`] for what a scooter reports about itself.
//! - [`entities`] is the pure table: [`messages_for`] returns one [`DiscoveryMessage`] per
//!   entity. Sensors read their state from a telemetry topic the daemon already publishes, so
//!   nothing extra goes on the wire per record: the `json` topic when one is configured (it
//!   carries every reading), else a `legacy` one (fewer readings, other key names). A
//!   configuration with only `compact` topics cannot feed Home Assistant: its payload is
//!   compressed. The controls (lock, KERS, cruise, tail light, buttons) and the event entity,
//!   in `controls`, are published only for the commands the scooter allows and the topics it
//!   has. Both build their messages through `message`, the shape every config shares.
//! - [`announcer`]: [`spawn_announcer`] keeps the configs in place over a connection of its own:
//!   published on every connection, again when Home Assistant announces itself on
//!   `<prefix>/status`, again for a scooter whose description changed; configs of scooters that
//!   left the configuration are removed (they are remembered in a small state file).
//! - [`setup`]: the daemon's entry point, [`start`]: the descriptions of the configured
//!   scooters ([`descriptions`]) and the gateway named after the host ([`gateway_id`]), handed
//!   to the announcer.
//!
//! Within this module the dependencies go one way: `message` and `description` are leaves,
//! `controls` uses both, `entities` uses them and `controls`, `announcer` uses `entities`, and
//! `setup` uses `announcer`.

pub mod announcer;
mod controls;
pub mod description;
pub mod entities;
mod message;
pub mod setup;
pub mod state_file;

pub use announcer::{AnnouncerSettings, STATE_FILE_NAME, spawn_announcer};
pub use controls::{COMMAND_EXPIRY_S, KERS_LEVELS};
pub use description::{
    GatewayDiscovery, ScooterDiscovery, StateEncoding, node_id, state_topic, update_device,
};
pub use entities::{TEXT_UNKNOWN, gateway_config_topics, messages_for, possible_config_topics};
pub use message::{DiscoveryMessage, PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE};
pub use setup::{descriptions, gateway_id, start};

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
