//! `AcquireNotify` and `AcquireWrite`: instead of carrying every value in a D-Bus message,
//! BlueZ hands the client one end of a `SOCK_SEQPACKET` socket pair, one value per packet.
//! BlueZ keeps the other end: it writes each notification into it (no `PropertiesChanged`,
//! no cached `Value`) and turns each packet the client writes into a write command. Closing
//! either end ends the acquisition; a link loss closes BlueZ's end.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Weak};

use socket2::{Domain, Socket, Type};
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::sync::oneshot;

/// BlueZ's end of an acquired socket, kept in the characteristic's state. Dropping it closes
/// the end (the client sees the hang-up) and stops its watcher.
#[derive(Debug, Clone)]
pub(crate) struct Acquired {
    pub(crate) socket: Arc<UnixDatagram>,
    _stop: Arc<oneshot::Sender<()>>,
}

impl Acquired {
    /// Whether `other` is this acquisition (and not a later one of the same characteristic).
    pub(crate) fn same(&self, other: &Weak<UnixDatagram>) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.socket), other.as_ptr())
    }
}

/// What the watcher of BlueZ's end is told.
pub(crate) struct Watch {
    pub(crate) socket: Arc<UnixDatagram>,
    /// Resolves when the acquisition was dropped by BlueZ's side (link loss, release).
    pub(crate) stopped: oneshot::Receiver<()>,
}

/// A new socket pair: BlueZ's end (with its watch) and the client's end.
pub(crate) fn pair() -> std::io::Result<(Acquired, Watch, OwnedFd)> {
    let (ours, theirs) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)?;
    let ours: OwnedFd = ours.into();
    let ours = std::os::unix::net::UnixDatagram::from(ours);
    ours.set_nonblocking(true)?;
    let socket = Arc::new(UnixDatagram::from_std(ours)?);
    let (stop, stopped) = oneshot::channel();
    Ok((
        Acquired {
            socket: socket.clone(),
            _stop: Arc::new(stop),
        },
        Watch { socket, stopped },
        theirs.into(),
    ))
}

/// What came out of the client's end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// One packet the client wrote.
    Packet(Vec<u8>),
    /// The client closed its end.
    Closed,
    /// BlueZ's side dropped the acquisition.
    Stopped,
}

impl Watch {
    /// The next packet, or why there is none.
    pub(crate) async fn next(&mut self) -> Incoming {
        let mut buf = vec![0u8; 1024];
        loop {
            let ready = tokio::select! {
                _ = &mut self.stopped => return Incoming::Stopped,
                ready = self.socket.ready(Interest::READABLE) => ready,
            };
            let Ok(ready) = ready else {
                return Incoming::Closed;
            };
            match self.socket.try_recv(&mut buf) {
                // A zero-length read is a zero-length packet unless the peer hung up. The
                // readiness above may predate the hang-up: let the runtime's I/O driver catch
                // up once, then ask again.
                Ok(0) if ready.is_read_closed() => return Incoming::Closed,
                Ok(0) => {
                    tokio::task::yield_now().await;
                    return match self.socket.ready(Interest::READABLE).await {
                        Ok(again) if !again.is_read_closed() => Incoming::Packet(Vec::new()),
                        _ => Incoming::Closed,
                    };
                }
                Ok(n) => return Incoming::Packet(buf[..n].to_vec()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return Incoming::Closed,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client(fd: OwnedFd) -> UnixDatagram {
        let s = std::os::unix::net::UnixDatagram::from(fd);
        s.set_nonblocking(true).unwrap();
        UnixDatagram::from_std(s).unwrap()
    }

    #[tokio::test]
    async fn packets_keep_their_bounds_and_a_hang_up_is_told_apart_from_an_empty_packet() {
        let (acquired, mut watch, theirs) = pair().unwrap();
        let client = client(theirs);
        client.send(&[1, 2, 3]).await.unwrap();
        client.send(&[]).await.unwrap();
        client.send(&[4]).await.unwrap();
        assert_eq!(watch.next().await, Incoming::Packet(vec![1, 2, 3]));
        assert_eq!(watch.next().await, Incoming::Packet(vec![]));
        assert_eq!(watch.next().await, Incoming::Packet(vec![4]));
        // BlueZ's end to the client, the same way.
        acquired.socket.send(&[9; 20]).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(client.recv(&mut buf).await.unwrap(), 20);
        drop(client);
        assert_eq!(watch.next().await, Incoming::Closed);
    }

    #[tokio::test]
    async fn dropping_bluez_s_end_stops_the_watch_and_hangs_up_on_the_client() {
        let (acquired, mut watch, theirs) = pair().unwrap();
        let client = client(theirs);
        drop(acquired);
        assert_eq!(watch.next().await, Incoming::Stopped);
        drop(watch);
        let mut buf = [0u8; 8];
        // Both of BlueZ's handles are gone: the client reads the end of the stream.
        assert_eq!(client.recv(&mut buf).await.unwrap(), 0);
        let ready = client.ready(Interest::READABLE).await.unwrap();
        assert!(ready.is_read_closed());
    }
}
