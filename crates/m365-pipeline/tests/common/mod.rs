//! Test support: a real MQTT broker on a free loopback port (its own `mosquitto` when the
//! binary exists, otherwise the embedded `rumqttd`; the choice is printed), a collecting
//! subscriber and a pipeline configuration for tests. Cases that stop, restart or configure the
//! broker (password file, TLS listener) need mosquitto and say so when it is missing.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use m365_pipeline::{
    Encoding, MqttConfig, MqttProtocol, OutputConfig, PipelineConfig, SpoolConfig, SyncPolicy,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::net::TcpStream;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";

/// A loopback port nothing listens on, never handed out twice in this process: tests run in
/// parallel, and a port released by a stopped broker must not go to another test's broker.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Whether mosquitto can be used; `M365_TEST_BROKER=embedded` forces the embedded broker.
pub fn have_mosquitto() -> bool {
    std::env::var("M365_TEST_BROKER").as_deref() != Ok("embedded") && Path::new(MOSQUITTO).exists()
}

/// Extra broker settings.
#[derive(Default, Clone)]
pub struct BrokerOptions {
    /// Keep sessions across restarts (needed so a subscriber misses nothing while the broker is
    /// down and comes back).
    pub persistence: bool,
    /// Require this user name and password.
    pub credentials: Option<(String, String)>,
    /// Serve TLS with this PEM certificate and key.
    pub tls: Option<(String, String)>,
    /// Log connections and disconnections to a file (see [`Broker::log`]).
    pub log: bool,
}

enum Kind {
    Mosquitto { child: Option<Child>, conf: PathBuf },
    Embedded { v5_port: u16, v4_port: u16 },
}

/// A broker for one test.
pub struct Broker {
    kind: Kind,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Broker {
    /// Starts mosquitto (or the embedded broker) and waits until it accepts connections.
    pub async fn start(opts: BrokerOptions) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        if have_mosquitto() {
            // `user root`: mosquitto started as root otherwise drops to the `mosquitto` user,
            // which cannot write its persistence file into this private temporary directory
            // (without a word). Run as another user, the setting has no effect.
            let mut conf = format!(
                "user root\nlistener {port} 127.0.0.1\nmax_queued_messages 1000000\nmax_inflight_messages 0\n"
            );
            match &opts.credentials {
                Some((user, pass)) => {
                    let pw = dir.path().join("passwd");
                    std::fs::write(&pw, "").unwrap();
                    let st = Command::new("mosquitto_passwd")
                        .arg("-b")
                        .arg(&pw)
                        .arg(user)
                        .arg(pass)
                        .status()
                        .expect("mosquitto_passwd");
                    assert!(st.success());
                    conf += &format!("allow_anonymous false\npassword_file {}\n", pw.display());
                }
                None => conf += "allow_anonymous true\n",
            }
            if let Some((cert, key)) = &opts.tls {
                let c = dir.path().join("cert.pem");
                let k = dir.path().join("key.pem");
                std::fs::write(&c, cert).unwrap();
                std::fs::write(&k, key).unwrap();
                conf += &format!("certfile {}\nkeyfile {}\n", c.display(), k.display());
            }
            if opts.log {
                conf += &format!(
                    "log_dest file {}\nlog_type notice\nlog_type information\nconnection_messages true\n",
                    dir.path().join("mosquitto.log").display()
                );
            }
            if opts.persistence {
                conf += &format!(
                    "persistence true\npersistence_location {}/\nautosave_interval 1\n",
                    dir.path().display()
                );
            } else {
                conf += "persistence false\n";
            }
            let conf_path = dir.path().join("mosquitto.conf");
            std::fs::write(&conf_path, conf).unwrap();
            println!("broker: mosquitto on 127.0.0.1:{port}");
            let mut b = Broker {
                kind: Kind::Mosquitto {
                    child: None,
                    conf: conf_path,
                },
                port,
                dir,
            };
            b.resume().await;
            b
        } else {
            assert!(
                opts.credentials.is_none() && opts.tls.is_none(),
                "embedded broker: plain only"
            );
            let v4_port = free_port();
            let v5_port = free_port();
            let server = |name: &str, port: u16| {
                serde_json::json!({ "1": {
                    "name": name,
                    "listen": format!("127.0.0.1:{port}"),
                    "next_connection_delay_ms": 1,
                    "connections": {
                        "connection_timeout_ms": 60000,
                        "max_payload_size": 1048576,
                        "max_inflight_count": 200
                    }
                }})
            };
            let cfg: rumqttd::Config = serde_json::from_value(serde_json::json!({
                "id": 0,
                "router": {
                    "max_connections": 100,
                    "max_outgoing_packet_count": 1000,
                    "max_segment_size": 104857600,
                    "max_segment_count": 10
                },
                "v4": server("v4", v4_port),
                "v5": server("v5", v5_port),
            }))
            .unwrap();
            std::thread::spawn(move || {
                let mut broker = rumqttd::Broker::new(cfg);
                let _ = broker.start();
            });
            println!(
                "broker: embedded rumqttd (mosquitto not found) on 127.0.0.1:{v4_port} (3.1.1) / {v5_port} (5)"
            );
            wait_port(v4_port).await;
            wait_port(v5_port).await;
            Broker {
                kind: Kind::Embedded { v5_port, v4_port },
                port: v5_port,
                dir,
            }
        }
    }

    pub fn is_mosquitto(&self) -> bool {
        matches!(self.kind, Kind::Mosquitto { .. })
    }

    /// Protocols the publisher may use with the test subscriber (a 3.1.1 client). rumqttd
    /// 0.20 cannot forward MQTT 5 publishes that carry properties to 3.1.1 subscribers, so the
    /// embedded broker is used with 3.1.1 only.
    pub fn protocols(&self) -> Vec<MqttProtocol> {
        match self.kind {
            Kind::Mosquitto { .. } => vec![MqttProtocol::V5, MqttProtocol::V311],
            Kind::Embedded { .. } => vec![MqttProtocol::V311],
        }
    }

    /// Port for a client of `protocol`.
    pub fn port_for(&self, protocol: MqttProtocol) -> u16 {
        match (&self.kind, protocol) {
            (Kind::Embedded { v4_port, .. }, MqttProtocol::V311) => *v4_port,
            (Kind::Embedded { v5_port, .. }, MqttProtocol::V5) => *v5_port,
            _ => self.port,
        }
    }

    /// Stops the broker (SIGTERM, so a persistent broker saves its sessions).
    pub fn stop(&mut self) {
        if let Kind::Mosquitto { child, .. } = &mut self.kind
            && let Some(mut c) = child.take()
        {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn resume(&mut self) {
        if let Kind::Mosquitto { child, conf } = &mut self.kind {
            let c = Command::new(MOSQUITTO)
                .arg("-c")
                .arg(&*conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mosquitto");
            *child = Some(c);
            wait_port(self.port).await;
        }
    }

    /// What mosquitto logged (with [`BrokerOptions::log`]); empty otherwise.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Kind::Mosquitto { child: Some(c), .. } = &mut self.kind {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn wait_port(port: u16) {
    for _ in 0..200 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// One received message: topic and payload.
pub type Message = (String, Vec<u8>);

/// Messages received by a subscriber.
#[derive(Clone, Default)]
pub struct Inbox(pub Arc<Mutex<Vec<Message>>>, pub Arc<Mutex<Vec<String>>>);

impl Inbox {
    pub fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// `(seq, record_id)` of every `json` message on `topic`.
    pub fn json_seqs(&self, topic: &str) -> Vec<(u64, String)> {
        self.on(topic)
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_slice(p).unwrap();
                (
                    v["seq"].as_u64().unwrap(),
                    v["record_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Waits until `pred` holds, up to `timeout`.
    pub async fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&Inbox) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if pred(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pred(self)
    }
}

/// A QoS 1 subscriber to `filter` with a persistent session (survives broker restarts when the
/// broker persists sessions). Returns once subscribed.
pub async fn subscribe(port: u16, filter: &str) -> Inbox {
    let mut o = MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
    o.set_clean_session(false)
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut el) = AsyncClient::new(o, 64);
    let inbox = Inbox::default();
    let sink = inbox.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let filter = filter.to_owned();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    client
                        .subscribe(filter.clone(), QoS::AtLeastOnce)
                        .await
                        .unwrap();
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    sink.0
                        .lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => {
                    sink.1.lock().unwrap().push(format!(
                        "error {e} at {} msgs",
                        sink.0.lock().unwrap().len()
                    ));
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("subscribed in time")
        .unwrap();
    inbox
}

/// A pipeline configuration for tests: quick reconnects, one `json` output.
pub fn config(
    spool_dir: &Path,
    broker_url: &str,
    topic: &str,
    protocol: MqttProtocol,
) -> PipelineConfig {
    PipelineConfig {
        spool: SpoolConfig {
            path: spool_dir.join("spool.sqlite"),
            sync: SyncPolicy::Normal,
            commit_every: 10,
            commit_interval_ms: 50,
            ..SpoolConfig::default()
        },
        mqtt: MqttConfig {
            broker: broker_url.to_owned(),
            protocol,
            client: format!("m365-test-{}", free_port()),
            reconnect_min: 0.1,
            reconnect_max: 0.5,
            connect_timeout: 2,
            keep_alive: 5,
            max_in_flight: 16,
            live_reserved: 4,
            outputs: vec![OutputConfig {
                topic: topic.to_owned(),
                encoding: Encoding::Json,
                batch: None,
                linger_ms: None,
                legacy_no_fix: Default::default(),
            }],
            ..MqttConfig::default()
        },
        channel_capacity: 256,
    }
}

/// Asserts that `seqs` covers exactly 1..=n and that every duplicate carries the same record id.
pub fn assert_complete(seqs: &[(u64, String)], n: u64) -> usize {
    let mut by_seq = std::collections::BTreeMap::new();
    let mut dups = 0;
    for (s, id) in seqs {
        if let Some(prev) = by_seq.insert(*s, id.clone()) {
            assert_eq!(
                &prev, id,
                "seq {s} published twice with different record ids"
            );
            dups += 1;
        }
    }
    let got: Vec<u64> = by_seq.keys().copied().collect();
    let want: Vec<u64> = (1..=n).collect();
    if got != want {
        let missing: Vec<u64> = want
            .iter()
            .filter(|s| !by_seq.contains_key(s))
            .copied()
            .collect();
        panic!(
            "expected seq 1..={n}; missing {missing:?}; extra {:?}",
            got.iter().filter(|s| **s > n).collect::<Vec<_>>()
        );
    }
    dups
}

/// Sequence numbers in arrival order with QoS 1 resends removed: a record id seen before is a
/// resend, which is what a consumer deduplicating by `record_id` drops.
pub fn first_arrivals(seqs: &[(u64, String)]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    seqs.iter()
        .filter(|(_, id)| seen.insert(id.clone()))
        .map(|(s, _)| *s)
        .collect()
}

/// Asserts strictly ascending sequence numbers.
pub fn assert_ascending(seqs: &[u64]) {
    if let Some(w) = seqs.windows(2).find(|w| w[0] >= w[1]) {
        panic!("{} before {}: {seqs:?}", w[0], w[1]);
    }
}

/// Asserts the order the schema promises while a backlog drains next to live records: there is
/// a split `k` such that the records up to `k` (the backlog) arrive ascending and the records
/// above `k` (live) arrive ascending. Returns the smallest such `k`.
pub fn assert_two_ascending_runs(seqs: &[u64]) -> u64 {
    let ascending = |it: &mut dyn Iterator<Item = u64>| {
        let v: Vec<u64> = it.collect();
        v.windows(2).all(|w| w[0] < w[1])
    };
    let mut splits: Vec<u64> = seqs.to_vec();
    splits.push(0);
    splits.sort_unstable();
    splits.dedup();
    for k in splits {
        if ascending(&mut seqs.iter().copied().filter(|s| *s <= k))
            && ascending(&mut seqs.iter().copied().filter(|s| *s > k))
        {
            return k;
        }
    }
    panic!("not two ascending runs: {seqs:?}");
}
