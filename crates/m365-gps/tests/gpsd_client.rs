//! The gpsd client against recorded gpsd output (always), and against a real gpsd daemon fed
//! through a pty with a capture (when `gpsd` is installed; CI installs it).
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use m365_gps::emulate::{self, NmeaFeed, NmeaReceiverConfig, Pace};
use m365_gps::gpsd::{GpsdClient, GpsdMessage};
use m365_gps::source::{GpsHandle, SourceConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const GUARD: Duration = Duration::from_secs(60);

/// gpsd's own JSON lines for a capture (the `.chk` regression output), TPV reports only.
fn recorded_tpv_lines(name: &str) -> Option<Vec<String>> {
    let path = m365_testdata::require(
        "gpsd client against recorded gpsd output",
        &format!("testdata/gps/nmea/{name}.chk"),
    )?;
    let text = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&text);
    Some(
        text.lines()
            .filter(|l| l.starts_with("{\"class\":\"TPV\""))
            .map(str::to_owned)
            .collect(),
    )
}

#[tokio::test]
async fn client_decodes_recorded_gpsd_reports() {
    let Some(tpvs) = recorded_tpv_lines("trimble_rtk_moving_gn_west") else {
        return;
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tpvs.clone();
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut first = String::new();
        BufReader::new(r).read_line(&mut first).await.unwrap();
        w.write_all(
            b"{\"class\":\"VERSION\",\"release\":\"3.25\",\"proto_major\":3,\"proto_minor\":15}\n",
        )
        .await
        .unwrap();
        w.write_all(b"{\"class\":\"SKY\",\"hdop\":0.9,\"pdop\":1.7,\"vdop\":1.4,\"uSat\":10}\n")
            .await
            .unwrap();
        for line in served {
            w.write_all(line.as_bytes()).await.unwrap();
            w.write_all(b"\n").await.unwrap();
        }
        first
    });

    let mut client = GpsdClient::connect(addr).await.unwrap();
    let mut fixes = Vec::new();
    let mut tpv_seen = 0;
    while tpv_seen < tpvs.len() {
        match tokio::time::timeout(GUARD, client.next_message())
            .await
            .unwrap()
            .unwrap()
        {
            GpsdMessage::Tpv(fix) => {
                tpv_seen += 1;
                fixes.extend(fix);
            }
            GpsdMessage::Sky | GpsdMessage::Other(_) => {}
        }
    }
    let watch = server.await.unwrap();
    assert_eq!(watch.trim(), r#"?WATCH={"enable":true,"json":true}"#);
    let with_position = tpvs
        .iter()
        .filter(|l| l.contains("\"lat\"") && !l.contains("\"mode\":1"))
        .count();
    assert_eq!(fixes.len(), with_position);
    let last = fixes.last().unwrap();
    assert!(
        (last.lat - 41.57).abs() < 0.01 && (last.lon + 93.75).abs() < 0.01,
        "{last:?}"
    );
    assert_eq!(last.sats_used, Some(10));
    assert_eq!(last.quality, m365_gps::FixQuality::RtkFixed);
}

#[tokio::test]
async fn closed_gpsd_connection_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        drop(sock);
    });
    let mut client = GpsdClient::connect(addr).await.unwrap();
    let r = tokio::time::timeout(GUARD, client.next_message())
        .await
        .unwrap();
    assert!(r.is_err());
}

fn find_gpsd() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("gpsd"))
        .find(|p| p.is_file())
}

/// Kills the daemon when the test ends, pass or fail.
struct Daemon(tokio::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_gpsd_fed_through_a_pty() {
    let Some(gpsd) = find_gpsd() else {
        eprintln!(
            "SKIPPED real_gpsd_fed_through_a_pty: gpsd is not installed (apt-get install gpsd)"
        );
        return;
    };
    let Some(capture) = m365_testdata::require(
        "real_gpsd_fed_through_a_pty",
        "testdata/gps/nmea/sirf2_haicom305n_moving_south_east.nmea",
    ) else {
        return;
    };
    let mut config = NmeaReceiverConfig::new(
        NmeaFeed::Replay(std::fs::read(capture).unwrap()),
        Pace::Accelerated(4.0),
    );
    config.garbage_every = None;
    let emu = emulate::nmea_receiver::spawn(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Held for the whole test: no other test gets the port; gpsd (SO_REUSEADDR) binds it.
    let reserved = m365_testkit::net::ReservedPort::new();
    let port = reserved.port();
    let child = tokio::process::Command::new(gpsd)
        .args(["-N", "-n", "-b", "-S", &port.to_string(), "-F"])
        .arg(dir.path().join("gpsd.sock"))
        .arg(emu.path().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start gpsd");
    let _daemon = Daemon(child);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let handle = GpsHandle::spawn_with_backoff(
        SourceConfig::Gpsd { addr },
        m365_gps::source::Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
    );
    let mut rx = handle.subscribe();
    let got = tokio::time::timeout(GUARD, rx.wait_for(|s| s.fixes >= 10))
        .await
        .map(|r| r.is_ok());
    let state = rx.borrow().clone();
    assert!(got.is_ok(), "gpsd delivered no fixes in time: {state:?}");
    let (fix, _) = state.last_fix.unwrap();
    // Southern and eastern hemisphere, as recorded.
    assert!(
        (fix.lat + 27.21).abs() < 0.01 && (fix.lon - 153.05).abs() < 0.01,
        "{fix:?}"
    );
    assert_eq!(fix.source, m365_gps::FixSource::Gpsd);
    // gpsd in live mode corrects 2007 dates it considers GPS week rollovers, so only the time
    // of day is as recorded.
    let time = fix.time.expect("gpsd reports the time");
    assert_eq!(time.format("%H").to_string(), "09", "{time}");
}
