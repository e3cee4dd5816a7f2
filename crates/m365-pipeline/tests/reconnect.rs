//! The publisher's reconnect schedule with tokio's paused clock: a broker that stays unreachable
//! for 60 (virtual) seconds is retried with growing, jittered delays between `reconnect_min`
//! and `reconnect_max`, and the samples keep going to the spool; stopping then keeps them there.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{BrokerState, MqttProtocol};

#[tokio::test(start_paused = true)]
async fn sixty_second_outage_is_retried_with_bounded_backoff() {
    let nobody = common::ReservedPort::new(); // nothing listens: every attempt is refused at once
    let port = nobody.port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(
        dir.path(),
        &format!("tcp://127.0.0.1:{port}"),
        "t/x",
        MqttProtocol::V311,
    );
    cfg.mqtt.reconnect_min = 1.0;
    cfg.mqtt.reconnect_max = 8.0;
    let (handle, task) = m365_pipeline::spawn(cfg, "sc9").unwrap();
    let mut sc = SyntheticScooter::new("sc9", 1, Utc::now(), Duration::from_secs(1));
    for _ in 0..60 {
        handle.submit(sc.next_sample()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let h = handle.health();
    println!(
        "connection attempts in 60 virtual seconds: {}",
        h.connect_failures
    );
    // Delays 1, 2, 4, 8, 8, … each drawn from [d/2, d] (at least 1 s): within 60 s that is
    // between 7 attempts (all delays at their maximum: 1+2+4+8·6 = 55) and 17 (all at their
    // minimum: 1+1+2+4·14 = 60), plus the first attempt at start.
    assert!(
        (7..=18).contains(&h.connect_failures),
        "attempts in 60 s: {}",
        h.connect_failures
    );
    assert!(matches!(
        h.broker,
        BrokerState::Backoff | BrokerState::Connecting
    ));
    assert!(h.spooled >= 59, "{h:?}");
    assert_eq!(h.spool_records, h.spooled);
    assert!(!task.is_finished());

    // Stopping without a connection waits for nothing: the next sample submitted is committed
    // and everything stays spooled for the next start.
    handle.submit(sc.next_sample()).await.unwrap();
    let spool_cfg =
        common::config(dir.path(), "tcp://127.0.0.1:1", "t/x", MqttProtocol::V311).spool;
    let stopped_at = tokio::time::Instant::now();
    drop(handle);
    task.await.unwrap();
    assert_eq!(
        stopped_at.elapsed(),
        Duration::ZERO,
        "no grace period without a broker"
    );
    let (spool, _) = m365_pipeline::Spool::open(&spool_cfg, &["t/x|Json".to_owned()]).unwrap();
    assert_eq!(spool.stats().records, 61);
}
