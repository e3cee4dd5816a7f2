//! Bytes on the wire per record for each encoding, counted at the TCP level by a proxy between
//! the publisher and a local mosquitto, and the backlog drain rate while live samples keep
//! flowing.
//!
//! `cargo bench -p m365-pipeline --bench wire` (needs mosquitto).
// A benchmark: its inputs are fixed and known good, so a failing `unwrap`/`expect` is a bug in
// the benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use m365_pipeline::spool::Spool;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{Encoding, MqttConfig, OutputConfig, PipelineConfig, SpoolConfig, SyncPolicy};
use m365_testkit::broker::{Broker, BrokerOptions, have_mosquitto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards a new loopback port (returned) to 127.0.0.1:`target`, counting bytes in both
/// directions. A byte is counted before it is passed on, so once an endpoint saw it, it is in the
/// count.
async fn counting_proxy(target: u16) -> (u16, Arc<AtomicU64>) {
    let counter = Arc::new(AtomicU64::new(0));
    let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let listen = l.local_addr().unwrap().port();
    let c = counter.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = l.accept().await {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                continue;
            };
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            let c1 = c.clone();
            let c2 = c.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = ri.read(&mut buf).await {
                    c1.fetch_add(n as u64, Ordering::Relaxed);
                    if n == 0 || wo.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = ro.read(&mut buf).await {
                    c2.fetch_add(n as u64, Ordering::Relaxed);
                    if n == 0 || wi.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (listen, counter)
}

fn config(dir: &Path, port: u16, encoding: Encoding) -> PipelineConfig {
    PipelineConfig {
        spool: SpoolConfig {
            path: dir.join("spool.sqlite"),
            sync: SyncPolicy::Normal,
            commit_every: 50,
            commit_interval_ms: 100,
            ..SpoolConfig::default()
        },
        mqtt: MqttConfig {
            broker: format!("tcp://127.0.0.1:{port}"),
            client: format!("bench-{port}"),
            reconnect_min: 0.1,
            reconnect_max: 0.5,
            max_in_flight: 64,
            live_reserved: 8,
            status_topic: None,
            outputs: vec![OutputConfig {
                topic: "vehicle/1/realtime".into(),
                encoding,
                batch: None,
                linger_ms: Some(200),
                legacy_no_fix: Default::default(),
            }],
            ..MqttConfig::default()
        },
        channel_capacity: 4096,
    }
}

async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}

async fn bytes_per_record(broker_port: u16) {
    const N: u64 = 1000;
    println!("bytes on the wire per record ({N} records, TCP payload both directions):");
    let mut legacy = 0.0;
    for enc in [Encoding::Legacy, Encoding::Json, Encoding::Compact] {
        let (proxy_port, counter) = counting_proxy(broker_port).await;
        let dir = tempfile::tempdir().unwrap();
        let (handle, task) =
            m365_pipeline::spawn(config(dir.path(), proxy_port, enc), "bench").unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || handle.health().broker
                == m365_pipeline::BrokerState::Connected
                && handle.health().in_flight == 0)
            .await
        );
        let before = counter.load(Ordering::Relaxed);
        let mut sc = SyntheticScooter::new("bench", 3, Utc::now(), Duration::from_millis(100));
        for _ in 0..N {
            handle.submit(sc.next_sample()).await.unwrap();
        }
        assert!(
            wait_until(Duration::from_secs(60), || handle.health().acknowledged
                >= N)
            .await
        );
        let per = (counter.load(Ordering::Relaxed) - before) as f64 / N as f64;
        if enc == Encoding::Legacy {
            legacy = per;
        }
        println!(
            "  {enc:?}: {per:.1} B/record ({:.1}x fewer than legacy)",
            legacy / per
        );
        drop(handle);
        let _ = task.await;
    }
}

async fn drain_rate(broker_port: u16) {
    const BACKLOG: u64 = 20_000;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cfg = config(dir.path(), broker_port, Encoding::Json);
    {
        let (mut spool, _) =
            Spool::open(&cfg.spool, &["vehicle/1/realtime|Json".to_owned()]).unwrap();
        let mut sc = SyntheticScooter::new("bench", 4, Utc::now(), Duration::from_millis(100));
        for _ in 0..BACKLOG {
            spool.append(sc.next_sample(), Instant::now()).unwrap();
        }
        spool.flush().unwrap();
    }
    let t0 = Instant::now();
    let (handle, task) = m365_pipeline::spawn(cfg, "bench").unwrap();
    let mut sc = SyntheticScooter::new("bench", 5, Utc::now(), Duration::from_millis(100));
    let mut live = 0u64;
    // Live samples at 10 Hz while the backlog drains.
    while handle.health().spool_records > 0 || live == 0 {
        handle.submit(sc.next_sample()).await.unwrap();
        live += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t0.elapsed() > Duration::from_secs(300) {
            println!("  drain did not finish in 300 s");
            break;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let h = handle.health();
    println!(
        "backlog drain (json, 1 record/message, window 64): {BACKLOG} records in {secs:.2} s = {:.0} records/s, with {live} live samples at 10 Hz, {} acknowledged in total",
        BACKLOG as f64 / secs,
        h.acknowledged
    );
    drop(handle);
    let _ = task.await;
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent: stay quick then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !have_mosquitto() {
        println!("wire benchmark needs mosquitto; not run");
        return;
    }
    let broker = Broker::start(BrokerOptions::default()).await;
    bytes_per_record(broker.port).await;
    drain_rate(broker.port).await;
}
