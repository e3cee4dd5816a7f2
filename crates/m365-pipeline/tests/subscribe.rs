//! Incoming messages on `m365_pipeline::mqtt::Connection` against a real broker, for both
//! protocol versions: a subscription receives what another connection publishes, and a
//! subscriber that keeps its session receives what was published while it was away.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Broker, BrokerOptions, PipelineBroker, client_id};
use m365_pipeline::MqttProtocol;
use m365_pipeline::mqtt::{ConnectParams, Connection, NetEvent};
use tokio::sync::mpsc::Receiver;

const WAIT: Duration = Duration::from_secs(15);

fn params(protocol: MqttProtocol, port: u16, client: &str, clean_session: bool) -> ConnectParams {
    ConnectParams {
        protocol,
        host: "127.0.0.1".into(),
        port,
        tls: None,
        client_id: client.to_owned(),
        credentials: None,
        keep_alive: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        max_in_flight: 4,
        last_will: None,
        clean_session,
    }
}

/// The next event that `pick` accepts (others are skipped); panics on `Closed` or timeout.
async fn next<T>(
    events: &mut Receiver<NetEvent>,
    what: &str,
    mut pick: impl FnMut(NetEvent) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            if let NetEvent::Closed(reason) = &event {
                panic!("{what}: connection closed: {reason}");
            }
            if let Some(t) = pick(event) {
                return t;
            }
        }
        panic!("{what}: event stream ended");
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what}: nothing within {WAIT:?}"))
}

async fn connected(events: &mut Receiver<NetEvent>, what: &str) {
    next(events, what, |e| {
        matches!(e, NetEvent::Connected).then_some(())
    })
    .await;
}

/// Subscribes and waits for the broker's SUBACK.
async fn subscribed(conn: &Connection, events: &mut Receiver<NetEvent>, filter: &str) {
    conn.subscribe(filter).unwrap();
    let answer = next(events, "SUBACK", |e| match e {
        NetEvent::Subscribed(r) => Some(r),
        _ => None,
    })
    .await;
    answer.unwrap();
}

/// Publishes one message from a connection of its own and waits for its PUBACK.
async fn publish_once(protocol: MqttProtocol, port: u16, topic: &str, payload: &[u8]) {
    let (conn, mut events) = Connection::open(&params(
        protocol,
        port,
        &client_id("m365-sub-test-pub"),
        true,
    ));
    connected(&mut events, "publisher connects").await;
    conn.publish(topic, payload.to_vec(), false, Some("application/json"))
        .unwrap();
    next(&mut events, "PUBACK", |e| match e {
        NetEvent::Acked(_, r) => Some(r),
        _ => None,
    })
    .await
    .unwrap();
    conn.disconnect().unwrap();
    next(&mut events, "DISCONNECT written", |e| {
        matches!(e, NetEvent::DisconnectSent).then_some(())
    })
    .await;
}

async fn message(events: &mut Receiver<NetEvent>, what: &str) -> (String, Vec<u8>) {
    next(events, what, |e| match e {
        NetEvent::Message { topic, payload } => Some((topic, payload)),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_subscription_receives_what_another_connection_publishes() {
    let broker = Broker::start(BrokerOptions::default()).await;
    for protocol in [MqttProtocol::V311, MqttProtocol::V5] {
        let port = broker.port_for(protocol);
        let (sub, mut events) =
            Connection::open(&params(protocol, port, &client_id("m365-sub-test"), true));
        connected(&mut events, "subscriber connects").await;
        subscribed(&sub, &mut events, "m365/+/events").await;

        publish_once(protocol, port, "m365/other/telemetry", b"not for us").await;
        let topic = format!("m365/sc-{protocol:?}/events");
        publish_once(protocol, port, &topic, b"{\"event\":\"trip_ended\"}").await;

        let (got_topic, payload) = message(&mut events, "the event message").await;
        assert_eq!(got_topic, topic, "{protocol:?}");
        assert_eq!(payload, b"{\"event\":\"trip_ended\"}", "{protocol:?}");
    }
}

#[tokio::test]
async fn a_kept_session_receives_what_was_published_while_away() {
    let broker = Broker::start(BrokerOptions::default()).await;
    if !broker.is_mosquitto() {
        println!("kept sessions: needs mosquitto; not run");
        return;
    }
    for protocol in [MqttProtocol::V311, MqttProtocol::V5] {
        let port = broker.port_for(protocol);
        let id = client_id("m365-sub-kept");
        let topic = format!("m365/kept-{protocol:?}/events");
        {
            let (sub, mut events) = Connection::open(&params(protocol, port, &id, false));
            connected(&mut events, "first connection").await;
            subscribed(&sub, &mut events, &topic).await;
            sub.disconnect().unwrap();
            next(&mut events, "DISCONNECT written", |e| {
                matches!(e, NetEvent::DisconnectSent).then_some(())
            })
            .await;
        }
        publish_once(protocol, port, &topic, b"while away").await;

        let (_sub, mut events) = Connection::open(&params(protocol, port, &id, false));
        connected(&mut events, "second connection").await;
        let (got_topic, payload) = message(&mut events, "the queued message").await;
        assert_eq!(got_topic, topic, "{protocol:?}");
        assert_eq!(payload, b"while away", "{protocol:?}");
    }
}
