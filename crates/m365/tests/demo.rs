//! `m365 demo` as a user (or a script) runs it: a process that prints what arrived at the broker
//! and ends with a machine-checkable summary. Plain mode, since stdout is a pipe here.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_m365");

fn demo(args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("m365 demo runs")
}

/// The `key=value` pairs of the line starting with `prefix `.
fn pairs<'a>(line: &'a str, prefix: &str) -> Option<BTreeMap<&'a str, &'a str>> {
    let rest = line.strip_prefix(prefix)?.strip_prefix(' ')?;
    Some(
        rest.split(' ')
            .filter_map(|kv| kv.split_once('='))
            .collect(),
    )
}

fn number(map: &BTreeMap<&str, &str>, key: &str, unit: &str) -> f64 {
    let text = map
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {map:?}"));
    text.strip_suffix(unit)
        .unwrap_or_else(|| panic!("{key}={text} lacks {unit}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}={text}: {e}"))
}

struct Run {
    stdout: String,
    records: Vec<BTreeMap<String, String>>,
    summary: BTreeMap<String, u64>,
}

fn run_ok(args: &[&str]) -> Run {
    let out = demo(args);
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let records = stdout
        .lines()
        .filter_map(|l| pairs(l, "rec"))
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect();
    let last = stdout.lines().last().unwrap_or_default();
    let summary = pairs(last, "summary")
        .unwrap_or_else(|| panic!("the last line is the summary:\n{stdout}"))
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.parse().expect("a count")))
        .collect();
    Run {
        stdout,
        records,
        summary,
    }
}

fn check_plausible(record: &BTreeMap<String, String>) {
    let m: BTreeMap<&str, &str> = record
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let speed = number(&m, "speed", "km/h");
    assert!((0.0..=40.0).contains(&speed), "{m:?}");
    let battery = number(&m, "battery", "%");
    assert!((0.0..=100.0).contains(&battery), "{m:?}");
    let volts = number(&m, "voltage", "V");
    assert!((25.0..=45.0).contains(&volts), "{m:?}");
    let odo = number(&m, "odo", "km");
    assert!(odo > 0.0, "{m:?}");
    if m["gps"] != "none" {
        let (lat, lon) = m["gps"].split_once(',').expect("lat,lon");
        let (lat, lon): (f64, f64) = (lat.parse().unwrap(), lon.parse().unwrap());
        assert!((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon));
        assert!(lat != 0.0 || lon != 0.0, "no fix is never 0,0");
    }
}

#[test]
fn five_seconds_of_one_scooter() {
    let run = run_ok(&["--duration", "5"]);
    assert!(run.records.len() >= 3, "{}", run.stdout);
    for r in &run.records {
        check_plausible(r);
    }
    // Without faults the records arrive in order.
    let seqs: Vec<u64> = run
        .records
        .iter()
        .map(|r| r["seq"].parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        run.records.iter().any(|r| r["gps"] != "none"),
        "positions came through the NMEA path:\n{}",
        run.stdout
    );
    let s = &run.summary;
    assert_eq!(s["scooters"], 1);
    assert_eq!(s["lost"], 0);
    assert_eq!(s["spooled"], s["received"]);
    assert_eq!(s["acknowledged"], s["spooled"]);
    assert_eq!(s["received"], run.records.len() as u64);
    assert!(run.stdout.contains(&format!(
        "published {}, acknowledged {}, lost 0",
        s["published"], s["acknowledged"]
    )));
}

#[test]
fn two_scooters_publish_side_by_side() {
    let run = run_ok(&["--scooters", "2", "--duration", "4"]);
    let ids: std::collections::BTreeSet<&str> =
        run.records.iter().map(|r| r["scooter"].as_str()).collect();
    assert_eq!(ids.len(), 2, "{}", run.stdout);
    assert_eq!(run.summary["scooters"], 2);
    assert_eq!(run.summary["lost"], 0);
    assert!(run.summary["received"] >= 4);
}

#[test]
fn faults_are_survived_with_nothing_lost() {
    let run = run_ok(&["--faults", "--duration", "13"]);
    let s = &run.summary;
    assert_eq!(s["lost"], 0, "{}", run.stdout);
    assert!(s["link_losses"] >= 1, "{}", run.stdout);
    assert_eq!(
        s["sessions_reused"], 0,
        "a real scooter drops the session with the link:\n{}",
        run.stdout
    );
    assert!(
        s["logins"] >= 2,
        "the link came back with a new login:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("fault broker unreachable"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("broker=offline"), "{}", run.stdout);
    assert!(s["received"] >= 8, "{}", run.stdout);
}

#[test]
fn bad_arguments_are_a_usage_error() {
    let out = demo(&["--scooters", "0"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn ctrl_c_ends_the_demo_cleanly_with_its_summary() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .arg("demo")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("m365 demo starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first_record = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("rec "));
    assert!(first_record.is_some(), "a record before Ctrl-C");
    let sent = Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{rest:#?}");
    let summary = rest
        .last()
        .and_then(|l| pairs(l, "summary"))
        .expect("a summary");
    assert_eq!(summary["lost"], "0", "{rest:#?}");
}

/// A SIM7600 client left running with the `/dev/pts/N` of an emulated modem that has since gone
/// away opens whatever pseudo-terminal gets that number next: here, the terminal the demo runs
/// in. It must not get to write its `AT+CGPS?` there (nor switch the terminal to raw mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_gps_client_cannot_write_on_the_demo_terminal() {
    use m365_gps::emulate::pty::Pty;
    use m365_gps::sim7600::InfoCommand;
    use m365_gps::source::{Backoff, GpsHandle, SourceConfig};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    const GUARD: Duration = Duration::from_secs(60);
    // The user's terminal: the test holds its master side, as a terminal window does.
    let mut terminal = Pty::open(None).expect("a pseudo-terminal");
    let tty = terminal.path().to_owned();
    let screen_fd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&tty)
        .expect("the terminal opens");
    let mut child = tokio::process::Command::new(BIN)
        .args(["demo", "--duration", "6"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(screen_fd.try_clone().expect("a second descriptor"))
        .stderr(screen_fd)
        .spawn()
        .expect("m365 demo starts");
    let mut screen = Vec::new();
    let mut buf = [0u8; 4096];
    let started = tokio::time::timeout(GUARD, async {
        while !String::from_utf8_lossy(&screen).contains("registered") {
            let n = terminal
                .master
                .read(&mut buf)
                .await
                .expect("the screen reads");
            screen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        started.is_ok(),
        "the demo did not start:\n{}",
        String::from_utf8_lossy(&screen)
    );

    // The stale client: a SIM7600 source on the terminal's path, retrying quickly.
    let source = GpsHandle::spawn_with_backoff(
        SourceConfig::Sim7600 {
            path: tty.clone(),
            baud: 115_200,
            command: InfoCommand::Cgpsinfo,
            interval: Duration::from_secs(1),
        },
        Backoff::new(Duration::from_millis(50), Duration::from_millis(200)),
    );
    let mut state = source.subscribe();
    // Keep reading the screen (a full terminal would stall the demo) while it tries, three times.
    let tried = tokio::time::timeout(GUARD, async {
        loop {
            tokio::select! {
                read = terminal.master.read(&mut buf) => {
                    let n = read.expect("the screen reads");
                    screen.extend_from_slice(&buf[..n]);
                }
                changed = state.changed() => {
                    changed.expect("the source runs");
                    if state.borrow().failures >= 3 {
                        break;
                    }
                }
            }
        }
    })
    .await;
    let seen = source.state();
    drop(source);
    let text = String::from_utf8_lossy(&screen);
    assert!(
        !text.contains("AT+"),
        "the client wrote on the terminal:\n{text}"
    );
    assert!(tried.is_ok(), "no three attempts: {seen:?}");
    assert!(!seen.connected && seen.epochs == 0, "{seen:?}");
    let error = seen.last_error.unwrap_or_default();
    assert!(error.contains("lock"), "refused for the lock: {error}");

    // The rest of the demo, to its summary.
    let status = tokio::time::timeout(GUARD, async {
        loop {
            tokio::select! {
                read = terminal.master.read(&mut buf) => {
                    let n = read.expect("the screen reads");
                    screen.extend_from_slice(&buf[..n]);
                }
                status = child.wait() => break status.expect("the demo ends"),
            }
        }
    })
    .await
    .expect("the demo ends in time");
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), terminal.master.read(&mut buf)).await
    {
        screen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&screen);
    assert!(status.success(), "{status:?}\n{text}");
    assert!(
        !text.contains("AT+"),
        "the client wrote on the terminal:\n{text}"
    );
    assert!(text.contains("summary scooters=1"), "{text}");
}
