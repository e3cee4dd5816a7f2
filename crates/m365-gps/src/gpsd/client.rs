//! A gpsd client over TCP: connect (127.0.0.1:2947 by default), ask for JSON reports with
//! `?WATCH={"enable":true,"json":true}`, and read decoded messages one by one.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gpsd::json::{GpsdDecoder, GpsdMessage};

/// gpsd's default address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:2947";

/// Longest JSON line accepted: SKY reports with many satellites run to a few kilobytes.
pub const MAX_LINE_LEN: usize = 64 * 1024;

/// The watch command that asks for JSON reports.
pub const WATCH: &[u8] = b"?WATCH={\"enable\":true,\"json\":true}\n";

/// Errors of the gpsd client.
#[derive(Debug, thiserror::Error)]
pub enum GpsdError {
    /// Connecting or reading failed.
    #[error("gpsd connection: {0}")]
    Io(#[from] std::io::Error),
    /// gpsd closed the connection.
    #[error("gpsd closed the connection")]
    Closed,
    /// A line longer than [`MAX_LINE_LEN`].
    #[error("gpsd sent a line longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
}

/// A connected, watching gpsd client.
#[derive(Debug)]
pub struct GpsdClient {
    stream: TcpStream,
    decoder: GpsdDecoder,
    buf: Vec<u8>,
}

impl GpsdClient {
    /// Connects and sends the watch command.
    pub async fn connect(addr: SocketAddr) -> Result<Self, GpsdError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(WATCH).await?;
        Ok(GpsdClient {
            stream,
            decoder: GpsdDecoder::new(),
            buf: Vec::new(),
        })
    }

    /// The next decoded message. Malformed lines are logged and skipped.
    pub async fn next_message(&mut self) -> Result<GpsdMessage, GpsdError> {
        loop {
            while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                let text = text.trim();
                if text.is_empty() {
                    continue;
                }
                match self.decoder.push_line(text) {
                    Ok(m) => return Ok(m),
                    Err(e) => tracing::debug!(error = %e, "gpsd line skipped"),
                }
            }
            if self.buf.len() > MAX_LINE_LEN {
                return Err(GpsdError::LineTooLong);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(GpsdError::Closed);
            }
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}
