//! The MQTT broker address, `tcp://host:1883` as the earlier client wrote it, plus the TLS forms.
//!
//! Only the scheme, host and port mean anything to an MQTT client, so this is parsed by hand
//! rather than with a general URL library; credentials in the URL are refused so that secrets
//! stay in the keys that `m365 config check` knows to mask.

use std::fmt;
use std::str::FromStr;

/// Where the broker listens, and whether to speak TLS to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Wrap the connection in TLS (`mqtts://`, `ssl://`, `tls://`).
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
}

/// The text is not a broker URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// No `scheme://` prefix.
    #[error(
        "expected a URL such as \"tcp://broker.example:1883\" or \"mqtts://broker.example:8883\", found {0:?}"
    )]
    NotUrl(String),
    /// A scheme other than the MQTT ones.
    #[error(
        "unsupported scheme \"{0}://\": use tcp:// or mqtt:// (plain), mqtts://, ssl:// or tls:// (TLS)"
    )]
    Scheme(String),
    /// `user:password@` in the URL.
    #[error("credentials in the URL are not accepted: use the username and password keys")]
    Credentials,
    /// Missing host, bad port, or a path after the port.
    #[error("{0}")]
    Malformed(String),
}

impl FromStr for Broker {
    type Err = BrokerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = text
            .trim()
            .split_once("://")
            .ok_or_else(|| BrokerError::NotUrl(text.to_owned()))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" => true,
            _ => return Err(BrokerError::Scheme(scheme.to_owned())),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(BrokerError::Credentials);
        }
        if authority.contains(['/', '?', '#']) {
            return Err(BrokerError::Malformed(format!(
                "a broker URL has no path or query, found {text:?}"
            )));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| BrokerError::Malformed(format!("unclosed '[' in {text:?}")))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => {
                    return Err(BrokerError::Malformed(format!(
                        "unexpected {after:?} after the IPv6 address"
                    )));
                }
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(BrokerError::Malformed(format!("no host in {text:?}")));
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                BrokerError::Malformed(format!("port must be 1 to 65535, found {p:?}"))
            })?,
        };
        Ok(Broker {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(tls: bool, host: &str, port: u16) -> Broker {
        Broker {
            tls,
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(
            "tcp://ubuntu-4gb-fsn1-1:1883".parse(),
            Ok(broker(false, "ubuntu-4gb-fsn1-1", 1883))
        );
        assert_eq!(
            "mqtt://127.0.0.1".parse(),
            Ok(broker(false, "127.0.0.1", 1883))
        );
        assert_eq!(
            "mqtts://broker.example".parse(),
            Ok(broker(true, "broker.example", 8883))
        );
        assert_eq!(
            "ssl://broker.example:9000/".parse(),
            Ok(broker(true, "broker.example", 9000))
        );
        assert_eq!("tcp://[::1]:1884".parse(), Ok(broker(false, "::1", 1884)));
        assert_eq!(broker(false, "::1", 1884).to_string(), "tcp://[::1]:1884");
    }

    #[test]
    fn refused_forms() {
        assert!(matches!(
            "broker:1883".parse::<Broker>(),
            Err(BrokerError::NotUrl(_))
        ));
        assert!(matches!(
            "ws://broker".parse::<Broker>(),
            Err(BrokerError::Scheme(_))
        ));
        assert_eq!(
            "tcp://u:p@broker".parse::<Broker>(),
            Err(BrokerError::Credentials)
        );
        assert!(matches!(
            "tcp://broker:0".parse::<Broker>(),
            Err(BrokerError::Malformed(_))
        ));
        assert!(matches!(
            "tcp://broker:http".parse::<Broker>(),
            Err(BrokerError::Malformed(_))
        ));
        assert!(matches!(
            "tcp://:1883".parse::<Broker>(),
            Err(BrokerError::Malformed(_))
        ));
        assert!(matches!(
            "tcp://broker/topic".parse::<Broker>(),
            Err(BrokerError::Malformed(_))
        ));
    }
}
