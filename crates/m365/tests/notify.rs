//! sd_notify messages arrive at the socket named by `NOTIFY_SOCKET` exactly as systemd expects
//! them, and the watchdog timer fires at half of `WATCHDOG_USEC`.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365::notify::{DaemonStatus, Notifier, WatchdogTimer};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn messages_reach_a_socket_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");

    let notifier = Notifier::from_vars(Some(path.clone().into()), Some("20000000"), None, 1);
    assert!(notifier.is_enabled());
    notifier.ready().expect("ready");
    let status = DaemonStatus {
        broker_connected: false,
        scooter: "scanning".into(),
        backlog: 12,
    };
    notifier.status(&status.to_string()).expect("status");
    notifier.status("two\nlines").expect("status");
    notifier.watchdog().expect("watchdog");
    notifier.stopping().expect("stopping");

    assert_eq!(receive(&socket), "READY=1");
    assert_eq!(
        receive(&socket),
        "STATUS=broker disconnected; scooter scanning; backlog 12 records"
    );
    assert_eq!(receive(&socket), "STATUS=two lines");
    assert_eq!(receive(&socket), "WATCHDOG=1");
    assert_eq!(receive(&socket), "STOPPING=1");
}

#[test]
fn messages_reach_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("m365-notify-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
    let socket = UnixDatagram::bind_addr(&addr).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let notifier = Notifier::from_vars(Some(format!("@{name}").into()), None, None, 1);
    notifier.ready().expect("ready");
    assert_eq!(receive(&socket), "READY=1");
}

#[test]
fn a_missing_socket_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let notifier = Notifier::with_socket(dir.path().join("nobody-listens"), None);
    assert!(notifier.ready().is_err());
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_timer_ticks_at_half_the_timeout() {
    let notifier = Notifier::from_vars(Some("/unused".into()), Some("10000000"), None, 1);
    let mut timer = notifier.watchdog_timer().expect("watchdog requested");
    let start = tokio::time::Instant::now();
    timer.tick().await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    timer.tick().await;
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn after_a_stall_the_watchdog_does_not_burst() {
    let mut timer = WatchdogTimer::new(Duration::from_secs(5));
    let start = tokio::time::Instant::now();
    // The main loop was busy for 12 s: one tick fires at once, the next a full period later.
    tokio::time::sleep(Duration::from_secs(12)).await;
    timer.tick().await;
    assert_eq!(start.elapsed(), Duration::from_secs(12));
    timer.tick().await;
    assert_eq!(start.elapsed(), Duration::from_secs(17));
}

#[test]
fn without_a_watchdog_there_is_no_timer() {
    assert!(
        Notifier::from_vars(None, None, None, 1)
            .watchdog_timer()
            .is_none()
    );
}
