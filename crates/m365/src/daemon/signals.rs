//! SIGINT and SIGTERM as an awaitable stop request, watched from the very start so a signal
//! that arrives during start-up (systemd stopping a service that is still scanning) is not
//! lost and never kills the process before the spool is closed.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that ask `m365` to stop.
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Starts watching SIGINT and SIGTERM (needs a tokio runtime).
    pub fn watch() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for one of them; returns its name for the log.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
