//! The simulated scooters: one `m365-sim serve` (the fake BlueZ on its private D-Bus, with the
//! real BlueZ defaults) serving every scooter of the chaos soak, or several of them for the
//! fleet (one per `m365 run`, as each gateway has its own adapter; 64 scooters at most each),
//! and `m365-sim ctl` to inject faults.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long `serve` may take to print `READY`, and one `ctl` command to answer.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A running `m365-sim serve`.
#[derive(Debug)]
pub(crate) struct Simulator {
    binary: PathBuf,
    bus: String,
    scooters: Vec<String>,
    gps: Option<String>,
    child: Child,
}

impl Simulator {
    /// Starts `serve` with `scooters` Pro 2s remembering their pairing in `dir`, and waits for
    /// `READY`.
    pub(crate) async fn start(
        binary: &Path,
        dir: &Path,
        scooters: usize,
        seed: u64,
    ) -> anyhow::Result<Simulator> {
        Simulator::start_with(binary, dir, scooters, seed, &[]).await
    }

    /// [`Simulator::start`] with more `serve` options (`--gps`, `--conn-interval-ms`, …).
    pub(crate) async fn start_with(
        binary: &Path,
        dir: &Path,
        scooters: usize,
        seed: u64,
        extra: &[String],
    ) -> anyhow::Result<Simulator> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("m365-sim.log"))?;
        let mut child = Command::new(binary)
            .args(["serve", "--scooters", &scooters.to_string()])
            .arg("--state")
            .arg(dir.join("state"))
            .args(["--auto-press-ms", "300", "--seed", &seed.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("serve's output")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut bus = None;
        let mut macs = Vec::new();
        let mut gps = None;
        let ready = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(address) = line.strip_prefix("DBUS_SYSTEM_BUS_ADDRESS=") {
                    bus = Some(address.to_owned());
                } else if let Some(rest) = line.strip_prefix("M365_SIM_SCOOTER=") {
                    if let Some(mac) = rest.split_whitespace().next() {
                        macs.push(mac.to_owned());
                    }
                } else if let Some(path) = line.strip_prefix("M365_SIM_GPS=") {
                    gps = Some(path.to_owned());
                } else if line == "READY" {
                    return Ok(true);
                }
            }
            Ok::<bool, std::io::Error>(false)
        };
        let ready = tokio::time::timeout(TIMEOUT, ready)
            .await
            .context("m365-sim serve did not say READY in time")??;
        if !ready {
            bail!(
                "m365-sim serve ended before READY; see {}",
                dir.join("m365-sim.log").display()
            );
        }
        // Nothing more is expected on stdout; keep reading so the pipe never fills.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let bus = bus.context("serve printed no bus address")?;
        if macs.len() != scooters {
            bail!("serve announced {} scooters, not {scooters}", macs.len());
        }
        Ok(Simulator {
            binary: binary.to_path_buf(),
            bus,
            scooters: macs,
            gps,
            child,
        })
    }

    /// The private bus the fake BlueZ is on (`DBUS_SYSTEM_BUS_ADDRESS` for the clients).
    pub(crate) fn bus(&self) -> &str {
        &self.bus
    }

    /// The emulated GPS device (`serve --gps`), when there is one.
    pub(crate) fn gps(&self) -> Option<&str> {
        self.gps.as_deref()
    }

    /// Its process id (`None` once it has exited).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The scooters' addresses, in order.
    pub(crate) fn scooters(&self) -> &[String] {
        &self.scooters
    }

    /// What the scooter `mac` and the fake BlueZ counted (`ctl counters --json`).
    pub(crate) async fn counters(&self, mac: &str) -> anyhow::Result<serde_json::Value> {
        let out = self.ctl_output(&["counters", mac, "--json"]).await?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Runs `m365-sim ctl ARGS` against this simulator.
    pub(crate) async fn ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        self.ctl_output(args).await.map(drop)
    }

    /// Runs `m365-sim ctl ARGS` and returns what it printed.
    async fn ctl_output(&self, args: &[&str]) -> anyhow::Result<String> {
        let run = Command::new(&self.binary)
            .arg("ctl")
            .arg("--bus")
            .arg(&self.bus)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(TIMEOUT, run)
            .await
            .with_context(|| format!("m365-sim ctl {} did not answer", args.join(" ")))??;
        if !out.status.success() {
            bail!(
                "m365-sim ctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Stops the simulator (its private bus goes with it).
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            crate::process::signal(pid, nix::sys::signal::Signal::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
