//! BlueZ's `AcquireNotify` and `AcquireWrite` for the UART characteristics: the bytes of every
//! request and answer travel through a `SOCK_SEQPACKET` socket, one packet per notification or
//! write, instead of one D-Bus message (and its parsing by btleplug) each. Most of a sample's
//! cost on the host was those messages (docs/benchmarks.md, "Daemon footprint").
//!
//! The BLE worker acquires the sockets and keeps the D-Bus connection that did ([`Owner`]):
//! BlueZ ends an acquisition when its owner leaves the bus, so dropping the worker's connection
//! ends it. The handle reads and writes the sockets on the caller's runtime ([`AcquiredUart`]),
//! so a request and its answers cross no thread. A characteristic BlueZ will not hand out
//! (an older BlueZ, flags without notify or write-without-response, a notification session
//! already started) stays on the D-Bus path: acquisition is an optimisation, never a
//! requirement.

use std::os::unix::net::UnixDatagram as StdDatagram;

use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// What BlueZ handed out for one connection, as the worker passes it to the handle.
#[derive(Debug)]
pub(super) struct Sockets {
    /// UART notifications, one per packet.
    pub(super) notify: Option<StdDatagram>,
    /// UART write commands, one per packet, and the longest one the link takes.
    pub(super) write: Option<(StdDatagram, usize)>,
}

/// Keeps an acquisition alive: the D-Bus connection that made it.
pub(super) struct Owner {
    #[cfg(target_os = "linux")]
    _bus: dbus::blocking::Connection,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Owner")
    }
}

/// The UART characteristics' sockets of one connection, on the caller's runtime.
#[derive(Debug)]
pub(super) struct AcquiredUart {
    notify: Option<UnixDatagram>,
    write: Option<(UnixDatagram, usize)>,
}

/// What the notify socket gave.
pub(super) enum Received {
    /// One notification (possibly empty: the terminator after a full frame).
    Value(Vec<u8>),
    /// BlueZ hung up: the link went down or the acquisition ended.
    HungUp,
}

fn register(socket: StdDatagram) -> std::io::Result<UnixDatagram> {
    socket.set_nonblocking(true)?;
    UnixDatagram::from_std(socket)
}

impl AcquiredUart {
    /// Registers `sockets` with the current runtime.
    pub(super) fn register(sockets: Sockets) -> std::io::Result<AcquiredUart> {
        Ok(AcquiredUart {
            notify: sockets.notify.map(register).transpose()?,
            write: match sockets.write {
                Some((socket, max)) => Some((register(socket)?, max)),
                None => None,
            },
        })
    }

    /// The next notification; pending for ever when notifications do not come through here.
    pub(super) async fn recv(&mut self) -> Received {
        let Some(socket) = self.notify.as_ref() else {
            return std::future::pending().await;
        };
        match recv(socket).await {
            Some(value) => Received::Value(value),
            None => {
                self.notify = None;
                Received::HungUp
            }
        }
    }

    /// Writes `data` as one write command, if writes go through the socket and it fits;
    /// `None` when the caller must use `WriteValue`.
    pub(super) async fn write(&mut self, data: &[u8]) -> Option<std::io::Result<()>> {
        let (socket, max) = self.write.as_ref()?;
        if data.len() > *max {
            return None;
        }
        let sent = socket.send(data).await.map(|_| ());
        if sent.is_err() {
            self.write = None;
        }
        Some(sent)
    }
}

/// One packet; `None` once the peer hung up. A zero-length read is a zero-length packet
/// unless the peer hung up, which the readiness tells once the I/O driver has seen it.
async fn recv(socket: &UnixDatagram) -> Option<Vec<u8>> {
    let mut buf = [0u8; 517];
    loop {
        let ready = socket.ready(Interest::READABLE).await.ok()?;
        match socket.try_recv(&mut buf) {
            Ok(0) if ready.is_read_closed() => return None,
            Ok(0) => {
                tokio::task::yield_now().await;
                let again = socket.ready(Interest::READABLE).await.ok()?;
                return (!again.is_read_closed()).then(Vec::new);
            }
            Ok(n) => return Some(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return None,
        }
    }
}

#[cfg(target_os = "linux")]
mod bluez {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use dbus::arg::{PropMap, prop_cast};
    use dbus::blocking::Connection;
    use dbus::blocking::stdintf::org_freedesktop_dbus::ObjectManager as _;

    use super::{Owner, Sockets};

    const CHAR_IFACE: &str = "org.bluez.GattCharacteristic1";
    /// AcquireNotify answers once the CCCD write crossed the link.
    const CALL_TIMEOUT: Duration = Duration::from_secs(10);

    /// The object path of the characteristic `uuid` of `device`.
    fn char_path(
        bus: &Connection,
        device: &str,
        uuid: &str,
    ) -> Result<dbus::Path<'static>, String> {
        let objects = bus
            .with_proxy("org.bluez", "/", CALL_TIMEOUT)
            .get_managed_objects()
            .map_err(|e| format!("GetManagedObjects: {e}"))?;
        let prefix = format!("{device}/");
        objects
            .into_iter()
            .find(|(path, ifaces)| {
                path.starts_with(&prefix)
                    && ifaces
                        .get(CHAR_IFACE)
                        .and_then(|props| prop_cast::<String>(props, "UUID"))
                        .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
            })
            .map(|(path, _)| path)
            .ok_or_else(|| format!("no characteristic {uuid} under {device}"))
    }

    fn call(
        bus: &Connection,
        path: &dbus::Path<'static>,
        method: &str,
    ) -> Result<(UnixDatagram, u16), String> {
        bus.with_proxy("org.bluez", path.clone(), CALL_TIMEOUT)
            .method_call::<(OwnedFd, u16), _, _, _>(CHAR_IFACE, method, (PropMap::new(),))
            .map(|(fd, mtu)| (UnixDatagram::from(fd), mtu))
            .map_err(|e| format!("{method}: {e}"))
    }

    /// Acquires what BlueZ hands out of the two characteristics of `device` (its object
    /// path); an error when it hands out neither.
    pub(in super::super) async fn acquire(
        device: String,
        notify_uuid: String,
        write_uuid: String,
    ) -> Result<(Owner, Sockets), String> {
        tokio::task::spawn_blocking(move || {
            let bus = Connection::new_system().map_err(|e| e.to_string())?;
            let notify = char_path(&bus, &device, &notify_uuid)
                .and_then(|path| call(&bus, &path, "AcquireNotify"))
                .map(|(socket, _mtu)| socket)
                .inspect_err(|e| tracing::debug!("notifications stay on D-Bus: {e}"))
                .ok();
            let write = char_path(&bus, &device, &write_uuid)
                .and_then(|path| call(&bus, &path, "AcquireWrite"))
                .map(|(socket, mtu)| (socket, usize::from(mtu.saturating_sub(3))))
                .inspect_err(|e| tracing::debug!("writes stay on D-Bus: {e}"))
                .ok();
            if notify.is_none() && write.is_none() {
                return Err("BlueZ handed out no socket".to_owned());
            }
            Ok((Owner { _bus: bus }, Sockets { notify, write }))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

#[cfg(target_os = "linux")]
pub(super) use bluez::acquire;

/// Other platforms have no BlueZ: everything stays on the backend's own path.
#[cfg(not(target_os = "linux"))]
pub(super) async fn acquire(
    _device: String,
    _notify_uuid: String,
    _write_uuid: String,
) -> Result<(Owner, Sockets), String> {
    Err("no BlueZ on this platform".into())
}
