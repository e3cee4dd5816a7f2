//! A pseudo-terminal standing in for a USB/UART device, with an optional stable link path.
//!
//! Clients open the pty's slave side by path, as they would `/dev/ttyUSB0`; the emulator writes
//! to (and reads from) the master side. Unplugging closes both sides, so a client's next read
//! fails exactly like a yanked USB receiver. A replugged device gets a new `/dev/pts/N`, so the
//! emulator can keep a symlink pointing at the current one, like udev's `/dev/serial/by-id` links:
//! clients configured with the link recover without being told the new name.

use std::io;
use std::path::{Path, PathBuf};

use tokio_serial::{ClearBuffer, SerialPort, SerialStream};

/// Errors creating or linking a pty.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// The kernel refused a new pty.
    #[error("cannot open a pseudo-terminal: {0}")]
    Open(#[from] tokio_serial::Error),
    /// The pty has no slave path.
    #[error("the pseudo-terminal has no device path")]
    NoPath,
    /// The stable link could not be written.
    #[error("cannot link {link} to the pseudo-terminal: {source}")]
    Link {
        /// The link path.
        link: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// One plugged-in pty.
#[derive(Debug)]
pub struct Pty {
    /// The emulator's side.
    pub master: SerialStream,
    /// Kept open so writes are buffered for clients that (re)open the path, and to clear.
    slave: SerialStream,
    path: PathBuf,
}

impl Pty {
    /// Opens a new pty in raw mode (no echo, no CR/LF translation) and points `link`, if given,
    /// at it.
    pub fn open(link: Option<&Path>) -> Result<Self, PtyError> {
        // The pair's slave handle takes no lock (no TIOCEXCL, no flock), so a client can still
        // open the device exclusively, as it would real hardware.
        let (master, slave) = SerialStream::pair()?;
        let path = PathBuf::from(slave.name().ok_or(PtyError::NoPath)?);
        if let Some(link) = link {
            replace_link(link, &path).map_err(|source| PtyError::Link {
                link: link.to_owned(),
                source,
            })?;
        }
        Ok(Pty {
            master,
            slave,
            path,
        })
    }

    /// The slave device path, e.g. `/dev/pts/7`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops whatever no client has read, like a UART overwriting its FIFO.
    pub fn discard_unread(&self) {
        if let Err(e) = self.slave.clear(ClearBuffer::Input) {
            tracing::debug!(error = %e, "clearing the pty input failed");
        }
    }
}

/// Points `link` at `target`, atomically (write a temporary link, rename over).
fn replace_link(link: &Path, target: &Path) -> io::Result<()> {
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// Removes the link of an unplugged device (missing is fine).
pub fn remove_link(link: &Path) {
    match std::fs::remove_file(link) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::debug!(error = %e, link = %link.display(), "cannot remove link"),
    }
}
