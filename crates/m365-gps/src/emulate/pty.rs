//! A pseudo-terminal standing in for a USB/UART device, with an optional stable symlink path.
//!
//! Clients open the pty's slave side by path, as they would `/dev/ttyUSB0`; the emulator writes
//! to (and reads from) the master side. Unplugging closes both sides, so a client's next read
//! fails exactly like a yanked USB receiver. A replugged device gets a new `/dev/pts/N`, so the
//! emulator can keep a symlink pointing at the current one, like udev's `/dev/serial/by-id` links:
//! clients configured with the symlink recover without being told the new name.
//!
//! A pty's number is not like a USB device name: the kernel hands the lowest free number to the
//! next pseudo-terminal anyone opens, a terminal window or an ssh session included. A client
//! still configured with an unplugged device's `/dev/pts/N` would then open that terminal, put
//! it in raw mode and write its commands on it (a SIM7600 client's `AT+CGPS?` showing up on
//! someone's screen). So an unplugged pty keeps its slave side open ([`Unplugged`]) for as long
//! as the emulator runs: its device node is gone, and its number cannot be given to anything else.

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
    /// The stable symlink could not be written.
    #[error("cannot point the symlink {symlink} at the pseudo-terminal: {source}")]
    Symlink {
        /// The symlink path.
        symlink: PathBuf,
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
    /// Opens a new pty in raw mode (no echo, no CR/LF translation) and points `symlink`, if given,
    /// at it.
    pub fn open(symlink: Option<&Path>) -> Result<Self, PtyError> {
        // The pair's slave handle takes no lock (no TIOCEXCL, no flock), so a client can still
        // open the device exclusively, as it would real hardware.
        let (master, slave) = SerialStream::pair()?;
        let path = PathBuf::from(slave.name().ok_or(PtyError::NoPath)?);
        if let Some(symlink) = symlink {
            replace_symlink(symlink, &path).map_err(|source| PtyError::Symlink {
                symlink: symlink.to_owned(),
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

    /// Unplugs the device: the master side closes, so clients see a hang-up and the device node
    /// disappears (opening the path fails with "no such file", like a yanked USB device), while
    /// the returned slave side keeps the pty's number from being reused as long as it is held.
    pub fn unplug(self) -> Unplugged {
        let Pty {
            master,
            slave,
            path,
        } = self;
        drop(master);
        Unplugged {
            _slave: slave,
            path,
        }
    }

    /// Drops whatever no client has read, like a UART overwriting its FIFO.
    pub fn discard_unread(&self) {
        if let Err(e) = self.slave.clear(ClearBuffer::Input) {
            tracing::debug!(error = %e, "clearing the pty input failed");
        }
    }
}

/// What remains of an unplugged pty: its slave side, with the master closed. Holding it keeps
/// the kernel from giving the pty's number to another pseudo-terminal; dropping it frees the
/// number.
#[derive(Debug)]
pub struct Unplugged {
    _slave: SerialStream,
    path: PathBuf,
}

impl Unplugged {
    /// The path the device had, e.g. `/dev/pts/7` (it no longer exists).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Points `symlink` at `target`, atomically (write a temporary symlink, rename over).
fn replace_symlink(symlink: &Path, target: &Path) -> io::Result<()> {
    let mut tmp = symlink.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, symlink)
}

/// Removes the symlink of an unplugged device (missing is fine).
pub fn remove_symlink(symlink: &Path) {
    match std::fs::remove_file(symlink) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::debug!(error = %e, symlink = %symlink.display(), "cannot remove symlink")
        }
    }
}
