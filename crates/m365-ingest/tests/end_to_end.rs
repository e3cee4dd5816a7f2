//! The ingest between a real broker (mosquitto) and a real PostgreSQL: the client's own
//! pipeline publishing synthetic samples and ride events in all three encodings, two workers
//! sharing one subscription, and bad input that must neither crash the worker nor block what
//! follows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use common::{Publisher, TestDb, Worker, wait_count};
use m365_ingest::config::PostgisMode;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{
    Encoding, EventKind, MqttConfig, MqttProtocol, OutputConfig, PipelineConfig, Record, Sample,
    SpoolConfig, SyncPolicy,
};
use m365_testkit::broker::{Broker, BrokerOptions, require_mosquitto};

const WAIT: Duration = Duration::from_secs(60);

fn start_time(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, hour, 0, 0).unwrap()
}

/// The client's pipeline configuration: one output in `encoding` on `m365/<id>/telemetry`.
fn pipeline_config(spool: &Path, port: u16, scooter: &str, encoding: Encoding) -> PipelineConfig {
    PipelineConfig {
        spool: SpoolConfig {
            path: spool.join(format!("{scooter}.sqlite")),
            sync: SyncPolicy::Normal,
            commit_every: 10,
            commit_interval_ms: 50,
            ..SpoolConfig::default()
        },
        mqtt: MqttConfig {
            broker: format!("tcp://127.0.0.1:{port}"),
            protocol: MqttProtocol::V5,
            client: m365_testkit::broker::client_id(scooter),
            reconnect_min: 0.1,
            reconnect_max: 0.5,
            connect_timeout: 2,
            keep_alive: 5,
            max_in_flight: 16,
            live_reserved: 4,
            outputs: vec![OutputConfig {
                topic: format!("m365/{scooter}/telemetry"),
                encoding,
                batch: (encoding == Encoding::Compact).then_some(20),
                linger_ms: Some(200),
                legacy_no_fix: Default::default(),
            }],
            ..MqttConfig::default()
        },
        channel_capacity: 256,
    }
}

fn close(a: f64, b: f64, eps: f64) -> bool {
    (a - b).abs() <= eps + 1e-9
}

#[tokio::test]
async fn the_client_pipeline_in_all_three_encodings_lands_exactly_once() {
    if !require_mosquitto("pipeline into the ingest") {
        return;
    }
    let Some(db) = TestDb::create("pipeline").await else {
        return;
    };
    let broker = Broker::start(BrokerOptions::default()).await;
    let worker = Worker::start(
        common::config(&db.url(), broker.port, 100, PostgisMode::Auto),
        "ingest-a",
    )
    .await;
    let spool = tempfile::tempdir().unwrap();
    const N: usize = 100;
    let mut all: Vec<(String, Encoding, Vec<Sample>)> = Vec::new();
    let mut handles = Vec::new();
    for (i, encoding) in [Encoding::Legacy, Encoding::Json, Encoding::Compact]
        .into_iter()
        .enumerate()
    {
        let id = format!("enc-{}", encoding.name());
        // Recent times: the client's spool drops records older than its `max_age`.
        let start = Utc::now() - chrono::Duration::hours(3 - i as i64);
        let start = Utc.timestamp_millis_opt(start.timestamp_millis()).unwrap();
        let mut sc = SyntheticScooter::new(&id, i as u64, start, Duration::from_millis(250));
        let samples: Vec<Sample> = (0..N).map(|_| sc.next_sample()).collect();
        let (handle, task) = m365_pipeline::spawn(
            pipeline_config(spool.path(), broker.port, &id, encoding),
            &id,
        )
        .unwrap();
        for s in &samples {
            handle.submit(s.clone()).await.unwrap();
        }
        handles.push((handle, task));
        all.push((id, encoding, samples));
    }
    let total = (3 * N) as i64;
    let got = wait_count(&db, "SELECT count(*) FROM m365_records", total, WAIT).await;
    if got != total {
        let dead: Vec<String> = db
            .client
            .query("SELECT topic || ': ' || reason FROM m365_dead_letters", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let per: Vec<(String, i64)> = db
            .client
            .query(
                "SELECT encoding, count(*) FROM m365_records GROUP BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        panic!("{got} of {total} records; per encoding {per:?}; dead letters {dead:?}");
    }
    for (id, encoding, samples) in &all {
        let n = db
            .client
            .query_one(
                "SELECT count(*), count(DISTINCT record_id), count(DISTINCT seq), min(encoding) \
                 FROM m365_records WHERE scooter_id = $1",
                &[id],
            )
            .await
            .unwrap();
        assert_eq!(n.get::<_, i64>(0), N as i64, "{id}");
        assert_eq!(n.get::<_, i64>(1), N as i64, "{id}");
        assert_eq!(n.get::<_, String>(3), encoding.name());
        if *encoding != Encoding::Legacy {
            assert_eq!(n.get::<_, i64>(2), N as i64, "{id}: every seq once");
        }
        // The earlier tables, in the units their column comments promise.
        for s in samples.iter().step_by(5) {
            let t = s.system_time;
            let g = db
                .client
                .query_one(
                    "SELECT speed_kmh::float8, trip_distance_m, total_distance_m, frame_temp::float8 \
                     FROM general_info WHERE time = $1",
                    &[&t],
                )
                .await
                .unwrap_or_else(|e| panic!("{id} at {t}: {e}"));
            assert!(
                close(g.get(0), s.scooter.speed_kmh.unwrap().abs(), 0.005),
                "km/h"
            );
            assert_eq!(
                g.get::<_, i32>(1) as u32,
                s.scooter.trip_distance_m.unwrap(),
                "m"
            );
            assert_eq!(
                g.get::<_, i32>(2) as u32,
                s.scooter.odometer_m.unwrap(),
                "m"
            );
            assert!(close(g.get(3), s.scooter.frame_temp_c.unwrap(), 0.05), "°C");
            let b = db
                .client
                .query_one(
                    "SELECT capacity, voltage::float8, current::float8, temp1::float8 \
                     FROM battery_info WHERE time = $1",
                    &[&t],
                )
                .await
                .unwrap();
            assert_eq!(
                b.get::<_, i16>(0) as u32,
                s.battery.remaining_mah.unwrap(),
                "mAh"
            );
            assert!(close(b.get(1), s.battery.voltage_v.unwrap(), 0.005), "V");
            assert!(close(b.get(2), s.battery.current_a.unwrap(), 0.005), "A");
            assert_eq!(
                b.get::<_, f64>(3),
                f64::from(s.battery.temp1_c.unwrap()),
                "°C"
            );
            let loc = db
                .client
                .query_opt(
                    "SELECT gps_speed::float8, altitude::float8 FROM location_info WHERE time = $1",
                    &[&t],
                )
                .await
                .unwrap();
            match (&s.gps, loc) {
                (Some(g), Some(row)) => {
                    assert!(close(row.get(0), g.fix.speed_kmh().unwrap(), 0.01), "km/h");
                    assert!(close(row.get(1), g.fix.alt_msl_m.unwrap(), 0.05), "m");
                }
                (None, None) => {}
                (gps, row) => panic!("{id} at {t}: fix {:?}, row {:?}", gps.is_some(), row),
            }
        }
    }
    let with_fix: i64 = all
        .iter()
        .map(|(_, _, s)| s.iter().filter(|s| s.gps.is_some()).count() as i64)
        .sum();
    assert!(
        with_fix < total,
        "the samples include records without a fix"
    );
    assert_eq!(db.count("SELECT count(*) FROM general_info").await, total);
    assert_eq!(db.count("SELECT count(*) FROM battery_info").await, total);
    assert_eq!(
        db.count("SELECT count(*) FROM location_info").await,
        with_fix
    );
    // Availability and status.
    assert_eq!(
        wait_count(
            &db,
            "SELECT count(*) FROM m365_scooters WHERE availability = 'online' \
             AND last_status IS NOT NULL",
            3,
            WAIT
        )
        .await,
        3
    );
    for (handle, task) in handles {
        drop(handle);
        task.await.unwrap();
    }
    assert_eq!(
        wait_count(
            &db,
            "SELECT count(*) FROM m365_events WHERE kind = 'availability' AND value = 'offline'",
            3,
            WAIT
        )
        .await,
        3
    );
    let totals = worker.stop().await;
    assert_eq!(totals.outcome.inserted, total as u64);
    assert_eq!(totals.outcome.dead_letters, 0);
}

#[tokio::test]
async fn ride_events_from_the_client_pipeline_land_once_in_every_encoding() {
    if !require_mosquitto("ride events into the ingest") {
        return;
    }
    let Some(db) = TestDb::create("ride_events_e2e").await else {
        return;
    };
    let broker = Broker::start(BrokerOptions::default()).await;
    let worker = Worker::start(
        common::config(&db.url(), broker.port, 100, PostgisMode::Off),
        "ingest-events",
    )
    .await;
    let spool = tempfile::tempdir().unwrap();
    const EVENTS: usize = 5;
    let mut handles = Vec::new();
    for (i, encoding) in [Encoding::Legacy, Encoding::Json, Encoding::Compact]
        .into_iter()
        .enumerate()
    {
        let id = format!("ev-{}", encoding.name());
        let mut cfg = pipeline_config(spool.path(), broker.port, &id, encoding);
        cfg.mqtt.events_topic = Some("m365/{scooter_id}/events".into());
        let (handle, task) = m365_pipeline::spawn(cfg, &id).unwrap();
        let start = Utc::now() - chrono::Duration::hours(3 - i as i64);
        let start = Utc.timestamp_millis_opt(start.timestamp_millis()).unwrap();
        let mut sc = SyntheticScooter::new(&id, i as u64, start, Duration::from_millis(250));
        for n in 0..EVENTS {
            let sample = sc.next_sample();
            let at = sample.system_time;
            handle.submit(sample).await.unwrap();
            let kind = EventKind::BatteryLow {
                percent: 20 - n as u8,
                threshold: 20,
            };
            handle
                .submit(Sample::event(&id, at, kind, None))
                .await
                .unwrap();
        }
        handles.push((handle, task));
    }
    let want = (3 * EVENTS) as i64;
    let got = wait_count(
        &db,
        "SELECT count(*) FROM m365_events WHERE kind = 'battery_low'",
        want,
        WAIT,
    )
    .await;
    assert_eq!(got, want, "every event of every encoding");
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_records", want, WAIT).await,
        want,
        "the telemetry beside them"
    );
    for (handle, task) in handles {
        drop(handle);
        task.await.unwrap();
    }
    let totals = worker.stop().await;
    assert_eq!(totals.outcome.dead_letters, 0);
    for encoding in [Encoding::Legacy, Encoding::Json, Encoding::Compact] {
        let row = db
            .client
            .query_one(
                "SELECT count(*), count(DISTINCT record_id), min((detail->'data'->>'percent')::int) \
                 FROM m365_events WHERE kind = 'battery_low' AND scooter_id = $1 \
                 AND detail->>'encoding' = $2",
                &[&format!("ev-{}", encoding.name()), &encoding.name()],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i64>(0), EVENTS as i64, "{encoding:?}");
        assert_eq!(row.get::<_, i64>(1), EVENTS as i64, "{encoding:?}");
        assert_eq!(row.get::<_, i32>(2), 16, "{encoding:?}");
    }
}

/// `n` json messages of `scooters` scooters.
fn json_messages(scooters: usize, n: usize, hour: u32) -> (Vec<Record>, Vec<(String, Vec<u8>)>) {
    let mut recs = Vec::new();
    let mut msgs = Vec::new();
    for k in 0..scooters {
        let id = format!("s{k}");
        let mut sc = SyntheticScooter::new(
            &id,
            k as u64,
            start_time(hour + k as u32),
            Duration::from_millis(100),
        );
        for i in 0..n {
            let r = Record::from_sample(sc.next_sample(), i as u64 + 1);
            msgs.push((
                format!("m365/{id}/telemetry"),
                Encoding::Json.encode(std::slice::from_ref(&r)).unwrap(),
            ));
            recs.push(r);
        }
    }
    (recs, msgs)
}

#[tokio::test]
async fn two_workers_share_one_subscription_without_postgis() {
    if !require_mosquitto("shared subscription") {
        return;
    }
    let Some(db) = TestDb::create("shared").await else {
        return;
    };
    let broker = Broker::start(BrokerOptions::default()).await;
    let cfg = common::config(&db.url(), broker.port, 20, PostgisMode::Off);
    let a = Worker::start(cfg.clone(), "share-a").await;
    let b = Worker::start(cfg, "share-b").await;
    let mut publisher = Publisher::connect(broker.port).await;
    let (recs, msgs) = json_messages(4, 100, 1);
    publisher
        .send_many(
            msgs.into_iter()
                .map(|(t, p)| (t, p, Some("application/json"))),
        )
        .await;
    let total = recs.len() as i64;
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_records", total, WAIT).await,
        total
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT worker) FROM m365_records")
            .await,
        2,
        "both workers took a share"
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT record_id) FROM m365_records")
            .await,
        total
    );
    assert_eq!(db.count("SELECT count(*) FROM general_info").await, total);
    let ty: String = db
        .client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'location_info'::regclass AND attname = 'location'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "point");
    let with_fix = recs.iter().filter(|r| r.gps.is_some()).collect::<Vec<_>>();
    let r = with_fix[3];
    let row = db
        .client
        .query_one(
            "SELECT location[0], location[1] FROM location_info WHERE time = $1",
            &[&r.timestamp],
        )
        .await
        .unwrap();
    let fix = &r.gps.as_ref().unwrap().fix;
    assert_eq!(
        (row.get::<_, f64>(0), row.get::<_, f64>(1)),
        (fix.lon, fix.lat),
        "x = lon, y = lat"
    );
    let ta = a.stop().await;
    let tb = b.stop().await;
    assert_eq!(ta.acknowledged + tb.acknowledged, total as u64);
    assert!(ta.acknowledged > 0 && tb.acknowledged > 0);
}

#[tokio::test]
async fn bad_input_is_dead_lettered_acknowledged_and_blocks_nothing() {
    if !require_mosquitto("bad input") {
        return;
    }
    let Some(db) = TestDb::create("bad_input").await else {
        return;
    };
    let broker = Broker::start(BrokerOptions {
        persistence: true,
        ..Default::default()
    })
    .await;
    let cfg = common::config(&db.url(), broker.port, 50, PostgisMode::Off);
    let worker = Worker::start(cfg.clone(), "bad-a").await;
    // A constraint the ingest's own checks do not know: the database refuses such a record,
    // which must cost that message only.
    db.client
        .batch_execute(
            "ALTER TABLE m365_records ADD CONSTRAINT test_speed \
             CHECK (speed_kmh IS NULL OR speed_kmh > -1000)",
        )
        .await
        .unwrap();
    let mut publisher = Publisher::connect(broker.port).await;
    let (mut recs, _) = json_messages(1, 10, 3);
    recs[4].scooter.speed_kmh = Some(-2000.0);
    let mut msgs: Vec<(String, Vec<u8>, Option<&str>)> = vec![
        ("m365/s0/telemetry".into(), b"{not json".to_vec(), None),
        (
            "m365/s0/telemetry".into(),
            b"\x78\x9c\x01\x02garbage".to_vec(),
            Some("application/zlib"),
        ),
        (
            "m365/s0/status".into(),
            b"[\"not an object\"]".to_vec(),
            Some("application/json"),
        ),
    ];
    for r in &recs {
        msgs.push((
            "m365/s0/telemetry".into(),
            Encoding::Json.encode(std::slice::from_ref(r)).unwrap(),
            None,
        ));
    }
    publisher.send_many(msgs).await;
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_dead_letters", 4, WAIT).await,
        4
    );
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_records", 9, WAIT).await,
        9
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM m365_dead_letters WHERE reason LIKE 'refused by the database%'"
        )
        .await,
        1
    );
    let totals = worker.stop().await;
    assert_eq!(
        totals.acknowledged, 13,
        "every message acknowledged, the bad ones too"
    );
    // The same worker again: nothing comes back from its session.
    let worker = Worker::start(cfg, "bad-a").await;
    let (more, _) = json_messages(1, 1, 4);
    publisher
        .send(
            "m365/s0/telemetry",
            Encoding::Json.encode(&more).unwrap(),
            None,
        )
        .await;
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_records", 10, WAIT).await,
        10
    );
    let totals = worker.stop().await;
    assert_eq!(
        totals.acknowledged, 1,
        "no redelivery of acknowledged messages"
    );
    assert_eq!(db.count("SELECT count(*) FROM m365_dead_letters").await, 4);
}
