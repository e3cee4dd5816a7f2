//! Home Assistant discovery: the payloads Home Assistant reads (keys, units, stable ids), their
//! templates rendered with a Jinja engine against what the pipeline's encoders really produce,
//! and the publisher against a real broker on a loopback port.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use m365::config::Config;
use m365::homeassistant::{
    Discovery, DiscoveryError, DiscoveryMessage, PAYLOAD_AVAILABLE, PAYLOAD_NOT_AVAILABLE,
    StateEncoding, messages, spawn_publisher,
};
use m365_gps::chrono::{TimeZone as _, Utc};
use m365_gps::{Fix, FixMode, FixQuality, FixSource};
use m365_pipeline::{
    BatteryReadings, Encoding, GpsReading, MqttProtocol, Record, Sample, ScooterReadings,
};
use m365_testkit::broker::{
    Broker, BrokerOptions, Message, MqttVersion, require_mosquitto, subscribe, subscribe_stream,
};
use serde_json::Value;
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

fn discovery(text: &str) -> Discovery {
    Discovery::from_config(&config(text), Some("m365/d5014537edfd/status".into()))
        .expect("discovery settings")
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
    let env = minijinja::Environment::new();
    env.render_str(
        template,
        minijinja::context! { value_json => minijinja::Value::from(minijinja::value::Serde(&value)) },
    )
    .unwrap_or_else(|e| panic!("template {template:?} does not render: {e}"))
}

/// Jinja renders `None` (Python) or `none` (MiniJinja); Home Assistant reads `None` as unknown.
fn is_unknown(rendered: &str) -> bool {
    matches!(rendered.trim(), "None" | "none")
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
    let msgs = messages(&d);
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
        if parts[1] != "device_tracker" {
            assert!(m.payload.get("state_topic").is_some(), "{}", m.topic);
            assert!(m.payload.get("value_template").is_some(), "{}", m.topic);
        }
    }
}

#[test]
fn units_device_and_state_classes_are_home_assistants() {
    let msgs = messages(&discovery(JSON_CONFIG));
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
    let first = messages(&discovery(JSON_CONFIG));
    let again = messages(&discovery(JSON_CONFIG));
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
    let other = messages(&discovery(&other));
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
    let msgs = messages(&discovery(JSON_CONFIG));
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
        assert!(
            (got - expected).abs() < 0.01,
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
    let msgs = messages(&discovery(JSON_CONFIG));
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
    let msgs = messages(&discovery(JSON_CONFIG));
    let mut checked = 0;
    for m in msgs
        .iter()
        .filter(|m| m.payload.get("value_template").is_some() && !m.topic.contains("spool_backlog"))
    {
        let rendered = value_of(m, &payload);
        assert!(is_unknown(&rendered), "{}: {rendered:?}", m.topic);
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
fn legacy_only_configs_template_the_legacy_keys() {
    let d = discovery(LEGACY_CONFIG);
    assert_eq!(d.state_topic, "vehicle/1/realtime");
    assert_eq!(d.state_encoding, StateEncoding::Legacy);
    let msgs = messages(&d);
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
            (got - expected).abs() < 0.01,
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
    assert!(is_unknown(&value_of(e["battery"], &empty)));
    assert!(is_unknown(&value_of(e["odometer"], &empty)));
}

#[test]
fn without_gps_there_is_no_tracker() {
    let text = JSON_CONFIG.replace("source = \"gpsd\"", "source = \"none\"");
    let msgs = messages(&discovery(&text));
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
    let err = Discovery::from_config(&config(text), None).unwrap_err();
    assert!(matches!(err, DiscoveryError::NoReadableTopic));
    assert!(err.to_string().contains("\"json\" or \"legacy\""));
}

#[tokio::test]
async fn disabled_discovery_starts_nothing() {
    let config = config("[mqtt]\ntopic = \"m365/{id}/telemetry\"\nencoding = \"json\"\n");
    assert!(!config.homeassistant.discovery);
    let wire = m365_pipeline::MqttConfig::default();
    assert!(m365::homeassistant::start(&config, &wire).is_none());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_retains_every_config_once_the_broker_is_up() {
    if !require_mosquitto("discovery published before the broker is up") {
        return;
    }
    // The broker's port is reserved now; the broker starts later.
    let mut broker = Broker::stopped(BrokerOptions::default());
    let port = broker.port;
    let d = discovery(JSON_CONFIG);
    let msgs = messages(&d);
    let wire = m365_pipeline::MqttConfig {
        broker: format!("tcp://127.0.0.1:{port}"),
        protocol: MqttProtocol::V5,
        client: "m365-d5014537edfd".into(),
        reconnect_min: 0.1,
        reconnect_max: 0.5,
        connect_timeout: 2,
        ..m365_pipeline::MqttConfig::default()
    };
    // Started before the broker: the first attempts fail and are retried. Until the broker
    // starts, a listener on its port takes each attempt and hangs up at once.
    let hang_up = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let task = spawn_publisher(&wire, msgs.clone()).unwrap();
    for attempt in 1..=2 {
        let (conn, _) = tokio::time::timeout(WAIT, hang_up.accept())
            .await
            .unwrap_or_else(|_| panic!("connection attempt {attempt} in time"))
            .unwrap();
        drop(conn);
    }
    assert!(!task.is_finished(), "nothing to publish to yet");
    drop(hang_up);
    broker.resume().await;
    tokio::time::timeout(WAIT, task)
        .await
        .expect("published in time")
        .expect("the task ends normally");

    // A subscriber that comes later (as Home Assistant after a restart) gets them retained.
    let got = retained(port, "homeassistant/#", msgs.len()).await;
    assert_eq!(got.len(), msgs.len());
    for m in &msgs {
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
async fn mqtt_3_1_1_brokers_get_them_too() {
    let broker = Broker::start(BrokerOptions::default()).await;
    let port = broker.port_of(MqttVersion::V311);
    let msgs = messages(&discovery(LEGACY_CONFIG));
    let wire = m365_pipeline::MqttConfig {
        broker: format!("mqtt://127.0.0.1:{port}"),
        protocol: MqttProtocol::V311,
        ..m365_pipeline::MqttConfig::default()
    };
    let task = spawn_publisher(&wire, msgs.clone()).unwrap();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("published in time")
        .expect("the task ends normally");
    let got = retained(port, "ha/#", msgs.len()).await;
    let mut topics: Vec<&str> = got.iter().map(|(t, _, _)| t.as_str()).collect();
    topics.sort_unstable();
    let mut expected: Vec<&str> = msgs.iter().map(|m| m.topic.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(topics, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_start_up_publishes_from_the_configuration() {
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
    // The same settings `m365 run` hands to the pipeline.
    let settings = m365::daemon::pipeline::settings(&config);
    let task = m365::homeassistant::start(&config, &settings.config.mqtt).expect("started");
    tokio::time::timeout(WAIT, task)
        .await
        .expect("published in time")
        .expect("the task ends normally");
    let expected = messages(&discovery(&text));
    let got = retained(port, "homeassistant/#", expected.len()).await;
    assert_eq!(got.len(), expected.len());
    let speed = got
        .iter()
        .find(|(t, _, _)| t == "homeassistant/sensor/d5014537edfd/speed/config")
        .expect("the speed sensor");
    let payload: Value = serde_json::from_slice(&speed.1).unwrap();
    assert_eq!(payload["state_topic"], "m365/d5014537edfd/telemetry");
    let backlog = got
        .iter()
        .find(|(t, _, _)| t.ends_with("/spool_backlog/config"))
        .expect("the backlog sensor");
    let payload: Value = serde_json::from_slice(&backlog.1).unwrap();
    assert_eq!(payload["state_topic"], "m365/d5014537edfd/status");
}

#[test]
fn model_and_firmware_appear_when_known() {
    let mut d = discovery(JSON_CONFIG);
    d.device.model = Some("Pro 2".into());
    d.device.sw_version = Some("ESC 1.3.4, BMS 1.1.5".into());
    for m in messages(&d) {
        assert_eq!(m.payload["device"]["model"], "Pro 2", "{}", m.topic);
        assert_eq!(m.payload["device"]["sw_version"], "ESC 1.3.4, BMS 1.1.5");
    }
    let plain = messages(&discovery(JSON_CONFIG));
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
    let d = Discovery::from_config(&config, None).unwrap();
    let availability = d.availability_topic.clone().expect("an availability topic");
    // Returns once the broker acknowledged the subscription.
    let mut payloads = subscribe_stream(port, &availability).await;

    let dir = tempfile::tempdir().unwrap();
    let mut settings = m365::daemon::pipeline::settings(&config);
    settings.config.spool.path = dir.path().join("spool.sqlite");
    let (handle, task) =
        m365_pipeline::spawn(settings.config.clone(), &config.telemetry.scooter_id).unwrap();
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
