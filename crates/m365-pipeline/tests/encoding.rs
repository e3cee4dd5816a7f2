//! The three encodings against what their consumers expect: the earlier server's keys and JSON
//! types for `legacy`, schema v1 for `json`, and size plus round trip for `compact`; and ride
//! events, one per message, in each of the three.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use m365_gps::{Fix, FixMode, FixQuality, FixSource};
use m365_pipeline::encoding::json::JsonEventV1;
use m365_pipeline::encoding::legacy::LegacyEvent;
use m365_pipeline::encoding::{NoFix, compact};
use m365_pipeline::error::EncodeError;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{
    BatteryReadings, Encoding, EventKind, GpsReading, MoveEvidence, Record, Sample, ScooterReadings,
};
use serde_json::Value;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// The CamiAlfa / protocol-reference sample values: 7734 mAh, 99 %, 0.01 A, 41.05 V,
/// 29 °C / 29 °C; odometer 2186 m, trip 50 m, uptime 636 s, frame 28.0 °C, range 18.30 km.
fn reference_record(gps: Option<GpsReading>) -> Record {
    Record::from_sample(
        Sample {
            scooter_id: "scooter-1".into(),
            system_time: t("2025-06-01T12:00:00.250Z"),
            scooter: ScooterReadings {
                speed_kmh: Some(18.5),
                avg_speed_kmh: Some(18.0),
                trip_distance_m: Some(50),
                trip_time_s: Some(10),
                odometer_m: Some(2186),
                uptime_s: Some(636),
                frame_temp_c: Some(28.0),
                range_km: Some(18.3),
                error_code: Some(0),
                warning_code: Some(0),
                locked: Some(false),
            },
            battery: BatteryReadings {
                remaining_mah: Some(7734),
                percent: Some(99),
                voltage_v: Some(41.05),
                current_a: Some(0.01),
                power_w: None,
                temp1_c: Some(29),
                temp2_c: Some(29),
                cell_voltages_v: None,
            },
            gps,
            event: None,
        },
        42,
    )
}

fn fix() -> GpsReading {
    GpsReading {
        fix: Fix {
            time: Some(t("2025-06-01T12:00:00Z")),
            lat: 43.328_933_683,
            lon: -8.408_309_566,
            alt_msl_m: Some(176.0),
            speed_mps: Some(5.0),
            course_deg: Some(90.0),
            mode: FixMode::ThreeD,
            quality: FixQuality::Gps,
            sats_used: Some(8),
            hdop: Some(0.8),
            pdop: None,
            vdop: None,
            source: FixSource::Sim7600,
        },
        age_ms: 250,
    }
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

/// JSON types the earlier client produced: `f32` fields are floats, integer fields integers.
#[derive(Debug, PartialEq)]
enum Ty {
    Float,
    Int,
    Str,
}

fn ty(v: &Value) -> Ty {
    match v {
        Value::String(_) => Ty::Str,
        Value::Number(n) if n.is_f64() => Ty::Float,
        Value::Number(_) => Ty::Int,
        other => panic!("unexpected JSON value {other}"),
    }
}

#[test]
fn legacy_matches_the_earlier_server_key_by_key_and_type_by_type() {
    let payload = Encoding::Legacy
        .encode(&[reference_record(Some(fix()))])
        .unwrap();
    let v: Value = serde_json::from_slice(&payload).unwrap();

    assert_eq!(
        keys(&v),
        vec![
            "battery_info",
            "frame_temp",
            "gpsinfo",
            "speed_kmh",
            "timestamp",
            "total_distance_m",
            "trip_distance_left_km",
            "trip_distance_m",
            "uptime_sec"
        ]
    );
    let top = [
        ("timestamp", Ty::Str),
        ("speed_kmh", Ty::Float),
        ("total_distance_m", Ty::Int),
        ("trip_distance_m", Ty::Int),
        ("trip_distance_left_km", Ty::Float),
        ("uptime_sec", Ty::Float),
        ("frame_temp", Ty::Float),
    ];
    for (k, want) in top {
        assert_eq!(ty(&v[k]), want, "{k}");
    }
    let b = &v["battery_info"];
    assert_eq!(
        keys(b),
        vec![
            "capacity",
            "current",
            "percent",
            "temperature_1",
            "temperature_2",
            "voltage"
        ]
    );
    for (k, want) in [
        ("capacity", Ty::Int),
        ("percent", Ty::Int),
        ("current", Ty::Float),
        ("voltage", Ty::Float),
        ("temperature_1", Ty::Int),
        ("temperature_2", Ty::Int),
    ] {
        assert_eq!(ty(&b[k]), want, "battery_info.{k}");
    }
    let g = &v["gpsinfo"];
    assert_eq!(
        keys(g),
        vec!["altitude", "gps_speed", "latitude", "longitude"]
    );
    for k in ["altitude", "gps_speed", "latitude", "longitude"] {
        assert_eq!(ty(&g[k]), Ty::Float, "gpsinfo.{k}");
    }

    // Values with the correct scales.
    let ts = DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(ts.to_utc(), t("2025-06-01T12:00:00.250Z"));
    assert_eq!(v["speed_kmh"].as_f64(), Some(18.5));
    assert_eq!(v["total_distance_m"].as_u64(), Some(2186));
    assert_eq!(
        v["trip_distance_m"].as_u64(),
        Some(50),
        "metres, not 10 m units"
    );
    assert!((v["trip_distance_left_km"].as_f64().unwrap() - 18.3).abs() < 1e-4);
    assert_eq!(v["uptime_sec"].as_f64(), Some(636.0));
    assert_eq!(v["frame_temp"].as_f64(), Some(28.0));
    assert_eq!(b["capacity"].as_u64(), Some(7734));
    assert_eq!(b["percent"].as_u64(), Some(99));
    assert!((b["current"].as_f64().unwrap() - 0.01).abs() < 1e-6);
    assert!((b["voltage"].as_f64().unwrap() - 41.05).abs() < 1e-4);
    assert_eq!(
        b["temperature_1"].as_i64(),
        Some(29),
        "°C, not the raw byte 49"
    );
    assert_eq!(g["latitude"].as_f64(), Some(43.328_933_683));
    assert_eq!(g["longitude"].as_f64(), Some(-8.408_309_566));
    assert_eq!(g["altitude"].as_f64(), Some(176.0));
    assert_eq!(g["gps_speed"].as_f64(), Some(18.0), "km/h");
}

#[test]
fn legacy_without_a_usable_fix_sends_the_earlier_clients_zeros_or_null_on_request() {
    // The earlier server's bridge stores 0,0 (its dashboards filter it out) and keeps the
    // message's speed and battery rows; `gpsinfo: null` would roll the whole message back.
    let payload = Encoding::Legacy.encode(&[reference_record(None)]).unwrap();
    let v: Value = serde_json::from_slice(&payload).unwrap();
    let g = &v["gpsinfo"];
    for key in ["latitude", "longitude", "altitude", "gps_speed"] {
        assert_eq!(g[key].as_f64(), Some(0.0), "{key}: {v}");
    }
    assert!(v["speed_kmh"].is_number());

    let payload = Encoding::Legacy
        .encode_with(&[reference_record(None)], NoFix::Null)
        .unwrap();
    let v: Value = serde_json::from_slice(&payload).unwrap();
    assert!(v["gpsinfo"].is_null(), "{v}");

    // A 2D fix has no altitude: 0 in the zeros form (the column is NOT NULL), null otherwise.
    let mut flat = fix();
    flat.fix.alt_msl_m = None;
    let zeros: Value = serde_json::from_slice(
        &Encoding::Legacy
            .encode(&[reference_record(Some(flat.clone()))])
            .unwrap(),
    )
    .unwrap();
    assert_eq!(zeros["gpsinfo"]["altitude"].as_f64(), Some(0.0));
    assert_eq!(
        zeros["gpsinfo"]["latitude"].as_f64(),
        Some(43.328_933_683),
        "a real fix is sent as it is"
    );
    let nulls: Value = serde_json::from_slice(
        &Encoding::Legacy
            .encode_with(&[reference_record(Some(flat))], NoFix::Null)
            .unwrap(),
    )
    .unwrap();
    assert!(nulls["gpsinfo"]["altitude"].is_null());

    // json and compact say "no fix" explicitly.
    let v: Value =
        serde_json::from_slice(&Encoding::Json.encode(&[reference_record(None)]).unwrap()).unwrap();
    assert!(v["gps"].is_null(), "{v}");
}

#[test]
fn legacy_reverse_speed_is_a_magnitude_and_failed_reads_are_null() {
    let mut r = reference_record(Some(fix()));
    r.scooter.speed_kmh = Some(-2.5);
    r.battery.voltage_v = None;
    let v: Value = serde_json::from_slice(&Encoding::Legacy.encode(&[r]).unwrap()).unwrap();
    assert_eq!(v["speed_kmh"].as_f64(), Some(2.5));
    assert!(v["battery_info"]["voltage"].is_null());
}

#[test]
fn json_v1_carries_units_sequence_and_record_id() {
    let r = reference_record(Some(fix()));
    let v: Value =
        serde_json::from_slice(&Encoding::Json.encode(std::slice::from_ref(&r)).unwrap()).unwrap();
    assert_eq!(v["v"], 1);
    assert_eq!(v["schema"], "m365.telemetry");
    assert_eq!(v["seq"], 42);
    assert_eq!(v["record_id"], r.record_id.to_string());
    assert_eq!(v["scooter_id"], "scooter-1");
    assert_eq!(v["ts"], "2025-06-01T12:00:00.250Z");
    assert_eq!(v["ts_source"], "system");
    assert_eq!(v["trip_distance_m"], 50);
    assert_eq!(v["battery"]["voltage_v"], 41.05);
    assert!((v["battery"]["power_w"].as_f64().unwrap() - 0.4105).abs() < 1e-9);
    assert_eq!(v["battery"]["cell_voltages_v"], Value::Null);
    assert_eq!(v["gps"]["age_ms"], 250);
    assert_eq!(v["gps"]["mode"], "3d");
    assert_eq!(v["gps"]["speed_kmh"], 18.0);
    let none: Value =
        serde_json::from_slice(&Encoding::Json.encode(&[reference_record(None)]).unwrap()).unwrap();
    assert_eq!(none["gps"], Value::Null);
}

/// Bytes one QoS 1 message costs on the wire besides its payload: fixed header (1 + up to 3
/// length bytes; 2 for small payloads), topic length and name, packet id, and the 4-byte PUBACK.
fn mqtt_overhead(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let len_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        _ => 3,
    };
    1 + len_bytes + 2 + topic.len() + 2 + 4
}

#[test]
fn compact_is_at_least_five_times_smaller_than_legacy_per_record() {
    let mut scooter = SyntheticScooter::new(
        "scooter-1",
        11,
        t("2025-06-01T12:00:00Z"),
        std::time::Duration::from_secs(1),
    );
    let records: Vec<Record> = (1..=50)
        .map(|i| Record::from_sample(scooter.next_sample(), i))
        .collect();
    let topic = "vehicle/1/realtime";
    let legacy: usize = records
        .iter()
        .map(|r| {
            let p = Encoding::Legacy
                .encode(std::slice::from_ref(r))
                .unwrap()
                .len();
            p + mqtt_overhead(topic, p)
        })
        .sum();
    let c = Encoding::Compact.encode(&records).unwrap().len();
    let compact = c + mqtt_overhead(topic, c);
    let ratio = legacy as f64 / compact as f64;
    println!("legacy {legacy} B vs compact {compact} B for 50 records: {ratio:.1}×");
    assert!(
        ratio >= 5.0,
        "legacy {legacy} B vs compact {compact} B: {ratio:.1}×"
    );
}

#[test]
fn compact_round_trips_and_describes_itself() {
    let mut scooter = SyntheticScooter::new(
        "scooter-1",
        5,
        t("2025-06-01T12:00:00Z"),
        std::time::Duration::from_millis(500),
    );
    let records: Vec<Record> = (100..130)
        .map(|i| Record::from_sample(scooter.next_sample(), i))
        .collect();
    let batch = compact::decode(&Encoding::Compact.encode(&records).unwrap()).unwrap();
    assert_eq!(batch.schema, "m365.compact");
    assert_eq!(batch.v, 1);
    assert_eq!(batch.n, records.len());
    assert_eq!(
        batch.record_ids,
        records.iter().map(|r| r.record_id).collect::<Vec<_>>()
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(batch.value("seq", i), Some(r.seq as f64));
        assert_eq!(
            batch.value("ts_ms", i),
            Some(r.timestamp.timestamp_millis() as f64)
        );
        assert_eq!(
            batch.value("odometer_m", i),
            r.scooter.odometer_m.map(f64::from)
        );
        let speed = batch.value("speed_kmh", i).unwrap();
        assert!((speed - r.scooter.speed_kmh.unwrap()).abs() <= 0.005 + 1e-9);
        match &r.gps {
            Some(g) => {
                let lat = batch.value("gps_lat_deg", i).unwrap();
                assert!((lat - g.fix.lat).abs() < 1e-7, "{lat} vs {}", g.fix.lat);
            }
            None => assert_eq!(batch.value("gps_lat_deg", i), None),
        }
        let cells = batch.cell_voltages_mv.get(i).unwrap();
        assert_eq!(cells.is_some(), r.battery.cell_voltages_v.is_some());
    }
    assert!(compact::decode(b"not zlib").is_err());
}

fn trip_ended() -> EventKind {
    EventKind::TripEnded {
        distance_m: 1200,
        duration_s: 300,
        energy_wh: Some(9.5),
        battery_used_percent: Some(3),
        avg_speed_kmh: 14.4,
        top_speed_kmh: 24.8,
    }
}

fn event_record(kind: EventKind, gps: Option<GpsReading>) -> Record {
    Record::from_sample(
        Sample::event("scooter-1", t("2025-06-01T12:05:00.000Z"), kind, gps),
        7,
    )
}

/// One of every event, with a fix or without.
fn every_event() -> Vec<Record> {
    let kinds = vec![
        EventKind::TripStarted {
            odometer_m: Some(2186),
            battery_percent: None,
        },
        trip_ended(),
        EventKind::BatteryLow {
            percent: 14,
            threshold: 15,
        },
        EventKind::ChargingStarted { percent: Some(40) },
        EventKind::ChargingStopped { percent: None },
        EventKind::ErrorRaised {
            code: 21,
            text: "battery communication".into(),
        },
        EventKind::ErrorCleared {
            code: 21,
            text: "battery communication".into(),
        },
        EventKind::WarningRaised {
            code: 7,
            text: "w".into(),
        },
        EventKind::WarningCleared {
            code: 7,
            text: "w".into(),
        },
        EventKind::Locked,
        EventKind::Unlocked,
        EventKind::MovedWhileLocked {
            evidence: MoveEvidence::Gps,
            distance_m: Some(42.5),
            speed_kmh: None,
        },
        EventKind::ConnectionLost,
        EventKind::ConnectionRestored { offline_s: 90 },
    ];
    assert_eq!(
        kinds.len(),
        EventKind::NAMES.len(),
        "every event is covered"
    );
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| event_record(k, (i % 2 == 0).then(fix)))
        .collect()
}

#[test]
fn json_events_carry_identity_time_place_and_data_and_read_back() {
    let r = event_record(trip_ended(), Some(fix()));
    let payload = Encoding::Json.encode_event(&r).unwrap();
    let v: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        keys(&v),
        vec![
            "data",
            "event",
            "gps",
            "record_id",
            "schema",
            "scooter_id",
            "seq",
            "ts",
            "ts_source",
            "v"
        ]
    );
    assert_eq!(v["v"], 1);
    assert_eq!(v["schema"], "m365.event");
    assert_eq!(v["event"], "trip_ended");
    assert_eq!(v["record_id"], r.record_id.to_string());
    assert_eq!(v["scooter_id"], "scooter-1");
    assert_eq!(v["seq"], 7);
    assert_eq!(v["ts"], "2025-06-01T12:05:00.000Z");
    assert_eq!(v["ts_source"], "system");
    assert_eq!(v["gps"]["lat_deg"], 43.328_933_683);
    assert_eq!(v["gps"]["lon_deg"], -8.408_309_566);
    assert_eq!(v["data"]["distance_m"], 1200);
    assert_eq!(v["data"]["energy_wh"], 9.5);
    assert!(v["data"].get("type").is_none(), "the name is in `event`");
    let back: JsonEventV1 = serde_json::from_slice(&payload).unwrap();
    assert_eq!(back.kind().unwrap(), trip_ended());
    assert_eq!(back.record_id, r.record_id);

    for r in every_event() {
        let payload = Encoding::Json.encode_event(&r).unwrap();
        let back: JsonEventV1 = serde_json::from_slice(&payload).unwrap();
        assert_eq!(Some(back.kind().unwrap()), r.event, "{back:?}");
        assert_eq!(back.gps.is_some(), r.gps.is_some());
    }
    let locked: Value = serde_json::from_slice(
        &Encoding::Json
            .encode_event(&event_record(EventKind::Locked, None))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(locked["data"], serde_json::json!({}));
    assert_eq!(locked["gps"], Value::Null);
}

#[test]
fn legacy_events_are_flat_objects_in_the_earlier_style_and_read_back() {
    let r = event_record(trip_ended(), Some(fix()));
    let payload = Encoding::Legacy.encode_event(&r).unwrap();
    let v: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        keys(&v),
        vec![
            "avg_speed_kmh",
            "battery_used_percent",
            "distance_m",
            "duration_s",
            "energy_wh",
            "event",
            "latitude",
            "longitude",
            "timestamp",
            "top_speed_kmh"
        ]
    );
    assert!(v.as_object().unwrap().values().all(|x| !x.is_object()));
    assert_eq!(v["event"], "trip_ended");
    assert_eq!(v["timestamp"], "2025-06-01T12:05:00.000+00:00");
    assert_eq!(v["latitude"], 43.328_933_683);
    let back: LegacyEvent = serde_json::from_slice(&payload).unwrap();
    assert_eq!(back.kind().unwrap(), trip_ended());

    let no_fix: Value = serde_json::from_slice(
        &Encoding::Legacy
            .encode_event(&event_record(EventKind::Unlocked, None))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(keys(&no_fix), vec!["event", "timestamp"], "{no_fix}");
    for r in every_event() {
        let back: LegacyEvent =
            serde_json::from_slice(&Encoding::Legacy.encode_event(&r).unwrap()).unwrap();
        assert_eq!(Some(back.kind().unwrap()), r.event);
    }
}

#[test]
fn compact_events_are_the_json_event_deflated() {
    for r in every_event() {
        let payload = Encoding::Compact.encode_event(&r).unwrap();
        let back = compact::decode_event(&payload).unwrap();
        let json: JsonEventV1 =
            serde_json::from_slice(&Encoding::Json.encode_event(&r).unwrap()).unwrap();
        assert_eq!(back, json);
        assert_eq!(Some(back.kind().unwrap()), r.event);
    }
    assert_eq!(Encoding::Compact.content_type(), "application/zlib");
    assert!(compact::decode_event(b"not zlib").is_err());
}

#[test]
fn events_and_telemetry_never_share_a_message() {
    let telemetry = reference_record(Some(fix()));
    let event = event_record(EventKind::Locked, None);
    for encoding in [Encoding::Legacy, Encoding::Json, Encoding::Compact] {
        assert!(matches!(
            encoding.encode_event(&telemetry),
            Err(EncodeError::NotAnEvent)
        ));
        assert!(
            matches!(
                encoding.encode(&[telemetry.clone(), event.clone()]),
                Err(EncodeError::EventInTelemetry)
            ) || encoding.max_batch() == 1
        );
        assert!(matches!(
            encoding.encode(std::slice::from_ref(&event)),
            Err(EncodeError::EventInTelemetry)
        ));
    }
}
