//! Counts of what centrals asked of one simulated device, so tests can check that a client
//! retries, backs off and cleans up exactly as intended.

/// Calls a device received over D-Bus since it was added. Every call is counted, including
/// calls that failed (e.g. a connect refused by an injected fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// `Device1.Connect` calls.
    pub connects: u64,
    /// Connects that ended with the link up.
    pub successful_connects: u64,
    /// Connects that waited for an unreachable device until the connect timeout and failed.
    pub connect_timeouts: u64,
    /// Connects cancelled while waiting (by `Disconnect` or `RemoveDevice`).
    pub connects_cancelled: u64,
    /// `Device1.Disconnect` calls.
    pub disconnects: u64,
    /// Link losses the central did not ask for (injected drops, out of range).
    pub link_drops: u64,
    /// `GattCharacteristic1.WriteValue` calls.
    pub writes: u64,
    /// `GattCharacteristic1.ReadValue` calls.
    pub reads: u64,
    /// `GattCharacteristic1.StartNotify` calls.
    pub start_notify: u64,
    /// `GattCharacteristic1.StopNotify` calls.
    pub stop_notify: u64,
    /// `Adapter1.RemoveDevice` calls naming this device.
    pub remove_device: u64,
    /// `GattCharacteristic1.AcquireNotify` calls.
    pub acquire_notify: u64,
    /// `GattCharacteristic1.AcquireWrite` calls.
    pub acquire_write: u64,
    /// Write commands that came through an acquired socket (not counted in `writes`).
    pub socket_writes: u64,
    /// Notifications written into an acquired socket.
    pub socket_notifications: u64,
}
