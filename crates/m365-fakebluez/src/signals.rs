//! Emitting `PropertiesChanged` for state the fake changes on its own (link up/down, RSSI,
//! notifications). Property values live in the shared state, not in the interface structs, so
//! the signal is built here instead of through zbus's generated `*_changed` methods, which
//! would need the interface lock.

use std::borrow::Cow;
use std::collections::HashMap;

use tracing::debug;
use zbus::Connection;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;

/// Emits `PropertiesChanged(interface, changed, [])` on `path`. Failures (the bus went away)
/// are logged, not returned: there is nobody left to tell.
pub(crate) async fn properties_changed(
    conn: &Connection,
    path: &str,
    interface: &'static str,
    changed: Vec<(&'static str, Value<'_>)>,
) {
    let emitter = match SignalEmitter::new(conn, path) {
        Ok(emitter) => emitter,
        Err(e) => {
            debug!(path, "bad object path for a signal: {e}");
            return;
        }
    };
    let changed: HashMap<&str, Value<'_>> = changed.into_iter().collect();
    let result = zbus::fdo::Properties::properties_changed(
        &emitter,
        InterfaceName::from_static_str_unchecked(interface),
        changed,
        Cow::Borrowed(&[]),
    )
    .await;
    if let Err(e) = result {
        debug!(path, interface, "cannot emit PropertiesChanged: {e}");
    }
}
