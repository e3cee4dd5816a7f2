//! Remote commands end to end on a real broker: the listener subscribed to the command topics,
//! a fake scooter side answering the requests it hands out, and the acknowledgements read back
//! from the result topics. Every refusal and every success is acknowledged exactly once, the
//! replay memory survives a restart, acknowledgements made while the broker is away arrive
//! once it is back, and the Mosquitto ACL example lets only the right users command and answer.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use m365::commands::{
    CommandName, CommandRequest, CommandsConfig, ControlState, Listener, ListenerStatus,
    REPLAY_FILE, ScooterCommands, spawn,
};
use m365_proto::registers::settings::KersLevel;
use m365_testkit::broker::{
    Broker, BrokerOptions, Inbox, MqttVersion, client_id, publish, require_mosquitto, subscribe,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

/// Upper bound of any wait; the tests assert what happened, not how fast.
const WAIT: Duration = Duration::from_secs(30);

/// The broker settings the listener uses, for the version the broker serves best.
fn wire(broker: &Broker) -> m365_pipeline::MqttConfig {
    let version = broker.versions()[0];
    m365_pipeline::MqttConfig {
        broker: broker.url(version),
        protocol: match version {
            MqttVersion::V5 => m365_pipeline::MqttProtocol::V5,
            MqttVersion::V311 => m365_pipeline::MqttProtocol::V311,
        },
        ..wire_defaults()
    }
}

/// Settings with quick reconnects and a client id of the test's own.
fn wire_defaults() -> m365_pipeline::MqttConfig {
    m365_pipeline::MqttConfig {
        protocol: m365_pipeline::MqttProtocol::V5,
        client: client_id("m365-commands"),
        reconnect_min: 0.05,
        reconnect_max: 0.2,
        ..m365_pipeline::MqttConfig::default()
    }
}

/// The port a 3.1.1 test client (publisher, subscriber) uses.
fn port(broker: &Broker) -> u16 {
    broker.port_of(MqttVersion::V311)
}

/// A scooter side that carries every request out on a pretend scooter and answers with its
/// state, until its channel closes.
fn fake_scooter(mut requests: mpsc::Receiver<CommandRequest>) {
    tokio::spawn(async move {
        let mut state = ControlState {
            powered: true,
            locked: false,
            cruise: false,
            tail_light: false,
            kers: KersLevel::Medium,
        };
        while let Some(request) = requests.recv().await {
            if !request.start() {
                continue;
            }
            match request.command().action {
                m365::commands::Action::Lock => state.locked = true,
                m365::commands::Action::Unlock => state.locked = false,
                m365::commands::Action::Kers(level) => state.kers = level,
                m365::commands::Action::Cruise(on) => state.cruise = on,
                m365::commands::Action::TailLight(on) => state.tail_light = on,
                m365::commands::Action::SampleNow => {}
                m365::commands::Action::PowerOff => state.powered = false,
            }
            request.finish(Ok(state));
        }
    });
}

/// Waits until the listener is connected and subscribed to every command topic.
async fn subscribed(status: &mut watch::Receiver<ListenerStatus>) {
    tokio::time::timeout(WAIT, status.wait_for(|s| s.subscribed))
        .await
        .expect("the listener subscribes in time")
        .expect("the listener runs");
}

fn start(broker: &Broker, scooters: Vec<ScooterCommands>, dir: &Path) -> Listener {
    spawn(
        &wire(broker),
        scooters,
        Duration::from_secs(300),
        dir.join(REPLAY_FILE),
    )
    .expect("usable settings")
}

fn allow(names: &[CommandName]) -> BTreeSet<CommandName> {
    names.iter().copied().collect()
}

/// The acknowledgements received on `topic`, parsed.
fn results(inbox: &Inbox, topic: &str) -> Vec<Value> {
    inbox
        .on(topic)
        .iter()
        .map(|p| serde_json::from_slice(p).expect("an acknowledgement is JSON"))
        .collect()
}

/// What an acknowledgement says in short: `ok` or its refusal code.
fn verdict(result: &Value) -> String {
    if result["ok"] == json!(true) {
        assert!(result["error"].is_null(), "{result}");
        "ok".to_owned()
    } else {
        assert!(result["state"].is_null(), "{result}");
        assert!(
            result["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{result}"
        );
        result["error"]["code"].as_str().unwrap().to_owned()
    }
}

/// id → verdicts, in arrival order.
fn by_id(results: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in results {
        map.entry(r["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(verdict(r));
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_and_every_success_is_acknowledged_exactly_once() {
    let broker = Broker::start(BrokerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = CommandsConfig::default();
    let inbox = subscribe(port(&broker), "m365/+/command/result").await;

    let (s1_tx, s1_rx) = mpsc::channel(8);
    fake_scooter(s1_rx);
    // A scooter whose task never takes a request: its link is down.
    let (s2_tx, _s2_rx) = mpsc::channel(8);
    let scooters = vec![
        ScooterCommands::new(
            &config,
            "s1",
            allow(&[CommandName::Lock, CommandName::Unlock, CommandName::Kers]),
            s1_tx,
        ),
        ScooterCommands::new(&config, "s2", allow(&[CommandName::Lock]), s2_tx),
    ];
    let mut listener = start(&broker, scooters, dir.path());
    subscribed(&mut listener.status).await;

    let s1 = "m365/s1/command";
    let s2 = "m365/s2/command";
    let p = port(&broker);
    publish(p, s2, r#"{"id":"offline","command":"lock","ttl":2}"#, false).await;
    publish(p, s1, r#"{"id":"lock-1","command":"lock","ttl":30}"#, false).await;
    publish(
        p,
        s1,
        r#"{"id":"kers-1","command":"kers","value":"strong","ttl":30}"#,
        false,
    )
    .await;
    publish(
        p,
        s1,
        r#"{"id":"power","command":"power_off","ttl":30}"#,
        false,
    )
    .await;
    publish(
        p,
        s1,
        r#"{"id":"late","command":"lock","expires":"2020-01-01T00:00:00Z"}"#,
        false,
    )
    .await;
    publish(p, s1, r#"{"id":"far","command":"lock","ttl":3600}"#, false).await;
    publish(p, s1, r#"{"id":"bad","command":"fly","ttl":30}"#, false).await;
    // No readable id: nobody to acknowledge.
    publish(p, s1, r#"{"command":"lock","ttl":30}"#, false).await;
    publish(p, s1, "not json", false).await;
    // Wait for the first lock's acknowledgement, then send it again.
    assert!(
        inbox
            .wait_for(WAIT, |i| by_id(&results(i, "m365/s1/command/result"))
                .contains_key("lock-1"))
            .await
    );
    publish(p, s1, r#"{"id":"lock-1","command":"lock","ttl":30}"#, false).await;
    // The offline command is refused at its expiry; a marker after it shows that nothing else
    // is on its way.
    assert!(
        inbox
            .wait_for(WAIT, |i| !i.on("m365/s2/command/result").is_empty())
            .await
    );
    publish(
        p,
        s1,
        r#"{"id":"marker","command":"unlock","ttl":30}"#,
        false,
    )
    .await;
    assert!(
        inbox
            .wait_for(WAIT, |i| by_id(&results(i, "m365/s1/command/result"))
                .contains_key("marker"))
            .await
    );

    let s1_results = results(&inbox, "m365/s1/command/result");
    let verdicts = by_id(&s1_results);
    let expected: BTreeMap<String, Vec<String>> = [
        ("lock-1", vec!["ok", "replayed"]),
        ("kers-1", vec!["ok"]),
        ("power", vec!["not_allowed"]),
        ("late", vec!["expired"]),
        ("far", vec!["too_far_ahead"]),
        ("bad", vec!["malformed"]),
        ("marker", vec!["ok"]),
    ]
    .into_iter()
    .map(|(id, v)| (id.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(verdicts, expected, "{s1_results:#?}");
    let s2_results = results(&inbox, "m365/s2/command/result");
    assert_eq!(
        by_id(&s2_results),
        BTreeMap::from([("offline".to_owned(), vec!["offline".to_owned()])])
    );

    // The successes report the state read back.
    let state_of = |id: &str| {
        s1_results
            .iter()
            .find(|r| r["id"] == json!(id) && r["ok"] == json!(true))
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(
        state_of("lock-1"),
        json!({"powered": true, "locked": true, "cruise": false, "tail_light": false, "kers": "medium"})
    );
    assert_eq!(state_of("kers-1")["kers"], json!("strong"));
    assert_eq!(state_of("marker")["locked"], json!(false));
    // Nothing left behind: every command answered, every acknowledgement taken by the broker.
    tokio::time::timeout(
        WAIT,
        listener
            .status
            .wait_for(|s| s.pending == 0 && s.unacknowledged == 0),
    )
    .await
    .expect("nothing pending")
    .unwrap();
    listener.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_seen_before_a_restart_is_refused_after_it() {
    let broker = Broker::start(BrokerOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = CommandsConfig::default();
    let inbox = subscribe(port(&broker), "m365/s1/command/result").await;
    let command = r#"{"id":"once","command":"lock","ttl":60}"#;
    for run in 1..=2 {
        let (tx, rx) = mpsc::channel(8);
        fake_scooter(rx);
        let scooters = vec![ScooterCommands::new(
            &config,
            "s1",
            allow(&[CommandName::Lock]),
            tx,
        )];
        let mut listener = start(&broker, scooters, dir.path());
        subscribed(&mut listener.status).await;
        publish(port(&broker), "m365/s1/command", command, false).await;
        assert!(
            inbox
                .wait_for(WAIT, |i| i.on("m365/s1/command/result").len() == run)
                .await
        );
        listener.task.abort();
        let _ = listener.task.await;
    }
    let verdicts: Vec<String> = results(&inbox, "m365/s1/command/result")
        .iter()
        .map(verdict)
        .collect();
    assert_eq!(verdicts, ["ok", "replayed"]);
    assert!(dir.path().join(REPLAY_FILE).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_made_while_the_broker_is_away_arrives_once_it_is_back() {
    if !require_mosquitto("acknowledgements across a broker restart") {
        return;
    }
    let mut broker = Broker::start(BrokerOptions {
        persistence: true,
        ..BrokerOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = CommandsConfig::default();
    let inbox = subscribe(port(&broker), "m365/s1/command/result").await;
    let (tx, mut rx) = mpsc::channel::<CommandRequest>(8);
    let (taken_tx, taken) = oneshot::channel();
    let (go_tx, go) = oneshot::channel::<()>();
    // A scooter side that takes the command, then answers only when told to.
    tokio::spawn(async move {
        let request = rx.recv().await.unwrap();
        assert!(request.start());
        taken_tx.send(()).unwrap();
        go.await.unwrap();
        request.finish(Ok(ControlState {
            powered: true,
            locked: true,
            cruise: false,
            tail_light: false,
            kers: KersLevel::Weak,
        }));
    });
    let scooters = vec![ScooterCommands::new(
        &config,
        "s1",
        allow(&[CommandName::Lock]),
        tx,
    )];
    let mut listener = start(&broker, scooters, dir.path());
    subscribed(&mut listener.status).await;
    publish(
        port(&broker),
        "m365/s1/command",
        r#"{"id":"away","command":"lock","ttl":60}"#,
        false,
    )
    .await;
    tokio::time::timeout(WAIT, taken).await.unwrap().unwrap();

    broker.stop();
    tokio::time::timeout(WAIT, listener.status.wait_for(|s| !s.connected))
        .await
        .unwrap()
        .unwrap();
    go_tx.send(()).unwrap();
    // The acknowledgement waits in the listener while the broker is away.
    tokio::time::timeout(
        WAIT,
        listener
            .status
            .wait_for(|s| s.pending == 0 && s.unacknowledged == 1),
    )
    .await
    .unwrap()
    .unwrap();
    broker.resume().await;
    tokio::time::timeout(WAIT, listener.status.wait_for(|s| s.unacknowledged == 0))
        .await
        .unwrap()
        .unwrap();
    assert!(
        inbox
            .wait_for(WAIT, |i| !i.on("m365/s1/command/result").is_empty())
            .await
    );
    // A marker from another client: everything the broker had for the subscriber came first.
    publish(port(&broker), "m365/s1/command/result", "marker", false).await;
    assert!(
        inbox
            .wait_for(WAIT, |i| i.on("m365/s1/command/result").len() >= 2)
            .await
    );
    let received = inbox.on("m365/s1/command/result");
    assert_eq!(received.len(), 2, "{received:?}");
    let result: Value = serde_json::from_slice(&received[0]).unwrap();
    assert_eq!(verdict(&result), "ok");
    assert_eq!(result["id"], json!("away"));
    assert_eq!(result["state"]["locked"], json!(true));
    listener.task.abort();
}

/// A mosquitto of the test's own, with the password file and the ACL example of
/// `packaging/mosquitto/m365.acl`; killed when dropped.
struct AclBroker {
    child: std::process::Child,
    port: m365_testkit::net::ReservedPort,
    _dir: tempfile::TempDir,
}

impl Drop for AclBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const USERS: [(&str, &str); 3] = [
    ("m365-gateway", "gateway-secret"),
    ("homeassistant", "ha-secret"),
    ("viewer", "viewer-secret"),
];

async fn acl_broker() -> AclBroker {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "").unwrap();
    for (user, pass) in USERS {
        let made = std::process::Command::new("mosquitto_passwd")
            .arg("-b")
            .arg(&passwd)
            .arg(user)
            .arg(pass)
            .status()
            .expect("mosquitto_passwd runs");
        assert!(made.success());
    }
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/mosquitto/m365.acl");
    assert!(acl.is_file(), "{}", acl.display());
    let port = m365_testkit::net::ReservedPort::new();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
             acl_file {}\npersistence false\nlog_dest none\n",
            port.port(),
            passwd.display(),
            acl.display()
        ),
    )
    .unwrap();
    let child = std::process::Command::new(m365_testkit::broker::mosquitto_path().unwrap())
        .arg("-c")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("mosquitto runs");
    let broker = AclBroker {
        child,
        port,
        _dir: dir,
    };
    assert!(m365_testkit::net::wait_listening(broker.port.port(), WAIT).await);
    broker
}

/// Publishes one QoS 1 message as `user` with MQTT 5 and returns the broker's answer (its
/// PUBACK's reason: a refusal is reported, where 3.1.1 would drop the message silently).
async fn publish_as(
    port: u16,
    user: (&str, &str),
    topic: &str,
    payload: &str,
) -> Result<(), String> {
    use m365_pipeline::mqtt::{ConnectParams, Connection, NetEvent};
    let params = ConnectParams {
        protocol: m365_pipeline::MqttProtocol::V5,
        host: "127.0.0.1".into(),
        port,
        tls: None,
        client_id: client_id(user.0),
        credentials: Some((user.0.to_owned(), user.1.to_owned())),
        keep_alive: Duration::from_secs(30),
        connect_timeout: Duration::from_secs(5),
        max_in_flight: 1,
        last_will: None,
        clean_session: true,
    };
    let (conn, mut events) = Connection::open(&params);
    let answered = tokio::time::timeout(WAIT, async {
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Connected => conn
                    .publish(topic, payload.as_bytes().to_vec(), false, None)
                    .unwrap(),
                NetEvent::Acked(_, answer) => return answer,
                NetEvent::Closed(reason) => panic!("{}: {reason}", user.0),
                _ => {}
            }
        }
        panic!("{}: the connection ended", user.0)
    })
    .await;
    answered.expect("the broker answers the publish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_example_lets_only_home_assistant_command_and_only_the_gateway_answer() {
    if !require_mosquitto("the Mosquitto ACL example") {
        return;
    }
    let broker = acl_broker().await;
    let port = broker.port.port();
    let dir = tempfile::tempdir().unwrap();
    let config = CommandsConfig::default();
    let (ha, viewer) = (USERS[1], USERS[2]);
    let inbox = m365_testkit::broker::subscribe_with(
        port,
        "m365/#",
        &m365_testkit::broker::SubscriberOptions {
            credentials: Some((viewer.0.to_owned(), viewer.1.to_owned())),
            clean_session: true,
        },
    )
    .await;

    let (tx, rx) = mpsc::channel(8);
    fake_scooter(rx);
    let scooters = vec![ScooterCommands::new(
        &config,
        "s1",
        allow(&[CommandName::Lock, CommandName::Unlock]),
        tx,
    )];
    let gateway = m365_pipeline::MqttConfig {
        broker: format!("mqtt://127.0.0.1:{port}"),
        username: Some(USERS[0].0.to_owned()),
        password: Some(m365_pipeline::PasswordSource::Value(
            m365_pipeline::Secret::new(USERS[0].1),
        )),
        ..wire_defaults()
    };
    let mut listener = spawn(
        &gateway,
        scooters,
        Duration::from_secs(300),
        dir.path().join(REPLAY_FILE),
    )
    .unwrap();
    subscribed(&mut listener.status).await;

    // A reader cannot command, nor forge an acknowledgement.
    let refused = publish_as(
        port,
        viewer,
        "m365/s1/command",
        r#"{"id":"forged","command":"unlock","ttl":30}"#,
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    let refused = publish_as(
        port,
        viewer,
        "m365/s1/command/result",
        r#"{"id":"real","ok":false,"state":null,"error":{"code":"failed","message":"forged"}}"#,
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    // Home Assistant can.
    for command in [
        r#"{"id":"real","command":"lock","ttl":30}"#,
        r#"{"id":"marker","command":"unlock","ttl":30}"#,
    ] {
        publish_as(port, ha, "m365/s1/command", command)
            .await
            .unwrap();
    }
    assert!(
        inbox
            .wait_for(WAIT, |i| by_id(&results(i, "m365/s1/command/result"))
                .contains_key("marker"))
            .await
    );
    let received = results(&inbox, "m365/s1/command/result");
    let verdicts = by_id(&received);
    assert_eq!(
        verdicts,
        BTreeMap::from([
            ("real".to_owned(), vec!["ok".to_owned()]),
            ("marker".to_owned(), vec!["ok".to_owned()]),
        ]),
        "{received:#?}"
    );
    // The reader reads what the scooter reports, and not the commands.
    assert!(inbox.on("m365/s1/command").is_empty());
    listener.task.abort();
}

#[test]
fn the_documentation_explains_every_refusal_code() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/commands.md"),
    )
    .unwrap();
    for code in m365::commands::Refusal::CODES {
        assert!(
            doc.contains(&format!("| `{code}` |")),
            "docs/commands.md lacks {code}"
        );
    }
    for name in CommandName::ALL {
        assert!(
            doc.contains(&format!("`{}`", name.as_str())),
            "docs/commands.md lacks {name}"
        );
    }
}
