//! A `martinete.toml` written for the earlier client must load unchanged and mean the same
//! thing: same broker, client id, topic, MQTT 5, keep-alive and back-off in seconds, the same
//! sampling interval, and a SIM7600 modem on the `[serial]` port.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365::config::{self, Encoding, GpsKind, GpsSource, MqttProtocol};
use m365_ble::BdAddr;
use std::time::Duration;

/// A configuration in the earlier client's format, with every key it required.
const EARLIER_FORMAT: &str = r#"[mqtt]
broker = "tcp://broker.lan:1883"
client = "martinete"
topic = "vehicle/7/realtime"
keep_alive = 20
# Doubled on each failed retry, from reconnect_min up to reconnect_max (seconds).
reconnect_min = 2
reconnect_max = 40
# Seconds between two samples.
send_interval = 3

[scooter]
# Without the ":"
mac = "C7B8DC3BA1B2"
token_file_path = "/home/scooter/.mi-token"

[serial]
serial_port = "/dev/ttyUSB2"
baudrate = 115200
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn earlier_format_loads_without_warnings_and_keeps_its_meaning() {
    let (config, warnings) =
        config::parse("martinete.toml", EARLIER_FORMAT, &no_env).expect("earlier format loads");
    assert!(warnings.is_empty(), "{warnings:?}");

    let mqtt = &config.first().mqtt;
    assert!(!mqtt.broker.tls);
    assert_eq!(mqtt.broker.host, "broker.lan");
    assert_eq!(mqtt.broker.port, 1883);
    assert_eq!(mqtt.client_id, "martinete");
    assert_eq!(mqtt.topic, "vehicle/7/realtime");
    // The earlier client published its own JSON shape with MQTT 5: both stay the default.
    assert_eq!(mqtt.encoding, Encoding::Legacy);
    assert_eq!(mqtt.protocol, MqttProtocol::V5);
    assert!(mqtt.mirror.is_empty());
    assert_eq!(mqtt.keep_alive, Duration::from_secs(20));
    assert_eq!(mqtt.reconnect_min, Duration::from_secs(2));
    assert_eq!(mqtt.reconnect_max, Duration::from_secs(40));
    assert!(mqtt.tls.is_none());
    assert!(mqtt.username.is_none() && mqtt.password.is_none());

    // send_interval was the time between two samples.
    assert_eq!(config.telemetry.interval, Duration::from_secs(3));

    let scooter = &config.first().link;
    assert_eq!(
        scooter.mac,
        Some(BdAddr([0xC7, 0xB8, 0xDC, 0x3B, 0xA1, 0xB2]))
    );
    assert_eq!(scooter.token_file.to_str(), Some("/home/scooter/.mi-token"));
    // With a MAC, the scooter id that fills {id} in the new default topics is the MAC.
    assert_eq!(config.first().id, "c7b8dc3ba1b2");
    assert_eq!(mqtt.availability_topic, "m365/c7b8dc3ba1b2/availability");

    // [serial] drove a SIM7600 modem with AT commands.
    assert_eq!(config.gps.source, GpsSource::Serial);
    assert_eq!(config.gps.kind, GpsKind::Sim7600);
    assert_eq!(config.gps.device.to_str(), Some("/dev/ttyUSB2"));
    assert_eq!(config.gps.baud, 115_200);
}

#[test]
fn earlier_mac_spellings_are_all_accepted() {
    for mac in ["C7B8DC3BA1B2", "c7:b8:dc:3b:a1:b2", "C7-B8-DC-3B-A1-B2"] {
        let text = format!("[scooter]\nmac = \"{mac}\"\n");
        let (config, _) = config::parse("m.toml", &text, &no_env).expect(mac);
        assert_eq!(
            config.first().link.mac.map(|m| m.to_string()).as_deref(),
            Some("C7:B8:DC:3B:A1:B2")
        );
    }
}

#[test]
fn a_legacy_serial_section_without_baudrate_uses_the_modem_speed() {
    let text = "[serial]\nserial_port = \"/dev/ttyUSB3\"\n";
    let (config, _) = config::parse("m.toml", text, &no_env).expect("loads");
    assert_eq!(config.gps.kind, GpsKind::Sim7600);
    assert_eq!(config.gps.baud, 115_200);
}

#[test]
fn whole_second_intervals_and_fractions_give_the_same_kind_of_value() {
    let (a, _) = config::parse("m.toml", "[mqtt]\nsend_interval = 1\n", &no_env).expect("a");
    let (b, _) = config::parse("m.toml", "[telemetry]\ninterval = 0.25\n", &no_env).expect("b");
    let (c, _) =
        config::parse("m.toml", "[telemetry]\ninterval = \"250ms\"\n", &no_env).expect("c");
    assert_eq!(a.telemetry.interval, Duration::from_secs(1));
    assert_eq!(b.telemetry.interval, Duration::from_millis(250));
    assert_eq!(c.telemetry.interval, Duration::from_millis(250));
}
