//! The life cycle of a device's link: connecting (Connected, GATT objects, ServicesResolved, in
//! BlueZ's order), going down (ServicesResolved=false then Connected=false) and the
//! notification pump of a live link. The device's own object (appearing and disappearing,
//! InterfacesAdded/Removed of Device1) is [`crate::device`]'s, which calls in here.
//!
//! Every function here follows the same pattern: decide under the world lock, release it, then
//! talk to the bus and to the peripheral. The object tree is only changed from these functions,
//! never from inside an interface's `&mut self`.

use std::sync::{Arc, Weak};

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use zbus::Connection;
use zbus::zvariant::Value;

use crate::address::BluezAddress;
use crate::bluez_error::BluezError;
use crate::config::GattOnDisconnect;
use crate::gatt::{CharIface, DescIface, ServiceIface};
use crate::link::{Link, NOTIFY_QUEUE};
use crate::link_timing::ConnectionEvents;
use crate::paths::{self, CHAR_IFACE, DEVICE_IFACE};
use crate::state::{GattLayout, LinkSession, Outgoing, Shared, lock};

/// Why a link goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The central called `Disconnect` (or `RemoveDevice`).
    Central,
    /// An injected fault: link loss or out of range. `remove_gatt` takes the GATT objects off
    /// the bus whatever the device's [`GattOnDisconnect`] says ([`crate::Harshness`]).
    LinkLoss {
        /// Remove the GATT objects.
        remove_gatt: bool,
    },
}

/// `Device1.Connect`: like BlueZ, waits for a device that cannot be reached (out of range, a
/// fade after a link drop) and connects the moment it can be, or fails with
/// `le-connection-abort-by-local` after the connect timeout. A second `Connect()` while one is
/// pending answers `InProgress`; `Disconnect()` or `RemoveDevice` cancel a pending one.
pub(crate) async fn connect(shared: &Arc<Shared>, address: BluezAddress) -> Result<(), BluezError> {
    let (id, not_before) = {
        let mut world = shared.world();
        let powered = world.powered;
        let device = world
            .devices
            .get_mut(&address)
            .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?;
        device.counters.connects += 1;
        if !powered {
            return Err(BluezError::NotReady("Resource Not Ready".into()));
        }
        if device.faults.stale_in_progress || device.connecting() {
            return Err(BluezError::in_progress());
        }
        if device.connected {
            return Ok(());
        }
        device.connect_calls += 1;
        let id = device.connect_calls;
        device.pending_connect = Some(id);
        (id, Instant::now() + device.faults.connect_delay)
    };
    let deadline = Instant::now() + shared.config.connect_timeout;
    let outcome = wait_until_connectable(shared, address, id, not_before, deadline).await;
    if outcome.is_err() {
        // This call no longer waits (a cancel may already have cleared it).
        if let Some(device) = shared.world().devices.get_mut(&address)
            && device.pending_connect == Some(id)
        {
            device.pending_connect = None;
        }
    }
    outcome?;
    link_up(shared, address).await
}

/// Waits until the device of connect call `id` can be connected (`Ok`), or until the call
/// fails: an injected error, a harsh fault, the adapter powered off, a cancel, or `deadline`.
async fn wait_until_connectable(
    shared: &Arc<Shared>,
    address: BluezAddress,
    id: u64,
    not_before: Instant,
    deadline: Instant,
) -> Result<(), BluezError> {
    loop {
        // Registered before the state is read, so a change made in between still wakes us.
        let woken = shared.connect_wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let wake_at = {
            let mut world = shared.world();
            let powered = world.powered;
            let Some(device) = world.devices.get_mut(&address) else {
                return Err(BluezError::le_connection_abort_by_local());
            };
            if device.pending_connect != Some(id) {
                debug!(%address, "pending connect cancelled");
                device.counters.connects_cancelled += 1;
                return Err(BluezError::le_connection_abort_by_local());
            }
            if !powered {
                return Err(BluezError::NotReady("Resource Not Ready".into()));
            }
            let now = Instant::now();
            if now < not_before {
                not_before
            } else {
                match device.faults.connect_outcome(now) {
                    Some(Ok(())) => return Ok(()),
                    Some(Err(e)) => {
                        debug!(%address, "connect refused: {e}");
                        return Err(e);
                    }
                    None if now >= deadline => {
                        debug!(%address, "connect timed out: the device was not heard");
                        device.counters.connect_timeouts += 1;
                        return Err(BluezError::le_connection_abort_by_local());
                    }
                    None => {
                        // The device is heard again at its next advertisement.
                        let back = device
                            .faults
                            .connectable_again(now)
                            .unwrap_or(now + shared.config.advertising_interval);
                        back.min(deadline)
                    }
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake_at) => {}
            () = &mut woken => {}
        }
    }
}

/// Brings the link of a device that became connectable up, in BlueZ's order: `Connected`,
/// GATT objects (exported or kept), the peripheral's `on_connect`, `ServicesResolved`.
async fn link_up(shared: &Arc<Shared>, address: BluezAddress) -> Result<(), BluezError> {
    let (generation, rx, peripheral, layout, export_gatt_now) = {
        let mut world = shared.world();
        let device = world
            .devices
            .get_mut(&address)
            .ok_or_else(|| BluezError::DoesNotExist("Does Not Exist".into()))?;
        let now = Instant::now();
        // Connected and no longer waiting in one step: no second connect slips in between.
        device.pending_connect = None;
        device.generation += 1;
        device.connected = true;
        device.last_seen = Some(now);
        device.counters.successful_connects += 1;
        for state in device.chars.values_mut() {
            state.reset_link();
        }
        let (tx, rx) = mpsc::channel(NOTIFY_QUEUE);
        device.link = Some(LinkSession {
            generation: device.generation,
            started: now,
            events: ConnectionEvents::new(device.timing),
            notify_tx: tx,
        });
        let export = !device.gatt_exported;
        device.gatt_exported = true;
        (
            device.generation,
            rx,
            device.peripheral.clone(),
            device.layout.clone(),
            export,
        )
    };
    info!(%address, "connected");
    let Some(conn) = shared.conn.get() else {
        return Err(BluezError::Failed("bus connection closed".into()));
    };
    let path = paths::device(address);
    crate::signals::properties_changed(conn, &path, DEVICE_IFACE, vec![("Connected", true.into())])
        .await;
    // GATT objects must exist before ServicesResolved turns true: btleplug walks the tree as
    // soon as it sees it.
    if export_gatt_now {
        export_gatt(shared, conn, address, &layout).await;
    }
    tokio::spawn(deliver(Arc::downgrade(shared), address, generation, rx));
    lock(&peripheral).on_connect(Link {
        shared: Arc::<Shared>::downgrade(shared),
        address,
        generation,
    });
    let still_up = {
        let mut world = shared.world();
        match world.devices.get_mut(&address) {
            Some(d) if d.has_link(generation) => {
                d.services_resolved = true;
                true
            }
            _ => false,
        }
    };
    if !still_up {
        // A fault dropped the link while it was coming up.
        return Err(BluezError::le_connection_abort_by_local());
    }
    crate::signals::properties_changed(
        conn,
        &path,
        DEVICE_IFACE,
        vec![("ServicesResolved", true.into())],
    )
    .await;
    Ok(())
}

/// Takes a link down: `Device1.Disconnect`, an injected drop, out of range or `RemoveDevice`.
/// Returns whether a link was up.
pub(crate) async fn disconnect(shared: &Arc<Shared>, address: BluezAddress, cause: Cause) -> bool {
    let (peripheral, remove_gatt, layout) = {
        let mut world = shared.world();
        let Some(device) = world.devices.get_mut(&address) else {
            return false;
        };
        if !device.connected {
            return false;
        }
        device.connected = false;
        device.services_resolved = false;
        if let Some(link) = device.link.take() {
            device.last_link_stats = link.events.stats();
        }
        for state in device.chars.values_mut() {
            state.reset_link();
        }
        device.last_seen = Some(Instant::now());
        let forced_removal = match cause {
            Cause::LinkLoss { remove_gatt } => {
                device.counters.link_drops += 1;
                remove_gatt
            }
            Cause::Central => false,
        };
        let remove = (forced_removal || device.gatt_on_disconnect == GattOnDisconnect::Remove)
            && device.gatt_exported;
        if remove {
            device.gatt_exported = false;
        }
        (device.peripheral.clone(), remove, device.layout.clone())
    };
    info!(%address, ?cause, "disconnected");
    if let Some(conn) = shared.conn.get() {
        let path = paths::device(address);
        // BlueZ's order, which btleplug relies on to report DeviceDisconnected.
        crate::signals::properties_changed(
            conn,
            &path,
            DEVICE_IFACE,
            vec![("ServicesResolved", false.into())],
        )
        .await;
        crate::signals::properties_changed(
            conn,
            &path,
            DEVICE_IFACE,
            vec![("Connected", false.into())],
        )
        .await;
    }
    lock(&peripheral).on_disconnect();
    if remove_gatt && let Some(conn) = shared.conn.get() {
        unexport_gatt(conn, &layout).await;
    }
    true
}

async fn export_gatt(
    shared: &Arc<Shared>,
    conn: &Connection,
    address: BluezAddress,
    layout: &GattLayout,
) {
    let server = conn.object_server();
    let device_path = paths::device(address);
    for service in &layout.services {
        let iface = ServiceIface::new(service, &device_path);
        if let Err(e) = server.at(service.path.as_str(), iface).await {
            warn!(path = service.path, "cannot export service: {e}");
        }
        for node in &service.characteristics {
            let iface = CharIface::new(Arc::downgrade(shared), address, node.clone());
            if let Err(e) = server.at(node.path.as_str(), iface).await {
                warn!(path = node.path, "cannot export characteristic: {e}");
            }
            if let Some(cccd) = &node.cccd_path {
                let iface = DescIface::new(Arc::downgrade(shared), address, node.path.clone());
                if let Err(e) = server.at(cccd.as_str(), iface).await {
                    warn!(path = cccd, "cannot export descriptor: {e}");
                }
            }
        }
    }
}

pub(crate) async fn unexport_gatt(conn: &Connection, layout: &GattLayout) {
    let server = conn.object_server();
    // Children first, like BlueZ tearing down its attribute database.
    for service in &layout.services {
        for node in &service.characteristics {
            if let Some(cccd) = &node.cccd_path {
                let _ = server.remove::<DescIface, _>(cccd.as_str()).await;
            }
            let _ = server.remove::<CharIface, _>(node.path.as_str()).await;
        }
        let _ = server
            .remove::<ServiceIface, _>(service.path.as_str())
            .await;
    }
}

/// The notification pump of one link: takes queued notifications in order, waits for the
/// connection event [`crate::Link::notify`] reserved for each, and emits them as `PropertiesChanged(Value)`.
/// Ends when the link goes down (its sender is dropped).
async fn deliver(
    shared: Weak<Shared>,
    address: BluezAddress,
    generation: u64,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    while let Some(out) = rx.recv().await {
        tokio::time::sleep_until(out.at).await;
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let deliver = {
            let mut world = strong.world();
            let Some(device) = world.devices.get_mut(&address) else {
                return;
            };
            if !device.has_link(generation) {
                return;
            }
            match device.chars.get_mut(&out.char_path) {
                // Acquired: the value goes into the socket, uncached and unsignalled. A full
                // socket drops it, as BlueZ does.
                Some(state) if state.notifying && state.notify_socket.is_some() => {
                    if let Some(acquired) = &state.notify_socket {
                        match acquired.socket.try_send(&out.data) {
                            Ok(_) => device.counters.socket_notifications += 1,
                            Err(e) => debug!(
                                path = %out.char_path,
                                "notification not written to the socket: {e}"
                            ),
                        }
                    }
                    false
                }
                // Unsubscribed while queued: the peripheral's stack would have dropped it.
                Some(state) if state.notifying => {
                    state.value.clone_from(&out.data);
                    true
                }
                _ => false,
            }
        };
        if deliver && let Some(conn) = strong.conn.get() {
            crate::signals::properties_changed(
                conn,
                &out.char_path,
                CHAR_IFACE,
                vec![("Value", Value::from(out.data))],
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::heart_rate::HEART_RATE_MEASUREMENT;
    use crate::link_timing::LinkTiming;
    use crate::state::testing::{ADDR, connected_hrm, subscribe, value};

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn pump_releases_notifications_at_connection_events() {
        let (shared, link, rx) = connected_hrm(LinkTiming::paced(10 * MS, 4));
        subscribe(&shared, HEART_RATE_MEASUREMENT);
        tokio::spawn(deliver(Arc::downgrade(&shared), ADDR, 1, rx));
        for i in 0..6 {
            link.notify(HEART_RATE_MEASUREMENT, &[0, i]).unwrap();
        }
        // Event 0 (now) carries four, event 1 (10 ms) the other two.
        tokio::time::sleep(MS).await;
        assert_eq!(value(&shared, HEART_RATE_MEASUREMENT), [0, 3]);
        tokio::time::sleep(8 * MS).await;
        assert_eq!(value(&shared, HEART_RATE_MEASUREMENT), [0, 3]);
        tokio::time::sleep(2 * MS).await;
        assert_eq!(value(&shared, HEART_RATE_MEASUREMENT), [0, 5]);
        let stats = shared.world().devices[&ADDR]
            .link
            .as_ref()
            .unwrap()
            .events
            .stats();
        assert_eq!((stats.packets, stats.connection_events), (6, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn pump_drops_what_was_queued_when_the_central_unsubscribed() {
        let (shared, link, rx) = connected_hrm(LinkTiming::paced(10 * MS, 1));
        subscribe(&shared, HEART_RATE_MEASUREMENT);
        tokio::spawn(deliver(Arc::downgrade(&shared), ADDR, 1, rx));
        link.notify(HEART_RATE_MEASUREMENT, &[0, 1]).unwrap();
        link.notify(HEART_RATE_MEASUREMENT, &[0, 2]).unwrap();
        tokio::time::sleep(MS).await;
        assert_eq!(value(&shared, HEART_RATE_MEASUREMENT), [0, 1]);
        for state in shared
            .world()
            .devices
            .get_mut(&ADDR)
            .unwrap()
            .chars
            .values_mut()
        {
            state.notifying = false;
        }
        tokio::time::sleep(20 * MS).await;
        assert_eq!(value(&shared, HEART_RATE_MEASUREMENT), [0, 1]);
    }
}
