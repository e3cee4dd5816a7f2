//! A publisher killed with SIGKILL in the middle of a broker outage loses nothing: the
//! `m365-pipeline-load` binary runs as a child process, is killed while it spools, and a second
//! run on the same spool delivers everything. Duplicates may only repeat a record id.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Broker, BrokerOptions, JsonSeqs, assert_complete, subscribe};

const BIN: &str = env!("CARGO_BIN_EXE_m365-pipeline-load");

/// Starts the load binary; its last progress line is kept in the returned slot.
fn run(args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start m365-pipeline-load");
    let last = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().unwrap();
    let slot = last.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            *slot.lock().unwrap() = line;
        }
    });
    (child, last)
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[tokio::test]
async fn sigkill_during_an_outage_then_restart_loses_nothing() {
    let mut broker = Broker::start(BrokerOptions {
        persistence: true,
        ..Default::default()
    })
    .await;
    if !broker.is_mosquitto() {
        println!("SIGKILL: needs a broker that can be stopped (mosquitto); not run");
        return;
    }
    let topic = "m365/killed/telemetry";
    let inbox = subscribe(broker.port, topic).await;
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool.sqlite");
    let url = format!("tcp://127.0.0.1:{}", broker.port);
    let common_args = [
        "--broker",
        &url,
        "--spool",
        spool.to_str().unwrap(),
        "--topic",
        topic,
        "--scooter",
        "killed",
        "--sync",
        "always",
        "--encoding",
        "json",
    ];

    // Run 1: publishes at 100 samples/s, far more than it will finish.
    let mut args = common_args.to_vec();
    args.extend(["--count", "100000", "--interval-ms", "10"]);
    let (mut child, last) = run(&args);
    assert!(
        inbox
            .wait_for(Duration::from_secs(10), |i| i.on(topic).len() >= 50)
            .await,
        "first run publishes"
    );
    broker.stop();
    // Killed once its progress shows the outage: disconnected, with records waiting.
    let outage_seen = m365_testkit::wait::until(Duration::from_secs(20), || {
        let line = last.lock().unwrap().clone();
        line.starts_with("progress")
            && !line.ends_with("broker=Connected")
            && field(&line, "spool_records") > 50
    })
    .await;
    assert!(outage_seen, "{}", last.lock().unwrap());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let line = last.lock().unwrap().clone();
    let spooled_before_kill = field(&line, "spooled");
    assert!(
        field(&line, "spool_records") > 50,
        "outage left records in the spool: {line}"
    );

    // Run 2: broker back, 20 more samples, exits once everything is acknowledged.
    broker.resume().await;
    let mut args = common_args.to_vec();
    args.extend([
        "--count",
        "20",
        "--interval-ms",
        "10",
        "--drain-timeout-s",
        "30",
    ]);
    let (mut child, last) = run(&args);
    let status = child.wait().unwrap();
    let line = last.lock().unwrap().clone();
    assert!(status.success(), "second run drained: {line}");
    assert!(line.starts_with("done"), "{line}");
    assert_eq!(field(&line, "spool_records"), 0);

    // Every committed record arrives: seqs 1..=total without a gap, where total covers at least
    // everything the first run reported as committed plus the second run's 20.
    let ok = inbox
        .wait_for(Duration::from_secs(15), |i| {
            let mut s: Vec<u64> = i.json_seqs(topic).iter().map(|x| x.0).collect();
            s.sort_unstable();
            s.dedup();
            s.len() as u64 >= spooled_before_kill + 20
        })
        .await;
    let seqs = inbox.json_seqs(topic);
    assert!(ok, "received {} messages", seqs.len());
    let max = seqs.iter().map(|s| s.0).max().unwrap();
    assert!(max >= spooled_before_kill + 20);
    let dups = assert_complete(&seqs, max);
    println!(
        "SIGKILL: {max} records delivered ({spooled_before_kill} committed before the kill), {dups} duplicates, all with the same record id"
    );
}
