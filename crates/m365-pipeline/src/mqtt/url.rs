//! Broker URLs: `tcp://` and `mqtt://` (plain, default port 1883), `ssl://` and `mqtts://`
//! (TLS, default port 8883). The earlier client's `tcp://host:1883` keeps working. Credentials in
//! the URL are refused: a URL ends up in logs, a password must not.

use crate::error::ConfigError;

/// A parsed broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

impl BrokerUrl {
    /// Parses a broker URL.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &str| ConfigError::BrokerUrl {
            url: s.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(s.trim()).map_err(|e| bad(&e.to_string()))?;
        let (tls, default_port) = match url.scheme() {
            "tcp" | "mqtt" => (false, 1883),
            "ssl" | "mqtts" => (true, 8883),
            other => {
                return Err(bad(&format!(
                    "unsupported scheme {other:?}: use tcp://, mqtt://, ssl:// or mqtts://"
                )));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL: use `username` and `password` settings",
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("missing host"))?;
        // IPv6 literals come back bracketed; the socket layer wants them bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(bad("a broker URL has no path or query"));
        }
        Ok(BrokerUrl {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_default_ports() {
        let u = BrokerUrl::parse("tcp://broker.example:1883").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 1883, false)
        );
        let u = BrokerUrl::parse("mqtt://127.0.0.1").unwrap();
        assert_eq!((u.port, u.tls), (1883, false));
        let u = BrokerUrl::parse("ssl://h:9999").unwrap();
        assert_eq!((u.port, u.tls), (9999, true));
        let u = BrokerUrl::parse("mqtts://h").unwrap();
        assert_eq!((u.port, u.tls), (8883, true));
        let u = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!(u.host, "::1");
    }

    #[test]
    fn bad_urls_say_why() {
        for (s, needle) in [
            ("http://h", "unsupported scheme"),
            ("tcp://user:pw@h", "credentials"),
            ("tcp://h/path", "no path"),
            ("not a url", "relative URL"),
        ] {
            let e = BrokerUrl::parse(s).unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }
}
