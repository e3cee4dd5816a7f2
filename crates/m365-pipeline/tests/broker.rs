//! The whole pipeline against a real broker: outages, restarts, a killed publisher, spool
//! bounds, bad credentials, TLS, unreachable hosts and corrupt spool files. Every test starts its
//! own broker on a free loopback port (see `common`).
//!
//! The broker outage is real time (a real broker process cannot follow tokio's paused clock):
//! it lasts 3 s, with reconnect delays of 0.1–0.5 s, which exercises the same path as a 60 s
//! outage; the back-off schedule itself is tested with the paused clock in `reconnect.rs`, and
//! its bounds in the `m365-backoff` crate.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{
    Broker, BrokerOptions, JsonSeqs, PipelineBroker, assert_ascending, assert_complete,
    assert_two_ascending_runs, config, first_arrivals, subscribe,
};
use m365_pipeline::synthetic::SyntheticScooter;
use m365_pipeline::{BrokerState, ErrorKind, MqttProtocol, PasswordSource, Secret};

fn scooter(id: &str) -> SyntheticScooter {
    SyntheticScooter::new(id, 9, Utc::now(), Duration::from_millis(20))
}

async fn feed(
    handle: &m365_pipeline::PipelineHandle,
    sc: &mut SyntheticScooter,
    n: usize,
    every: Duration,
) {
    for _ in 0..n {
        handle.submit(sc.next_sample()).await.unwrap();
        tokio::time::sleep(every).await;
    }
}

fn needs_mosquitto(b: &Broker, what: &str) -> bool {
    if !b.is_mosquitto() {
        println!("{what}: needs a broker that can be stopped and configured (mosquitto); not run");
        return false;
    }
    true
}

#[tokio::test]
async fn both_protocols_deliver_in_order_with_availability() {
    let probe = Broker::start(BrokerOptions::default()).await;
    let protocols = probe.protocols();
    drop(probe);
    for protocol in protocols {
        let broker = Broker::start(BrokerOptions::default()).await;
        let port = broker.port_for(protocol);
        let topic = format!("t/{protocol:?}");
        let inbox = subscribe(broker.port_for(MqttProtocol::V311), "#").await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            &format!("mqtt://127.0.0.1:{port}"),
            &topic,
            protocol,
        );
        let (handle, task) = m365_pipeline::spawn(cfg, "sc1").unwrap();
        let mut sc = scooter("sc1");
        feed(&handle, &mut sc, 40, Duration::from_millis(5)).await;
        let ok = inbox
            .wait_for(Duration::from_secs(10), |i| i.json_seqs(&topic).len() >= 40)
            .await;
        assert!(ok, "{protocol:?}: got {}", inbox.json_seqs(&topic).len());
        assert_complete(&inbox.json_seqs(&topic), 40);
        let arrivals: Vec<u64> = inbox.json_seqs(&topic).iter().map(|s| s.0).collect();
        assert_ascending(&arrivals);
        assert!(
            inbox
                .wait_for(Duration::from_secs(5), |i| i
                    .on("m365/sc1/availability")
                    .contains(&b"online".to_vec()))
                .await,
            "online published"
        );
        assert!(
            inbox
                .wait_for(Duration::from_secs(5), |i| !i
                    .on("m365/sc1/status")
                    .is_empty())
                .await,
            "status published"
        );
        let h = handle.health();
        assert_eq!(h.broker, BrokerState::Connected);
        // An abrupt end (no DISCONNECT) makes the broker publish the last will.
        task.abort();
        let _ = task.await;
        if broker.is_mosquitto() {
            assert!(
                inbox
                    .wait_for(Duration::from_secs(15), |i| i
                        .on("m365/sc1/availability")
                        .last()
                        == Some(&b"offline".to_vec()))
                    .await,
                "{protocol:?}: last will `offline` published"
            );
        }
    }
}

/// Dropping every handle ends the pipeline cleanly: what was submitted is delivered within the
/// grace period, `offline` is published explicitly and the session ends with a DISCONNECT, so
/// the broker never needs the last will.
#[tokio::test]
async fn clean_shutdown_flushes_publishes_offline_and_disconnects() {
    let broker = Broker::start(BrokerOptions {
        log: true,
        ..Default::default()
    })
    .await;
    let protocol = broker.protocols()[0];
    let inbox = subscribe(broker.port_for(MqttProtocol::V311), "#").await;
    let topic = "t/shutdown";
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        &format!("mqtt://127.0.0.1:{}", broker.port_for(protocol)),
        topic,
        protocol,
    );
    // A long commit interval: the last samples are still buffered when the handle goes.
    cfg.spool.commit_every = 1000;
    cfg.spool.commit_interval_ms = 60_000;
    let client_id = cfg.mqtt.client.clone();
    let spool_cfg = cfg.spool.clone();
    let (handle, task) = m365_pipeline::spawn(cfg, "sc11").unwrap();
    let mut sc = scooter("sc11");
    let online = inbox
        .wait_for(Duration::from_secs(10), |i| {
            i.on("m365/sc11/availability") == vec![b"online".to_vec()]
        })
        .await;
    assert!(online, "online published");
    feed(&handle, &mut sc, 25, Duration::from_millis(2)).await;
    drop(handle);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped within the grace period")
        .unwrap();

    let (spool, _) = m365_pipeline::Spool::open(&spool_cfg, &[format!("{topic}|Json")]).unwrap();
    assert_eq!(
        spool.stats().records,
        0,
        "everything acknowledged before the end"
    );
    let delivered = inbox
        .wait_for(Duration::from_secs(5), |i| i.json_seqs(topic).len() >= 25)
        .await;
    assert!(delivered, "got {}", inbox.json_seqs(topic).len());
    assert_complete(&inbox.json_seqs(topic), 25);
    assert!(
        inbox
            .wait_for(Duration::from_secs(5), |i| i
                .on("m365/sc11/availability")
                .last()
                == Some(&b"offline".to_vec()))
            .await,
        "offline published"
    );
    // An abrupt end would add the last will: a second `offline`. mosquitto decides on the will
    // when it handles the end of the session, which it logs; a marker published after that
    // reaches the subscriber after anything sent before it, a will included.
    if broker.is_mosquitto() {
        let handled = common::Inbox::default()
            .wait_for(Duration::from_secs(10), |_| {
                let log = broker.log();
                log.contains(&format!("Client {client_id} disconnected."))
                    || log.contains(&format!("Client {client_id} closed its connection"))
            })
            .await;
        assert!(handled, "the broker saw the session end:\n{}", broker.log());
    }
    let marker_port = broker.port_for(MqttProtocol::V311);
    common::publish(marker_port, "t/shutdown/marker", "end", false).await;
    assert!(
        inbox
            .wait_for(Duration::from_secs(10), |i| !i
                .on("t/shutdown/marker")
                .is_empty())
            .await,
        "marker delivered"
    );
    assert_eq!(
        inbox.on("m365/sc11/availability"),
        vec![b"online".to_vec(), b"offline".to_vec()],
        "one explicit offline, no last will"
    );
    if broker.is_mosquitto() {
        let log = broker.log();
        assert!(
            log.contains(&format!("Client {client_id} disconnected.")),
            "normal disconnect in the broker log:\n{log}"
        );
        assert!(
            !log.contains(&format!("Client {client_id} closed its connection")),
            "{log}"
        );
    }
}

#[tokio::test]
async fn broker_outage_then_restart_delivers_every_record() {
    let mut broker = Broker::start(BrokerOptions {
        persistence: true,
        ..Default::default()
    })
    .await;
    if !needs_mosquitto(&broker, "broker outage") {
        return;
    }
    let topic = "m365/sc2/telemetry";
    let inbox = subscribe(broker.port, topic).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("tcp://127.0.0.1:{}", broker.port),
        topic,
        MqttProtocol::V5,
    );
    let (handle, _task) = m365_pipeline::spawn(cfg, "sc2").unwrap();
    let mut sc = scooter("sc2");
    feed(&handle, &mut sc, 50, Duration::from_millis(20)).await;
    assert!(
        inbox
            .wait_for(Duration::from_secs(10), |i| i.json_seqs(topic).len() >= 50)
            .await
    );

    broker.stop();
    // 3 s outage at 50 samples/s.
    feed(&handle, &mut sc, 150, Duration::from_millis(20)).await;
    let h = handle.health();
    assert_ne!(h.broker, BrokerState::Connected, "{h:?}");
    assert!(h.spool_records >= 100, "records wait in the spool: {h:?}");
    assert!(h.connect_failures >= 2, "it kept retrying: {h:?}");

    broker.resume().await;
    feed(&handle, &mut sc, 50, Duration::from_millis(20)).await;
    let ok = inbox
        .wait_for(Duration::from_secs(20), |i| {
            let mut s: Vec<u64> = i.json_seqs(topic).iter().map(|x| x.0).collect();
            s.sort_unstable();
            s.dedup();
            s.len() >= 250
        })
        .await;
    let seqs = inbox.json_seqs(topic);
    if !ok {
        let got: std::collections::BTreeSet<u64> = seqs.iter().map(|s| s.0).collect();
        let missing: Vec<u64> = (1..=250).filter(|s| !got.contains(s)).collect();
        panic!(
            "missing {missing:?}; publisher {:?}, last error {:?}; subscriber {:?}; order {:?}",
            handle.health(),
            handle.last_error(),
            inbox.errors(),
            seqs.iter().map(|s| s.0).collect::<Vec<_>>()
        );
    }
    let dups = assert_complete(&seqs, 250);
    println!("outage: 250 records delivered, {dups} duplicates (same record id)");
    // 150 records of backlog against a 16-message window with live samples arriving: the
    // backlog and the live records are each in order.
    let k = assert_two_ascending_runs(&first_arrivals(&seqs));
    println!("outage: backlog up to seq {k}, live records after it");
    assert!(
        inbox
            .wait_for(Duration::from_secs(5), |_| handle.health().spool_records
                == 0)
            .await,
        "spool emptied after acknowledgements: {:?}",
        handle.health()
    );
}

#[tokio::test]
async fn full_spool_drops_oldest_reports_count_and_stays_healthy() {
    let mut broker = Broker::start(BrokerOptions {
        persistence: true,
        ..Default::default()
    })
    .await;
    if !needs_mosquitto(&broker, "spool limit") {
        return;
    }
    let topic = "m365/sc3/telemetry";
    let inbox = subscribe(broker.port, "m365/sc3/#").await;
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        &format!("tcp://127.0.0.1:{}", broker.port),
        topic,
        MqttProtocol::V5,
    );
    cfg.spool.max_records = 50;
    let (handle, task) = m365_pipeline::spawn(cfg, "sc3").unwrap();
    let mut sc = scooter("sc3");
    feed(&handle, &mut sc, 200, Duration::from_millis(1)).await;
    assert!(
        inbox
            .wait_for(Duration::from_secs(5), |_| handle.health().spooled == 200)
            .await,
        "{:?}",
        handle.health()
    );
    let h = handle.health();
    assert_eq!(h.spool_records, 50, "{h:?}");
    assert_eq!(h.dropped_spool, 150, "{h:?}");
    assert!(!task.is_finished(), "still running");

    broker.resume().await;
    let ok = inbox
        .wait_for(Duration::from_secs(15), |i| i.json_seqs(topic).len() >= 50)
        .await;
    assert!(ok);
    let mut seqs: Vec<u64> = inbox.json_seqs(topic).iter().map(|s| s.0).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs,
        (151..=200).collect::<Vec<_>>(),
        "newest kept, oldest dropped"
    );
    let ok = inbox
        .wait_for(Duration::from_secs(10), |i| {
            i.on("m365/sc3/status").iter().any(|p| {
                let v: serde_json::Value = serde_json::from_slice(p).unwrap();
                v["dropped_spool"] == 150
            })
        })
        .await;
    assert!(ok, "dropped count published on the status topic");
}

#[tokio::test]
async fn wrong_credentials_give_a_clear_error_and_retry_within_bounds() {
    if !common::require_mosquitto("credentials") {
        return;
    }
    let broker = Broker::start(BrokerOptions {
        credentials: Some(("m365".into(), "right-password".into())),
        ..Default::default()
    })
    .await;
    if !needs_mosquitto(&broker, "credentials") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong-password\n").unwrap();
    let mut cfg = config(
        dir.path(),
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "t/auth",
        MqttProtocol::V311,
    );
    cfg.mqtt.username = Some("m365".into());
    cfg.mqtt.password = Some(PasswordSource::File(pw.clone()));
    cfg.spool.max_records = 30;
    let (handle, task) = m365_pipeline::spawn(cfg, "sc4").unwrap();
    let mut sc = scooter("sc4");
    feed(&handle, &mut sc, 60, Duration::from_millis(25)).await;
    let h = handle.health();
    let last = handle.last_error();
    assert!(
        last.as_ref().is_some_and(|e| e.is_credentials_refused()),
        "typed as refused credentials: {last:?}"
    );
    let err = last.map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("credentials"), "{err}");
    assert!(
        !err.contains("wrong-password"),
        "password never in messages"
    );
    assert!(h.connect_failures >= 3, "{h:?}");
    assert_eq!(h.spool_records, 30, "bounded: {h:?}");
    assert!(!task.is_finished());

    // Fix the password file: the next attempt reads it and everything kept is delivered.
    let inbox = common::subscribe_with(
        broker.port,
        "t/auth",
        &common::SubscriberOptions {
            credentials: Some(("m365".into(), "right-password".into())),
            ..Default::default()
        },
    )
    .await;
    std::fs::write(&pw, "right-password\n").unwrap();
    assert!(
        inbox
            .wait_for(Duration::from_secs(10), |i| i.json_seqs("t/auth").len()
                >= 30)
            .await,
        "{:?}",
        handle.health()
    );
    assert_eq!(handle.last_error(), None);
}

#[tokio::test]
async fn a_password_given_as_a_value_connects_and_is_never_printed() {
    if !common::require_mosquitto("password value") {
        return;
    }
    let broker = Broker::start(BrokerOptions {
        credentials: Some(("m365".into(), "v4lue-pw".into())),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        &format!("mqtt://127.0.0.1:{}", broker.port),
        "t/value",
        MqttProtocol::V5,
    );
    cfg.mqtt.username = Some("m365".into());
    cfg.mqtt.password = Some(PasswordSource::Value(Secret::new("v4lue-pw")));
    assert!(
        !format!("{cfg:?}").contains("v4lue-pw"),
        "redacted in Debug"
    );
    let (handle, _task) = m365_pipeline::spawn(cfg, "sc10").unwrap();
    let ok = common::Inbox::default()
        .wait_for(Duration::from_secs(10), |_| {
            handle.health().broker == BrokerState::Connected
        })
        .await;
    assert!(ok, "{:?} {:?}", handle.health(), handle.last_error());
    assert_eq!(handle.last_error(), None);
}

fn self_signed() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (cert.pem(), signing_key.serialize_pem())
}

#[tokio::test]
async fn tls_with_an_untrusted_certificate_fails_clearly_and_a_ca_file_fixes_it() {
    if !common::require_mosquitto("TLS") {
        return;
    }
    let (cert, key) = self_signed();
    let broker = Broker::start(BrokerOptions {
        tls: Some((cert.clone(), key)),
        ..Default::default()
    })
    .await;
    if !needs_mosquitto(&broker, "TLS") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // System roots do not know the self-signed certificate.
    let cfg = config(
        dir.path(),
        &format!("ssl://localhost:{}", broker.port),
        "t/tls",
        MqttProtocol::V5,
    );
    let (handle, task) = m365_pipeline::spawn(cfg, "sc5").unwrap();
    let mut sc = scooter("sc5");
    feed(&handle, &mut sc, 40, Duration::from_millis(25)).await;
    let err = handle
        .last_error()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("TLS failure"), "{err}");
    assert_eq!(handle.last_error_kind(), Some(ErrorKind::Tls));
    assert!(handle.health().connect_failures >= 2);
    assert!(!task.is_finished());
    drop(handle);
    let _ = task.await;

    // Trusting the broker's certificate through ca_file: delivered over TLS.
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir2.path(),
        &format!("mqtts://localhost:{}", broker.port),
        "t/tls",
        MqttProtocol::V5,
    );
    cfg.mqtt.ca_file = Some(ca);
    let (handle, _task) = m365_pipeline::spawn(cfg, "sc5").unwrap();
    feed(&handle, &mut sc, 10, Duration::from_millis(5)).await;
    assert!(
        tokio::time::timeout(Duration::from_secs(10), async {
            while handle.health().acknowledged < 10 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .is_ok(),
        "{:?} {:?}",
        handle.health(),
        handle.last_error()
    );
    assert_eq!(handle.health().broker, BrokerState::Connected);
}

#[tokio::test]
async fn unreachable_broker_keeps_spooling_within_bounds() {
    let nobody = common::ReservedPort::new(); // nothing listens here
    let port = nobody.port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        &format!("tcp://127.0.0.1:{port}"),
        "t/none",
        MqttProtocol::V5,
    );
    cfg.spool.max_records = 25;
    let (handle, task) = m365_pipeline::spawn(cfg, "sc6").unwrap();
    let mut sc = scooter("sc6");
    feed(&handle, &mut sc, 50, Duration::from_millis(20)).await;
    let committed = tokio::time::timeout(Duration::from_secs(5), async {
        while handle.health().spooled < 50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(committed.await.is_ok(), "{:?}", handle.health());
    let h = handle.health();
    let err = handle
        .last_error()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("network"), "{err}");
    assert_eq!(handle.last_error_kind(), Some(ErrorKind::Network));
    assert!(h.connect_failures >= 3, "{h:?}");
    assert_eq!(h.spool_records, 25);
    assert_eq!(h.dropped_spool, 25);
    assert!(!task.is_finished());
}

#[tokio::test]
async fn corrupt_spool_file_is_moved_aside_and_publishing_continues() {
    let broker = Broker::start(BrokerOptions::default()).await;
    let topic = "t/corrupt";
    let inbox = subscribe(broker.port_for(MqttProtocol::V311), topic).await;
    let dir = tempfile::tempdir().unwrap();
    let protocol = broker.protocols()[0];
    let cfg = config(
        dir.path(),
        &format!("tcp://127.0.0.1:{}", broker.port_for(protocol)),
        topic,
        protocol,
    );
    std::fs::write(
        &cfg.spool.path,
        b"this is not an SQLite database, it is a damaged file......",
    )
    .unwrap();
    let (handle, _task) = m365_pipeline::spawn(cfg, "sc7").unwrap();
    assert_eq!(handle.health().spool_recoveries, 1);
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("spool.sqlite.corrupt-")
        })
        .collect();
    assert_eq!(moved.len(), 1);
    let mut sc = scooter("sc7");
    feed(&handle, &mut sc, 20, Duration::from_millis(5)).await;
    assert!(
        inbox
            .wait_for(Duration::from_secs(10), |i| i.json_seqs(topic).len() >= 20)
            .await
    );
    assert_complete(&inbox.json_seqs(topic), 20);
}

#[tokio::test]
async fn live_samples_get_through_while_a_backlog_drains() {
    let broker = Broker::start(BrokerOptions::default()).await;
    let protocol = broker.protocols()[0];
    let topic = "t/live";
    let inbox = subscribe(broker.port_for(MqttProtocol::V311), topic).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        dir.path(),
        &format!("tcp://127.0.0.1:{}", broker.port_for(protocol)),
        topic,
        protocol,
    );
    cfg.mqtt.max_in_flight = 4;
    cfg.mqtt.live_reserved = 1;
    const BACKLOG: u64 = 3000;
    {
        let names = vec![format!("{topic}|Json")];
        let (mut spool, _) = m365_pipeline::Spool::open(&cfg.spool, &names).unwrap();
        let mut sc = scooter("sc8");
        for _ in 0..BACKLOG {
            spool
                .append(sc.next_sample(), std::time::Instant::now())
                .unwrap();
        }
        spool.flush().unwrap();
    }
    let (handle, _task) = m365_pipeline::spawn(cfg, "sc8").unwrap();
    let mut sc = SyntheticScooter::new("sc8", 10, Utc::now(), Duration::from_millis(20));
    // Live samples while the backlog drains; the first one must arrive before the backlog's end.
    let mut live_seen_before_backlog_end = false;
    for _ in 0..200 {
        handle.submit(sc.next_sample()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let seqs: Vec<u64> = inbox.json_seqs(topic).iter().map(|s| s.0).collect();
        let backlog_done = (1..=BACKLOG).all(|s| seqs.contains(&s));
        if seqs.iter().any(|s| *s > BACKLOG) && !backlog_done {
            live_seen_before_backlog_end = true;
            break;
        }
        if backlog_done {
            break;
        }
    }
    assert!(
        live_seen_before_backlog_end,
        "a live record overtook the backlog"
    );
    let ok = inbox
        .wait_for(Duration::from_secs(30), |_| {
            handle.health().spool_records == 0
        })
        .await;
    assert!(ok, "{:?}", handle.health());
    // Acknowledged by the broker is not yet delivered to the subscriber: wait for the last ones.
    let total = BACKLOG + handle.health().spooled;
    assert!(
        common::wait_delivered(&inbox, topic, total).await,
        "{total} records: {:?}",
        inbox.json_seqs(topic).len()
    );
    let seqs = inbox.json_seqs(topic);
    let max = seqs.iter().map(|s| s.0).max().unwrap();
    assert_complete(&seqs, max);
    // No reconnect here, so no resend: the backlog arrives in order, the live records in order.
    let arrivals: Vec<u64> = seqs.iter().map(|s| s.0).collect();
    assert_eq!(
        arrivals.len() as u64,
        max,
        "no duplicates without a reconnect"
    );
    // The backlog is every row pending when the connection came up: the 3,000 and any live
    // sample committed before the connection.
    let split = common::assert_two_ascending_runs(&arrivals);
    assert!(split >= BACKLOG, "split at {split}");
}

/// The reported case: one sample every 500 ms and a short outage. The backlog fits in the
/// window, so after the reconnect the subscriber sees one ascending sequence (resends of the
/// records that were unacknowledged at the outage aside).
#[tokio::test]
async fn short_outage_replays_in_order() {
    let mut broker = Broker::start(BrokerOptions {
        persistence: true,
        ..Default::default()
    })
    .await;
    if !needs_mosquitto(&broker, "short outage") {
        return;
    }
    let topic = "m365/sc9/telemetry";
    let inbox = subscribe(broker.port, topic).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &format!("tcp://127.0.0.1:{}", broker.port),
        topic,
        MqttProtocol::V5,
    );
    let (handle, _task) = m365_pipeline::spawn(cfg, "sc9").unwrap();
    let mut sc = scooter("sc9");
    let every = Duration::from_millis(500);
    feed(&handle, &mut sc, 3, every).await;
    broker.stop();
    feed(&handle, &mut sc, 5, every).await;
    broker.resume().await;
    feed(&handle, &mut sc, 4, every).await;
    let ok = inbox
        .wait_for(Duration::from_secs(10), |_| {
            handle.health().spool_records == 0
        })
        .await;
    assert!(ok, "{:?}", handle.health());
    // Acknowledged by the broker is not yet delivered to the subscriber: wait for the last ones.
    assert!(common::wait_delivered(&inbox, topic, 12).await);
    let seqs = inbox.json_seqs(topic);
    assert_complete(&seqs, 12);
    assert_ascending(&first_arrivals(&seqs));
}

/// Rewrites the stored body of the record with sequence number `seq` in the spool file.
fn rewrite_body(spool: &std::path::Path, seq: u64, body: &[u8]) {
    let conn = rusqlite::Connection::open(spool).unwrap();
    let n = conn
        .execute(
            "UPDATE records SET body = ?1 WHERE seq = ?2",
            rusqlite::params![body, i64::try_from(seq).unwrap()],
        )
        .unwrap();
    assert_eq!(n, 1, "record {seq} is in the spool");
}

#[tokio::test]
async fn a_record_that_cannot_be_sent_is_quarantined_never_deleted_and_sent_after_an_upgrade() {
    let broker = Broker::start(BrokerOptions::default()).await;
    let protocol = broker.protocols()[0];
    let topic = "t/quarantine";
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.port_for(protocol));
    let cfg = config(dir.path(), &url, topic, protocol);
    let outputs = [format!("{topic}|Json")];

    // Five records spooled while no broker was configured to take them...
    {
        let (mut spool, _) = m365_pipeline::Spool::open(&cfg.spool, &outputs).unwrap();
        let mut sc = scooter("sc12");
        for _ in 0..5 {
            spool
                .append(sc.next_sample(), std::time::Instant::now())
                .unwrap();
        }
        spool.flush().unwrap();
        assert_eq!(spool.stats().records, 5);
    }
    // ...one of them written by a version this one cannot read (the failure injected here:
    // the publisher cannot turn it into a message).
    let good = {
        let conn = rusqlite::Connection::open(&cfg.spool.path).unwrap();
        conn.query_row("SELECT body FROM records WHERE seq = 3", [], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .unwrap()
    };
    rewrite_body(&cfg.spool.path, 3, br#"{"v":99,"from":"a later version"}"#);

    let inbox = subscribe(broker.port_for(MqttProtocol::V311), "#").await;
    let (handle, task) = m365_pipeline::spawn(cfg.clone(), "sc12").unwrap();
    let others = inbox
        .wait_for(Duration::from_secs(10), |i| i.json_seqs(topic).len() >= 4)
        .await;
    assert!(
        others,
        "the others were not held up: {:?}",
        inbox.json_seqs(topic)
    );
    let kept = async {
        while handle.health().quarantined != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), kept)
        .await
        .expect("counted in the health figures");
    drop(handle);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped")
        .unwrap();
    let seqs: Vec<u64> = inbox.json_seqs(topic).iter().map(|s| s.0).collect();
    assert!(!seqs.contains(&3), "{seqs:?}");

    // Still in the file after the acknowledgements of the others and a clean stop.
    {
        let (spool, _) = m365_pipeline::Spool::open(&cfg.spool, &outputs).unwrap();
        assert_eq!(spool.stats().records, 1, "kept, never deleted");
    }
    // A restart of the same version tries it again, and keeps it again.
    let (handle, task) = m365_pipeline::spawn(cfg.clone(), "sc12").unwrap();
    let kept = async {
        while handle.health().quarantined != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), kept)
        .await
        .expect("quarantined again");
    drop(handle);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped")
        .unwrap();

    // "Upgrade": the record can be read now; the next start sends it.
    rewrite_body(&cfg.spool.path, 3, &good);
    let (handle, task) = m365_pipeline::spawn(cfg.clone(), "sc12").unwrap();
    let sent = inbox
        .wait_for(Duration::from_secs(10), |i| {
            i.json_seqs(topic).iter().any(|s| s.0 == 3)
        })
        .await;
    assert!(sent, "{:?}", inbox.json_seqs(topic));
    assert_eq!(handle.health().quarantined, 0);
    drop(handle);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped")
        .unwrap();
    let (spool, _) = m365_pipeline::Spool::open(&cfg.spool, &outputs).unwrap();
    assert_eq!(spool.stats().records, 0, "acknowledged and gone");
}
