//! Talking to a SIM7600 over its AT port: switch GNSS on, check it, poll for fixes. Every wait
//! is an `await` with a deadline, so polling never blocks the runtime (an earlier client slept a
//! whole second per poll inside its loop).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::fix::Fix;
use crate::sim7600::at::{Exchange, ExchangeReader, FinalResult};
use crate::sim7600::info::{self, CgnssInfo, CgpsStatus, InfoError};

/// Default time a command may take before the modem counts as unresponsive.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Which command reports the position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InfoCommand {
    /// `AT+CGPSINFO`: position, date, time, altitude, speed, course.
    #[default]
    Cgpsinfo,
    /// `AT+CGNSSINFO`: the same plus fix mode, satellites per constellation and DOPs.
    Cgnssinfo,
}

impl InfoCommand {
    /// The command text, without the line end.
    pub fn command(self) -> &'static str {
        match self {
            InfoCommand::Cgpsinfo => "AT+CGPSINFO",
            InfoCommand::Cgnssinfo => "AT+CGNSSINFO",
        }
    }
}

/// What went wrong talking to the modem.
#[derive(Debug, thiserror::Error)]
pub enum Sim7600Error {
    /// The port failed.
    #[error("serial port: {0}")]
    Io(#[from] std::io::Error),
    /// The port reached end of file (unplugged).
    #[error("the modem's port closed")]
    Closed,
    /// No final result in time.
    #[error("{command}: no answer within {timeout:?}")]
    Timeout {
        /// The command.
        command: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The modem answered `ERROR`.
    #[error("{command}: modem answered {result:?}")]
    Rejected {
        /// The command.
        command: String,
        /// The final result.
        result: FinalResult,
    },
    /// `OK`, but without the expected information line.
    #[error("{command}: answer has no {prefix} line")]
    MissingInfo {
        /// The command.
        command: String,
        /// The prefix expected.
        prefix: &'static str,
    },
    /// The information line is malformed or corrupt.
    #[error("{command}: {source}")]
    Reply {
        /// The command.
        command: String,
        /// Why.
        source: InfoError,
    },
    /// GNSS stayed off after `AT+CGPS=1`.
    #[error("GNSS did not switch on (AT+CGPS? still reports off)")]
    NotEnabled,
}

/// A SIM7600 on any async byte port (a serial port, a pty, a test duplex).
#[derive(Debug)]
pub struct Sim7600<P> {
    port: P,
    reader: ExchangeReader,
    ready: VecDeque<Exchange>,
    timeout: Duration,
}

impl<P: AsyncRead + AsyncWrite + Unpin> Sim7600<P> {
    /// Wraps an open port.
    pub fn new(port: P) -> Self {
        Sim7600 {
            port,
            reader: ExchangeReader::new(),
            ready: VecDeque::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the per-command timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `command` and waits for its final result. Answers left over from an earlier,
    /// timed-out command are skipped by their echo.
    pub async fn command(&mut self, command: &str) -> Result<Exchange, Sim7600Error> {
        self.port.write_all(command.as_bytes()).await?;
        self.port.write_all(b"\r").await?;
        self.port.flush().await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut buf = [0u8; 512];
        loop {
            while let Some(ex) = self.ready.pop_front() {
                let ours = ex
                    .command
                    .as_deref()
                    .is_none_or(|echo| echo.eq_ignore_ascii_case(command));
                if ours {
                    return Ok(ex);
                }
                tracing::debug!(echo = ?ex.command, "skipping a stale AT answer");
            }
            let read = tokio::time::timeout_at(deadline, self.port.read(&mut buf)).await;
            let n = match read {
                Err(_) => {
                    return Err(Sim7600Error::Timeout {
                        command: command.to_owned(),
                        timeout: self.timeout,
                    });
                }
                Ok(r) => r?,
            };
            if n == 0 {
                return Err(Sim7600Error::Closed);
            }
            let bytes = buf.get(..n).unwrap_or_default();
            self.ready.extend(self.reader.push(bytes));
        }
    }

    /// `AT+CGPS?`.
    pub async fn status(&mut self) -> Result<CgpsStatus, Sim7600Error> {
        const CMD: &str = "AT+CGPS?";
        let ex = self.command(CMD).await?;
        let payload = expect_info(CMD, &ex, "+CGPS:")?;
        info::parse_cgps_status(payload).map_err(|source| Sim7600Error::Reply {
            command: CMD.to_owned(),
            source,
        })
    }

    /// Switches GNSS on if it is off (`AT+CGPS=1`), then checks it is on. An `ERROR` to
    /// `AT+CGPS=1` is expected when the session already runs, so only the final check counts.
    pub async fn enable(&mut self) -> Result<CgpsStatus, Sim7600Error> {
        let status = self.status().await?;
        if status.on {
            return Ok(status);
        }
        let ex = self.command("AT+CGPS=1").await?;
        if ex.result != FinalResult::Ok {
            tracing::debug!(result = ?ex.result, "AT+CGPS=1 refused; checking whether GNSS is on");
        }
        let status = self.status().await?;
        if status.on {
            Ok(status)
        } else {
            Err(Sim7600Error::NotEnabled)
        }
    }

    /// Polls once. `Ok(None)` is "no fix"; a corrupt reply is an error.
    pub async fn poll(&mut self, which: InfoCommand) -> Result<Option<Fix>, Sim7600Error> {
        match which {
            InfoCommand::Cgpsinfo => {
                let cmd = which.command();
                let ex = self.command(cmd).await?;
                let payload = expect_info(cmd, &ex, "+CGPSINFO:")?;
                info::parse_cgpsinfo(payload).map_err(|source| Sim7600Error::Reply {
                    command: cmd.to_owned(),
                    source,
                })
            }
            InfoCommand::Cgnssinfo => Ok(self.poll_cgnss().await?.fix),
        }
    }

    /// `AT+CGNSSINFO` with satellite counts and DOPs even when there is no position.
    pub async fn poll_cgnss(&mut self) -> Result<CgnssInfo, Sim7600Error> {
        let cmd = InfoCommand::Cgnssinfo.command();
        let ex = self.command(cmd).await?;
        let payload = expect_info(cmd, &ex, "+CGNSSINFO:")?;
        info::parse_cgnssinfo(payload).map_err(|source| Sim7600Error::Reply {
            command: cmd.to_owned(),
            source,
        })
    }

    /// Gives the port back.
    pub fn into_inner(self) -> P {
        self.port
    }
}

fn expect_info<'a>(
    command: &str,
    ex: &'a Exchange,
    prefix: &'static str,
) -> Result<&'a str, Sim7600Error> {
    if ex.result != FinalResult::Ok {
        return Err(Sim7600Error::Rejected {
            command: command.to_owned(),
            result: ex.result.clone(),
        });
    }
    ex.payload(prefix).ok_or_else(|| Sim7600Error::MissingInfo {
        command: command.to_owned(),
        prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    /// A scripted modem on the far side of an in-memory duplex: answers each command line with
    /// the next canned reply.
    async fn modem(port: tokio::io::DuplexStream, replies: Vec<&'static str>) {
        let (r, mut w) = tokio::io::split(port);
        let mut lines = BufReader::new(r).split(b'\r');
        for reply in replies {
            let Ok(Some(cmd)) = lines.next_segment().await else {
                return;
            };
            let mut out = cmd.clone();
            out.push(b'\r');
            out.extend_from_slice(reply.as_bytes());
            if w.write_all(&out).await.is_err() {
                return;
            }
        }
        // Keep the port open, silent, until the driver gives up.
        std::future::pending::<()>().await;
    }

    #[tokio::test(start_paused = true)]
    async fn enable_accepts_error_when_already_on() {
        let (a, b) = tokio::io::duplex(1024);
        tokio::spawn(modem(
            b,
            vec![
                "\r\n+CGPS: 0,1\r\n\r\nOK\r\n",
                "\r\nERROR\r\n",
                "\r\n+CGPS: 1,1\r\n\r\nOK\r\n",
            ],
        ));
        let mut m = Sim7600::new(a);
        let st = m.enable().await.unwrap();
        assert!(st.on);
    }

    #[tokio::test(start_paused = true)]
    async fn enable_fails_when_gnss_stays_off() {
        let (a, b) = tokio::io::duplex(1024);
        tokio::spawn(modem(
            b,
            vec![
                "\r\n+CGPS: 0,1\r\n\r\nOK\r\n",
                "\r\nERROR\r\n",
                "\r\n+CGPS: 0,1\r\n\r\nOK\r\n",
            ],
        ));
        let mut m = Sim7600::new(a);
        assert!(matches!(m.enable().await, Err(Sim7600Error::NotEnabled)));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_modem_times_out_on_the_paused_clock() {
        let (a, b) = tokio::io::duplex(1024);
        tokio::spawn(modem(b, vec![]));
        let mut m = Sim7600::new(a).with_timeout(Duration::from_secs(2));
        let started = tokio::time::Instant::now();
        let r = m.poll(InfoCommand::Cgpsinfo).await;
        assert!(matches!(r, Err(Sim7600Error::Timeout { .. })), "{r:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn corrupt_reply_is_an_error_and_the_next_poll_works() {
        let (a, b) = tokio::io::duplex(1024);
        tokio::spawn(modem(
            b,
            vec![
                "\r\n+CGPSINFO: 48,N,00250.293354,E,241023,131719.70,17.6,0.0,\r\n\r\nOK\r\n",
                "\r\n+CGPSINFO: 4854.642423,N,00250.293354,E,241023,131719.20,17.6,0.0,\r\n\r\nOK\r\n",
            ],
        ));
        let mut m = Sim7600::new(a);
        let r = m.poll(InfoCommand::Cgpsinfo).await;
        assert!(matches!(r, Err(Sim7600Error::Reply { .. })), "{r:?}");
        let fix = m.poll(InfoCommand::Cgpsinfo).await.unwrap().unwrap();
        assert!((fix.lat - 48.910_707_05).abs() < 1e-9);
    }

    #[tokio::test]
    async fn closed_port_is_reported() {
        let (a, b) = tokio::io::duplex(64);
        drop(b);
        let mut m = Sim7600::new(a);
        let r = m.status().await;
        assert!(
            matches!(r, Err(Sim7600Error::Io(_) | Sim7600Error::Closed)),
            "{r:?}"
        );
    }
}
