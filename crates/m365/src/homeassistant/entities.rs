//! The Home Assistant entities of a scooter, as data: which entities exist, their units, device
//! and state classes, and the templates that read each one's state from a telemetry topic the
//! daemon already publishes. Pure: [`messages`] turns a [`Discovery`] into the retained
//! discovery messages, with no I/O, so the same input always gives the same payloads.

use m365_proto::registers::codes::{ErrorCode, WarningCode};
use serde_json::{Map, Value, json};

use super::DiscoveryError;
use crate::config::{Config, Encoding, GpsSource};

/// Payload Home Assistant reads as "the scooter's client is connected"; the pipeline publishes
/// it retained on the availability topic after each connection.
pub const PAYLOAD_AVAILABLE: &str = "online";
/// Payload of the pipeline's last will on the availability topic.
pub const PAYLOAD_NOT_AVAILABLE: &str = "offline";

/// The encoding of the topic Home Assistant reads the state from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateEncoding {
    /// `json` (schema `m365.telemetry` v1): every reading.
    Json,
    /// `legacy`: the earlier client's keys; no lock, error, average speed or trip time.
    Legacy,
}

/// The scooter as Home Assistant's device registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable scooter identity (`[telemetry] scooter_id`); unique ids derive from it.
    pub scooter_id: String,
    /// BLE address, when configured (`AA:BB:CC:DD:EE:FF`).
    pub mac: Option<String>,
    /// Display name.
    pub name: String,
    /// Model, when known.
    pub model: Option<String>,
    /// Firmware versions, when known (e.g. `ESC 1.3.4, BMS 1.1.5`).
    pub sw_version: Option<String>,
}

/// Everything [`messages`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Home Assistant's discovery prefix (`homeassistant`).
    pub prefix: String,
    /// The device.
    pub device: DeviceInfo,
    /// Topic the entities read their state from.
    pub state_topic: String,
    /// Encoding on `state_topic`.
    pub state_encoding: StateEncoding,
    /// Retained `online`/`offline` topic of the pipeline.
    pub availability_topic: Option<String>,
    /// The pipeline's retained status topic (counters), for the diagnostic backlog sensor.
    pub status_topic: Option<String>,
    /// Whether a GPS source is configured (adds the device tracker).
    pub gps: bool,
}

impl Discovery {
    /// Reads the discovery settings from the configuration: the first `json` topic, else the
    /// first `legacy` one. `status_topic` is the pipeline's status topic, if it publishes one.
    pub fn from_config(
        config: &Config,
        status_topic: Option<String>,
    ) -> Result<Self, DiscoveryError> {
        let topics = config.mqtt.topics();
        let pick = |wanted: Encoding| topics.iter().find(|t| t.encoding == wanted);
        let (state_topic, state_encoding) = match (pick(Encoding::Json), pick(Encoding::Legacy)) {
            (Some(t), _) => (t.topic.clone(), StateEncoding::Json),
            (None, Some(t)) => (t.topic.clone(), StateEncoding::Legacy),
            (None, None) => return Err(DiscoveryError::NoReadableTopic),
        };
        let scooter_id = config.telemetry.scooter_id.clone();
        Ok(Discovery {
            prefix: config.homeassistant.prefix.clone(),
            device: DeviceInfo {
                name: format!("Scooter {scooter_id}"),
                mac: config.scooter.mac.map(|m| m.to_string()),
                scooter_id,
                model: None,
                sw_version: None,
            },
            state_topic,
            state_encoding,
            availability_topic: Some(config.mqtt.availability_topic.clone()),
            status_topic,
            gps: config.gps.source != GpsSource::None,
        })
    }

    /// The `<node_id>` of the discovery topics: the scooter id with every character Home
    /// Assistant does not accept there (anything but `A-Za-z0-9_-`) replaced by `_`.
    pub fn node_id(&self) -> String {
        self.device
            .scooter_id
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
}

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
enum Component {
    Sensor,
    BinarySensor,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Component::Sensor => "sensor",
            Component::BinarySensor => "binary_sensor",
        }
    }
}

/// How a reading becomes the entity's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The value as it is (`null` renders `None`, which Home Assistant shows as unknown).
    Number,
    /// Metres on the wire, kilometres in Home Assistant.
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

/// What Home Assistant needs to know about a number: class, unit, default precision.
#[derive(Clone, Copy)]
struct Class {
    device_class: Option<&'static str>,
    state_class: &'static str,
    unit: &'static str,
    precision: u8,
}

// State classes: `total_increasing` for counters that only grow until the scooter powers off
// (Home Assistant treats a drop as a reset), `measurement` for the rest.
const fn class(
    device_class: &'static str,
    state_class: &'static str,
    unit: &'static str,
    precision: u8,
) -> Class {
    Class {
        device_class: Some(device_class),
        state_class,
        unit,
        precision,
    }
}
const SPEED: Class = class("speed", "measurement", "km/h", 1);
const PERCENT: Class = class("battery", "measurement", "%", 0);
const VOLTAGE: Class = class("voltage", "measurement", "V", 2);
const CURRENT: Class = class("current", "measurement", "A", 2);
const POWER: Class = class("power", "measurement", "W", 0);
const CHARGE: Class = Class {
    device_class: None,
    state_class: "measurement",
    unit: "mAh",
    precision: 0,
};
const TEMPERATURE: Class = class("temperature", "measurement", "°C", 1);
const ODOMETER: Class = class("distance", "total_increasing", "km", 1);
const TRIP: Class = class("distance", "total_increasing", "km", 2);
const RANGE: Class = class("distance", "measurement", "km", 1);
const SECONDS: Class = class("duration", "total_increasing", "s", 0);

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
        shape: Shape::Number,
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

/// The discovery messages for one scooter, in a fixed order. Pure: the same input gives the
/// same messages, so unique ids stay stable across restarts.
pub fn messages(d: &Discovery) -> Vec<DiscoveryMessage> {
    let node = d.node_id();
    let mut out = Vec::new();
    for spec in SPECS {
        let path = match d.state_encoding {
            StateEncoding::Json => Some(spec.json),
            StateEncoding::Legacy => spec.legacy,
        };
        let Some(path) = path else { continue };
        let mut p = common(d, &node, spec.object_id, spec.name);
        p.insert("state_topic".into(), json!(d.state_topic));
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
        out.push(message(
            d,
            spec.component.as_str(),
            &node,
            spec.object_id,
            p,
        ));
    }
    if d.gps {
        let mut p = common(d, &node, "location", "Location");
        p.insert("source_type".into(), json!("gps"));
        p.insert("json_attributes_topic".into(), json!(d.state_topic));
        p.insert(
            "json_attributes_template".into(),
            json!(location_template(d.state_encoding)),
        );
        p.insert("icon".into(), json!("mdi:scooter"));
        out.push(message(d, "device_tracker", &node, "location", p));
    }
    if let Some(status) = &d.status_topic {
        let mut p = common(d, &node, "spool_backlog", "Spool backlog");
        p.insert("state_topic".into(), json!(status));
        p.insert(
            "value_template".into(),
            json!(state_template(Shape::Number, "spool_records")),
        );
        p.insert("state_class".into(), json!("measurement"));
        p.insert("unit_of_measurement".into(), json!("records"));
        p.insert("entity_category".into(), json!("diagnostic"));
        p.insert("icon".into(), json!("mdi:tray-full"));
        out.push(message(d, "sensor", &node, "spool_backlog", p));
    }
    out
}

fn message(
    d: &Discovery,
    component: &str,
    node: &str,
    object_id: &str,
    payload: Map<String, Value>,
) -> DiscoveryMessage {
    DiscoveryMessage {
        topic: format!("{}/{component}/{node}/{object_id}/config", d.prefix),
        payload: Value::Object(payload),
    }
}

/// The keys every entity carries: name, unique id, device, origin, availability.
fn common(d: &Discovery, node: &str, object_id: &str, name: &str) -> Map<String, Value> {
    let mut p = Map::new();
    p.insert("name".into(), json!(name));
    // Derived from the scooter id alone: stable across restarts and configuration edits that
    // do not change the scooter, so Home Assistant keeps the entity's history and settings.
    p.insert(
        "unique_id".into(),
        json!(format!("m365_{node}_{object_id}")),
    );
    p.insert("device".into(), device(&d.device, node));
    p.insert(
        "origin".into(),
        json!({
            "name": "m365",
            "sw_version": env!("CARGO_PKG_VERSION"),
        }),
    );
    if let Some(topic) = &d.availability_topic {
        p.insert("availability_topic".into(), json!(topic));
        p.insert("payload_available".into(), json!(PAYLOAD_AVAILABLE));
        p.insert("payload_not_available".into(), json!(PAYLOAD_NOT_AVAILABLE));
    }
    p
}

fn device(info: &DeviceInfo, node: &str) -> Value {
    let mut dev = Map::new();
    dev.insert("identifiers".into(), json!([format!("m365_{node}")]));
    if let Some(mac) = &info.mac {
        dev.insert(
            "connections".into(),
            json!([["bluetooth", mac.to_ascii_lowercase()]]),
        );
    }
    dev.insert("name".into(), json!(info.name));
    dev.insert("manufacturer".into(), json!("Xiaomi"));
    insert_opt(&mut dev, "model", info.model.as_deref());
    insert_opt(&mut dev, "sw_version", info.sw_version.as_deref());
    Value::Object(dev)
}

fn insert_opt(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        map.insert(key.into(), json!(v));
    }
}

/// The value template: binds the field at `path` to `v` (`value_json.<path>`), then shapes it.
/// A `null` reading renders `None`, which Home Assistant stores as "unknown" rather than a
/// made-up value.
fn state_template(shape: Shape, path: &str) -> String {
    let bind = format!("{{% set v = value_json.{path} %}}");
    let body = match shape {
        Shape::Number => "{{ v }}".to_owned(),
        Shape::MetresAsKm => "{{ (v / 1000) | round(3) if v is number else None }}".to_owned(),
        // Home Assistant's lock class: on = unlocked, off = locked.
        Shape::Lock => "{{ None if v is none else ('OFF' if v else 'ON') }}".to_owned(),
        Shape::Problem => "{{ None if v is none else ('ON' if v != 0 else 'OFF') }}".to_owned(),
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
/// fallback that still shows the code.
fn code_text(known: impl Iterator<Item = (u16, String)>, unknown: &str) -> String {
    let entries: Vec<String> = known
        .map(|(code, text)| format!("{code}: '{}'", text.replace('\'', "")))
        .collect();
    format!(
        "{{% set m = {{{}}} %}}{{{{ None if v is none else (m[v] if v in m else '{unknown} (' ~ v ~ ')') }}}}",
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

    #[test]
    fn node_id_keeps_only_what_topics_accept() {
        let d = Discovery {
            prefix: "homeassistant".into(),
            device: DeviceInfo {
                scooter_id: "my scooter/1+#".into(),
                mac: None,
                name: "x".into(),
                model: None,
                sw_version: None,
            },
            state_topic: "t".into(),
            state_encoding: StateEncoding::Json,
            availability_topic: None,
            status_topic: None,
            gps: false,
        };
        assert_eq!(d.node_id(), "my_scooter_1__");
        for m in messages(&d) {
            assert!(!m.topic.contains(['+', '#', ' ']), "{}", m.topic);
        }
    }

    fn discovery(encoding: StateEncoding) -> Discovery {
        Discovery {
            prefix: "homeassistant".into(),
            device: DeviceInfo {
                scooter_id: "d5014537edfd".into(),
                mac: Some("D5:01:45:37:ED:FD".into()),
                name: "Scooter d5014537edfd".into(),
                model: None,
                sw_version: None,
            },
            state_topic: "m365/d5014537edfd/telemetry".into(),
            state_encoding: encoding,
            availability_topic: Some("m365/d5014537edfd/availability".into()),
            status_topic: Some("m365/d5014537edfd/status".into()),
            gps: true,
        }
    }

    #[test]
    fn every_entity_of_the_table_is_published_once_with_its_class_and_unit() {
        let msgs = messages(&discovery(StateEncoding::Json));
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
        let msgs = messages(&discovery(StateEncoding::Legacy));
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
}
