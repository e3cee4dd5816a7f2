//! The soak's own mosquitto on a loopback port: started, stopped cleanly (it saves its sessions,
//! so the checker's persistent session and its queued messages survive) and started again on
//! the same port.
//!
//! The port stays reserved for the whole run by a socket bound without listening, with address
//! reuse, so no other program takes it while the broker is down; mosquitto sets `SO_REUSEADDR`
//! and binds it anyway.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// How long mosquitto may take to accept connections, or to stop.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a starting broker is probed.
const PROBE: Duration = Duration::from_millis(20);

/// A mosquitto of the soak's own.
#[derive(Debug)]
pub(crate) struct Mosquitto {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    _reservation: TcpSocket,
    child: Option<Child>,
}

impl Mosquitto {
    /// Writes its configuration into `dir` (persistence there too) and reserves a port.
    pub(crate) fn new(binary: &Path, dir: &Path) -> anyhow::Result<Mosquitto> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        socket.set_reuseaddr(true)?;
        let port = socket.local_addr()?.port();
        std::fs::create_dir_all(dir)?;
        let config = dir.join("mosquitto.conf");
        // `user root`: started as root, mosquitto would otherwise drop to the `mosquitto` user,
        // which cannot write its sessions into this private folder. Started as anyone else,
        // it stays who it is. Queues large enough for the checker's session through a long
        // outage of it.
        std::fs::write(
            &config,
            format!(
                "user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nautosave_interval 5\nmax_queued_messages 1000000\n\
                 max_inflight_messages 100\nlog_dest stderr\nlog_type error\nlog_type warning\n\
                 log_type notice\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\n",
                dir.display()
            ),
        )?;
        Ok(Mosquitto {
            binary: binary.to_path_buf(),
            config,
            log: dir.join("mosquitto.log"),
            port,
            _reservation: socket,
            child: None,
        })
    }

    /// The port it listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Its process id while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts it and returns once it accepts connections.
    pub(crate) async fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "mosquitto exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill().await;
                bail!("mosquitto did not listen within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(PROBE).await;
        }
        self.child = Some(child);
        Ok(())
    }

    /// Stops it cleanly (SIGTERM: it saves its sessions) and waits for the exit.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(START_TIMEOUT, child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("mosquitto did not stop within {START_TIMEOUT:?}")
            }
        }
    }
}
