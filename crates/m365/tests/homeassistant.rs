//! Home Assistant discovery: the payloads Home Assistant reads (keys, units, stable ids), their
//! templates rendered with a Jinja engine against what the pipeline's encoders really produce
//! (with Home Assistant's template functions and its handling of what a template renders), the
//! descriptions `m365 run` builds from its configuration, and the announcer against a real broker
//! on a loopback port.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use m365::config::{CommandName, Config};
use m365::homeassistant::{
    AnnouncerSettings, COMMAND_EXPIRY_S, DiscoveryError, DiscoveryMessage, GatewayDiscovery,
    PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE, STATE_FILE_NAME, ScooterDiscovery, StateEncoding,
    TEXT_UNKNOWN, descriptions, gateway_id, messages_for, possible_config_topics, spawn_announcer,
    update_device,
};
use m365_gps::chrono::{DateTime, TimeZone as _, Utc};
use m365_gps::{Fix, FixMode, FixQuality, FixSource};
use m365_pipeline::{
    BatteryReadings, Encoding, EventKind, GpsReading, MqttProtocol, Record, Sample, ScooterReadings,
};
use m365_testkit::broker::{
    Broker, BrokerOptions, Inbox, Message, MqttVersion, publish, require_mosquitto, subscribe,
    subscribe_stream,
};
use serde_json::{Value, json};
use tokio::sync::watch;
/// Upper bound of any wait; the tests assert what happened, not how fast.
const WAIT: Duration = Duration::from_secs(30);

const JSON_CONFIG: &str = r#"
[scooter]
mac = "D5:01:45:37:ED:FD"
[mqtt]
topic = "vehicle/1/realtime"
encoding = "legacy"
[[mqtt.mirror]]
topic = "m365/{id}/telemetry"
encoding = "json"
[gps]
source = "gpsd"
[homeassistant]
discovery = true
"#;

const LEGACY_CONFIG: &str = r#"
[scooter]
mac = "D5:01:45:37:ED:FD"
[mqtt]
topic = "vehicle/1/realtime"
encoding = "legacy"
[gps]
source = "gpsd"
[homeassistant]
discovery = true
prefix = "ha"
"#;

fn config(text: &str) -> Config {
    m365::config::parse("test.toml", text, &|_| None)
        .expect("valid configuration")
        .0
}

/// The pipeline's status topic (with `{scooter_id}`), as `m365 run` hands it to discovery: from
/// the settings it gives the pipeline.
fn status_topic(config: &Config) -> Option<String> {
    m365::daemon::pipeline::settings(config, config.first())
        .config
        .mqtt
        .status_topic
}

/// The description `m365 run` builds for the one scooter of configuration `text`.
fn discovery(text: &str) -> ScooterDiscovery {
    let config = config(text);
    let mut all = descriptions(&config, status_topic(&config).as_deref()).expect("descriptions");
    assert_eq!(all.len(), 1, "one scooter");
    all.remove(0)
}

/// The messages of scooter `d` under `prefix` as the announcer publishes them, the gateway's
/// left out.
fn scooter_messages(prefix: &str, d: &ScooterDiscovery) -> Vec<DiscoveryMessage> {
    let gateway_only = messages_for(prefix, &gateway(), &[]).len();
    let mut msgs = messages_for(prefix, &gateway(), std::slice::from_ref(d));
    msgs.drain(..gateway_only);
    msgs
}

/// The messages of the one scooter of configuration `text`, under its prefix.
fn messages(text: &str) -> Vec<DiscoveryMessage> {
    let prefix = config(text).homeassistant.prefix;
    scooter_messages(&prefix, &discovery(text))
}

fn by_object_id(msgs: &[DiscoveryMessage]) -> BTreeMap<String, &DiscoveryMessage> {
    msgs.iter()
        .map(|m| {
            let object_id = m.topic.split('/').nth(3).expect("object id").to_owned();
            (object_id, m)
        })
        .collect()
}

/// A record with every reading set, as the spool would commit it.
fn full_record() -> Record {
    let time = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    Record::from_sample(
        Sample {
            scooter_id: "d5014537edfd".into(),
            system_time: time,
            scooter: ScooterReadings {
                speed_kmh: Some(18.5),
                avg_speed_kmh: Some(17.25),
                trip_distance_m: Some(1250),
                trip_time_s: Some(310),
                odometer_m: Some(2_186_000),
                uptime_s: Some(636),
                frame_temp_c: Some(28.0),
                range_km: Some(18.3),
                error_code: Some(14),
                warning_code: Some(12),
                locked: Some(true),
            },
            battery: BatteryReadings {
                remaining_mah: Some(7734),
                percent: Some(87),
                voltage_v: Some(38.5),
                current_a: Some(2.25),
                power_w: None,
                temp1_c: Some(29),
                temp2_c: Some(30),
                cell_voltages_v: None,
            },
            gps: Some(GpsReading {
                fix: Fix {
                    time: Some(time),
                    lat: 43.328_933,
                    lon: -8.408_309,
                    alt_msl_m: Some(176.0),
                    speed_mps: Some(5.0),
                    course_deg: Some(90.0),
                    mode: FixMode::ThreeD,
                    quality: FixQuality::Gps,
                    sats_used: Some(8),
                    hdop: Some(0.8),
                    pdop: None,
                    vdop: None,
                    source: FixSource::Gpsd,
                },
                age_ms: 250,
            }),
            event: None,
        },
        42,
    )
}

/// The same record with every reading failed.
fn empty_record() -> Record {
    let mut r = full_record();
    r.scooter = ScooterReadings::default();
    r.battery = BatteryReadings::default();
    r.gps = None;
    r
}

/// Renders a Home Assistant template with `value_json` bound to the payload, as Home Assistant
/// does for MQTT entities.
fn render(template: &str, payload: &[u8]) -> String {
    let value: Value = serde_json::from_slice(payload).expect("the encoder writes JSON");
    render_with(template, Some(&value), None, None)
}

/// Renders a template in an environment with Home Assistant's functions that the templates use
/// (`now()`, `as_timestamp`, `timestamp_custom`, `random`), `value_json`, `value` (a command
/// template's input) and `this` (the entity's current state).
fn render_with(
    template: &str,
    value_json: Option<&Value>,
    value: Option<&str>,
    this_state: Option<&str>,
) -> String {
    let mut env = minijinja::Environment::new();
    // Home Assistant's `now()` is a datetime; `as_timestamp` takes one (or its text).
    env.add_function("now", || Utc::now().to_rfc3339());
    env.add_function(
        "as_timestamp",
        |t: String| -> Result<f64, minijinja::Error> {
            let t = DateTime::parse_from_rfc3339(&t).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })?;
            Ok(t.timestamp_micros() as f64 / 1e6)
        },
    );
    env.add_filter(
        "timestamp_custom",
        |ts: f64, format: String, local: Option<bool>| -> String {
            assert_eq!(local, Some(false), "the templates format UTC");
            let t = DateTime::from_timestamp_micros((ts * 1e6) as i64).expect("a valid time");
            t.format(&format).to_string()
        },
    );
    // Jinja's `random`: any element (a different one each time).
    env.add_filter("random", |items: Vec<minijinja::Value>| {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let i = NEXT.fetch_add(7919, Ordering::Relaxed) % items.len().max(1);
        items.get(i).cloned().unwrap_or_default()
    });
    let this = this_state.map(|state| minijinja::context! { state => state });
    let json = value_json.map(|v| minijinja::Value::from(minijinja::value::Serde(v)));
    env.render_str(
        template,
        minijinja::context! { value_json => json, value => value, this => this },
    )
    .unwrap_or_else(|e| panic!("template {template:?} does not render: {e:#}"))
}

/// Jinja renders `None` (Python) or `none` (MiniJinja); Home Assistant reads `None` as unknown
/// for numeric sensors, binary sensors, locks and selects.
fn is_none(rendered: &str) -> bool {
    matches!(rendered.trim(), "None" | "none")
}

/// What Home Assistant 2024.3 makes of a rendered state template, per platform (the MQTT
/// platforms' message handlers).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HaState {
    /// The state becomes this.
    Value(String),
    /// The state becomes "unknown".
    Unknown,
    /// The message is ignored: the state stays.
    Kept,
    /// Refused with a warning or error in Home Assistant's log.
    Invalid(String),
}

fn ha_state(m: &DiscoveryMessage, rendered: &str) -> HaState {
    let r = rendered.trim();
    let p = &m.payload;
    let key = |k: &str, default: &str| {
        p.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    match m.topic.split('/').nth(1).unwrap() {
        "sensor" => {
            let numeric = [
                "unit_of_measurement",
                "state_class",
                "suggested_display_precision",
            ]
            .iter()
            .any(|k| p.get(*k).is_some())
                || p.get("device_class").is_some_and(|c| c != "enum");
            match (numeric, r) {
                (true, "") => HaState::Kept,
                (true, "None") => HaState::Unknown,
                (true, v) if v.parse::<f64>().is_ok() => HaState::Value(v.to_owned()),
                (true, v) => HaState::Invalid(v.to_owned()),
                // A text sensor stores the text as it is: the state "unknown" is Home Assistant's
                // own unknown state.
                (false, "unknown") => HaState::Unknown,
                (false, v) => HaState::Value(v.to_owned()),
            }
        }
        "binary_sensor" => match r {
            "" => HaState::Kept,
            "None" => HaState::Unknown,
            v if v == key("payload_on", "ON") => HaState::Value("on".into()),
            v if v == key("payload_off", "OFF") => HaState::Value("off".into()),
            v => HaState::Invalid(v.to_owned()),
        },
        "lock" => match r {
            "" => HaState::Kept,
            "None" => HaState::Unknown,
            v if v == key("state_locked", "LOCKED") => HaState::Value("locked".into()),
            v if v == key("state_unlocked", "UNLOCKED") => HaState::Value("unlocked".into()),
            v => HaState::Invalid(v.to_owned()),
        },
        "select" => {
            let options: Vec<&str> = p["options"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap())
                .collect();
            match r {
                v if v.eq_ignore_ascii_case("none") => HaState::Unknown,
                v if options.contains(&v) => HaState::Value(v.to_owned()),
                v => HaState::Invalid(v.to_owned()),
            }
        }
        other => panic!("no state handling for {other}"),
    }
}

fn template_of<'a>(m: &'a DiscoveryMessage, key: &str) -> &'a str {
    m.payload[key]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no {key}", m.topic))
}

fn number(rendered: &str) -> f64 {
    rendered
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{rendered:?} is not a number"))
}

#[test]
fn every_entity_has_the_keys_home_assistant_needs() {
    let d = discovery(JSON_CONFIG);
    assert_eq!(d.state_topic, "m365/d5014537edfd/telemetry");
    assert_eq!(d.state_encoding, StateEncoding::Json);
    let msgs = messages(JSON_CONFIG);
    assert!(!msgs.is_empty());
    for m in &msgs {
        let parts: Vec<&str> = m.topic.split('/').collect();
        assert_eq!(parts.len(), 5, "{}", m.topic);
        assert_eq!(parts[0], "homeassistant");
        assert!(
            ["sensor", "binary_sensor", "device_tracker"].contains(&parts[1]),
            "{}",
            m.topic
        );
        assert_eq!(parts[2], "d5014537edfd");
        assert_eq!(parts[4], "config");
        let text = serde_json::to_string(&m.payload).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m.payload, "the payload is plain JSON");
        for key in ["name", "unique_id", "device", "availability_topic"] {
            assert!(m.payload.get(key).is_some(), "{} lacks {key}", m.topic);
        }
        assert_eq!(m.payload["payload_available"], PAYLOAD_AVAILABLE);
        assert_eq!(m.payload["payload_not_available"], PAYLOAD_NOT_AVAILABLE);
        assert_eq!(
            m.payload["availability_topic"],
            "m365/d5014537edfd/availability"
        );
        let device = &m.payload["device"];
        assert_eq!(device["manufacturer"], "Xiaomi");
        assert_eq!(device["identifiers"][0], "m365_d5014537edfd");
        assert_eq!(device["connections"][0][0], "bluetooth");
        assert_eq!(device["connections"][0][1], "d5:01:45:37:ed:fd");
        assert!(device.get("sw_version").is_none(), "not known at start-up");
        assert_eq!(device["via_device"], "m365_gateway_pi");
        if parts[1] != "device_tracker" {
            assert!(m.payload.get("state_topic").is_some(), "{}", m.topic);
            assert!(m.payload.get("value_template").is_some(), "{}", m.topic);
        }
    }
}

#[test]
fn units_device_and_state_classes_are_home_assistants() {
    let msgs = messages(JSON_CONFIG);
    let e = by_object_id(&msgs);
    let expect = [
        ("speed", "speed", "measurement", "km/h"),
        ("average_speed", "speed", "measurement", "km/h"),
        ("battery", "battery", "measurement", "%"),
        ("battery_voltage", "voltage", "measurement", "V"),
        ("battery_current", "current", "measurement", "A"),
        ("battery_power", "power", "measurement", "W"),
        ("battery_temperature_1", "temperature", "measurement", "°C"),
        ("battery_temperature_2", "temperature", "measurement", "°C"),
        ("frame_temperature", "temperature", "measurement", "°C"),
        ("odometer", "distance", "total_increasing", "km"),
        ("trip_distance", "distance", "total_increasing", "km"),
        ("range", "distance", "measurement", "km"),
        ("uptime", "duration", "total_increasing", "s"),
        ("trip_time", "duration", "total_increasing", "s"),
    ];
    for (object_id, class, state_class, unit) in expect {
        let p = &e
            .get(object_id)
            .unwrap_or_else(|| panic!("no {object_id}"))
            .payload;
        assert_eq!(p["device_class"], class, "{object_id}");
        assert_eq!(p["state_class"], state_class, "{object_id}");
        assert_eq!(p["unit_of_measurement"], unit, "{object_id}");
        assert!(e[object_id].topic.starts_with("homeassistant/sensor/"));
    }
    assert_eq!(e["lock"].payload["device_class"], "lock");
    assert!(e["lock"].topic.starts_with("homeassistant/binary_sensor/"));
    assert_eq!(e["error"].payload["device_class"], "problem");
    assert!(e["error_code"].topic.starts_with("homeassistant/sensor/"));
    let tracker = &e["location"];
    assert!(tracker.topic.starts_with("homeassistant/device_tracker/"));
    assert_eq!(tracker.payload["source_type"], "gps");
    assert_eq!(
        tracker.payload["json_attributes_topic"],
        "m365/d5014537edfd/telemetry"
    );
    let backlog = &e["spool_backlog"].payload;
    assert_eq!(backlog["state_topic"], "m365/d5014537edfd/status");
    assert_eq!(backlog["entity_category"], "diagnostic");
}

#[test]
fn unique_ids_are_stable_across_restarts_and_distinct() {
    let first = messages(JSON_CONFIG);
    let again = messages(JSON_CONFIG);
    assert_eq!(
        first, again,
        "the same configuration gives the same messages"
    );
    let ids: Vec<&str> = first
        .iter()
        .map(|m| m.payload["unique_id"].as_str().unwrap())
        .collect();
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    assert!(ids.contains(&"m365_d5014537edfd_speed"));

    let other = JSON_CONFIG.replace("D5:01:45:37:ED:FD", "D5:01:45:37:ED:FE");
    let other = messages(&other);
    let other_ids: Vec<&str> = other
        .iter()
        .map(|m| m.payload["unique_id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| !other_ids.contains(id)));
}

#[test]
fn json_templates_read_what_the_json_encoder_writes() {
    let record = full_record();
    let payload = Encoding::Json
        .encode(std::slice::from_ref(&record))
        .unwrap();
    let msgs = messages(JSON_CONFIG);
    let e = by_object_id(&msgs);
    let value = |id: &str| render(template_of(e[id], "value_template"), &payload);
    let s = &record.scooter;
    let b = &record.battery;
    let numbers = [
        ("speed", s.speed_kmh.unwrap()),
        ("average_speed", s.avg_speed_kmh.unwrap()),
        ("battery", f64::from(b.percent.unwrap())),
        ("battery_voltage", b.voltage_v.unwrap()),
        ("battery_current", b.current_a.unwrap()),
        ("battery_power", b.power_w().unwrap()),
        ("battery_remaining", f64::from(b.remaining_mah.unwrap())),
        ("battery_temperature_1", f64::from(b.temp1_c.unwrap())),
        ("battery_temperature_2", f64::from(b.temp2_c.unwrap())),
        ("frame_temperature", s.frame_temp_c.unwrap()),
        ("odometer", f64::from(s.odometer_m.unwrap()) / 1000.0),
        (
            "trip_distance",
            f64::from(s.trip_distance_m.unwrap()) / 1000.0,
        ),
        ("range", s.range_km.unwrap()),
        ("uptime", f64::from(s.uptime_s.unwrap())),
        ("trip_time", f64::from(s.trip_time_s.unwrap())),
    ];
    for (id, expected) in numbers {
        let got = number(&value(id));
        // States are rounded to the entity's decimals, one at least.
        assert!(
            (got - expected).abs() <= 0.05 + 1e-9,
            "{id}: rendered {got}, the record holds {expected}"
        );
    }
    assert_eq!(value("lock").trim(), "OFF", "locked: Home Assistant's off");
    assert_eq!(value("error").trim(), "ON");
    assert_eq!(
        value("error_code").trim(),
        "accelerator hall sensor abnormal (14)"
    );
    assert_eq!(
        value("warning_code").trim(),
        "battery overcharged, regenerative braking less effective (12)"
    );

    let attributes = render(
        template_of(e["location"], "json_attributes_template"),
        &payload,
    );
    let attributes: Value = serde_json::from_str(&attributes).expect("attributes are JSON");
    let fix = &record.gps.as_ref().unwrap().fix;
    assert!((attributes["latitude"].as_f64().unwrap() - fix.lat).abs() < 1e-6);
    assert!((attributes["longitude"].as_f64().unwrap() - fix.lon).abs() < 1e-6);
    assert!((attributes["gps_accuracy"].as_f64().unwrap() - 4.0).abs() < 1e-9);

    let status = br#"{"sampled": 10, "spool_records": 7, "in_flight": 1}"#;
    assert_eq!(number(&value_of(e["spool_backlog"], status)), 7.0);
}

fn value_of(m: &DiscoveryMessage, payload: &[u8]) -> String {
    render(template_of(m, "value_template"), payload)
}

#[test]
fn unlocked_and_error_free_scooters_read_as_such() {
    let mut record = full_record();
    record.scooter.locked = Some(false);
    record.scooter.error_code = Some(0);
    record.scooter.warning_code = Some(77);
    let payload = Encoding::Json
        .encode(std::slice::from_ref(&record))
        .unwrap();
    let msgs = messages(JSON_CONFIG);
    let e = by_object_id(&msgs);
    assert_eq!(value_of(e["lock"], &payload).trim(), "ON", "unlocked");
    assert_eq!(value_of(e["error"], &payload).trim(), "OFF");
    assert_eq!(value_of(e["error_code"], &payload).trim(), "no error (0)");
    assert_eq!(
        value_of(e["warning_code"], &payload).trim(),
        "unknown warning (77)"
    );
}

#[test]
fn failed_readings_are_unknown_not_zero() {
    let payload = Encoding::Json
        .encode(std::slice::from_ref(&empty_record()))
        .unwrap();
    let msgs = messages(JSON_CONFIG);
    let mut checked = 0;
    for m in msgs
        .iter()
        .filter(|m| m.payload.get("value_template").is_some() && !m.topic.contains("spool_backlog"))
    {
        let rendered = value_of(m, &payload);
        assert_eq!(
            ha_state(m, &rendered),
            HaState::Unknown,
            "{}: rendered {rendered:?}",
            m.topic
        );
        checked += 1;
    }
    assert_eq!(checked, 19, "every reading entity was checked");
    let e = by_object_id(&msgs);
    let attributes = render(
        template_of(e["location"], "json_attributes_template"),
        &payload,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&attributes).unwrap(),
        serde_json::json!({}),
        "no fix yet: no position"
    );
}

#[test]
fn text_sensors_without_a_reading_are_unknown_not_the_word_none() {
    let payload = Encoding::Json
        .encode(std::slice::from_ref(&empty_record()))
        .unwrap();
    let msgs = messages(JSON_CONFIG);
    let e = by_object_id(&msgs);
    for id in ["error_code", "warning_code"] {
        let m = e[id];
        // A text sensor: Home Assistant keeps whatever the template renders.
        for key in ["unit_of_measurement", "state_class", "device_class"] {
            assert!(m.payload.get(key).is_none(), "{id} is a text sensor");
        }
        let rendered = value_of(m, &payload);
        assert!(!is_none(&rendered), "{id} would show the text {rendered:?}");
        assert_eq!(rendered.trim(), TEXT_UNKNOWN);
    }
    // Numeric sensors and binary sensors keep `None`, which they read as unknown.
    assert!(is_none(&value_of(e["speed"], &payload)));
    assert!(is_none(&value_of(e["error"], &payload)));
}

#[test]
fn computed_values_are_rounded_to_sensible_decimals() {
    let mut record = full_record();
    // 38.48 V × 3.8743 A: the pipeline's product carries float noise.
    record.battery.voltage_v = Some(38.48);
    record.battery.current_a = Some(3.8743);
    record.battery.power_w = None;
    record.scooter.speed_kmh = Some(18.456);
    record.scooter.frame_temp_c = Some(28.349_999);
    record.scooter.range_km = Some(18.333_333_333);
    let power = record.battery.power_w().unwrap();
    assert!(power.to_string().len() > 8, "the raw product: {power}");
    let payload = Encoding::Json
        .encode(std::slice::from_ref(&record))
        .unwrap();
    let msgs = messages(JSON_CONFIG);
    let e = by_object_id(&msgs);
    let value = |id: &str| value_of(e[id], &payload).trim().to_owned();
    assert_eq!(value("battery_power"), "149.1");
    assert_eq!(value("battery_voltage"), "38.48");
    assert_eq!(value("battery_current"), "3.87");
    assert_eq!(value("speed"), "18.5");
    assert_eq!(value("frame_temperature"), "28.3");
    assert_eq!(value("range"), "18.3");
    assert_eq!(value("odometer"), "2186.0");
    assert_eq!(value("battery"), "87");
    assert_eq!(value("uptime"), "636");

    // The earlier client's floats (`uptime_sec` is `636.0`) become whole numbers too.
    let legacy = Encoding::Legacy
        .encode(std::slice::from_ref(&record))
        .unwrap();
    let msgs = messages(LEGACY_CONFIG);
    let e = by_object_id(&msgs);
    assert_eq!(value_of(e["uptime"], &legacy).trim(), "636");
    assert_eq!(value_of(e["battery_current"], &legacy).trim(), "3.87");
}

#[test]
fn legacy_only_configs_template_the_legacy_keys() {
    let d = discovery(LEGACY_CONFIG);
    assert_eq!(d.state_topic, "vehicle/1/realtime");
    assert_eq!(d.state_encoding, StateEncoding::Legacy);
    let msgs = messages(LEGACY_CONFIG);
    assert!(msgs.iter().all(|m| m.topic.starts_with("ha/")));
    let e = by_object_id(&msgs);
    for absent in [
        "lock",
        "error",
        "error_code",
        "warning_code",
        "average_speed",
        "trip_time",
    ] {
        assert!(
            !e.contains_key(absent),
            "legacy does not carry {absent}: no entity"
        );
    }

    let record = full_record();
    let payload = Encoding::Legacy
        .encode(std::slice::from_ref(&record))
        .unwrap();
    let s = &record.scooter;
    let b = &record.battery;
    let numbers = [
        ("speed", s.speed_kmh.unwrap()),
        ("battery", f64::from(b.percent.unwrap())),
        ("battery_voltage", b.voltage_v.unwrap()),
        ("battery_current", b.current_a.unwrap()),
        ("battery_remaining", f64::from(b.remaining_mah.unwrap())),
        ("battery_temperature_1", f64::from(b.temp1_c.unwrap())),
        ("battery_temperature_2", f64::from(b.temp2_c.unwrap())),
        ("frame_temperature", s.frame_temp_c.unwrap()),
        ("odometer", f64::from(s.odometer_m.unwrap()) / 1000.0),
        (
            "trip_distance",
            f64::from(s.trip_distance_m.unwrap()) / 1000.0,
        ),
        ("range", s.range_km.unwrap()),
        ("uptime", f64::from(s.uptime_s.unwrap())),
    ];
    for (id, expected) in numbers {
        let m = e.get(id).unwrap_or_else(|| panic!("no {id}"));
        assert_eq!(m.payload["state_topic"], "vehicle/1/realtime");
        let got = number(&value_of(m, &payload));
        assert!(
            (got - expected).abs() <= 0.05 + 1e-9,
            "{id}: rendered {got}, the record holds {expected}"
        );
    }
    let attributes = render(
        template_of(e["location"], "json_attributes_template"),
        &payload,
    );
    let attributes: Value = serde_json::from_str(&attributes).unwrap();
    let fix = &record.gps.as_ref().unwrap().fix;
    assert!((attributes["latitude"].as_f64().unwrap() - fix.lat).abs() < 1e-6);
    assert!((attributes["longitude"].as_f64().unwrap() - fix.lon).abs() < 1e-6);

    let empty = Encoding::Legacy
        .encode(std::slice::from_ref(&empty_record()))
        .unwrap();
    assert!(is_none(&value_of(e["battery"], &empty)));
    assert!(is_none(&value_of(e["odometer"], &empty)));
}

#[test]
fn without_gps_there_is_no_tracker() {
    let text = JSON_CONFIG.replace("source = \"gpsd\"", "source = \"none\"");
    let msgs = messages(&text);
    assert!(!msgs.iter().any(|m| m.topic.contains("device_tracker")));
    assert!(msgs.iter().any(|m| m.topic.ends_with("/speed/config")));
}

#[test]
fn compact_only_topics_cannot_feed_home_assistant() {
    let text = r#"
        [mqtt]
        topic = "m365/{id}/compact"
        encoding = "compact"
        [homeassistant]
        discovery = true
    "#;
    let err = descriptions(&config(text), None).unwrap_err();
    assert!(matches!(err, DiscoveryError::NoReadableTopic));
    assert!(err.to_string().contains("\"json\" or \"legacy\""));
}

#[tokio::test]
async fn disabled_or_unreadable_discovery_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wire = m365_pipeline::MqttConfig::default();
    let off = config("[mqtt]\ntopic = \"m365/{id}/telemetry\"\nencoding = \"json\"\n");
    assert!(!off.homeassistant.discovery);
    let (task, scooters) = m365::homeassistant::start(&off, &wire, dir.path());
    assert!(task.is_none() && scooters.is_none());
    // Only `compact` topics: said once, and telemetry goes on without discovery.
    let compact = config(
        "[mqtt]\ntopic = \"m365/{id}/c\"\nencoding = \"compact\"\n\
         [homeassistant]\ndiscovery = true\n",
    );
    let (task, scooters) = m365::homeassistant::start(&compact, &wire, dir.path());
    assert!(task.is_none() && scooters.is_none());
    assert!(
        !dir.path().join(STATE_FILE_NAME).exists(),
        "nothing announced"
    );
}

#[test]
fn every_scooter_is_described_from_the_configuration() {
    let text = r#"
        [[scooter]]
        id = "blue"
        mac = "D5:01:45:37:ED:FD"
        [[scooter]]
        id = "red"
        mac = "C7:B8:DC:3B:A1:B2"
        commands = ["lock", "unlock"]
        [mqtt]
        topic = "m365/{id}/telemetry"
        encoding = "json"
        [commands]
        allow = ["kers"]
        [gps]
        source = "none"
        [homeassistant]
        discovery = true
    "#;
    let two = config(text);
    let all = descriptions(&two, status_topic(&two).as_deref()).unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.scooter_id.as_str()).collect();
    assert_eq!(ids, ["blue", "red"], "in configuration order");
    let (blue, red) = (&all[0], &all[1]);
    assert_eq!(blue.name, "Scooter blue");
    assert_eq!(blue.mac.as_deref(), Some("D5:01:45:37:ED:FD"));
    assert_eq!(blue.state_topic, "m365/blue/telemetry");
    assert_eq!(blue.state_encoding, StateEncoding::Json);
    assert_eq!(
        blue.availability_topic.as_deref(),
        Some("m365/blue/availability")
    );
    assert_eq!(blue.status_topic.as_deref(), Some("m365/blue/status"));
    assert_eq!(blue.events_topic.as_deref(), Some("m365/blue/events"));
    assert_eq!(blue.command_topic.as_deref(), Some("m365/blue/command"));
    assert_eq!(
        blue.result_topic.as_deref(),
        Some("m365/blue/command/result")
    );
    assert_eq!(blue.allowed, [CommandName::Kers].into_iter().collect());
    assert_eq!(
        red.allowed,
        [CommandName::Lock, CommandName::Unlock]
            .into_iter()
            .collect(),
        "an entry's own list replaces [commands] allow"
    );
    assert_eq!(red.state_topic, "m365/red/telemetry");
    assert!(!blue.gps && !red.gps, "no GPS source");
    assert!(
        blue.model.is_none() && blue.firmware.is_none(),
        "not known yet"
    );

    // No command allowed: no topic to send one on. Events of a `legacy` main topic cannot be
    // read by Home Assistant.
    let d = discovery(JSON_CONFIG);
    assert!(d.allowed.is_empty());
    assert!(d.command_topic.is_none() && d.result_topic.is_none());
    assert!(d.events_topic.is_none(), "the main topic is legacy");
    assert!(d.gps);
    // Without a status topic from the pipeline there is no backlog sensor.
    let without = descriptions(&config(JSON_CONFIG), None).unwrap();
    assert!(without[0].status_topic.is_none());
}

#[test]
fn model_and_firmware_appear_when_known() {
    let mut d = discovery(JSON_CONFIG);
    d.model = Some("Pro 2".into());
    d.firmware = Some("ESC 1.3.4, BMS 1.1.5".into());
    for m in scooter_messages("homeassistant", &d) {
        assert_eq!(m.payload["device"]["model"], "Pro 2", "{}", m.topic);
        assert_eq!(m.payload["device"]["sw_version"], "ESC 1.3.4, BMS 1.1.5");
    }
    let plain = messages(JSON_CONFIG);
    assert!(
        plain
            .iter()
            .all(|m| m.payload["device"].get("model").is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_payloads_are_the_ones_the_pipeline_publishes() {
    if !require_mosquitto("availability payloads (MQTT 5)") {
        return;
    }
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port;
    let text = JSON_CONFIG.replace(
        "[mqtt]\n",
        &format!("[mqtt]\nbroker = \"tcp://127.0.0.1:{port}\"\n"),
    );
    let config = config(&text);
    let availability = discovery(&text)
        .availability_topic
        .expect("an availability topic");
    // Returns once the broker acknowledged the subscription.
    let mut payloads = subscribe_stream(port, &availability).await;

    let dir = tempfile::tempdir().unwrap();
    let mut settings = m365::daemon::pipeline::settings(&config, config.first());
    settings.config.spool.path = dir.path().join("spool.sqlite");
    let (handle, task) = m365_pipeline::spawn(settings.config.clone(), &config.first().id).unwrap();
    let first = tokio::time::timeout(WAIT, payloads.recv())
        .await
        .expect("availability in time")
        .map(|m: Message| m.payload)
        .unwrap();
    assert_eq!(first, PAYLOAD_AVAILABLE.as_bytes());
    drop(handle);
    tokio::time::timeout(WAIT, task)
        .await
        .expect("pipeline stopped in time")
        .unwrap();
    let last = tokio::time::timeout(WAIT, payloads.recv())
        .await
        .expect("offline in time")
        .map(|m: Message| m.payload)
        .unwrap();
    assert_eq!(last, PAYLOAD_NOT_AVAILABLE.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Several scooters behind a gateway: `messages_for`.

const SCOOTER: &str = "d5014537edfd";

/// A scooter with every topic and every command.
fn full_scooter(id: &str) -> ScooterDiscovery {
    let mut s = ScooterDiscovery::new(id, format!("m365/{id}/telemetry"), StateEncoding::Json);
    s.mac = Some("D5:01:45:37:ED:FD".into());
    s.availability_topic = Some(format!("m365/{id}/availability"));
    s.status_topic = Some(format!("m365/{id}/status"));
    s.events_topic = Some(format!("m365/{id}/events"));
    s.command_topic = Some(format!("m365/{id}/command"));
    s.result_topic = Some(format!("m365/{id}/command/result"));
    s.allowed = CommandName::ALL.into_iter().collect();
    s.gps = true;
    s
}

fn gateway() -> GatewayDiscovery {
    GatewayDiscovery::new("pi")
}

/// The messages of one scooter (by object id) among `msgs`.
fn of_scooter<'a>(
    msgs: &'a [DiscoveryMessage],
    id: &str,
) -> BTreeMap<String, &'a DiscoveryMessage> {
    msgs.iter()
        .filter(|m| m.topic.split('/').nth(2) == Some(id))
        .map(|m| (m.topic.split('/').nth(3).unwrap().to_owned(), m))
        .collect()
}

#[test]
fn the_gateway_is_a_device_every_scooter_is_attached_to() {
    let scooters = [full_scooter(SCOOTER), full_scooter("second")];
    let msgs = messages_for("homeassistant", &gateway(), &scooters);
    let gw = msgs
        .iter()
        .find(|m| m.topic == "homeassistant/binary_sensor/m365_gateway_pi/connectivity/config")
        .expect("the gateway's connectivity sensor");
    let p = &gw.payload;
    assert_eq!(p["device"]["identifiers"][0], "m365_gateway_pi");
    assert_eq!(p["device"]["name"], "m365 gateway pi");
    assert_eq!(p["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["state_topic"], "m365/gateway/pi/availability");
    assert_eq!(p["payload_on"], PAYLOAD_AVAILABLE);
    assert_eq!(p["payload_off"], PAYLOAD_NOT_AVAILABLE);
    assert_eq!(p["device_class"], "connectivity");
    assert_eq!(p["entity_category"], "diagnostic");

    let mut unique = BTreeSet::new();
    for m in &msgs {
        assert!(
            unique.insert(m.payload["unique_id"].as_str().unwrap().to_owned()),
            "{} repeats a unique id",
            m.topic
        );
        if m.topic == gw.topic {
            continue;
        }
        let node = m.topic.split('/').nth(2).unwrap();
        let device = &m.payload["device"];
        assert_eq!(
            device["identifiers"][0],
            format!("m365_{node}"),
            "{}",
            m.topic
        );
        assert_eq!(device["via_device"], "m365_gateway_pi", "{}", m.topic);
        assert_eq!(device["manufacturer"], "Xiaomi");
        assert_eq!(
            m.payload["availability_topic"],
            format!("m365/{node}/availability")
        );
    }
    assert_eq!(
        of_scooter(&msgs, "second").len(),
        of_scooter(&msgs, SCOOTER).len()
    );
}

#[test]
fn model_and_firmware_are_in_the_device_block_once_known() {
    let mut s = full_scooter(SCOOTER);
    let before = messages_for("homeassistant", &gateway(), std::slice::from_ref(&s));
    for m in before.iter().skip(1) {
        assert!(m.payload["device"].get("model").is_none(), "{}", m.topic);
        assert!(
            m.payload["device"].get("sw_version").is_none(),
            "{}",
            m.topic
        );
    }
    s.model = Some("Pro 2".into());
    s.firmware = Some("ESC 1.3.4, BMS 1.1.5".into());
    let after = messages_for("homeassistant", &gateway(), std::slice::from_ref(&s));
    assert_eq!(after.len(), before.len());
    for m in after.iter().skip(1) {
        assert_eq!(m.payload["device"]["model"], "Pro 2", "{}", m.topic);
        assert_eq!(m.payload["device"]["sw_version"], "ESC 1.3.4, BMS 1.1.5");
    }
}

#[test]
fn each_control_appears_only_when_its_command_is_allowed() {
    let controls = |allowed: &[CommandName]| -> Vec<String> {
        let mut s = full_scooter(SCOOTER);
        s.events_topic = None;
        s.allowed = allowed.iter().copied().collect();
        let msgs = messages_for("homeassistant", &gateway(), &[s]);
        msgs.iter()
            .filter(|m| {
                let component = m.topic.split('/').nth(1).unwrap();
                ["lock", "select", "button", "event"].contains(&component)
            })
            .map(|m| m.topic.split('/').nth(3).unwrap().to_owned())
            .collect()
    };
    assert!(controls(&[]).is_empty());
    assert!(
        controls(&[CommandName::Unlock]).is_empty(),
        "a lock needs both"
    );
    assert_eq!(
        controls(&[CommandName::Lock, CommandName::Unlock]),
        ["lock_control"]
    );
    assert_eq!(controls(&[CommandName::Kers]), ["kers"]);
    assert_eq!(controls(&[CommandName::Cruise]), ["cruise"]);
    assert_eq!(controls(&[CommandName::TailLight]), ["tail_light"]);
    assert_eq!(controls(&[CommandName::SampleNow]), ["sample_now"]);
    assert_eq!(controls(&[CommandName::PowerOff]), ["power_off"]);
    assert_eq!(controls(&CommandName::ALL).len(), 6);
}

/// Renders a control's command template for `value` and checks the command Home Assistant
/// would send: JSON with a fresh id, the command, the value, and an expiry about
/// [`COMMAND_EXPIRY_S`] ahead.
fn command_sent(m: &DiscoveryMessage, value: &str) -> Value {
    let before = Utc::now();
    let rendered = render_with(template_of(m, "command_template"), None, Some(value), None);
    let command: Value = serde_json::from_str(&rendered)
        .unwrap_or_else(|e| panic!("{}: {rendered:?} is not JSON: {e}", m.topic));
    let id = command["id"].as_str().expect("an id");
    assert!(id.starts_with("ha-"), "{id}");
    let expires = command["expires"].as_str().expect("an expiry");
    let expires = DateTime::parse_from_rfc3339(expires)
        .unwrap_or_else(|e| panic!("{expires:?} is not RFC 3339: {e}"));
    let ahead = expires.with_timezone(&Utc) - before;
    assert!(
        ahead.num_seconds() >= i64::from(COMMAND_EXPIRY_S) - 1
            && ahead.num_seconds() <= i64::from(COMMAND_EXPIRY_S) + 1,
        "expires {ahead} ahead"
    );
    assert!(command.get("ttl").is_none());
    command
}

#[test]
fn the_lock_sends_lock_and_unlock_commands_and_reads_the_telemetry() {
    let msgs = messages_for("homeassistant", &gateway(), &[full_scooter(SCOOTER)]);
    let e = of_scooter(&msgs, SCOOTER);
    let lock = e["lock_control"];
    assert_eq!(
        lock.topic,
        format!("homeassistant/lock/{SCOOTER}/lock_control/config")
    );
    let p = &lock.payload;
    assert_eq!(p["command_topic"], format!("m365/{SCOOTER}/command"));
    assert_eq!(p["state_topic"], format!("m365/{SCOOTER}/telemetry"));
    assert_eq!(p["retain"], false);
    assert_eq!(p["qos"], 1);

    // Home Assistant hands the template `payload_lock` or `payload_unlock` as `value`.
    let lock_cmd = command_sent(lock, p["payload_lock"].as_str().unwrap());
    assert_eq!(lock_cmd["command"], "lock");
    assert!(lock_cmd.get("value").is_none());
    let unlock_cmd = command_sent(lock, p["payload_unlock"].as_str().unwrap());
    assert_eq!(unlock_cmd["command"], "unlock");
    assert_ne!(lock_cmd["id"], unlock_cmd["id"]);
    let again = command_sent(lock, "lock");
    assert_ne!(again["id"], lock_cmd["id"], "every command has its own id");

    let mut record = full_record();
    let state = |record: &Record| {
        let payload = Encoding::Json.encode(std::slice::from_ref(record)).unwrap();
        ha_state(lock, &value_of(lock, &payload))
    };
    assert_eq!(state(&record), HaState::Value("locked".into()));
    record.scooter.locked = Some(false);
    assert_eq!(state(&record), HaState::Value("unlocked".into()));
    record.scooter.locked = None;
    assert_eq!(state(&record), HaState::Unknown);
}

/// A command result as the daemon publishes it.
fn result(state: Value) -> Value {
    json!({"id": "ha-x", "ok": true, "state": state, "error": null})
}

#[test]
fn the_kers_cruise_and_tail_light_selects_follow_the_command_results() {
    let msgs = messages_for("homeassistant", &gateway(), &[full_scooter(SCOOTER)]);
    let e = of_scooter(&msgs, SCOOTER);
    let state = json!({"locked": false, "cruise": true, "tail_light": false, "kers": "strong"});
    for (id, options, expected) in [
        ("kers", &["weak", "medium", "strong"][..], "strong"),
        ("cruise", &["off", "on"][..], "on"),
        ("tail_light", &["off", "on"][..], "off"),
    ] {
        let m = e[id];
        assert!(m.topic.starts_with("homeassistant/select/"), "{}", m.topic);
        let p = &m.payload;
        assert_eq!(p["options"], json!(options), "{id}");
        assert_eq!(p["command_topic"], format!("m365/{SCOOTER}/command"));
        assert_eq!(p["state_topic"], format!("m365/{SCOOTER}/command/result"));
        let template = template_of(m, "value_template");
        let read = |payload: &Value, this: Option<&str>| {
            ha_state(m, &render_with(template, Some(payload), None, this))
        };
        assert_eq!(
            read(&result(state.clone()), None),
            HaState::Value(expected.into()),
            "{id}"
        );
        // A result without a state (the command failed before reaching the scooter) keeps
        // the current option, or leaves it unknown.
        let failed = json!({"id": "ha-y", "ok": false, "state": null,
                            "error": {"code": "expired"}});
        assert_eq!(
            read(&failed, Some(options[0])),
            HaState::Value(options[0].into()),
            "{id}"
        );
        assert_eq!(read(&failed, Some("unknown")), HaState::Unknown, "{id}");
        assert_eq!(read(&failed, None), HaState::Unknown, "{id}");

        for option in options {
            let command = command_sent(m, option);
            assert_eq!(command["command"], id);
            assert_eq!(command["value"], *option);
        }
    }
    assert_eq!(e["kers"].payload["entity_category"], "config");
}

#[test]
fn buttons_send_their_command() {
    let msgs = messages_for("homeassistant", &gateway(), &[full_scooter(SCOOTER)]);
    let e = of_scooter(&msgs, SCOOTER);
    for id in ["sample_now", "power_off"] {
        let m = e[id];
        assert!(m.topic.starts_with("homeassistant/button/"), "{}", m.topic);
        let command = command_sent(m, "PRESS");
        assert_eq!(command["command"], id);
        assert!(command.get("value").is_none());
    }
}

#[test]
fn ride_events_become_home_assistant_events() {
    let msgs = messages_for("homeassistant", &gateway(), &[full_scooter(SCOOTER)]);
    let e = of_scooter(&msgs, SCOOTER);
    let m = e["event"];
    assert_eq!(
        m.topic,
        format!("homeassistant/event/{SCOOTER}/event/config")
    );
    assert_eq!(m.payload["state_topic"], format!("m365/{SCOOTER}/events"));
    assert_eq!(m.payload["event_types"], json!(EventKind::NAMES));
    let template = template_of(m, "value_template");

    let ended = json!({
        "v": 1, "type": "event", "event": "trip_ended", "scooter_id": SCOOTER,
        "ts": "2025-06-01T12:00:00.000Z",
        "data": {"distance_m": 1250, "duration_s": 310, "avg_speed_kmh": 14.5}
    });
    let rendered = render_with(template, Some(&ended), None, None);
    // Home Assistant takes `event_type` out and keeps the rest as the event's attributes.
    let event: Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(event["event_type"], "trip_ended");
    assert_eq!(event["distance_m"], 1250);
    assert_eq!(event["avg_speed_kmh"], 14.5);
    assert!(EventKind::NAMES.contains(&event["event_type"].as_str().unwrap()));

    let locked = json!({"v": 1, "type": "event", "event": "locked", "data": {}});
    let event: Value =
        serde_json::from_str(&render_with(template, Some(&locked), None, None)).unwrap();
    assert_eq!(event, json!({"event_type": "locked"}));
    // Anything else on the topic renders nothing, which Home Assistant ignores.
    let other = json!({"v": 1, "type": "status"});
    assert_eq!(render_with(template, Some(&other), None, None).trim(), "");
}

#[test]
fn without_command_or_events_topics_there_are_no_controls() {
    let mut s = full_scooter(SCOOTER);
    s.command_topic = None;
    s.events_topic = None;
    let msgs = messages_for("homeassistant", &gateway(), &[s]);
    for m in &msgs {
        let component = m.topic.split('/').nth(1).unwrap();
        assert!(
            ["sensor", "binary_sensor", "device_tracker"].contains(&component),
            "{}",
            m.topic
        );
    }
}

#[test]
fn a_legacy_scooter_locks_from_the_command_results() {
    let mut s = full_scooter(SCOOTER);
    s.state_topic = "vehicle/1/realtime".into();
    s.state_encoding = StateEncoding::Legacy;
    let msgs = messages_for("homeassistant", &gateway(), &[s]);
    let lock = of_scooter(&msgs, SCOOTER)["lock_control"];
    assert_eq!(
        lock.payload["state_topic"],
        format!("m365/{SCOOTER}/command/result")
    );
    let template = template_of(lock, "value_template");
    let read = |v: &Value| ha_state(lock, &render_with(template, Some(v), None, None));
    assert_eq!(
        read(&result(
            json!({"locked": true, "cruise": false, "tail_light": false, "kers": "weak"})
        )),
        HaState::Value("locked".into())
    );
    assert_eq!(
        read(&json!({"id": "x", "ok": false, "state": null})),
        HaState::Kept
    );
}

// ---------------------------------------------------------------------------------------------
// The announcer against a real broker.

fn wire(port: u16) -> m365_pipeline::MqttConfig {
    m365_pipeline::MqttConfig {
        broker: format!("tcp://127.0.0.1:{port}"),
        protocol: MqttProtocol::V5,
        client: "m365-gateway".into(),
        reconnect_min: 0.05,
        reconnect_max: 0.2,
        connect_timeout: 2,
        ..m365_pipeline::MqttConfig::default()
    }
}

fn settings(state_file: Option<&Path>) -> AnnouncerSettings {
    AnnouncerSettings {
        prefix: "homeassistant".into(),
        gateway: gateway(),
        state_file: state_file.map(Path::to_path_buf),
    }
}

/// The configs (non-empty payloads on `…/config` topics) in `inbox`, in arrival order.
fn configs(inbox: &Inbox) -> Vec<(String, Value)> {
    inbox
        .messages()
        .into_iter()
        .filter(|m| m.topic.ends_with("/config") && !m.payload.is_empty())
        .map(|m| (m.topic, serde_json::from_slice(&m.payload).unwrap()))
        .collect()
}

/// Waits until every message of `expected` arrived in `inbox` (at least `times` times each).
async fn wait_for_all(inbox: &Inbox, expected: &[DiscoveryMessage], times: usize) {
    let done = inbox
        .wait_for(WAIT, |i| {
            let got = configs(i);
            expected.iter().all(|m| {
                got.iter()
                    .filter(|(t, p)| *t == m.topic && *p == m.payload)
                    .count()
                    >= times
            })
        })
        .await;
    let got: Vec<String> = configs(inbox).into_iter().map(|(t, _)| t).collect();
    assert!(
        done,
        "not every config arrived {times} time(s); got {got:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_announcer_announces_again_when_home_assistant_comes_online() {
    if !require_mosquitto("discovery announced again on Home Assistant's birth message") {
        return;
    }
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port;
    let inbox = subscribe(port, "homeassistant/#").await;
    let availability = subscribe(port, "m365/gateway/+/availability").await;
    let scooters = vec![full_scooter(SCOOTER), full_scooter("second")];
    let expected = messages_for("homeassistant", &gateway(), &scooters);
    let (_tx, rx) = watch::channel(scooters);
    let task = spawn_announcer(&wire(port), settings(None), rx).unwrap();
    wait_for_all(&inbox, &expected, 1).await;
    assert!(
        availability
            .wait_for(WAIT, |i| i.on("m365/gateway/pi/availability")
                == [PAYLOAD_AVAILABLE.as_bytes()])
            .await,
        "the gateway says online"
    );
    assert!(!task.is_finished(), "the announcer stays connected");

    // Home Assistant restarted: its birth message. The announcer subscribed before publishing
    // the configs, so it follows the status topic by now.
    publish(port, "homeassistant/status", "online", false).await;
    wait_for_all(&inbox, &expected, 2).await;
    // Something else on the status topic changes nothing.
    let count = configs(&inbox).len();
    publish(port, "homeassistant/status", "offline", false).await;
    publish(port, "homeassistant/status", "online", false).await;
    wait_for_all(&inbox, &expected, 3).await;
    assert_eq!(
        configs(&inbox).len(),
        count + expected.len(),
        "one announcement per online"
    );

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(
        availability
            .wait_for(WAIT, |i| i
                .on("m365/gateway/pi/availability")
                .last()
                .map(Vec::as_slice)
                == Some(PAYLOAD_NOT_AVAILABLE.as_bytes()))
            .await,
        "the last will says offline once the announcer is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_announcer_announces_again_after_a_broker_restart() {
    if !require_mosquitto("discovery announced again after a broker restart") {
        return;
    }
    // Without persistence: a restarted broker has forgotten every retained config.
    let mut broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port;
    let scooters = vec![full_scooter(SCOOTER)];
    let expected = messages_for("homeassistant", &gateway(), &scooters);
    let (_tx, rx) = watch::channel(scooters);
    let task = spawn_announcer(&wire(port), settings(None), rx).unwrap();
    let first = subscribe(port, "homeassistant/#").await;
    wait_for_all(&first, &expected, 1).await;
    drop(first);

    broker.stop();
    broker.resume().await;
    // A subscriber that comes after the restart finds every config retained again.
    let later = subscribe(port, "homeassistant/#").await;
    wait_for_all(&later, &expected, 1).await;
    assert!(!task.is_finished());
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scooter_whose_model_becomes_known_is_announced_again() {
    if !require_mosquitto("discovery updated with the model and firmware") {
        return;
    }
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port;
    let inbox = subscribe(port, "homeassistant/#").await;
    let scooters = vec![full_scooter(SCOOTER), full_scooter("second")];
    let (tx, rx) = watch::channel(scooters.clone());
    let task = spawn_announcer(&wire(port), settings(None), rx).unwrap();
    wait_for_all(
        &inbox,
        &messages_for("homeassistant", &gateway(), &scooters),
        1,
    )
    .await;
    let before = configs(&inbox).len();

    assert!(update_device(
        &tx,
        SCOOTER,
        Some("Pro 2"),
        Some("ESC 1.3.4")
    ));
    let mut updated = scooters.clone();
    updated[0].model = Some("Pro 2".into());
    updated[0].firmware = Some("ESC 1.3.4".into());
    let expected: Vec<DiscoveryMessage> = messages_for("homeassistant", &gateway(), &updated)
        .into_iter()
        .filter(|m| m.topic.split('/').nth(2) == Some(SCOOTER))
        .collect();
    wait_for_all(&inbox, &expected, 1).await;
    // Only that scooter's configs went out again: a marker published now arrives after
    // anything the announcer sent before it.
    publish(port, "homeassistant/marker", "m", false).await;
    assert!(
        inbox
            .wait_for(WAIT, |i| !i.on("homeassistant/marker").is_empty())
            .await
    );
    let again = &configs(&inbox)[before..];
    assert_eq!(again.len(), expected.len(), "{again:#?}");
    assert!(again.iter().all(|(_, p)| p["device"]["model"] == "Pro 2"));
    task.abort();
}

/// Waits until the state file lists exactly `ids`.
async fn state_file_lists(path: &Path, ids: &[&str]) {
    let wanted: BTreeSet<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let listed = || -> Option<BTreeSet<String>> {
        let text = std::fs::read(path).ok()?;
        let v: Value = serde_json::from_slice(&text).ok()?;
        Some(
            v["scooters"]
                .as_array()?
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect(),
        )
    };
    let ok = m365_testkit::wait::until(WAIT, || listed().as_ref() == Some(&wanted)).await;
    assert!(ok, "the state file lists {:?}, not {wanted:?}", listed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_of_a_departed_scooter_are_removed_at_the_next_start() {
    if !require_mosquitto("removal of a departed scooter's configs") {
        return;
    }
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("homeassistant.json");

    // First run: two scooters.
    let both = vec![full_scooter(SCOOTER), full_scooter("gone")];
    let (_tx, rx) = watch::channel(both.clone());
    let first = spawn_announcer(&wire(port), settings(Some(&state)), rx).unwrap();
    state_file_lists(&state, &[SCOOTER, "gone"]).await;
    first.abort();
    let _ = first.await;
    let retained_gone = subscribe(port, "homeassistant/+/gone/+/config").await;
    let gone_count = of_scooter(&messages_for("homeassistant", &gateway(), &both), "gone").len();
    assert!(
        retained_gone
            .wait_for(WAIT, |i| i.len() >= gone_count)
            .await,
        "the departed scooter's configs were retained"
    );
    drop(retained_gone);

    // Second run: "gone" left the configuration, and the other scooter lost its commands.
    let mut remaining = full_scooter(SCOOTER);
    remaining.allowed.clear();
    let (_tx, rx) = watch::channel(vec![remaining.clone()]);
    let second = spawn_announcer(&wire(port), settings(Some(&state)), rx).unwrap();
    state_file_lists(&state, &[SCOOTER]).await;

    // The file is written once every removal was acknowledged: a subscriber now finds exactly
    // the current configs retained.
    let now = subscribe(port, "homeassistant/#").await;
    let expected = messages_for("homeassistant", &gateway(), &[remaining]);
    wait_for_all(&now, &expected, 1).await;
    publish(port, "homeassistant/marker", "m", false).await;
    assert!(
        now.wait_for(WAIT, |i| !i.on("homeassistant/marker").is_empty())
            .await
    );
    let mut retained: Vec<String> = now
        .messages()
        .into_iter()
        .filter(|m| m.retain)
        .map(|m| m.topic)
        .collect();
    retained.sort_unstable();
    let mut wanted: Vec<String> = expected.iter().map(|m| m.topic.clone()).collect();
    wanted.sort_unstable();
    assert_eq!(retained, wanted);
    for topic in possible_config_topics("homeassistant", "gone") {
        assert!(!retained.contains(&topic), "{topic} still retained");
    }
    assert!(!retained.iter().any(|t| t.contains("/lock_control/")));
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_removes_nothing_and_is_replaced() {
    if !require_mosquitto("a damaged discovery state file") {
        return;
    }
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("homeassistant.json");
    std::fs::write(&state, b"{\"v\":1,\"scooters\":[\"gone\"").unwrap();
    let scooters = vec![full_scooter(SCOOTER)];
    let (_tx, rx) = watch::channel(scooters.clone());
    let task = spawn_announcer(&wire(port), settings(Some(&state)), rx).unwrap();
    state_file_lists(&state, &[SCOOTER]).await;
    let inbox = subscribe(port, "homeassistant/#").await;
    wait_for_all(
        &inbox,
        &messages_for("homeassistant", &gateway(), &scooters),
        1,
    )
    .await;
    task.abort();
}

/// Subscribes to `filter` and collects what arrives (topic, payload, retain flag) until `want`
/// messages came (or [`WAIT`] passed: the caller's count check then says what is missing).
async fn retained(port: u16, filter: &str, want: usize) -> Vec<(String, Vec<u8>, bool)> {
    let inbox = subscribe(port, filter).await;
    inbox.wait_for(WAIT, |i| i.len() >= want).await;
    inbox
        .messages()
        .into_iter()
        .map(|m| (m.topic, m.payload, m.retain))
        .collect()
}

/// Checks that `got` holds every message of `expected` retained, with its payload.
fn all_retained(got: &[(String, Vec<u8>, bool)], expected: &[DiscoveryMessage]) {
    assert_eq!(got.len(), expected.len());
    for m in expected {
        let (_, payload, retain) = got
            .iter()
            .find(|(t, _, _)| *t == m.topic)
            .unwrap_or_else(|| panic!("{} not retained", m.topic));
        assert!(retain, "{}", m.topic);
        let payload: Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(payload, m.payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_announcer_retries_until_the_broker_has_every_config() {
    if !require_mosquitto("discovery announced before the broker is up") {
        return;
    }
    // The broker's port is reserved now; the broker starts later.
    let mut broker = Broker::stopped(BrokerOptions::default());
    let port = broker.port;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(STATE_FILE_NAME);
    let scooters = vec![discovery(JSON_CONFIG)];
    let expected = messages_for("homeassistant", &gateway(), &scooters);
    // Started before the broker: the first attempts fail and are retried. Until the broker
    // starts, a listener on its port takes each attempt and hangs up at once.
    let hang_up = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let (_tx, rx) = watch::channel(scooters);
    let task = spawn_announcer(&wire(port), settings(Some(&state)), rx).unwrap();
    for attempt in 1..=2 {
        let (conn, _) = tokio::time::timeout(WAIT, hang_up.accept())
            .await
            .unwrap_or_else(|_| panic!("connection attempt {attempt} in time"))
            .unwrap();
        drop(conn);
    }
    assert!(!task.is_finished(), "it keeps trying");
    assert!(!state.exists(), "nothing acknowledged yet");
    drop(hang_up);
    broker.resume().await;
    // The state file is written once the broker acknowledged every config.
    state_file_lists(&state, &[SCOOTER]).await;

    // A subscriber that comes later (as Home Assistant after a restart) gets them retained.
    let got = retained(port, "homeassistant/#", expected.len()).await;
    all_retained(&got, &expected);
    assert!(!task.is_finished(), "the announcer stays connected");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_1_brokers_get_them_too() {
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port_of(MqttVersion::V311);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(STATE_FILE_NAME);
    let scooters = vec![discovery(LEGACY_CONFIG)];
    let expected = messages_for("ha", &gateway(), &scooters);
    let wire = m365_pipeline::MqttConfig {
        protocol: MqttProtocol::V311,
        broker: format!("mqtt://127.0.0.1:{port}"),
        ..wire(port)
    };
    let settings = AnnouncerSettings {
        prefix: "ha".into(),
        ..settings(Some(&state))
    };
    let (_tx, rx) = watch::channel(scooters);
    let task = spawn_announcer(&wire, settings, rx).unwrap();
    // Everything acknowledged, the removals of the entities it does not offer included.
    state_file_lists(&state, &[SCOOTER]).await;
    let got = retained(port, "ha/#", expected.len()).await;
    all_retained(&got, &expected);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_start_up_announces_from_the_configuration() {
    if !require_mosquitto("discovery from the daemon's settings (MQTT 5)") {
        return;
    }
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port;
    let text = JSON_CONFIG.replace(
        "[mqtt]\n",
        &format!("[mqtt]\nbroker = \"tcp://127.0.0.1:{port}\"\n"),
    );
    let config = config(&text);
    let dir = tempfile::tempdir().unwrap();
    // The same settings `m365 run` hands to the pipeline.
    let settings = m365::daemon::pipeline::settings(&config, config.first());
    let (task, scooters) = m365::homeassistant::start(&config, &settings.config.mqtt, dir.path());
    let (task, scooters) = (task.expect("started"), scooters.expect("the descriptions"));
    assert_eq!(*scooters.borrow(), [discovery(&text)]);
    // Its state file is in the state directory, written once everything was acknowledged.
    state_file_lists(&dir.path().join(STATE_FILE_NAME), &[SCOOTER]).await;

    let gateway = GatewayDiscovery::new(gateway_id());
    let expected = messages_for("homeassistant", &gateway, &[discovery(&text)]);
    let got = retained(port, "homeassistant/#", expected.len()).await;
    all_retained(&got, &expected);
    let speed = got
        .iter()
        .find(|(t, _, _)| t == "homeassistant/sensor/d5014537edfd/speed/config")
        .expect("the speed sensor");
    let payload: Value = serde_json::from_slice(&speed.1).unwrap();
    assert_eq!(payload["state_topic"], "m365/d5014537edfd/telemetry");
    assert_eq!(payload["device"]["via_device"], gateway.node_id());
    let backlog = got
        .iter()
        .find(|(t, _, _)| t.ends_with("/spool_backlog/config"))
        .expect("the backlog sensor");
    let payload: Value = serde_json::from_slice(&backlog.1).unwrap();
    assert_eq!(payload["state_topic"], "m365/d5014537edfd/status");

    // What the daemon learns about the scooter goes out through the returned sender.
    assert!(update_device(
        &scooters,
        SCOOTER,
        Some("Pro 2"),
        Some("ESC 1.3.4")
    ));
    let later = subscribe(port, "homeassistant/sensor/d5014537edfd/speed/config").await;
    assert!(
        later
            .wait_for(WAIT, |i| i.messages().iter().any(|m| {
                serde_json::from_slice::<Value>(&m.payload)
                    .is_ok_and(|p| p["device"]["model"] == "Pro 2")
            }))
            .await,
        "announced again with the model"
    );
    task.abort();
}
