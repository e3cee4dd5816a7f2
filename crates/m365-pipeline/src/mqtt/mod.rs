//! MQTT side of the pipeline: broker URLs, TLS, credentials, and one connection attempt at a
//! time over rumqttc (3.1.1 or 5). Every client of the broker (the publisher, Home Assistant
//! discovery) gets its connection parameters from [`crate::MqttConfig::connect_params`] and its
//! credentials from [`crate::MqttConfig::credentials`], which use these modules. The publishing
//! loop that ties spool, window and connection together is the task [`crate::spawn`] starts.

pub mod connection;
pub mod credentials;
pub mod tls;
pub mod url;

pub use connection::{
    CloseReason, ConnectParams, Connection, MqttProtocol, NetEvent, UnknownProtocol,
};
pub use credentials::PasswordSource;
pub use url::{BrokerUrl, BrokerUrlError};
