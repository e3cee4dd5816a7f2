//! The Home Assistant entities of the gateway and its scooters, as data: which entities exist,
//! their units, device and state classes, and the templates that read each one's state from a
//! topic the daemon already publishes. Pure: [`messages_for`] turns plain descriptions into the
//! retained discovery messages with no I/O, so the same input always gives the same payloads.
//! The control entities (lock, selects, buttons, events) are in `controls`.

use m365_proto::registers::codes::{ErrorCode, WarningCode};
use serde_json::{Map, Value, json};

use super::controls;
use super::description::{
    GatewayDiscovery, ScooterDiscovery, StateEncoding, gateway_node_id, node_id,
};
use super::message::{
    Component, Device, DiscoveryMessage, PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE, config_topic,
    insert_opt,
};

/// What a text sensor's template renders for a reading that is missing. A text sensor stores
/// whatever its template renders (Home Assistant turns `None` into "unknown" only for numeric
/// sensors, and would show the word "None"), and `unknown` is the state Home Assistant itself
/// gives an entity without a value.
pub const TEXT_UNKNOWN: &str = "unknown";

/// How a reading becomes the entity's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The value rounded to this many decimals (0: a whole number); `None` when missing.
    Number(u8),
    /// Metres on the wire, kilometres (to the metre) in Home Assistant.
    MetresAsKm,
    /// `locked` boolean → lock binary sensor (`ON` means unlocked, Home Assistant's convention).
    Lock,
    /// A code where anything but 0 is a problem.
    Problem,
    /// An error code → its meaning.
    ErrorText,
    /// A warning code → its meaning.
    WarningText,
}

/// One entity fed by the telemetry topic.
struct Spec {
    component: Component,
    object_id: &'static str,
    name: &'static str,
    /// Field path in the `json` encoding.
    json: &'static str,
    /// Field path in the `legacy` encoding; `None` when it does not carry the reading.
    legacy: Option<&'static str>,
    shape: Shape,
    device_class: Option<&'static str>,
    state_class: Option<&'static str>,
    unit: Option<&'static str>,
    icon: Option<&'static str>,
    /// Digits Home Assistant shows by default.
    precision: Option<u8>,
}

/// What Home Assistant needs to know about a number: class, unit, default precision, and the
/// decimals the state itself is rounded to (computed values such as power carry float noise).
#[derive(Clone, Copy)]
struct Class {
    device_class: Option<&'static str>,
    state_class: &'static str,
    unit: &'static str,
    precision: u8,
    decimals: u8,
}

// State classes: `total_increasing` for counters that only grow until the scooter powers off
// (Home Assistant treats a drop as a reset), `measurement` for the rest.
const fn class(
    device_class: &'static str,
    state_class: &'static str,
    unit: &'static str,
    precision: u8,
    decimals: u8,
) -> Class {
    Class {
        device_class: Some(device_class),
        state_class,
        unit,
        precision,
        decimals,
    }
}
const SPEED: Class = class("speed", "measurement", "km/h", 1, 1);
const PERCENT: Class = class("battery", "measurement", "%", 0, 0);
const VOLTAGE: Class = class("voltage", "measurement", "V", 2, 2);
const CURRENT: Class = class("current", "measurement", "A", 2, 2);
const POWER: Class = class("power", "measurement", "W", 0, 1);
const CHARGE: Class = Class {
    device_class: None,
    state_class: "measurement",
    unit: "mAh",
    precision: 0,
    decimals: 0,
};
const TEMPERATURE: Class = class("temperature", "measurement", "°C", 1, 1);
const ODOMETER: Class = class("distance", "total_increasing", "km", 1, 3);
const TRIP: Class = class("distance", "total_increasing", "km", 2, 3);
const RANGE: Class = class("distance", "measurement", "km", 1, 1);
const SECONDS: Class = class("duration", "total_increasing", "s", 0, 0);

/// A numeric sensor: `json` and `legacy` are the field paths in each encoding (`None` when
/// `legacy` does not carry the reading).
const fn number(
    object_id: &'static str,
    name: &'static str,
    (json, legacy): (&'static str, Option<&'static str>),
    class: Class,
) -> Spec {
    Spec {
        component: Component::Sensor,
        object_id,
        name,
        json,
        legacy,
        shape: Shape::Number(class.decimals),
        device_class: class.device_class,
        state_class: Some(class.state_class),
        unit: Some(class.unit),
        icon: None,
        precision: Some(class.precision),
    }
}

const fn km(spec: Spec) -> Spec {
    Spec {
        shape: Shape::MetresAsKm,
        ..spec
    }
}

const SPECS: &[Spec] = &[
    number("speed", "Speed", ("speed_kmh", Some("speed_kmh")), SPEED),
    number(
        "average_speed",
        "Average speed",
        ("avg_speed_kmh", None),
        SPEED,
    ),
    number(
        "battery",
        "Battery",
        ("battery.percent", Some("battery_info.percent")),
        PERCENT,
    ),
    number(
        "battery_voltage",
        "Battery voltage",
        ("battery.voltage_v", Some("battery_info.voltage")),
        VOLTAGE,
    ),
    number(
        "battery_current",
        "Battery current",
        ("battery.current_a", Some("battery_info.current")),
        CURRENT,
    ),
    number(
        "battery_power",
        "Battery power",
        ("battery.power_w", None),
        POWER,
    ),
    number(
        "battery_remaining",
        "Battery remaining",
        ("battery.remaining_mah", Some("battery_info.capacity")),
        CHARGE,
    ),
    number(
        "battery_temperature_1",
        "Battery temperature 1",
        ("battery.temp1_c", Some("battery_info.temperature_1")),
        TEMPERATURE,
    ),
    number(
        "battery_temperature_2",
        "Battery temperature 2",
        ("battery.temp2_c", Some("battery_info.temperature_2")),
        TEMPERATURE,
    ),
    number(
        "frame_temperature",
        "Frame temperature",
        ("frame_temp_c", Some("frame_temp")),
        TEMPERATURE,
    ),
    km(number(
        "odometer",
        "Odometer",
        ("odometer_m", Some("total_distance_m")),
        ODOMETER,
    )),
    km(number(
        "trip_distance",
        "Trip distance",
        ("trip_distance_m", Some("trip_distance_m")),
        TRIP,
    )),
    number(
        "range",
        "Remaining range",
        ("range_km", Some("trip_distance_left_km")),
        RANGE,
    ),
    number(
        "uptime",
        "Uptime",
        ("uptime_s", Some("uptime_sec")),
        SECONDS,
    ),
    number("trip_time", "Trip time", ("trip_time_s", None), SECONDS),
    Spec {
        component: Component::BinarySensor,
        object_id: "lock",
        name: "Lock",
        json: "locked",
        legacy: None,
        shape: Shape::Lock,
        device_class: Some("lock"),
        state_class: None,
        unit: None,
        icon: None,
        precision: None,
    },
    Spec {
        component: Component::BinarySensor,
        object_id: "error",
        name: "Error",
        json: "error_code",
        legacy: None,
        shape: Shape::Problem,
        device_class: Some("problem"),
        state_class: None,
        unit: None,
        icon: None,
        precision: None,
    },
    Spec {
        component: Component::Sensor,
        object_id: "error_code",
        name: "Error code",
        json: "error_code",
        legacy: None,
        shape: Shape::ErrorText,
        device_class: None,
        state_class: None,
        unit: None,
        icon: Some("mdi:alert-circle-outline"),
        precision: None,
    },
    Spec {
        component: Component::Sensor,
        object_id: "warning_code",
        name: "Warning code",
        json: "warning_code",
        legacy: None,
        shape: Shape::WarningText,
        device_class: None,
        state_class: None,
        unit: None,
        icon: Some("mdi:alert-outline"),
        precision: None,
    },
];

/// The device tracker and the backlog sensor, beside the table.
const TRACKER: (Component, &str) = (Component::DeviceTracker, "location");
const BACKLOG: (Component, &str) = (Component::Sensor, "spool_backlog");
/// The gateway's one entity.
const GATEWAY_CONNECTIVITY: (Component, &str) = (Component::BinarySensor, "connectivity");

/// Every discovery message for a gateway and the scooters it serves: the gateway's device (a
/// connectivity sensor) first, then each scooter's entities, each scooter a device of its own
/// attached to the gateway (`via_device`). Pure and in a fixed order: the same input gives the
/// same messages, so unique ids stay stable across restarts.
pub fn messages_for(
    prefix: &str,
    gateway: &GatewayDiscovery,
    scooters: &[ScooterDiscovery],
) -> Vec<DiscoveryMessage> {
    let mut out = gateway_messages(prefix, gateway);
    let via = gateway.node_id();
    for s in scooters {
        out.extend(scooter_messages(prefix, s, Some(&via)));
    }
    out
}

/// The gateway's messages: its device with a diagnostic connectivity sensor that reads the
/// gateway's availability topic.
pub fn gateway_messages(prefix: &str, gateway: &GatewayDiscovery) -> Vec<DiscoveryMessage> {
    let node = gateway.node_id();
    let block = json!({
        "identifiers": [node],
        "name": gateway.name,
        "manufacturer": "m365",
        "model": "m365 gateway",
        "sw_version": gateway.sw_version,
    });
    let dev = Device::new(prefix, node.clone(), node, block, None);
    let (component, object_id) = GATEWAY_CONNECTIVITY;
    let mut p = dev.common(object_id, "Connectivity");
    p.insert("state_topic".into(), json!(gateway.availability_topic));
    p.insert("payload_on".into(), json!(PAYLOAD_AVAILABLE));
    p.insert("payload_off".into(), json!(PAYLOAD_NOT_AVAILABLE));
    p.insert("device_class".into(), json!("connectivity"));
    p.insert("entity_category".into(), json!("diagnostic"));
    vec![dev.message(component, object_id, p)]
}

/// One scooter's messages; `via` is the gateway's device identifier, if any.
pub fn scooter_messages(
    prefix: &str,
    s: &ScooterDiscovery,
    via: Option<&str>,
) -> Vec<DiscoveryMessage> {
    let dev = Device::new(
        prefix,
        s.node_id(),
        scooter_identifier(s),
        device_block(s, via),
        s.availability_topic.as_deref(),
    );
    let mut out = Vec::new();
    for spec in SPECS {
        let path = match s.state_encoding {
            StateEncoding::Json => Some(spec.json),
            StateEncoding::Legacy => spec.legacy,
        };
        let Some(path) = path else { continue };
        let mut p = dev.common(spec.object_id, spec.name);
        p.insert("state_topic".into(), json!(s.state_topic));
        p.insert(
            "value_template".into(),
            json!(state_template(spec.shape, path)),
        );
        insert_opt(&mut p, "device_class", spec.device_class);
        insert_opt(&mut p, "state_class", spec.state_class);
        insert_opt(&mut p, "unit_of_measurement", spec.unit);
        insert_opt(&mut p, "icon", spec.icon);
        if let Some(digits) = spec.precision {
            p.insert("suggested_display_precision".into(), json!(digits));
        }
        out.push(dev.message(spec.component, spec.object_id, p));
    }
    if s.gps {
        let (component, object_id) = TRACKER;
        let mut p = dev.common(object_id, "Location");
        p.insert("source_type".into(), json!("gps"));
        p.insert("json_attributes_topic".into(), json!(s.state_topic));
        p.insert(
            "json_attributes_template".into(),
            json!(location_template(s.state_encoding)),
        );
        p.insert("icon".into(), json!("mdi:scooter"));
        out.push(dev.message(component, object_id, p));
    }
    if let Some(status) = &s.status_topic {
        let (component, object_id) = BACKLOG;
        let mut p = dev.common(object_id, "Spool backlog");
        p.insert("state_topic".into(), json!(status));
        p.insert(
            "value_template".into(),
            json!(state_template(Shape::Number(0), "spool_records")),
        );
        p.insert("state_class".into(), json!("measurement"));
        p.insert("unit_of_measurement".into(), json!("records"));
        p.insert("entity_category".into(), json!("diagnostic"));
        p.insert("icon".into(), json!("mdi:tray-full"));
        out.push(dev.message(component, object_id, p));
    }
    out.extend(controls::messages(&dev, s));
    out
}

/// Every config topic an entity of scooter `scooter_id` could have used under `prefix`,
/// whatever its encoding, topics and allowed commands: what has to be cleared when the scooter
/// leaves the configuration.
pub fn possible_config_topics(prefix: &str, scooter_id: &str) -> Vec<String> {
    let node = node_id(scooter_id);
    SPECS
        .iter()
        .map(|s| (s.component, s.object_id))
        .chain([TRACKER, BACKLOG])
        .chain(controls::ENTITIES.iter().copied())
        .map(|(component, object_id)| config_topic(prefix, component, &node, object_id))
        .collect()
}

/// Every config topic the gateway `gateway_id` publishes under `prefix`.
pub fn gateway_config_topics(prefix: &str, gateway_id: &str) -> Vec<String> {
    let (component, object_id) = GATEWAY_CONNECTIVITY;
    vec![config_topic(
        prefix,
        component,
        &gateway_node_id(gateway_id),
        object_id,
    )]
}

/// The scooter's device identifier, `m365_<node_id>`.
fn scooter_identifier(s: &ScooterDiscovery) -> String {
    format!("m365_{}", s.node_id())
}

fn device_block(s: &ScooterDiscovery, via: Option<&str>) -> Value {
    let mut dev = Map::new();
    dev.insert("identifiers".into(), json!([scooter_identifier(s)]));
    if let Some(mac) = &s.mac {
        dev.insert(
            "connections".into(),
            json!([["bluetooth", mac.to_ascii_lowercase()]]),
        );
    }
    dev.insert("name".into(), json!(s.name));
    dev.insert("manufacturer".into(), json!("Xiaomi"));
    insert_opt(&mut dev, "model", s.model.as_deref());
    insert_opt(&mut dev, "sw_version", s.firmware.as_deref());
    insert_opt(&mut dev, "via_device", via);
    Value::Object(dev)
}

/// The value template: binds the field at `path` to `v` (`value_json.<path>`), then shapes it.
/// A missing reading never becomes a made-up value: numeric and binary entities render `None`,
/// which Home Assistant stores as "unknown", text sensors render [`TEXT_UNKNOWN`].
fn state_template(shape: Shape, path: &str) -> String {
    let bind = format!("{{% set v = value_json.{path} %}}");
    let body = match shape {
        Shape::Number(0) => "{{ v | round | int if v is number else None }}".to_owned(),
        Shape::Number(digits) => format!("{{{{ v | round({digits}) if v is number else None }}}}"),
        Shape::MetresAsKm => "{{ (v / 1000) | round(3) if v is number else None }}".to_owned(),
        // Home Assistant's lock class: on = unlocked, off = locked.
        Shape::Lock => "{{ ('OFF' if v else 'ON') if v is boolean else None }}".to_owned(),
        Shape::Problem => "{{ ('ON' if v != 0 else 'OFF') if v is number else None }}".to_owned(),
        Shape::ErrorText => code_text(
            (0..=u16::from(u8::MAX))
                .map(ErrorCode::from_raw)
                .filter(|c| !matches!(c, ErrorCode::Unknown(_)))
                .map(|c| (c.raw(), c.to_string())),
            "unknown error",
        ),
        Shape::WarningText => code_text(
            (0..=u16::from(u8::MAX))
                .map(WarningCode::from_raw)
                .filter(|c| !matches!(c, WarningCode::Unknown(_)))
                .map(|c| (c.raw(), c.to_string())),
            "unknown warning",
        ),
    };
    bind + &body
}

/// A lookup of the documented meanings (from `m365-proto`, the one table of them), with a
/// fallback that still shows the code, and [`TEXT_UNKNOWN`] without a reading.
fn code_text(known: impl Iterator<Item = (u16, String)>, unknown: &str) -> String {
    let entries: Vec<String> = known
        .map(|(code, text)| format!("{code}: '{}'", text.replace('\'', "")))
        .collect();
    format!(
        "{{% set m = {{{}}} %}}{{{{ (m[v] if v in m else '{unknown} (' ~ v ~ ')') if v is number \
         else '{TEXT_UNKNOWN}' }}}}",
        entries.join(", ")
    )
}

/// The device tracker's attributes: latitude, longitude, and `gps_accuracy` in metres.
///
/// Accuracy is estimated as HDOP × 5 m (a typical user range error of a consumer receiver);
/// 0 when the receiver reports no HDOP. Before the first fix since start the record has no
/// position and the template yields `{}`: the tracker's location is unknown rather than a
/// made-up place (the earlier client's 0,0).
fn location_template(encoding: StateEncoding) -> String {
    match encoding {
        StateEncoding::Json => "{% set g = value_json.gps %}{{ ({'latitude': g.lat_deg, \
             'longitude': g.lon_deg, 'gps_accuracy': ((g.hdop * 5) | round(1)) if g.hdop is number \
             else 0, 'altitude': g.alt_msl_m} if g is mapping else {}) | tojson }}"
            .to_owned(),
        StateEncoding::Legacy => "{% set g = value_json.gpsinfo %}{{ ({'latitude': g.latitude, \
             'longitude': g.longitude, 'gps_accuracy': 0, 'altitude': g.altitude} \
             if g is mapping else {}) | tojson }}"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommandName;

    #[test]
    fn node_id_keeps_only_what_topics_accept() {
        let s = ScooterDiscovery::new("my scooter/1+#", "t", StateEncoding::Json);
        assert_eq!(s.node_id(), "my_scooter_1__");
        for m in scooter_messages("homeassistant", &s, None) {
            assert!(!m.topic.contains(['+', '#', ' ']), "{}", m.topic);
        }
    }

    fn scooter(encoding: StateEncoding) -> ScooterDiscovery {
        let mut s = ScooterDiscovery::new("d5014537edfd", "m365/d5014537edfd/telemetry", encoding);
        s.mac = Some("D5:01:45:37:ED:FD".into());
        s.availability_topic = Some("m365/d5014537edfd/availability".into());
        s.status_topic = Some("m365/d5014537edfd/status".into());
        s.gps = true;
        s
    }

    fn messages(s: &ScooterDiscovery) -> Vec<DiscoveryMessage> {
        scooter_messages("homeassistant", s, None)
    }

    #[test]
    fn every_entity_of_the_table_is_published_once_with_its_class_and_unit() {
        let msgs = messages(&scooter(StateEncoding::Json));
        // The table, the device tracker and the backlog sensor.
        assert_eq!(msgs.len(), SPECS.len() + 2);
        let mut ids: Vec<&str> = msgs
            .iter()
            .map(|m| m.payload["unique_id"].as_str().unwrap())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), msgs.len(), "unique ids repeat");
        for spec in SPECS {
            let m = msgs
                .iter()
                .find(|m| m.payload["unique_id"] == format!("m365_d5014537edfd_{}", spec.object_id))
                .unwrap_or_else(|| panic!("{} missing", spec.object_id));
            assert_eq!(
                m.topic,
                format!(
                    "homeassistant/{}/d5014537edfd/{}/config",
                    spec.component.as_str(),
                    spec.object_id
                )
            );
            assert_eq!(
                m.payload.get("unit_of_measurement").and_then(Value::as_str),
                spec.unit
            );
            assert_eq!(
                m.payload.get("device_class").and_then(Value::as_str),
                spec.device_class
            );
            assert_eq!(
                m.payload.get("state_class").and_then(Value::as_str),
                spec.state_class
            );
        }
    }

    #[test]
    fn a_legacy_topic_feeds_only_the_readings_it_carries() {
        let msgs = messages(&scooter(StateEncoding::Legacy));
        let with_legacy = SPECS.iter().filter(|s| s.legacy.is_some()).count();
        assert_eq!(msgs.len(), with_legacy + 2);
        let lock = msgs.iter().find(|m| m.topic.contains("/lock/"));
        assert!(lock.is_none(), "legacy carries no lock state");
        let odometer = msgs
            .iter()
            .find(|m| m.topic.ends_with("/odometer/config"))
            .unwrap();
        assert_eq!(
            odometer.payload["value_template"],
            "{% set v = value_json.total_distance_m %}\
             {{ (v / 1000) | round(3) if v is number else None }}"
        );
    }

    #[test]
    fn computed_and_whole_values_are_rounded_in_the_template() {
        assert_eq!(
            state_template(Shape::Number(1), "battery.power_w"),
            "{% set v = value_json.battery.power_w %}{{ v | round(1) if v is number else None }}"
        );
        assert_eq!(
            state_template(Shape::Number(0), "uptime_sec"),
            "{% set v = value_json.uptime_sec %}{{ v | round | int if v is number else None }}"
        );
    }

    #[test]
    fn every_published_topic_is_among_the_possible_ones() {
        let mut s = scooter(StateEncoding::Json);
        s.events_topic = Some("m365/d5014537edfd/events".into());
        s.command_topic = Some("m365/d5014537edfd/command".into());
        s.result_topic = Some("m365/d5014537edfd/command/result".into());
        s.allowed = CommandName::ALL.into_iter().collect();
        let possible = possible_config_topics("homeassistant", "d5014537edfd");
        let published = scooter_messages("homeassistant", &s, None);
        assert_eq!(published.len(), possible.len(), "every entity at once");
        for m in &published {
            assert!(possible.contains(&m.topic), "{}", m.topic);
        }
        let gateway = GatewayDiscovery::new("pi");
        let gateway_possible = gateway_config_topics("homeassistant", "pi");
        for m in gateway_messages("homeassistant", &gateway) {
            assert!(gateway_possible.contains(&m.topic), "{}", m.topic);
        }
    }
}
