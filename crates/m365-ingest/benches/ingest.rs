//! Records per second from a local mosquitto into the local PostgreSQL, with one and two workers
//! and several batch sizes: `cargo bench -p m365-ingest --bench ingest`. Each case gets a fresh
//! database; the messages are published as fast as the broker takes them, and the time runs
//! from the first publish until the last record is committed. Needs mosquitto and PostgreSQL on
//! 127.0.0.1:5432; prints a notice and exits without them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::{Publisher, TestDb, Worker};
use m365_ingest::config::PostgisMode;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{Encoding, Record};
use m365_testkit::broker::{Broker, BrokerOptions, have_mosquitto};

struct Case {
    workers: usize,
    batch: usize,
    encoding: Encoding,
    records: usize,
}

/// Pre-encoded messages: `records` records of 10 scooters.
fn messages(encoding: Encoding, records: usize) -> Vec<(String, Vec<u8>, Option<&'static str>)> {
    let scooters = 10;
    let per = records / scooters;
    let mut out = Vec::new();
    for k in 0..scooters {
        let id = format!("bench{k}");
        let mut sc = SyntheticScooter::new(
            &id,
            k as u64,
            Utc.with_ymd_and_hms(2025, 6, 1, k as u32, 0, 0).unwrap(),
            Duration::from_millis(100),
        );
        let recs: Vec<Record> = (0..per)
            .map(|i| Record::from_sample(sc.next_sample(), i as u64 + 1))
            .collect();
        let per_message = if encoding == Encoding::Compact { 50 } else { 1 };
        for chunk in recs.chunks(per_message) {
            out.push((
                format!("m365/{id}/telemetry"),
                encoding.encode(chunk).expect("encodes"),
                Some(encoding.content_type()),
            ));
        }
    }
    out
}

async fn run_case(case: &Case) -> Option<(f64, f64)> {
    let db = TestDb::create("bench").await?;
    let broker = Broker::start(BrokerOptions::default()).await;
    let mut cfg = common::config(&db.url(), broker.port, case.batch, PostgisMode::Auto);
    cfg.mqtt.in_flight = m365_ingest::config::InFlight(1000);
    cfg.batch.linger = m365_ingest::config::Seconds(Duration::from_millis(50));
    let mut workers = Vec::new();
    for w in 0..case.workers {
        workers.push(Worker::start(cfg.clone(), &format!("bench-{w}")).await);
    }
    let msgs = messages(case.encoding, case.records);
    let mut publisher = Publisher::connect(broker.port).await;
    let start = Instant::now();
    let published = tokio::spawn(async move {
        publisher.send_many(msgs).await;
        start.elapsed()
    });
    let want = case.records as i64;
    loop {
        if db.count("SELECT count(*) FROM m365_records").await >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = start.elapsed();
    let published = published.await.expect("publisher");
    for w in workers {
        w.stop().await;
    }
    let rate = case.records as f64 / stored.as_secs_f64();
    let pub_rate = case.records as f64 / published.as_secs_f64();
    Some((rate, pub_rate))
}

fn main() {
    if !have_mosquitto() {
        println!("ingest benchmark: needs mosquitto; not run");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut cases = Vec::new();
    for workers in [1, 2] {
        for batch in [1, 50, 500] {
            cases.push(Case {
                workers,
                batch,
                encoding: Encoding::Json,
                records: if batch == 1 { 4_000 } else { 20_000 },
            });
        }
        cases.push(Case {
            workers,
            batch: 500,
            encoding: Encoding::Compact,
            records: 50_000,
        });
    }
    println!(
        "| workers | encoding | batch (records) | records | stored records/s | published records/s |"
    );
    println!("|---|---|---|---|---|---|");
    for case in &cases {
        let Some((rate, pub_rate)) = rt.block_on(run_case(case)) else {
            return;
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} |",
            case.workers,
            case.encoding.name(),
            case.batch,
            case.records,
            rate,
            pub_rate
        );
    }
}
