//! One emulated NMEA receiver per scooter, on a pty behind a stable symlink, unplugged and
//! plugged in again on schedule.
//!
//! Each receiver runs in a helper process of its own (`m365-soak gps-receiver`, driven through
//! its standard input): the pty handles are not close-on-exec, so a receiver inside the soak
//! would hand them to every `m365 run` it starts, and an unplugged device would then not vanish
//! for them.
//!
//! The receiver sends the true time of this machine (1 Hz RMC/VTG/GGA/GSA) along a straight
//! ride; the clients' clock jumps are played on their system clock instead (see `client`), so
//! the GPS time is what a client falls back to while its clock is untrusted.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::Utc;
use m365_gps::emulate::{NmeaFeed, NmeaReceiverConfig, Pace, RoutePoint, nmea_receiver};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

/// How long the helper may take to answer a command.
const ANSWER: Duration = Duration::from_secs(10);
/// How often the helper moves its position.
const STEP: Duration = Duration::from_millis(250);
/// Speed of the emulated ride, m/s.
const SPEED: f64 = 5.0;

/// A receiver helper, seen from the soak.
#[derive(Debug)]
pub(crate) struct Receiver {
    path: PathBuf,
    child: Child,
    input: ChildStdin,
    output: Lines<BufReader<ChildStdout>>,
}

impl Receiver {
    /// Starts a helper (`soak` is this program) keeping a receiver at `symlink`, riding north
    /// from a point that depends on `index`.
    pub(crate) async fn start(
        soak: &Path,
        symlink: &Path,
        index: usize,
    ) -> anyhow::Result<Receiver> {
        let mut child = Command::new(soak)
            .arg("gps-receiver")
            .arg("--symlink")
            .arg(symlink)
            .arg("--index")
            .arg(index.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the GPS helper {}", soak.display()))?;
        let input = child.stdin.take().context("helper's input")?;
        let output = BufReader::new(child.stdout.take().context("helper's output")?).lines();
        let mut receiver = Receiver {
            path: symlink.to_path_buf(),
            child,
            input,
            output,
        };
        receiver.expect("plugged").await?;
        Ok(receiver)
    }

    /// The stable path clients open.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Unplugs the device; returns once it is gone.
    pub(crate) async fn unplug(&mut self) -> anyhow::Result<()> {
        self.command("unplug", "unplugged").await
    }

    /// Plugs a new device in; returns once it is there.
    pub(crate) async fn replug(&mut self) -> anyhow::Result<()> {
        self.command("replug", "plugged").await
    }

    /// Stops the helper.
    pub(crate) async fn stop(mut self) {
        drop(self.input);
        if tokio::time::timeout(ANSWER, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    async fn command(&mut self, command: &str, answer: &str) -> anyhow::Result<()> {
        self.input
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.input.flush().await?;
        self.expect(answer).await
    }

    async fn expect(&mut self, answer: &str) -> anyhow::Result<()> {
        let line = tokio::time::timeout(ANSWER, self.output.next_line())
            .await
            .context("the GPS helper did not answer")??;
        match line {
            Some(l) if l == answer => Ok(()),
            Some(l) => bail!("the GPS helper said {l:?}, not {answer:?}"),
            None => bail!("the GPS helper ended"),
        }
    }
}

/// The helper process: runs the receiver and obeys `unplug`/`replug` lines on standard input,
/// answering `unplugged`/`plugged`; ends when its input closes.
pub(crate) async fn run_helper(symlink: PathBuf, index: usize) -> anyhow::Result<()> {
    let start = RoutePoint {
        time: Utc::now(),
        lat: 43.36 + 0.01 * index as f64,
        lon: -8.41,
        alt_m: 20.0,
        speed_mps: SPEED,
        course_deg: 0.0,
    };
    let (position, feed) = watch::channel(Some(start.clone()));
    let mut handle = nmea_receiver::spawn(NmeaReceiverConfig {
        symlink: Some(symlink),
        ..NmeaReceiverConfig::new(
            NmeaFeed::Live {
                position: feed,
                period: Duration::from_secs(1),
            },
            Pace::RealTime,
        )
    })
    .context("cannot open a pty for the receiver")?;
    // The ride: north at a steady speed, stamped with the time of this machine.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STEP);
        let begun = tokio::time::Instant::now();
        loop {
            tick.tick().await;
            let metres = SPEED * begun.elapsed().as_secs_f64();
            let point = RoutePoint {
                time: Utc::now(),
                lat: start.lat + metres / 111_320.0,
                ..start.clone()
            };
            if position.send(Some(point)).is_err() {
                return;
            }
        }
    });
    let mut stdout = tokio::io::stdout();
    stdout.write_all(b"plugged\n").await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let answer: &[u8] = match line.trim() {
            "unplug" => {
                handle.unplug().await;
                b"unplugged\n"
            }
            "replug" => {
                handle.replug().await;
                b"plugged\n"
            }
            _ => b"unknown command\n",
        };
        stdout.write_all(answer).await?;
        stdout.flush().await?;
    }
    Ok(())
}
