//! `AcquireNotify` and `AcquireWrite` as BlueZ answers them: sockets that carry one value per
//! packet, BlueZ's refusals, and the hang-up that ends an acquisition from either side.
// A test: a failing `unwrap`/`expect` is the test failing, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use btleplug::api::Peripheral as _;
use common::*;
use m365_fakebluez::FakeBluez;
use m365_fakebluez::isolation::isolated_bus;
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use zbus::zvariant::{OwnedFd, OwnedObjectPath, Value};

const CHAR_IFACE: &str = "org.bluez.GattCharacteristic1";
const WAIT: Duration = Duration::from_secs(10);

/// The object path of the characteristic `uuid`.
async fn char_path(bus: &zbus::Connection, uuid: m365_fakebluez::Uuid) -> OwnedObjectPath {
    let objects = zbus::fdo::ObjectManagerProxy::builder(bus)
        .destination("org.bluez")
        .unwrap()
        .path("/")
        .unwrap()
        .build()
        .await
        .unwrap()
        .get_managed_objects()
        .await
        .unwrap();
    objects
        .into_iter()
        .find(|(_, ifaces)| {
            ifaces
                .iter()
                .find(|(name, _)| name.as_str() == CHAR_IFACE)
                .and_then(|(_, props)| props.get("UUID"))
                .and_then(|v| String::try_from(v.clone()).ok())
                .is_some_and(|u| u == uuid.to_string())
        })
        .map(|(path, _)| path)
        .unwrap_or_else(|| panic!("no characteristic {uuid}"))
}

/// Calls `method` (no argument but the options, or none) on the characteristic at `path`.
async fn call(
    bus: &zbus::Connection,
    path: &OwnedObjectPath,
    method: &str,
) -> zbus::Result<zbus::Message> {
    let options: HashMap<&str, Value<'_>> = HashMap::new();
    if method.starts_with("Acquire") {
        bus.call_method(
            Some("org.bluez"),
            path,
            Some(CHAR_IFACE),
            method,
            &(options,),
        )
        .await
    } else {
        bus.call_method(Some("org.bluez"), path, Some(CHAR_IFACE), method, &())
            .await
    }
}

async fn acquire(
    bus: &zbus::Connection,
    path: &OwnedObjectPath,
    method: &str,
) -> (UnixDatagram, u16) {
    let reply = call(bus, path, method).await.unwrap();
    let (fd, mtu): (OwnedFd, u16) = reply.body().deserialize().unwrap();
    let fd: std::os::fd::OwnedFd = fd.into();
    let socket = std::os::unix::net::UnixDatagram::from(fd);
    socket.set_nonblocking(true).unwrap();
    (UnixDatagram::from_std(socket).unwrap(), mtu)
}

fn refusal(result: zbus::Result<zbus::Message>) -> String {
    match result {
        Err(zbus::Error::MethodError(name, text, _)) => {
            format!("{}: {}", name.as_str(), text.unwrap_or_default())
        }
        other => panic!("expected a BlueZ error, got {other:?}"),
    }
}

async fn recv(socket: &UnixDatagram) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a packet in time")
        .unwrap();
    buf[..n].to_vec()
}

#[tokio::test]
async fn acquired_sockets_carry_writes_and_notifications_until_either_side_hangs_up() {
    let Some(bus) =
        isolated_bus("acquired_sockets_carry_writes_and_notifications_until_either_side_hangs_up")
    else {
        return;
    };
    let fake = FakeBluez::start(bus.address()).await.unwrap();
    let echo = Echo::new(1, -60);
    let log = echo.log.clone();
    let control = fake.add_peripheral(echo).unwrap();
    let (adapter, mut events) = central().await;
    let p = scan_for(&adapter, &mut events, 1).await;
    tokio::time::timeout(WAIT, p.connect())
        .await
        .unwrap()
        .unwrap();
    p.discover_services().await.unwrap();

    let client = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    let notify_path = char_path(&client, ECHO_NOTIFY).await;
    let write_path = char_path(&client, ECHO_WRITE).await;

    let (notify, mtu) = acquire(&client, &notify_path, "AcquireNotify").await;
    assert_eq!(mtu, 23);
    let (write, _) = acquire(&client, &write_path, "AcquireWrite").await;

    // Each packet written is one write command; each notification is one packet, the empty
    // one included.
    write.send(b"hello").await.unwrap();
    assert_eq!(recv(&notify).await, b"hello");
    write.send(&[EMPTY]).await.unwrap();
    assert_eq!(recv(&notify).await, b"");
    write.send(b"again").await.unwrap();
    assert_eq!(recv(&notify).await, b"again");
    assert_eq!(
        log.lock().unwrap().writes,
        [
            (b"hello".to_vec(), m365_fakebluez::WriteKind::Command),
            (vec![EMPTY], m365_fakebluez::WriteKind::Command),
            (b"again".to_vec(), m365_fakebluez::WriteKind::Command),
        ]
    );
    let counters = control.counters();
    assert_eq!((counters.acquire_notify, counters.acquire_write), (1, 1));
    assert_eq!(
        (counters.socket_writes, counters.socket_notifications),
        (3, 3)
    );
    assert_eq!((counters.writes, counters.start_notify), (0, 0));

    // BlueZ's refusals.
    let again = refusal(call(&client, &notify_path, "AcquireNotify").await);
    assert!(
        again.contains("NotPermitted") && again.contains("Notify acquired"),
        "{again}"
    );
    let start = refusal(call(&client, &notify_path, "StartNotify").await);
    assert!(start.contains("NotPermitted"), "{start}");
    let write_twice = refusal(call(&client, &write_path, "AcquireWrite").await);
    assert!(write_twice.contains("Write acquired"), "{write_twice}");
    let no_write = refusal(call(&client, &notify_path, "AcquireWrite").await);
    assert!(no_write.contains("NotSupported"), "{no_write}");

    // The client closes its notify socket: the acquisition ends and StartNotify is allowed.
    drop(notify);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match call(&client, &notify_path, "StartNotify").await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("StartNotify after the release: {e}"),
        }
    }

    // The owner leaves the bus: BlueZ ends its acquisitions and hangs up.
    drop(client);
    assert_hung_up(&write).await;

    // A link loss: BlueZ hangs up on the sockets of the link.
    let client = zbus::connection::Builder::address(bus.address())
        .unwrap()
        .build()
        .await
        .unwrap();
    let (write, _) = acquire(&client, &write_path, "AcquireWrite").await;
    control.drop_link(Duration::from_secs(1)).await;
    assert_hung_up(&write).await;
}

async fn assert_hung_up(socket: &UnixDatagram) {
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("hung up in time")
        .unwrap();
    assert_eq!(n, 0);
    let ready = socket.ready(Interest::READABLE).await.unwrap();
    assert!(ready.is_read_closed());
}
