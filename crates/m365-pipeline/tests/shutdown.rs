//! Stopping against a broker that accepts the connection but never acknowledges a publish: the
//! grace period bounds the wait, the records stay spooled for the next start, and the session
//! still ends with `offline` and an MQTT DISCONNECT.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use m365_pipeline::MqttProtocol;
use m365_pipeline::synthetic::SyntheticScooter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A "broker" that answers CONNECT with a success CONNACK (MQTT 3.1.1) and then only listens.
/// Returns everything the client sent once the client closes the connection.
async fn silent_broker(listener: TcpListener) -> Vec<u8> {
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let n = sock.read(&mut buf).await.unwrap();
    received.extend_from_slice(&buf[..n]);
    sock.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
    loop {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn unacknowledged_records_stay_spooled_and_the_session_still_ends_cleanly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = tokio::spawn(silent_broker(listener));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(
        dir.path(),
        &format!("tcp://127.0.0.1:{port}"),
        "t/silent",
        MqttProtocol::V311,
    );
    cfg.mqtt.shutdown_grace = 0.3;
    cfg.mqtt.status_topic = None;
    let spool_cfg = cfg.spool.clone();
    let (handle, task) = m365_pipeline::spawn(cfg, "sc12").unwrap();
    let mut sc = SyntheticScooter::new("sc12", 3, Utc::now(), Duration::from_secs(1));
    for _ in 0..5 {
        handle.submit(sc.next_sample()).await.unwrap();
    }
    let ok = common::Inbox::default()
        .wait_for(Duration::from_secs(10), |_| handle.health().published >= 5)
        .await;
    assert!(ok, "{:?}", handle.health());
    drop(handle);
    // A liveness bound, not a speed target: without the grace period this would never end.
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the grace period ends the wait")
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(10), broker)
        .await
        .expect("connection closed")
        .unwrap();

    let (spool, _) = m365_pipeline::Spool::open(&spool_cfg, &["t/silent|Json".to_owned()]).unwrap();
    assert_eq!(
        spool.stats().records,
        5,
        "nothing acknowledged, nothing deleted"
    );
    // A QoS 1 PUBLISH: topic, 2-byte packet id, payload.
    let topic = b"m365/sc12/availability";
    let offline = sent
        .windows(topic.len() + 2 + b"offline".len())
        .any(|w| w.starts_with(topic) && w.ends_with(b"offline"));
    assert!(offline, "offline published");
    assert_eq!(
        sent.get(sent.len().saturating_sub(2)..),
        Some(&[0xE0, 0x00][..]),
        "the last packet is a DISCONNECT"
    );
}
