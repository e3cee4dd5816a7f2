//! What the BLE side did, for logs, health reports and tests. Counts only grow.

/// Counters of one [`crate::link::ScooterLink`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connection attempts.
    pub connect_attempts: u64,
    /// Connections established.
    pub connects: u64,
    /// Stale BlueZ devices removed (`RemoveDevice`) to clear an `InProgress`.
    pub stale_removed: u64,
    /// Logins completed.
    pub logins: u64,
    /// Reconnects that reused the session instead of logging in. A reuse the probe gave up
    /// (the scooter had dropped the session) is counted here too, and its login in `logins`.
    pub sessions_reused: u64,
    /// Link losses seen.
    pub link_losses: u64,
    /// UART frames sent (retries included).
    pub frames_sent: u64,
    /// Requests re-sent after a timeout.
    pub retries: u64,
    /// Requests that got no answer in the end.
    pub timeouts: u64,
    /// Answers matched to requests.
    pub answers: u64,
    /// Notifications or frames rejected: bad checksum, bad tag, replayed counter, truncated,
    /// garbage bytes are not counted (they are not frames).
    pub rejected_frames: u64,
    /// Valid frames that answered nothing we asked (stray or late).
    pub unrelated_frames: u64,
    /// Zero-length notifications received and ignored: the terminator real scooters send
    /// after every UART frame of 20, 40, … bytes (protocol.md §2.3).
    pub empty_notifications: u64,
    /// Full telemetry samples read.
    pub samples: u64,
}
