//! The seam between the protocol logic and a radio: a small async [`Transport`] trait.
//!
//! - [`btleplug`]: production, BlueZ over D-Bus through btleplug,
//!   driven on a dedicated thread with a current-thread runtime.
//! - The simulator (`m365-sim`, its `in_process` module) implements the same trait by driving
//!   simulated scooters directly in the caller's runtime, honouring their link timing model,
//!   for fast deterministic tests, benchmarks and the demo under tokio's paused clock. It is not
//!   part of this crate, so the daemon carries no simulator.
//!
//! A transport holds at most one connection. Everything that arrives (advertisements while
//! scanning, notifications, the link going down) comes out of one event queue,
//! [`Transport::next_event`], because BlueZ reports link loss only on the adapter's event
//! stream: the notification stream of a dead link simply goes quiet.
//!
//! Two things every transport does the way BlueZ makes them necessary:
//! - **Zero-length notifications** are counted ([`Transport::empty_notifications`]) and never
//!   delivered. Real scooters send one after every UART frame whose length is a multiple of
//!   20 bytes (protocol.md §2.3); it carries nothing, and nothing in `m365` counts
//!   notifications to find the end of a frame.
//! - **Connecting waits**: BlueZ's `Connect()` to a device it cannot hear waits for it (about
//!   25 s) and connects the moment it advertises again. [`Transport::connect`] takes the
//!   longest wait the caller can afford and cancels the attempt when it passes.

mod acquired;
pub mod btleplug;

use std::future::Future;

use m365_proto::gatt::Char;

use crate::address::BdAddr;

/// How a write is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    /// ATT write request: BlueZ waits for the peripheral's answer.
    WithResponse,
    /// ATT write command: queued for the next connection event, no answer.
    WithoutResponse,
}

/// What a scanner heard from one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// The device address.
    pub address: BdAddr,
    /// The advertised local name.
    pub name: Option<String>,
    /// Received signal strength, dBm.
    pub rssi: Option<i16>,
    /// Manufacturer-specific data by company id.
    pub manufacturer_data: Vec<(u16, Vec<u8>)>,
    /// Advertised service UUIDs.
    pub services: Vec<u128>,
}

/// Something that happened on the radio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// A device advertised (only while scanning).
    Advertisement(Advertisement),
    /// A notification from the connected device.
    Notification {
        /// The characteristic it came on.
        char: Char,
        /// 1 to 20 bytes (zero-length notifications are counted, not delivered).
        data: Vec<u8>,
    },
    /// The link to the connected device went down (seen on the adapter's event stream).
    Disconnected,
}

/// Why a radio operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection is up.
    #[error("not connected")]
    NotConnected,
    /// The device is not known to the adapter (never seen in a scan, or forgotten).
    #[error("device {0} is not known to the Bluetooth adapter (not seen in a scan)")]
    UnknownDevice(BdAddr),
    /// BlueZ still has a connection attempt pending for the device (`org.bluez.Error.InProgress`,
    /// or a stale connection): cleared by removing the device from BlueZ.
    #[error("a stale connection attempt is still pending in BlueZ: {0}")]
    InProgress(String),
    /// The connection attempt failed (out of range, radio interference, …).
    #[error("connection failed: {0}")]
    ConnectFailed(String),
    /// The device lacks a characteristic the protocol needs.
    #[error("the device has no {0:?} characteristic")]
    MissingCharacteristic(Char),
    /// A GATT operation failed.
    #[error("GATT operation failed: {0}")]
    Gatt(String),
    /// No Bluetooth adapter is available.
    #[error("no Bluetooth adapter: {0}")]
    NoAdapter(String),
    /// The transport's worker stopped.
    #[error("the Bluetooth worker stopped")]
    Closed,
}

impl TransportError {
    /// Whether BlueZ holds a stale connection for the device that only removing it clears.
    pub fn is_stale_connection(&self) -> bool {
        matches!(self, TransportError::InProgress(_))
    }
}

/// How long BlueZ itself waits for an LE device it cannot hear before `Connect()` fails.
pub const BLUEZ_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// The longest wait a caller gives a connect by default: a little more than BlueZ's own, so
/// BlueZ's answer normally comes first.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A BLE central with at most one connection.
///
/// Every method is cancel-safe in the sense that dropping its future leaves the transport
/// usable; [`Transport::next_event`] loses nothing when cancelled.
pub trait Transport: Send {
    /// Starts scanning; advertisements come out of [`Transport::next_event`].
    fn start_scan(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Stops scanning.
    fn stop_scan(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Connects to `address` (seen in a scan). Like BlueZ, waits while the device cannot be
    /// heard and connects as soon as it can; gives up after `timeout` (cancelling the
    /// attempt, so the next one is not answered `InProgress`) or when BlueZ does.
    fn connect(
        &mut self,
        address: BdAddr,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Discovers the GATT services; returns every characteristic UUID.
    fn discover(&mut self) -> impl Future<Output = Result<Vec<u128>, TransportError>> + Send;

    /// Enables notifications on `char`.
    fn subscribe(&mut self, char: Char) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Writes `data` (at most 20 bytes) to `char`.
    fn write(
        &mut self,
        char: Char,
        data: &[u8],
        kind: WriteKind,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Reads the characteristic `uuid`.
    fn read(&mut self, uuid: u128) -> impl Future<Output = Result<Vec<u8>, TransportError>> + Send;

    /// Ends the connection (no error when none is up).
    fn disconnect(&mut self) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Makes the adapter forget `address` (BlueZ `Adapter1.RemoveDevice`), which clears a stale
    /// connection attempt. The device reappears at the next scan.
    fn remove_device(
        &mut self,
        address: BdAddr,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// The next event; `None` when the transport is gone for good.
    fn next_event(&mut self) -> impl Future<Output = Option<TransportEvent>> + Send;

    /// Asks the radio whether the connection is still up, now (BlueZ's `Connected`), instead of
    /// waiting for the loss to come through the event queue: for a caller about to start
    /// something that must not be carried out on a link that is already gone. Transports whose
    /// events are never late answer `true` while connected.
    fn is_connected(&mut self) -> impl Future<Output = bool> + Send {
        std::future::ready(true)
    }

    /// Zero-length notifications received (and not delivered) so far.
    fn empty_notifications(&self) -> u64;
}
