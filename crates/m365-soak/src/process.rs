//! Signals to child processes by id (the standard library can only send SIGKILL).

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Sends `signal` to process `pid`; a process that is already gone is not an error.
pub(crate) fn signal(pid: u32, signal: Signal) {
    // 0 would mean the whole process group.
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if raw <= 0 {
        return;
    }
    if let Err(e) = kill(Pid::from_raw(raw), signal) {
        tracing::debug!(pid, %signal, error = %e, "signal not delivered");
    }
}
