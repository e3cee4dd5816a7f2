//! The database side against a real PostgreSQL: migrations (once, with and without PostGIS,
//! adopting an earlier server's tables), idempotent batch writes, the earlier tables' values and
//! units, rows skipped one table at a time, dead letters, status events and ride events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{TimeZone, Utc};
use common::TestDb;
use m365_ingest::config::{self, PostgisMode};
use m365_ingest::decode::Event;
use m365_ingest::schema::LocationStorage;
use m365_ingest::store::{Content, Item, Store};
use m365_ingest::topic::{TopicKind, TopicMatch};
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{Encoding, EventKind, Record, Sample};

fn settings(db: &TestDb, postgis: PostgisMode) -> config::DatabaseSettings {
    common::config(&db.url(), 1883, 100, postgis).database
}

fn records(id: &str, n: usize) -> Vec<Record> {
    let mut s = SyntheticScooter::new(
        id,
        3,
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        std::time::Duration::from_millis(500),
    );
    (0..n)
        .map(|i| Record::from_sample(s.next_sample(), i as u64 + 1))
        .collect()
}

/// Items as the service builds them from `records` published in `encoding` on `topic`.
fn items(records: &[Record], encoding: Encoding, scooter: &str) -> Vec<Item> {
    let topic = format!("m365/{scooter}/telemetry");
    let m = TopicMatch {
        kind: TopicKind::Telemetry,
        scooter_id: scooter.into(),
    };
    let chunks: Vec<&[Record]> = match encoding {
        Encoding::Compact => records.chunks(50).collect(),
        _ => records.chunks(1).collect(),
    };
    chunks
        .into_iter()
        .map(|c| {
            let payload = encoding.encode(c).unwrap();
            let content = match m365_ingest::decode::decode(&m, None, &payload).unwrap() {
                m365_ingest::decode::Decoded::Records(r) => Content::Records(r),
                other => panic!("{other:?}"),
            };
            Item {
                topic: topic.clone(),
                content_type: None,
                content,
            }
        })
        .collect()
}

#[tokio::test]
async fn migrations_run_once_and_keep_the_earlier_schema() {
    let Some(db) = TestDb::create("migrations").await else {
        return;
    };
    let (_s, info) = Store::open(&settings(&db, PostgisMode::Off), "w1")
        .await
        .unwrap();
    assert_eq!(info.applied, vec![1, 2, 3]);
    assert_eq!(info.location, LocationStorage::Point);
    assert!(!info.hypertables, "no TimescaleDB on this server");
    let (_s2, again) = Store::open(&settings(&db, PostgisMode::Off), "w2")
        .await
        .unwrap();
    assert!(again.applied.is_empty());
    // The earlier server's column comments and constraints.
    let comment: String = db
        .client
        .query_one(
            "SELECT col_description('general_info'::regclass, \
             (SELECT attnum FROM pg_attribute WHERE attrelid = 'general_info'::regclass \
              AND attname = 'speed_kmh'))",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, "Speed of the scooter in km/h");
    let refused = db
        .client
        .execute(
            "INSERT INTO battery_info (time, capacity, percent, voltage, current, temp1, temp2) \
             VALUES (now(), 1, 101, 40, 1, 20, 20)",
            &[],
        )
        .await;
    assert!(refused.is_err(), "percent <= 100 is enforced");
}

#[tokio::test]
async fn postgis_auto_stores_geography_when_available() {
    let Some(db) = TestDb::create("postgis").await else {
        return;
    };
    if !db.postgis_available().await {
        assert!(
            !m365_testkit::in_ci(),
            "PostGIS is not installed and CI is set (.ci/run installs it)"
        );
        println!("postgis_auto: PostGIS not installed; not run");
        return;
    }
    let (mut s, info) = Store::open(&settings(&db, PostgisMode::Auto), "w1")
        .await
        .unwrap();
    assert_eq!(info.location, LocationStorage::Geography);
    let rs = records("geo", 10);
    s.write(&items(&rs, Encoding::Json, "geo")).await.unwrap();
    let with_fix: Vec<&Record> = rs.iter().filter(|r| r.gps.is_some()).collect();
    let row = db
        .client
        .query_one(
            "SELECT ST_Y(location::geometry), ST_X(location::geometry), altitude::float8, \
             gps_speed::float8 FROM location_info WHERE time = $1",
            &[&with_fix[0].timestamp],
        )
        .await
        .unwrap();
    let fix = &with_fix[0].gps.as_ref().unwrap().fix;
    assert!((row.get::<_, f64>(0) - fix.lat).abs() < 1e-9);
    assert!((row.get::<_, f64>(1) - fix.lon).abs() < 1e-9);
    assert!((row.get::<_, f64>(2) - fix.alt_msl_m.unwrap()).abs() <= 0.005 + 1e-9);
    assert!(
        (row.get::<_, f64>(3) - fix.speed_kmh().unwrap()).abs() <= 0.005 + 1e-9,
        "km/h"
    );
}

#[tokio::test]
async fn writes_are_idempotent_and_fill_the_earlier_tables_in_their_units() {
    let Some(db) = TestDb::create("idempotent").await else {
        return;
    };
    let (mut s, _) = Store::open(&settings(&db, PostgisMode::Off), "w1")
        .await
        .unwrap();
    // 100 samples: five stretches of 20, the fifth without a fix.
    let rs = records("s1", 100);
    let no_fix = rs.iter().filter(|r| r.gps.is_none()).count() as i64;
    assert!(no_fix > 0);
    for encoding in [Encoding::Json, Encoding::Compact] {
        let batch = items(&rs, encoding, "s1");
        let o = s.write(&batch).await.unwrap();
        if encoding == Encoding::Json {
            assert_eq!((o.inserted, o.duplicates), (100, 0));
        } else {
            assert_eq!((o.inserted, o.duplicates), (0, 100), "same record ids");
        }
        let again = s.write(&batch).await.unwrap();
        assert_eq!((again.inserted, again.duplicates), (0, 100));
    }
    assert_eq!(db.count("SELECT count(*) FROM m365_records").await, 100);
    assert_eq!(db.count("SELECT count(*) FROM general_info").await, 100);
    assert_eq!(db.count("SELECT count(*) FROM battery_info").await, 100);
    assert_eq!(
        db.count("SELECT count(*) FROM location_info").await,
        100 - no_fix,
        "a record without a fix keeps its speed and battery rows only"
    );
    // Values and units, compared with what the client measured.
    for r in rs.iter().step_by(7) {
        let g = db
            .client
            .query_one(
                "SELECT speed_kmh::float8, trip_distance_m, uptime_sec, total_distance_m, \
                 est_distance_left_km::float8, frame_temp::float8 FROM general_info WHERE time = $1",
                &[&r.timestamp],
            )
            .await
            .unwrap();
        let sc = &r.scooter;
        assert!((g.get::<_, f64>(0) - sc.speed_kmh.unwrap().abs()).abs() <= 0.005 + 1e-9);
        assert_eq!(
            g.get::<_, i32>(1) as u32,
            sc.trip_distance_m.unwrap(),
            "metres"
        );
        assert_eq!(g.get::<_, i32>(2) as u32, sc.uptime_s.unwrap());
        assert_eq!(g.get::<_, i32>(3) as u32, sc.odometer_m.unwrap());
        assert!((g.get::<_, f64>(4) - sc.range_km.unwrap()).abs() <= 0.005 + 1e-9);
        assert!((g.get::<_, f64>(5) - sc.frame_temp_c.unwrap()).abs() <= 0.005 + 1e-9);
        let b = db
            .client
            .query_one(
                "SELECT capacity, percent, voltage::float8, current::float8, power::float8, \
                 temp1::float8, temp2::float8 FROM battery_info WHERE time = $1",
                &[&r.timestamp],
            )
            .await
            .unwrap();
        let bt = &r.battery;
        assert_eq!(b.get::<_, i16>(0) as u32, bt.remaining_mah.unwrap());
        assert_eq!(b.get::<_, i16>(1) as u8, bt.percent.unwrap());
        assert!((b.get::<_, f64>(2) - bt.voltage_v.unwrap()).abs() <= 0.005 + 1e-9);
        assert!((b.get::<_, f64>(3) - bt.current_a.unwrap()).abs() <= 0.0005 + 1e-9);
        let power = bt.voltage_v.unwrap() * bt.current_a.unwrap();
        assert!((b.get::<_, f64>(4) - power).abs() <= 0.01, "W = V × A");
        assert_eq!(b.get::<_, f64>(5), f64::from(bt.temp1_c.unwrap()), "°C");
        assert_eq!(b.get::<_, f64>(6), f64::from(bt.temp2_c.unwrap()));
        let m = db
            .client
            .query_one(
                "SELECT scooter_id, seq, encoding, ts_source, gps_age_ms, cell_voltages_v \
                 FROM m365_records WHERE record_id = $1",
                &[&r.record_id],
            )
            .await
            .unwrap();
        assert_eq!(m.get::<_, String>(0), "s1");
        assert_eq!(m.get::<_, i64>(1) as u64, r.seq);
        assert_eq!(m.get::<_, String>(2), "json");
        assert_eq!(m.get::<_, String>(3), "system");
        assert_eq!(
            m.get::<_, Option<i64>>(4).map(|a| a as u64),
            r.gps.as_ref().map(|g| g.age_ms)
        );
        let cells: Option<Vec<f32>> = m.get(5);
        assert_eq!(
            cells.map(|c| c.len()),
            bt.cell_voltages_v.as_ref().map(|c| c.len())
        );
    }
}

#[tokio::test]
async fn legacy_messages_are_keyed_by_topic_and_time() {
    let Some(db) = TestDb::create("legacy").await else {
        return;
    };
    let (mut s, _) = Store::open(&settings(&db, PostgisMode::Off), "w1")
        .await
        .unwrap();
    let rs = records("ignored", 30);
    let batch = items(&rs, Encoding::Legacy, "abc");
    assert_eq!(s.write(&batch).await.unwrap().inserted, 30);
    assert_eq!(s.write(&batch).await.unwrap().duplicates, 30);
    assert_eq!(
        db.count("SELECT count(*) FROM m365_records WHERE key_derived AND scooter_id = 'abc'")
            .await,
        30
    );
    assert_eq!(db.count("SELECT count(*) FROM general_info").await, 30);
}

#[tokio::test]
async fn a_bad_reading_costs_only_its_own_table() {
    let Some(db) = TestDb::create("bad_reading").await else {
        return;
    };
    let (mut s, _) = Store::open(&settings(&db, PostgisMode::Off), "w1")
        .await
        .unwrap();
    let rs = records("s1", 3);
    let mut batch = items(&rs, Encoding::Json, "s1");
    if let Content::Records(r) = &mut batch[0].content {
        r[0].scooter.speed_kmh = Some(142.0); // DECIMAL(4,2) would overflow
    }
    if let Content::Records(r) = &mut batch[1].content {
        r[0].battery.voltage_v = None; // a failed read
    }
    let o = s.write(&batch).await.unwrap();
    assert_eq!(o.inserted, 3);
    assert_eq!(o.skipped_rows, 2);
    assert_eq!(db.count("SELECT count(*) FROM m365_records").await, 3);
    assert_eq!(db.count("SELECT count(*) FROM general_info").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM battery_info").await, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM m365_records WHERE speed_kmh = 142")
            .await,
        1,
        "the full record keeps the value"
    );
}

#[tokio::test]
async fn dead_letters_and_events_are_stored_once() {
    let Some(db) = TestDb::create("dead_events").await else {
        return;
    };
    let (mut s, _) = Store::open(&settings(&db, PostgisMode::Off), "w1")
        .await
        .unwrap();
    let dead = Item {
        topic: "m365/x/telemetry".into(),
        content_type: None,
        content: Content::Dead {
            reason: "neither JSON nor zlib".into(),
            payload: b"garbage".to_vec(),
        },
    };
    let event = |kind, value: Option<&str>, ts: Option<&str>| Item {
        topic: "m365/x/any".into(),
        content_type: None,
        content: Content::Event(Event {
            scooter_id: "x".into(),
            kind,
            value: value.map(str::to_owned),
            time: ts.map(|t| t.parse().unwrap()),
            detail: ts.map(|t| serde_json::json!({"v": 1, "ts": t})),
        }),
    };
    let batch = vec![
        dead.clone(),
        event(TopicKind::Availability, Some("online"), None),
        event(TopicKind::Status, None, Some("2025-06-01T12:00:00Z")),
    ];
    let o = s.write(&batch).await.unwrap();
    assert_eq!((o.dead_letters, o.events), (1, 2));
    // Redelivered: nothing new.
    let o = s.write(&batch).await.unwrap();
    assert_eq!(o.events, 0);
    assert_eq!(db.count("SELECT count(*) FROM m365_dead_letters").await, 1);
    s.write(&[event(TopicKind::Availability, Some("offline"), None)])
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM m365_events WHERE kind = 'availability'")
            .await,
        2,
        "online, offline"
    );
    let row = db
        .client
        .query_one(
            "SELECT availability, last_status->>'ts' FROM m365_scooters WHERE scooter_id = 'x'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "offline");
    assert_eq!(row.get::<_, String>(1), "2025-06-01T12:00:00Z");
    let reason: String = db
        .client
        .query_one("SELECT reason FROM m365_dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    assert!(reason.contains("neither JSON"));
}

#[tokio::test]
async fn an_earlier_server_database_is_adopted_with_its_rows() {
    let Some(db) = TestDb::create("adopt").await else {
        return;
    };
    // The earlier server's tables (without TimescaleDB), with one row each.
    db.client
        .batch_execute(
            "CREATE TABLE general_info (time timestamptz NOT NULL, speed_kmh DECIMAL(4,2) NOT NULL \
             CHECK (speed_kmh >= 0), trip_distance_m INTEGER NOT NULL CHECK (trip_distance_m >= 0), \
             uptime_sec INTEGER NOT NULL CHECK (uptime_sec >= 0), total_distance_m INTEGER NOT NULL \
             CHECK (total_distance_m >= 0), est_distance_left_km DECIMAL(5,2) NOT NULL CHECK \
             (est_distance_left_km >= 0), frame_temp DECIMAL(4,2) NOT NULL); \
             INSERT INTO general_info VALUES (now(), 10, 5, 60, 1000, 20, 30); \
             CREATE TABLE location_info (time timestamptz NOT NULL, location point NOT NULL, \
             altitude DECIMAL(6,2) NOT NULL, gps_speed DECIMAL(4,2) NOT NULL);",
        )
        .await
        .unwrap();
    let (mut s, info) = Store::open(&settings(&db, PostgisMode::Auto), "w1")
        .await
        .unwrap();
    assert_eq!(info.location, LocationStorage::Point, "the table decides");
    s.write(&items(&records("s", 5), Encoding::Json, "s"))
        .await
        .unwrap();
    assert_eq!(db.count("SELECT count(*) FROM general_info").await, 6);
}

/// Items as the service builds them from event records published in `encoding`.
fn ride_items(events: &[Record], encoding: Encoding, scooter: &str) -> Vec<Item> {
    let topic = format!("m365/{scooter}/events");
    let m = TopicMatch {
        kind: TopicKind::RideEvent,
        scooter_id: scooter.into(),
    };
    events
        .iter()
        .map(|r| {
            let payload = encoding.encode_event(r).unwrap();
            let content = match m365_ingest::decode::decode(&m, None, &payload).unwrap() {
                m365_ingest::decode::Decoded::RideEvent(e) => Content::RideEvent(e),
                other => panic!("{other:?}"),
            };
            Item {
                topic: topic.clone(),
                content_type: None,
                content,
            }
        })
        .collect()
}

#[tokio::test]
async fn ride_events_in_every_encoding_are_stored_once_by_record_id() {
    let Some(db) = TestDb::create("ride_events").await else {
        return;
    };
    let (mut s, _) = Store::open(&settings(&db, PostgisMode::Off), "w1")
        .await
        .unwrap();
    let fix = records("r", 1).remove(0).gps.unwrap();
    let t0 = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    let events: Vec<Record> = [
        EventKind::Unlocked,
        EventKind::TripEnded {
            distance_m: 1200,
            duration_s: 300,
            energy_wh: Some(9.5),
            battery_used_percent: Some(3),
            avg_speed_kmh: 14.4,
            top_speed_kmh: 24.8,
        },
        EventKind::Locked,
    ]
    .into_iter()
    .enumerate()
    .map(|(i, kind)| {
        let t = t0 + chrono::Duration::seconds(i as i64);
        Record::from_sample(Sample::event("r", t, kind, Some(fix.clone())), i as u64 + 1)
    })
    .collect();
    // The same events in the three encodings, each delivered twice: json and compact carry the
    // record id and are one event each; legacy is keyed by scooter, name and time, and its
    // rows coincide with those (same scooter, kind and time): stored once as well.
    for encoding in [Encoding::Json, Encoding::Compact, Encoding::Legacy] {
        let batch = ride_items(&events, encoding, "r");
        let first = s.write(&batch).await.unwrap();
        let again = s.write(&batch).await.unwrap();
        assert_eq!(again.events, 0, "{encoding:?}: a redelivery stores nothing");
        if encoding == Encoding::Json {
            assert_eq!(first.events, 3);
        }
    }
    assert_eq!(
        db.count("SELECT count(*) FROM m365_events WHERE scooter_id = 'r'")
            .await,
        3
    );
    let row = db
        .client
        .query_one(
            "SELECT kind, record_id, detail->'data'->>'distance_m', detail->>'seq', \
             (detail->'gps'->>'lat_deg')::float8 \
             FROM m365_events WHERE kind = 'trip_ended'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "trip_ended");
    assert_eq!(row.get::<_, uuid::Uuid>(1), events[1].record_id);
    assert_eq!(row.get::<_, String>(2), "1200");
    assert_eq!(row.get::<_, String>(3), "2");
    assert!((row.get::<_, f64>(4) - fix.fix.lat).abs() < 1e-9);

    // Legacy events of a scooter seen only that way are stored once by their derived key.
    let legacy = ride_items(&events, Encoding::Legacy, "legacy-only");
    assert_eq!(s.write(&legacy).await.unwrap().events, 3);
    assert_eq!(s.write(&legacy).await.unwrap().events, 0);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM m365_events WHERE scooter_id = 'legacy-only' \
                  AND detail->>'key' = 'derived'"
        )
        .await,
        3
    );
}
