//! Broker URLs, the one parser of them: `tcp://` and `mqtt://` (plain, default port 1883),
//! `mqtts://`, `ssl://` and `tls://` (TLS, default port 8883). The earlier client's
//! `tcp://host:1883` keeps working. Only the scheme, host and port mean anything to an MQTT
//! client, so nothing else is accepted: credentials in the URL are refused (a URL ends up in
//! logs, a password must not), and so is a path or a query.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// Where the broker listens, and whether to speak TLS to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
    /// Wrap the connection in TLS.
    pub tls: bool,
}

/// The text is not a broker URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
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

impl BrokerUrl {
    /// Parses a broker URL (the same as [`str::parse`]), with the error as a [`ConfigError`].
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        text.parse()
            .map_err(|e: BrokerUrlError| ConfigError::BrokerUrl {
                url: text.to_owned(),
                reason: e.to_string(),
            })
    }
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = text
            .trim()
            .split_once("://")
            .ok_or_else(|| BrokerUrlError::NotUrl(text.to_owned()))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" => true,
            _ => return Err(BrokerUrlError::Scheme(scheme.to_owned())),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('@') {
            return Err(BrokerUrlError::Credentials);
        }
        if authority.contains(['/', '?', '#']) {
            return Err(BrokerUrlError::Malformed(format!(
                "a broker URL has no path or query, found {text:?}"
            )));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| BrokerUrlError::Malformed(format!("unclosed '[' in {text:?}")))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => {
                    return Err(BrokerUrlError::Malformed(format!(
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
            return Err(BrokerUrlError::Malformed(format!("no host in {text:?}")));
        }
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                BrokerUrlError::Malformed(format!("port must be 1 to 65535, found {p:?}"))
            })?,
        };
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl fmt::Display for BrokerUrl {
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

    fn url(tls: bool, host: &str, port: u16) -> BrokerUrl {
        BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn schemes_and_default_ports() {
        assert_eq!(
            "tcp://ubuntu-4gb-fsn1-1:1883".parse(),
            Ok(url(false, "ubuntu-4gb-fsn1-1", 1883))
        );
        assert_eq!(
            "mqtt://127.0.0.1".parse(),
            Ok(url(false, "127.0.0.1", 1883))
        );
        assert_eq!("mqtts://h".parse(), Ok(url(true, "h", 8883)));
        assert_eq!("ssl://h:9999/".parse(), Ok(url(true, "h", 9999)));
        assert_eq!("TLS://h".parse(), Ok(url(true, "h", 8883)));
        assert_eq!("mqtt://[::1]:1884".parse(), Ok(url(false, "::1", 1884)));
        assert_eq!("tcp://[::1]".parse(), Ok(url(false, "::1", 1883)));
    }

    #[test]
    fn display_gives_a_url_that_parses_back_to_the_same_broker() {
        for text in [
            "tcp://[::1]:1884",
            "mqtts://broker.example:8883",
            "tcp://h:1",
        ] {
            let parsed: BrokerUrl = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
            assert_eq!(parsed.to_string().parse(), Ok(parsed));
        }
        assert_eq!(
            "ssl://h".parse::<BrokerUrl>().unwrap().to_string(),
            "mqtts://h:8883"
        );
    }

    #[test]
    fn bad_urls_say_why() {
        assert!(matches!(
            "broker:1883".parse::<BrokerUrl>(),
            Err(BrokerUrlError::NotUrl(_))
        ));
        assert!(matches!(
            "ws://broker".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Scheme(_))
        ));
        assert_eq!(
            "tcp://u:p@broker".parse::<BrokerUrl>(),
            Err(BrokerUrlError::Credentials)
        );
        for malformed in [
            "tcp://broker:0",
            "tcp://broker:http",
            "tcp://:1883",
            "tcp://broker/topic",
            "tcp://broker?x=1",
            "tcp://[::1",
            "tcp://[::1]x",
        ] {
            assert!(
                matches!(
                    malformed.parse::<BrokerUrl>(),
                    Err(BrokerUrlError::Malformed(_))
                ),
                "{malformed}"
            );
        }
        let e = BrokerUrl::parse("http://h").unwrap_err().to_string();
        assert!(
            e.contains("\"http://h\"") && e.contains("unsupported scheme"),
            "{e}"
        );
    }
}
