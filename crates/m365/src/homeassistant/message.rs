//! The shape every discovery message shares: the [`DiscoveryMessage`] itself, its topic
//! (`<prefix>/<component>/<node_id>/<object_id>/config`), and the keys each entity of one device
//! carries (name, unique id, device block, origin, availability). The sensors (`entities`) and
//! the controls (`controls`) both build their messages through [`Device`]; this module depends on
//! neither.

use serde_json::{Map, Value, json};

/// Payload Home Assistant reads as "the scooter's client is connected"; the pipeline publishes
/// it retained on the availability topic after each connection.
pub const PAYLOAD_AVAILABLE: &str = "online";
/// Payload of the pipeline's last will on the availability topic.
pub const PAYLOAD_NOT_AVAILABLE: &str = "offline";

/// One retained discovery message.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryMessage {
    /// `<prefix>/<component>/<node_id>/<object_id>/config`.
    pub topic: String,
    /// The entity's configuration.
    pub payload: Value,
}

/// Home Assistant entity platforms used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Component {
    Sensor,
    BinarySensor,
    DeviceTracker,
    Lock,
    Select,
    Button,
    Event,
}

impl Component {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Component::Sensor => "sensor",
            Component::BinarySensor => "binary_sensor",
            Component::DeviceTracker => "device_tracker",
            Component::Lock => "lock",
            Component::Select => "select",
            Component::Button => "button",
            Component::Event => "event",
        }
    }
}

/// One device's part of every discovery message: where its topics go, its device block and the
/// availability its entities follow.
pub(super) struct Device<'a> {
    prefix: &'a str,
    node: String,
    /// The device's identifier; unique ids are `<identifier>_<object_id>`.
    identifier: String,
    block: Value,
    availability: Option<&'a str>,
}

impl<'a> Device<'a> {
    /// The device whose config topics go under `<prefix>/<component>/<node>/…`, whose unique ids
    /// are `<identifier>_<object_id>`, with the device block `block`, and whose entities follow
    /// `availability` when given.
    pub(super) fn new(
        prefix: &'a str,
        node: String,
        identifier: String,
        block: Value,
        availability: Option<&'a str>,
    ) -> Self {
        Device {
            prefix,
            node,
            identifier,
            block,
            availability,
        }
    }

    /// The keys every entity carries: name, unique id, device, origin, availability.
    pub(super) fn common(&self, object_id: &str, name: &str) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("name".into(), json!(name));
        // Derived from the device's id alone: stable across restarts and configuration edits
        // that do not change the device, so Home Assistant keeps the entity's history and
        // settings.
        p.insert(
            "unique_id".into(),
            json!(format!("{}_{object_id}", self.identifier)),
        );
        p.insert("device".into(), self.block.clone());
        p.insert(
            "origin".into(),
            json!({
                "name": "m365",
                "sw_version": env!("CARGO_PKG_VERSION"),
            }),
        );
        if let Some(topic) = self.availability {
            p.insert("availability_topic".into(), json!(topic));
            p.insert("payload_available".into(), json!(PAYLOAD_AVAILABLE));
            p.insert("payload_not_available".into(), json!(PAYLOAD_NOT_AVAILABLE));
        }
        p
    }

    /// The message of entity `object_id` on platform `component` with configuration `payload`.
    pub(super) fn message(
        &self,
        component: Component,
        object_id: &str,
        payload: Map<String, Value>,
    ) -> DiscoveryMessage {
        DiscoveryMessage {
            topic: config_topic(self.prefix, component, &self.node, object_id),
            payload: Value::Object(payload),
        }
    }
}

/// `<prefix>/<component>/<node>/<object_id>/config`.
pub(super) fn config_topic(
    prefix: &str,
    component: Component,
    node: &str,
    object_id: &str,
) -> String {
    format!("{prefix}/{}/{node}/{object_id}/config", component.as_str())
}

/// Sets `key` to `value` when there is one.
pub(super) fn insert_opt(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        map.insert(key.into(), json!(v));
    }
}
