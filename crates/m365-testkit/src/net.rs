//! Loopback ports for tests, reserved without a race.
//!
//! Picking a port by binding to port 0, closing that socket and handing the number to a server
//! races with every other test doing the same at the same time. A [`ReservedPort`] instead keeps
//! its socket bound (never listening) for as long as it lives:
//!
//! - the kernel does not hand the port to any other socket bound to port 0 meanwhile;
//! - connections to it are refused, so it is also "a port where nothing listens";
//! - the socket allows address reuse once bound, so a server that sets `SO_REUSEADDR` before it
//!   binds (mosquitto; tokio's and the standard library's listeners on Unix) can bind and listen
//!   on the port while the reservation is held, and bind it again after a restart.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

/// How often [`wait_listening`] tries to connect.
const CONNECT_POLL: Duration = Duration::from_millis(10);

/// A loopback port held for one test. Dropping it releases the port.
#[derive(Debug)]
pub struct ReservedPort {
    _socket: TcpSocket,
    port: u16,
}

impl ReservedPort {
    /// Reserves a port the system picks on 127.0.0.1.
    pub fn new() -> ReservedPort {
        let socket = TcpSocket::new_v4().expect("a TCP socket");
        // Bound without address reuse, so the system picks a port no other socket holds; reuse
        // is allowed only afterwards, for the server that will listen on it.
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("a free loopback port");
        socket
            .set_reuseaddr(true)
            .expect("address reuse on the reservation");
        let port = socket.local_addr().expect("the reserved address").port();
        ReservedPort {
            _socket: socket,
            port,
        }
    }

    /// The reserved port number.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

impl Default for ReservedPort {
    fn default() -> Self {
        ReservedPort::new()
    }
}

/// Waits until a connection to 127.0.0.1:`port` succeeds, trying every few milliseconds for up
/// to `timeout`. Returns whether it did.
pub async fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .is_ok()
        {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(CONNECT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reserved_port_refuses_connections_and_is_never_handed_out_twice() {
        let held: Vec<ReservedPort> = (0..64).map(|_| ReservedPort::new()).collect();
        let mut ports: Vec<u16> = held.iter().map(ReservedPort::port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), held.len(), "every reservation is its own port");
        let err = TcpStream::connect(held[0].addr()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn a_server_that_reuses_addresses_can_listen_on_a_reserved_port() {
        let reserved = ReservedPort::new();
        let listener = tokio::net::TcpListener::bind(reserved.addr())
            .await
            .expect("tokio's listener sets SO_REUSEADDR");
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        assert!(wait_listening(reserved.port(), Duration::from_secs(5)).await);
        accept.await.unwrap().unwrap();
        // A listener without address reuse cannot take it from under the reservation.
        let plain = TcpSocket::new_v4().unwrap();
        assert!(plain.bind(reserved.addr()).is_err());
    }
}
