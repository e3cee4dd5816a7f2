//! What discovery needs to know about the gateway (the `m365 run` process) and each scooter it
//! serves, as plain values. Nothing here reads the configuration: `setup` fills these in from
//! its `[[scooter]]` entries, and the daemon later adds what a scooter reports about itself
//! ([`update_device`]), so the entity table can be built and tested without a configuration.

use std::collections::BTreeSet;

use crate::config::CommandName;

/// The encoding of the topic Home Assistant reads a scooter's state from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateEncoding {
    /// `json` (schema `m365.telemetry` v1): every reading.
    Json,
    /// `legacy`: the earlier client's keys; no lock, error, average speed or trip time.
    Legacy,
}

/// The gateway: the `m365 run` process every scooter device is attached to (Home Assistant's
/// `via_device`). It appears in Home Assistant as a device of its own with a connectivity sensor
/// fed by [`GatewayDiscovery::availability_topic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayDiscovery {
    /// Stable identity of this gateway (e.g. the host name); its device and unique ids derive
    /// from it, so it must not change between restarts.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The m365 version it runs.
    pub sw_version: String,
    /// Retained `online` / `offline` topic of the discovery connection: `online` is published on
    /// every connection and `offline` is that connection's last will.
    pub availability_topic: String,
}

impl GatewayDiscovery {
    /// A gateway with identity `id`: name `m365 gateway <id>`, this build's version, and
    /// availability on `m365/gateway/<id>/availability`.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        GatewayDiscovery {
            name: format!("m365 gateway {id}"),
            sw_version: env!("CARGO_PKG_VERSION").to_owned(),
            availability_topic: format!("m365/gateway/{id}/availability"),
            id,
        }
    }

    /// The gateway's `<node_id>` in discovery topics, which is also its device identifier:
    /// `m365_gateway_<id>` with anything Home Assistant does not accept replaced by `_`.
    pub fn node_id(&self) -> String {
        gateway_node_id(&self.id)
    }
}

pub(super) fn gateway_node_id(id: &str) -> String {
    format!("m365_gateway_{}", node_id(id))
}

/// One scooter as Home Assistant is to see it: its identity, the topics the daemon publishes and
/// reads for it, and the commands its configuration allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScooterDiscovery {
    /// Stable scooter identity (the `{id}` of its topics); unique ids derive from it.
    pub scooter_id: String,
    /// Display name of the device.
    pub name: String,
    /// BLE address (`AA:BB:CC:DD:EE:FF`), when known.
    pub mac: Option<String>,
    /// Telemetry topic the sensors read their state from.
    pub state_topic: String,
    /// Encoding on `state_topic` (`compact` cannot feed Home Assistant).
    pub state_encoding: StateEncoding,
    /// Retained `online` / `offline` topic of the scooter's pipeline connection.
    pub availability_topic: Option<String>,
    /// The pipeline's retained status topic (counters), for the diagnostic backlog sensor.
    pub status_topic: Option<String>,
    /// The events topic, only when its payloads are `json` events (one object per event with
    /// `"type": "event"`, `"event": <name>` and `"data"`); it feeds the event entity.
    pub events_topic: Option<String>,
    /// Topic the daemon takes JSON commands on; without it no control entity is published.
    pub command_topic: Option<String>,
    /// Topic the daemon publishes command results on (with the scooter's settings in
    /// `"state"`); the KERS, cruise and tail light entities read their state from it.
    pub result_topic: Option<String>,
    /// Commands the configuration allows for this scooter.
    pub allowed: BTreeSet<CommandName>,
    /// Whether a GPS source is configured (adds the device tracker).
    pub gps: bool,
    /// Model, once known (e.g. `Pro 2`).
    pub model: Option<String>,
    /// Firmware versions, once known (e.g. `ESC 1.3.4, BMS 1.1.5`); the device's `sw_version`.
    pub firmware: Option<String>,
}

impl ScooterDiscovery {
    /// A scooter with identity `scooter_id` whose sensors read `state_topic`: named
    /// `Scooter <id>`, with no other topic, no command allowed, no GPS, model and firmware
    /// unknown. Set the other fields directly.
    pub fn new(
        scooter_id: impl Into<String>,
        state_topic: impl Into<String>,
        state_encoding: StateEncoding,
    ) -> Self {
        let scooter_id = scooter_id.into();
        ScooterDiscovery {
            name: format!("Scooter {scooter_id}"),
            scooter_id,
            mac: None,
            state_topic: state_topic.into(),
            state_encoding,
            availability_topic: None,
            status_topic: None,
            events_topic: None,
            command_topic: None,
            result_topic: None,
            allowed: BTreeSet::new(),
            gps: false,
            model: None,
            firmware: None,
        }
    }

    /// The scooter's `<node_id>` in discovery topics (see [`node_id`]).
    pub fn node_id(&self) -> String {
        node_id(&self.scooter_id)
    }

    /// Whether `command` is allowed and there is a topic to send it on.
    pub fn can(&self, command: CommandName) -> bool {
        self.command_topic.is_some() && self.allowed.contains(&command)
    }
}

/// The `<node_id>` of a scooter's discovery topics: its id with every character Home Assistant
/// does not accept there (anything but `A-Za-z0-9_-`) replaced by `_`.
pub fn node_id(scooter_id: &str) -> String {
    scooter_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Picks the topic a scooter's sensors read, from its telemetry topics with their encodings (the
/// main topic first, then the mirrors): the first `json` one, else the first `legacy` one;
/// `None` when every topic is `compact`, which Home Assistant cannot read (that scooter then has
/// no discovery).
pub fn state_topic<'a>(
    topics: impl IntoIterator<Item = (&'a str, m365_pipeline::Encoding)>,
) -> Option<(String, StateEncoding)> {
    let mut legacy = None;
    for (topic, encoding) in topics {
        match encoding {
            m365_pipeline::Encoding::Json => return Some((topic.to_owned(), StateEncoding::Json)),
            m365_pipeline::Encoding::Legacy if legacy.is_none() => {
                legacy = Some((topic.to_owned(), StateEncoding::Legacy));
            }
            _ => {}
        }
    }
    legacy
}

/// Records that a scooter reported its model and firmware: updates that scooter's description in
/// the announcer's channel and returns whether anything changed (only then is the announcer
/// woken, and only then does it republish that scooter's configs). `None` leaves a value as it
/// is.
pub fn update_device(
    scooters: &tokio::sync::watch::Sender<Vec<ScooterDiscovery>>,
    scooter_id: &str,
    model: Option<&str>,
    firmware: Option<&str>,
) -> bool {
    scooters.send_if_modified(|list| {
        let Some(s) = list.iter_mut().find(|s| s.scooter_id == scooter_id) else {
            return false;
        };
        let mut changed = false;
        for (field, new) in [(&mut s.model, model), (&mut s.firmware, firmware)] {
            if let Some(new) = new
                && field.as_deref() != Some(new)
            {
                *field = Some(new.to_owned());
                changed = true;
            }
        }
        changed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_keep_only_what_topics_accept() {
        assert_eq!(node_id("my scooter/1+#"), "my_scooter_1__");
        assert_eq!(gateway_node_id("pi.local"), "m365_gateway_pi_local");
    }

    #[test]
    fn sensors_read_the_first_json_topic_else_the_first_legacy_one() {
        use m365_pipeline::Encoding::{Compact, Json, Legacy};
        assert_eq!(
            state_topic([("l1", Legacy), ("c", Compact), ("l2", Legacy), ("j", Json)]),
            Some(("j".to_owned(), StateEncoding::Json))
        );
        assert_eq!(
            state_topic([("c", Compact), ("l1", Legacy), ("l2", Legacy)]),
            Some(("l1".to_owned(), StateEncoding::Legacy))
        );
        assert_eq!(state_topic([("c", Compact)]), None);
    }

    #[test]
    fn device_updates_wake_the_announcer_only_when_something_changed() {
        let s = ScooterDiscovery::new("a", "m365/a/telemetry", StateEncoding::Json);
        let (tx, mut rx) = tokio::sync::watch::channel(vec![s]);
        rx.borrow_and_update();
        assert!(update_device(&tx, "a", Some("Pro 2"), None));
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update()[0].model.as_deref(), Some("Pro 2"));
        assert!(!update_device(&tx, "a", Some("Pro 2"), None), "same model");
        assert!(
            !update_device(&tx, "b", Some("Pro 2"), None),
            "no such scooter"
        );
        assert!(!rx.has_changed().unwrap());
        assert!(update_device(&tx, "a", None, Some("ESC 1.3.4")));
        let now = rx.borrow_and_update();
        assert_eq!(now[0].model.as_deref(), Some("Pro 2"));
        assert_eq!(now[0].firmware.as_deref(), Some("ESC 1.3.4"));
    }
}
