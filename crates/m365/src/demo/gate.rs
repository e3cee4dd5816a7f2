//! A cuttable path to the broker: a loopback TCP relay the demo's clients connect through, so
//! `--faults` can stage a broker outage (every connection through it is cut, new ones are
//! refused) while the broker itself, and the live view subscribed to it directly, keep running.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The relay. Dropping it stops accepting; relayed connections end with their peers.
#[derive(Debug)]
pub(crate) struct Gate {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Gate {
    /// Relays a free loopback port to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> anyhow::Result<Gate> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("no free loopback port for the relay")?;
        let addr = listener.local_addr()?;
        let (open, open_rx) = watch::channel(true);
        let task = tokio::spawn(accept(listener, upstream, open_rx));
        Ok(Gate { addr, open, task })
    }

    /// Where clients connect.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every relayed connection and refuses new ones until [`Gate::restore`].
    pub(crate) fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Lets connections through again.
    pub(crate) fn restore(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, open: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        if !*open.borrow() {
            // Closed at once: the client sees the broker go away, as in a real outage.
            drop(client);
            continue;
        }
        tokio::spawn(relay(client, upstream, open.clone()));
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut open: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = open.wait_for(|o| !*o) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_pass_until_the_gate_is_cut() {
        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let gate = Gate::start(upstream).await.unwrap();
        let mut c = TcpStream::connect(gate.addr()).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        gate.cut();
        let mut rest = Vec::new();
        let n = c.read_to_end(&mut rest).await.unwrap_or(0);
        assert_eq!(n, 0, "the relayed connection is closed");
        let mut refused = TcpStream::connect(gate.addr()).await.unwrap();
        assert_eq!(refused.read(&mut buf).await.unwrap_or(0), 0, "new ones too");

        gate.restore();
        let mut again = TcpStream::connect(gate.addr()).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}
