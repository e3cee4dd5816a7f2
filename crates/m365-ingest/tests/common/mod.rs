//! Test support: a database of its own per test on the machine's PostgreSQL (127.0.0.1:5432,
//! user `postgres`), dropped at the end; configurations for workers; an MQTT 5 publisher; a
//! worker run in-process or as the real binary.
//!
//! PostgreSQL unreachable: the test prints a notice and passes without running, except under
//! `CI`, where it fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use m365_ingest::config::{self, Config, PostgisMode};
use m365_ingest::{LinkState, Shutdown, ShutdownTrigger, Totals};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};

/// Where the machine's PostgreSQL listens; `M365_TEST_PG` overrides (a key=value string).
pub(crate) fn admin_conninfo() -> String {
    std::env::var("M365_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into())
}

/// Connects with `conninfo`; the connection is driven by a spawned task.
pub(crate) async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A database for one test, dropped (with its connections) when this is dropped.
pub(crate) struct TestDb {
    pub(crate) name: String,
    pub(crate) admin: Client,
    pub(crate) client: Client,
}

impl TestDb {
    /// Creates the database, or returns `None` (with a notice) when PostgreSQL is unreachable
    /// outside CI.
    pub(crate) async fn create(test: &str) -> Option<TestDb> {
        let admin = match connect(&admin_conninfo()).await {
            Ok(c) => c,
            Err(e) => {
                if m365_testkit::in_ci() {
                    panic!("{test}: PostgreSQL unreachable ({e}) and CI is set");
                }
                println!("{test}: PostgreSQL unreachable at 127.0.0.1:5432 ({e}); not run");
                return None;
            }
        };
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "m365_ingest_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(20)
                .collect::<String>()
        );
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let client = connect(&format!("{} dbname={name}", admin_conninfo()))
            .await
            .expect("connect to the test database");
        Some(TestDb {
            name,
            admin,
            client,
        })
    }

    /// `postgresql://` URL of the database.
    pub(crate) fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// A single `bigint` result.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        self.client
            .query_one(sql, &[])
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get(0)
    }

    /// Whether the PostGIS extension can be created on this server.
    pub(crate) async fn postgis_available(&self) -> bool {
        self.admin
            .query_opt(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'",
                &[],
            )
            .await
            .unwrap()
            .is_some()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropped inside a runtime: a thread with its own runtime does the DROP.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(c) = connect(&admin_conninfo()).await {
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// The configuration text of a worker.
pub(crate) fn config_text(
    db_url: &str,
    broker_port: u16,
    batch: usize,
    postgis: PostgisMode,
) -> String {
    format!(
        "[mqtt]\nbroker = \"tcp://127.0.0.1:{broker_port}\"\nkeep_alive = \"5s\"\n\
         reconnect_min = \"100ms\"\nreconnect_max = \"1s\"\nin_flight = 200\n\
         [database]\nurl = \"{db_url}\"\npostgis = \"{}\"\nreconnect_min = \"100ms\"\n\
         reconnect_max = \"1s\"\n[batch]\nsize = {batch}\nlinger = \"100ms\"\n",
        match postgis {
            PostgisMode::Auto => "auto",
            PostgisMode::Off => "off",
        }
    )
}

/// The parsed configuration of a worker.
pub(crate) fn config(db_url: &str, broker_port: u16, batch: usize, postgis: PostgisMode) -> Config {
    config::parse(
        "test.toml",
        &config_text(db_url, broker_port, batch, postgis),
    )
    .expect("valid test configuration")
}

/// A worker run in-process.
pub(crate) struct Worker {
    pub(crate) id: String,
    trigger: ShutdownTrigger,
    state: tokio::sync::watch::Receiver<LinkState>,
    task: JoinHandle<Result<Totals, m365_ingest::RunError>>,
}

impl Worker {
    /// Starts it and returns once its subscriptions are in place.
    pub(crate) async fn start(cfg: Config, id: &str) -> Worker {
        let (trigger, stop) = Shutdown::new();
        let (tx, mut state) = tokio::sync::watch::channel(LinkState::Connecting);
        let task = tokio::spawn(m365_ingest::run_observed(cfg, id.to_owned(), stop, tx));
        tokio::time::timeout(
            Duration::from_secs(30),
            state.wait_for(|s| matches!(s, LinkState::Connected { .. })),
        )
        .await
        .unwrap_or_else(|_| panic!("worker {id} subscribed in time"))
        .expect("worker running");
        Worker {
            id: id.to_owned(),
            trigger,
            state,
            task,
        }
    }

    /// Stops it and returns its totals.
    pub(crate) async fn stop(self) -> Totals {
        self.trigger.trigger();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("worker stops in time")
            .expect("worker task")
            .expect("worker ran without error")
    }
}

/// The real binary as a child process, its standard error kept.
pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Process {
    pub(crate) fn start(config_path: &Path, client_id: &str) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_m365-ingest"))
            .arg("--config")
            .arg(config_path)
            .arg("--client-id")
            .arg(client_id)
            .env("RUST_LOG", "info,m365_ingest=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start m365-ingest");
        let log = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Process { child, log }
    }

    /// SIGKILL.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait for m365-ingest")
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MQTT 5 publisher (QoS 1) that returns once each message is acknowledged by the broker.
pub(crate) struct Publisher {
    client: AsyncClient,
    acks: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl Publisher {
    pub(crate) async fn connect(port: u16) -> Publisher {
        let mut o = MqttOptions::new(m365_testkit::broker::client_id("pub"), "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(Some(16 * 1024 * 1024));
        let (client, mut el) = AsyncClient::new(o, 1024);
        let (tx, acks) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut ready_tx = Some(ready_tx);
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .expect("publisher connected")
            .unwrap();
        Publisher { client, acks }
    }

    /// Publishes and waits for the PUBACK.
    pub(crate) async fn send(&mut self, topic: &str, payload: Vec<u8>, content_type: Option<&str>) {
        self.send_many(std::iter::once((topic.to_owned(), payload, content_type)))
            .await;
    }

    /// Publishes all, then waits for every PUBACK.
    pub(crate) async fn send_many<'a>(
        &mut self,
        msgs: impl IntoIterator<Item = (String, Vec<u8>, Option<&'a str>)>,
    ) {
        let mut n = 0;
        for (topic, payload, ct) in msgs {
            let props = PublishProperties {
                content_type: ct.map(str::to_owned),
                ..Default::default()
            };
            self.client
                .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, props)
                .await
                .expect("publish queued");
            n += 1;
        }
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(30), self.acks.recv())
                .await
                .expect("PUBACK in time")
                .expect("publisher alive");
        }
    }
}

/// Waits up to `timeout` for `sql` (a count) to reach `want`; returns the last value.
pub(crate) async fn wait_count(db: &TestDb, sql: &str, want: i64, timeout: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = db.count(sql).await;
        if n >= want || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
