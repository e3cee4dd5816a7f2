//! SIGINT and SIGTERM as an awaitable stop request, watched from the very start so a signal
//! that arrives during start-up (systemd stopping a service that is still scanning) is not
//! lost and never kills the process before the spool is closed.
//!
//! SIGHUP is watched too, because its default action would kill the daemon: `m365` reloads
//! nothing, and says so in the log rather than ignoring the signal silently.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// The signals that ask `m365` to stop.
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Signals {
    /// Starts watching SIGINT and SIGTERM (needs a tokio runtime).
    pub fn watch() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Waits for SIGINT or SIGTERM; returns its name for the log. A SIGHUP meanwhile is
    /// answered with a warning that nothing is reloaded.
    pub async fn recv(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return "SIGINT",
                _ = self.terminate.recv() => return "SIGTERM",
                _ = self.hangup.recv() => tracing::warn!(
                    "SIGHUP: m365 does not reload its configuration; restart it to apply changes"
                ),
            }
        }
    }
}
