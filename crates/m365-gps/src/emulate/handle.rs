//! Control of a running emulator: where its device is, unplug, replug, stop.

use std::path::PathBuf;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A command to the emulator task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Unplug,
    Replug,
}

/// What the emulator task publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Status {
    /// Current pty path, `None` while unplugged.
    pub path: Option<PathBuf>,
    /// The feed is exhausted (the device stays plugged in, silent).
    pub finished: bool,
}

/// A running emulated device. Dropping it stops the emulator and closes the device.
#[derive(Debug)]
pub struct EmulatorHandle {
    pub(crate) symlink: Option<PathBuf>,
    pub(crate) status: watch::Receiver<Status>,
    pub(crate) control: mpsc::Sender<Control>,
    pub(crate) task: JoinHandle<()>,
}

impl EmulatorHandle {
    /// The path clients should open: the stable symlink when one was configured, else the current
    /// pty (which changes on every replug).
    pub fn path(&self) -> Option<PathBuf> {
        self.symlink.clone().or_else(|| self.pty_path())
    }

    /// The current pty device (`/dev/pts/N`), `None` while unplugged.
    pub fn pty_path(&self) -> Option<PathBuf> {
        self.status.borrow().path.clone()
    }

    /// Whether the feed is exhausted.
    pub fn finished(&self) -> bool {
        self.status.borrow().finished
    }

    /// Waits until the feed is exhausted.
    pub async fn wait_finished(&mut self) {
        let _ = self.status.wait_for(|s| s.finished).await;
    }

    /// Closes the device, as if unplugged; returns once it is closed.
    pub async fn unplug(&mut self) {
        if self.control.send(Control::Unplug).await.is_ok() {
            let _ = self.status.wait_for(|s| s.path.is_none()).await;
        }
    }

    /// Opens a new device (and re-points the symlink); returns once it is open.
    pub async fn replug(&mut self) {
        if self.control.send(Control::Replug).await.is_ok() {
            let _ = self.status.wait_for(|s| s.path.is_some()).await;
        }
    }

    /// Stops the emulator and closes its device.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(symlink) = &self.symlink {
            super::pty::remove_symlink(symlink);
        }
    }
}
