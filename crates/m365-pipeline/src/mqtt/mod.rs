//! MQTT side of the pipeline: broker URLs, TLS, one connection attempt at a time over rumqttc
//! (3.1.1 or 5), and the credentials. The publishing loop that ties spool, window and
//! connection together is [`crate::publisher`].

pub mod connection;
pub mod credentials;
pub mod tls;
pub mod url;

pub use connection::{CloseReason, ConnectParams, Connection, NetEvent};
pub use url::BrokerUrl;
