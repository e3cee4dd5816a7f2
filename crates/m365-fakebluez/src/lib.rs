//! A fake BlueZ: an `org.bluez` service on a private `dbus-daemon`, answering exactly the D-Bus
//! calls btleplug makes, so the real client code path runs end to end with no Bluetooth adapter.
//!
//! # Pieces
//! - [`PrivateBus`]: a throw-away `dbus-daemon` (needs the `dbus-daemon` binary, Debian package
//!   `dbus`, and `sh`) that dies with the process that started it, even one killed by SIGKILL.
//! - [`FakeBluez`]: owns `org.bluez` on that bus: ObjectManager at `/`, Adapter1 at
//!   `/org/bluez/hci0`, a Device1 per simulated peripheral, and GATT objects while connected.
//! - [`Peripheral`]: what a simulated device implements (advertisement, GATT layout, write /
//!   read / subscribe callbacks). It is protocol-agnostic; it sends notifications through the
//!   [`Link`] it receives on connect, from any task.
//! - [`DeviceControl`]: run-time faults and counters for one device.
//!
//! # Using it
//! ```no_run
//! # async fn demo(
//! #     my_scooter: impl m365_fakebluez::Peripheral,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use m365_fakebluez::{FakeBluez, PrivateBus, SYSTEM_BUS_ENV};
//!
//! let bus = PrivateBus::start()?;
//! let fake = FakeBluez::start(bus.address()).await?;
//! let scooter = fake.add_peripheral(my_scooter)?;
//! // The BLE client must see the bus as its *system* bus, set before its first
//! // `btleplug::platform::Manager::new()`: e.g. run it as a child process with
//! // `bus.configure(&mut command)`, or print `SYSTEM_BUS_ENV=<address>` for a shell.
//! println!("{SYSTEM_BUS_ENV}={}", bus.address());
//! scooter.drop_link(std::time::Duration::from_secs(2)).await;
//! # Ok(()) }
//! ```
//! libdbus reads `DBUS_SYSTEM_BUS_ADDRESS` once per process, and Rust 2024 makes setting the
//! environment of a running process `unsafe`; tests therefore use
//! [`isolation::isolated_bus`], which re-runs each test in a child process that has the
//! variable set from the start, and single programs (benchmarks, demos) call
//! [`isolation::reexec_with_private_bus`] first thing in `main`.
//!
//! # Runtime: drive btleplug on a current-thread runtime
//! bluez-async 0.9 (btleplug's Linux backend) spawns a task when a notification or event stream
//! is dropped that unwraps the removal of a D-Bus match rule; on a multi-thread tokio runtime
//! the match is sometimes already gone and the task panics ("No match with that id found").
//! On a current-thread runtime this does not happen. Drive btleplug (and this fake, in tests)
//! from a current-thread runtime (`#[tokio::test]`'s default, or
//! `tokio::runtime::Builder::new_current_thread()`), and never build with `panic = "abort"`
//! around it. For the same reason btleplug's streams must be dropped inside the runtime (a
//! drop outside any runtime panics).
//!
//! # Behaviour, as btleplug sees it (BlueZ's defaults)
//! - Devices appear (InterfacesAdded) [`FakeConfig::discovery_delay`] after a scan starts, if
//!   their advertisement passes the scan's service-UUID filter; RSSI and advertising-data
//!   changes are published every [`FakeConfig::advertising_interval`].
//! - A device that is neither connected, nor being connected, nor heard by a scan for
//!   [`FakeConfig::temporary_timeout`] (BlueZ's `TemporaryTimeout`, 30 s) is forgotten
//!   (InterfacesRemoved): a `Connect()` on its old path then fails with `UnknownObject` until
//!   a scan hears it again.
//! - `Connect`: waits while the device cannot be reached (out of range, or a fade after a link
//!   drop) and connects the moment it can be, or fails with `le-connection-abort-by-local`
//!   after [`FakeConfig::connect_timeout`] (25 s). A second `Connect()` meanwhile answers
//!   `InProgress`; `Disconnect()` cancels the waiting one. Once the device can be reached:
//!   the device's connect delay, `Connected=true`, GATT objects exported (or kept from before),
//!   the peripheral's `on_connect`, then `ServicesResolved=true`.
//! - Link down (`Disconnect` or a fault): `ServicesResolved=false`, then `Connected=false`
//!   (btleplug: `CentralEvent::DeviceDisconnected`), `on_disconnect`. GATT objects stay on the
//!   bus (BlueZ's attribute cache, [`GattOnDisconnect::Keep`]) and writes to them fail with
//!   `org.bluez.Error.Failed: Not connected`.
//! - Reads: like BlueZ, a read value becomes the characteristic's cached `Value` and is
//!   signalled as changed, so btleplug's notification stream also yields it; clients should
//!   match notifications by characteristic UUID.
//! - Notifications are at most ATT MTU − 3 bytes (20 at the default MTU of 23), only delivered
//!   while the central is subscribed, as `PropertiesChanged(Value)` on the characteristic; a
//!   zero-length notification arrives as an empty `Value`, like any other.
//!
//! # Faults ([`DeviceControl`])
//! - [`DeviceControl::drop_link`]: link loss; for a hold-off time connects wait (the device
//!   still advertises).
//! - [`DeviceControl::out_of_range`]: link loss, no advertising, connects wait, the device is
//!   forgotten after the temporary timeout, then comes back.
//! - `drop_link_with` / `out_of_range_with` and [`Harshness`]: harsher than BlueZ on demand
//!   (connects fail at once, GATT objects removed).
//! - [`DeviceControl::fail_next_connects`] with any [`BluezError`] (e.g.
//!   [`BluezError::le_connection_abort_by_local`]).
//! - [`DeviceControl::stale_in_progress`]: connects answer `InProgress` until the client calls
//!   `RemoveDevice`.
//! - [`DeviceControl::clear_faults`]: ends them all.
//! - [`FakeBluez::set_powered`]`(false)`: the adapter is powered off and rfkill-blocked, links
//!   drop, scans and connects fail until it is powered on again.
//! - [`DeviceControl::set_connect_delay`], [`DeviceControl::set_rssi`],
//!   [`DeviceControl::set_gatt_on_disconnect`], and [`DeviceControl::counters`] to check what
//!   the client did.
//!
//! # Link timing model
//! [`LinkTiming::paced`] makes a link exchange packets only at connection events (every
//! connection interval, at most N packets per event, both directions together); notifications,
//! writes and read/write responses wait for their event, so throughput measured through the
//! fake has the shape of a real link. The default, [`LinkTiming::instant`], delivers at once.
//! See [`LinkTiming`] for the exact rules; [`DeviceControl::link_stats`] counts packets and
//! connection events. [`ConnectionEvents`] is the scheduler itself, for simulators that pace a
//! link of their own with the same rules.
#![forbid(unsafe_code)]

mod acquired;
mod adapter;
mod address;
mod advertisement;
mod att_error;
mod bluez_error;
mod bus;
mod config;
mod connection;
mod control;
mod counters;
mod device;
mod discovery;
mod fake;
mod faults;
mod gatt;
mod gatt_spec;
mod heart_rate;
pub mod isolation;
mod link;
mod link_timing;
mod paths;
mod peripheral;
mod signals;
mod state;

pub use address::{AddressType, BluezAddress, ParseBluezAddressError};
pub use advertisement::Advertisement;
pub use att_error::AttError;
pub use bluez_error::BluezError;
pub use bus::{BusError, PrivateBus, SYSTEM_BUS_ENV, unix_socket_path};
pub use config::{DEFAULT_CONNECT_TIMEOUT, FakeConfig, GattOnDisconnect};
pub use control::DeviceControl;
pub use counters::Counters;
pub use fake::{FakeBluez, FakeError};
pub use faults::Harshness;
pub use gatt_spec::{CharFlags, CharacteristicSpec, ServiceSpec};
pub use heart_rate::{
    BODY_SENSOR_LOCATION, HEART_RATE_MEASUREMENT, HEART_RATE_SERVICE, HeartRateMonitor,
};
pub use link::{Link, LinkError, NOTIFY_QUEUE};
pub use link_timing::{ConnectionEvents, LinkStats, LinkTiming};
pub use paths::{ADAPTER_PATH, BLUEZ_NAME, device as device_path};
pub use peripheral::{Peripheral, WriteKind};
pub use uuid::Uuid;
