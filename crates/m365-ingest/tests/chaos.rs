//! Exactly once through failures: two `m365-ingest` processes share one subscription while the
//! client's pipeline publishes; one worker is killed with SIGKILL in the middle of a batch (its
//! transaction open, blocked on a table lock the test holds), another is killed while messages
//! flow, and the database goes away and comes back. At the end every record is in the database
//! exactly once, in `m365_records` and in the earlier tables. A second case restarts the broker
//! under a worker with a plain (not shared) persistent subscription: Mosquitto 2.0 does not
//! restore `$share` subscriptions from its persistence file, so only a plain subscription keeps
//! receiving into its session between the broker's restart and the worker's return (see
//! `docs/server.md`).
//!
//! The database "restart" leaves the machine's other databases alone: the test database stops
//! accepting connections (`ALTER DATABASE … ALLOW_CONNECTIONS false`) and the workers'
//! connections are terminated (`pg_terminate_backend`), which is what a restart looks like
//! from the workers; then connections are allowed again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{Process, TestDb, wait_count};
use m365_ingest::config::PostgisMode;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{
    Encoding, MqttConfig, MqttProtocol, OutputConfig, PipelineConfig, Sample, SpoolConfig,
    SyncPolicy,
};
use m365_testkit::broker::{Broker, BrokerOptions, require_mosquitto};

const WAIT: Duration = Duration::from_secs(90);

/// The client's pipeline: one scooter publishing `json` through its spool.
fn client_config(dir: &std::path::Path, port: u16, scooter: &str) -> PipelineConfig {
    PipelineConfig {
        spool: SpoolConfig {
            path: dir.join("spool.sqlite"),
            sync: SyncPolicy::Normal,
            commit_every: 10,
            commit_interval_ms: 50,
            ..SpoolConfig::default()
        },
        mqtt: MqttConfig {
            broker: format!("tcp://127.0.0.1:{port}"),
            protocol: MqttProtocol::V5,
            client: m365_testkit::broker::client_id("client"),
            reconnect_min: 0.1,
            reconnect_max: 0.5,
            connect_timeout: 2,
            keep_alive: 5,
            max_in_flight: 32,
            live_reserved: 4,
            outputs: vec![OutputConfig {
                topic: format!("m365/{scooter}/telemetry"),
                encoding: Encoding::Json,
                batch: None,
                linger_ms: None,
                legacy_no_fix: Default::default(),
            }],
            ..MqttConfig::default()
        },
        channel_capacity: 1024,
    }
}

/// Every one of `samples` is stored exactly once, in `m365_records` and the earlier tables.
async fn assert_exactly_once(db: &TestDb, samples: &[Sample]) {
    let total = samples.len() as i64;
    let row = db
        .client
        .query_one(
            "SELECT count(*), count(DISTINCT record_id), count(DISTINCT seq), min(seq), max(seq) \
             FROM m365_records",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), total);
    assert_eq!(row.get::<_, i64>(1), total);
    assert_eq!(row.get::<_, i64>(2), total);
    assert_eq!((row.get::<_, i64>(3), row.get::<_, i64>(4)), (1, total));
    for table in ["general_info", "battery_info"] {
        let r = db
            .client
            .query_one(
                &format!("SELECT count(*), count(DISTINCT time) FROM {table}"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            (r.get::<_, i64>(0), r.get::<_, i64>(1)),
            (total, total),
            "{table}"
        );
    }
    let with_fix = samples.iter().filter(|s| s.gps.is_some()).count() as i64;
    assert_eq!(
        db.count("SELECT count(*) FROM location_info").await,
        with_fix
    );
    assert_eq!(db.count("SELECT count(*) FROM m365_dead_letters").await, 0);
}

/// Waits until the worker's log has said `needle` `times` times.
async fn wait_log(p: &Process, needle: &str, times: usize) {
    let ok = m365_testkit::wait::until(WAIT, || p.log().matches(needle).count() >= times).await;
    assert!(ok, "{needle:?} ×{times} not logged:\n{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_and_database_restart_store_every_record_once() {
    if !require_mosquitto("ingest through failures") {
        return;
    }
    let Some(db) = TestDb::create("chaos").await else {
        return;
    };
    let broker = Broker::start(BrokerOptions {
        persistence: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ingest.toml");
    std::fs::write(
        &config_path,
        common::config_text(&db.url(), broker.port, 50, PostgisMode::Auto),
    )
    .unwrap();
    let mut a = Process::start(&config_path, "chaos-a");
    let mut b = Process::start(&config_path, "chaos-b");
    wait_log(&a, "subscribed", 1).await;
    wait_log(&b, "subscribed", 1).await;

    // The client: one scooter publishing `json` through its spool.
    let scooter = "chaos";
    let cfg = client_config(dir.path(), broker.port, scooter);
    let (client, _task) = m365_pipeline::spawn(cfg, scooter).unwrap();
    let start = Utc::now() - chrono::Duration::hours(1);
    let start = Utc.timestamp_millis_opt(start.timestamp_millis()).unwrap();
    let mut sc = SyntheticScooter::new(scooter, 5, start, Duration::from_millis(100));
    let mut samples: Vec<Sample> = Vec::new();
    let mut submit = async |n: usize, samples: &mut Vec<Sample>| {
        for _ in 0..n {
            let s = sc.next_sample();
            client.submit(s.clone()).await.unwrap();
            samples.push(s);
        }
    };
    const PHASE: usize = 200;

    // 1. SIGKILL in the middle of a batch: the table is locked, the worker's INSERT waits.
    let locker = common::connect(&format!("{} dbname={}", common::admin_conninfo(), db.name))
        .await
        .unwrap();
    locker
        .batch_execute("BEGIN; LOCK TABLE m365_records IN EXCLUSIVE MODE")
        .await
        .unwrap();
    submit(PHASE, &mut samples).await;
    assert_eq!(
        wait_count(
            &db,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'chaos-a' \
             AND wait_event_type = 'Lock'",
            1,
            WAIT
        )
        .await,
        1,
        "worker a is inside its batch transaction"
    );
    a.kill9();
    locker.batch_execute("COMMIT").await.unwrap();
    let mut a = Process::start(&config_path, "chaos-a");
    wait_log(&a, "subscribed", 1).await;
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_records", PHASE as i64, WAIT).await,
        PHASE as i64
    );

    // 2. SIGKILL while messages flow (batches committed and not yet acknowledged, or not yet
    //    committed, whichever the moment hits).
    submit(PHASE, &mut samples).await;
    let n = wait_count(
        &db,
        "SELECT count(*) FROM m365_records",
        (PHASE + 20) as i64,
        WAIT,
    )
    .await;
    assert!(n >= (PHASE + 20) as i64);
    b.kill9();
    let mut b = Process::start(&config_path, "chaos-b");
    wait_log(&b, "subscribed", 1).await;
    let n = wait_count(
        &db,
        "SELECT count(*) FROM m365_records",
        2 * PHASE as i64,
        WAIT,
    )
    .await;
    if n != 2 * PHASE as i64 {
        let have: Vec<i64> = db
            .client
            .query("SELECT seq FROM m365_records ORDER BY seq", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let missing: Vec<i64> = (1..=2 * PHASE as i64)
            .filter(|s| !have.contains(s))
            .collect();
        panic!(
            "{n} records; missing seqs {missing:?}; client {:?}\na:\n{}\nb:\n{}",
            client.health(),
            a.log(),
            b.log(),
        );
    }

    // 3. The database goes away and comes back.
    db.admin
        .batch_execute(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{0}' AND application_name LIKE 'chaos-%'",
            db.name
        ))
        .await
        .unwrap();
    submit(PHASE, &mut samples).await;
    // Everything reached the broker while the database was away...
    let published =
        m365_testkit::wait::until(WAIT, || client.health().acknowledged >= 3 * PHASE as u64).await;
    assert!(
        published,
        "client acknowledged {}",
        client.health().acknowledged
    );
    wait_log(&a, "database unavailable", 1).await;
    wait_log(&b, "database unavailable", 1).await;
    assert_eq!(
        db.count("SELECT count(*) FROM m365_records").await,
        2 * PHASE as i64,
        "nothing written while the database refuses connections"
    );
    db.admin
        .batch_execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name
        ))
        .await
        .unwrap();
    let total = 3 * PHASE as i64;
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_records", total, WAIT).await,
        total
    );

    // Exactly once, everywhere.
    assert_exactly_once(&db, &samples).await;
    assert_eq!(
        db.count("SELECT count(DISTINCT worker) FROM m365_records")
            .await,
        2
    );

    // A clean stop exits 0.
    assert!(a.terminate().success(), "{}", a.log());
    assert!(b.terminate().success(), "{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restarts_lose_nothing_with_a_plain_persistent_subscription() {
    if !require_mosquitto("ingest across broker restarts") {
        return;
    }
    let Some(db) = TestDb::create("broker_restart").await else {
        return;
    };
    let mut broker = Broker::start(BrokerOptions {
        persistence: true,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ingest.toml");
    let text = common::config_text(&db.url(), broker.port, 50, PostgisMode::Off)
        .replace("[mqtt]\n", "[mqtt]\ngroup = \"\"\n");
    std::fs::write(&config_path, text).unwrap();
    let mut w = Process::start(&config_path, "plain-a");
    wait_log(&w, "subscribed", 1).await;

    let scooter = "restart";
    let (client, _task) =
        m365_pipeline::spawn(client_config(dir.path(), broker.port, scooter), scooter).unwrap();
    let start = Utc::now() - chrono::Duration::hours(1);
    let start = Utc.timestamp_millis_opt(start.timestamp_millis()).unwrap();
    let mut sc = SyntheticScooter::new(scooter, 8, start, Duration::from_millis(100));
    let mut samples: Vec<Sample> = Vec::new();
    let mut submit = async |n: usize, samples: &mut Vec<Sample>| {
        for _ in 0..n {
            let s = sc.next_sample();
            client.submit(s.clone()).await.unwrap();
            samples.push(s);
        }
    };
    const PHASE: usize = 100;
    submit(PHASE, &mut samples).await;
    assert_eq!(
        wait_count(&db, "SELECT count(*) FROM m365_records", PHASE as i64, WAIT).await,
        PHASE as i64
    );

    // The broker restarts while the client publishes: the client spools, the worker
    // reconnects, its session resumes.
    broker.stop();
    submit(PHASE, &mut samples).await;
    broker.resume().await;
    assert_eq!(
        wait_count(
            &db,
            "SELECT count(*) FROM m365_records",
            2 * PHASE as i64,
            WAIT
        )
        .await,
        2 * PHASE as i64
    );
    wait_log(&w, "subscribed", 2).await;

    // The worker is away while the broker restarts and the client publishes: its session
    // holds the messages until it comes back.
    assert!(w.terminate().success(), "{}", w.log());
    broker.stop();
    broker.resume().await;
    submit(PHASE, &mut samples).await;
    let published =
        m365_testkit::wait::until(WAIT, || client.health().acknowledged >= 3 * PHASE as u64).await;
    assert!(published);
    assert_eq!(
        db.count("SELECT count(*) FROM m365_records").await,
        2 * PHASE as i64
    );
    let w = Process::start(&config_path, "plain-a");
    wait_log(&w, "subscribed", 1).await;
    assert_eq!(
        wait_count(
            &db,
            "SELECT count(*) FROM m365_records",
            3 * PHASE as i64,
            WAIT
        )
        .await,
        3 * PHASE as i64,
        "{}",
        w.log()
    );
    assert_exactly_once(&db, &samples).await;
}
