//! `ingest.toml`: the broker and topics to subscribe to, the database to write to, batching and
//! logging. Every key but `[database] url` has a default; a wrong value or an unknown key is
//! reported as `file:line:column: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Default topics: what an `m365` client publishes with its default configuration.
pub const DEFAULT_TELEMETRY: &str = "m365/+/telemetry";
/// Default availability topic filter (retained `online` / `offline`).
pub const DEFAULT_AVAILABILITY: &str = "m365/+/availability";
/// Default status topic filter (retained counters).
pub const DEFAULT_STATUS: &str = "m365/+/status";
/// Default ride events topic filter (one event per message, in any of the three encodings).
pub const DEFAULT_EVENTS: &str = "m365/+/events";

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A value is wrong, a key unknown or required one missing.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file as given.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[mqtt]`.
    #[serde(default)]
    pub mqtt: MqttSettings,
    /// `[database]` (required: it holds the URL).
    pub database: DatabaseSettings,
    /// `[batch]`.
    #[serde(default)]
    pub batch: BatchSettings,
    /// `[log]`.
    #[serde(default)]
    pub log: LogSettings,
}

/// `[mqtt]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    /// `tcp://` / `mqtt://` (plain, port 1883) or `ssl://` / `mqtts://` / `tls://` (TLS, 8883).
    pub broker: BrokerAddress,
    /// MQTT client id; `{hostname}` is replaced. Must differ between workers and stay the same
    /// across restarts of one worker (it names the persistent session).
    pub client_id: String,
    /// Shared subscription group (`$share/<group>/…`); empty for plain subscriptions.
    pub group: TopicGroup,
    /// Topic filters carrying records (`legacy`, `json` or `compact`, told apart per message).
    pub telemetry: Vec<TopicFilter>,
    /// Topic filters carrying `online` / `offline`.
    pub availability: Vec<TopicFilter>,
    /// Topic filters carrying the client's status counters (JSON).
    pub status: Vec<TopicFilter>,
    /// Topic filters carrying ride events (`legacy`, `json` or `compact`, told apart per
    /// message), stored in `m365_events`.
    pub events: Vec<TopicFilter>,
    /// How long the broker keeps the session (and queues messages) while the worker is away.
    pub session_expiry: Seconds,
    /// MQTT keep-alive.
    pub keep_alive: Seconds,
    /// Most messages received and not yet acknowledged (MQTT 5 Receive Maximum).
    pub in_flight: InFlight,
    /// First reconnect delay, doubled after each failure.
    pub reconnect_min: Seconds,
    /// Longest reconnect delay.
    pub reconnect_max: Seconds,
    /// User name.
    pub username: Option<String>,
    /// Password (prefer `password_file`; never logged).
    pub password: Option<String>,
    /// A file holding the password (without the final newline).
    pub password_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) for a TLS broker; the system's roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub client_key: Option<PathBuf>,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            broker: BrokerAddress {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false,
            },
            client_id: "m365-ingest-{hostname}".into(),
            group: TopicGroup("m365-ingest".into()),
            telemetry: vec![TopicFilter(DEFAULT_TELEMETRY.into())],
            availability: vec![TopicFilter(DEFAULT_AVAILABILITY.into())],
            status: vec![TopicFilter(DEFAULT_STATUS.into())],
            events: vec![TopicFilter(DEFAULT_EVENTS.into())],
            session_expiry: Seconds(Duration::from_secs(7 * 24 * 3600)),
            keep_alive: Seconds(Duration::from_secs(30)),
            in_flight: InFlight(1000),
            reconnect_min: Seconds(Duration::from_secs(1)),
            reconnect_max: Seconds(Duration::from_secs(30)),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

impl MqttSettings {
    /// The client id with `{hostname}` replaced.
    pub fn resolved_client_id(&self) -> String {
        self.client_id.replace("{hostname}", &hostname())
    }
}

/// The machine's host name, for `{hostname}`; `localhost` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether to store positions as PostGIS `geography`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostgisMode {
    /// Use PostGIS when the extension is installed or can be created; else the fallback.
    #[default]
    Auto,
    /// Never: `location_info.location` is PostgreSQL's built-in `point` (x = lon, y = lat).
    Off,
}

/// Whether to turn the tables into TimescaleDB hypertables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimescaleMode {
    /// When the extension is installed in the database (or can be created).
    #[default]
    Auto,
    /// Plain tables.
    Off,
}

/// `[database]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgresql://user[:password]@host[:port]/dbname`.
    pub url: DatabaseUrl,
    /// A file holding the password, when the URL has none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostGIS for `location_info.location`.
    #[serde(default)]
    pub postgis: PostgisMode,
    /// TimescaleDB hypertables.
    #[serde(default)]
    pub timescaledb: TimescaleMode,
    /// First reconnect delay after the database went away.
    #[serde(default = "default_db_reconnect_min")]
    pub reconnect_min: Seconds,
    /// Longest reconnect delay.
    #[serde(default = "default_db_reconnect_max")]
    pub reconnect_max: Seconds,
}

fn default_db_reconnect_min() -> Seconds {
    Seconds(Duration::from_millis(500))
}

fn default_db_reconnect_max() -> Seconds {
    Seconds(Duration::from_secs(30))
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &self.url)
            .field("password_file", &self.password_file)
            .field("postgis", &self.postgis)
            .field("timescaledb", &self.timescaledb)
            .finish()
    }
}

/// `[batch]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSettings {
    /// Records per transaction (a `compact` message may carry many).
    pub size: BatchSize,
    /// Longest wait for a batch to fill before it is written.
    pub linger: Seconds,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            size: BatchSize(500),
            linger: Seconds(Duration::from_millis(200)),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// A `tracing` filter (`info`, `debug`, `info,m365_ingest=debug`); `RUST_LOG` wins.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// A duration: a number of seconds (fractions allowed) or a string with units (`"500ms"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let err = |what: String| serde::de::Error::custom(what);
        match Raw::deserialize(d)? {
            Raw::Int(s) => Ok(Seconds(Duration::from_secs(s))),
            Raw::Float(s) if s.is_finite() && (0.0..=1.0e9).contains(&s) => {
                Ok(Seconds(Duration::from_secs_f64(s)))
            }
            Raw::Float(s) => Err(err(format!("expected a duration in seconds, found {s}"))),
            Raw::Text(t) => humantime::parse_duration(&t).map(Seconds).map_err(|e| {
                err(format!(
                    "expected a duration such as \"500ms\" or \"30s\", found {t:?} ({e})"
                ))
            }),
        }
    }
}

/// The scheme `url::Url::parse` would find in `s` (lower-cased), read without parsing: the text
/// before the first `:`, after removing what the URL parser removes (tabs and line breaks
/// anywhere, control characters and spaces at the ends). The settings check it before parsing,
/// so only their own schemes reach `url`: for `http://` and the other special schemes it runs
/// the host through IDNA, whose back-end here (`idna_adapter` 1.0.0) trips a debug assertion on
/// a host mixing upper-case letters with other characters.
fn url_scheme(s: &str) -> Option<String> {
    let cleaned: String = s
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let (scheme, _) = cleaned.trim_start_matches(|c| c <= ' ').split_once(':')?;
    Some(scheme.to_ascii_lowercase())
}

/// The broker's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to use TLS.
    pub tls: bool,
}

impl BrokerAddress {
    /// Parses `tcp://host[:port]` and the TLS schemes.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(scheme) = url_scheme(s)
            && !matches!(scheme.as_str(), "tcp" | "mqtt" | "ssl" | "mqtts" | "tls")
        {
            return Err(format!(
                "unsupported broker scheme {scheme:?}: use tcp://, mqtt://, ssl://, mqtts:// or tls://"
            ));
        }
        let url = url::Url::parse(s).map_err(|e| {
            format!("expected a broker URL such as \"tcp://127.0.0.1:1883\", found {s:?} ({e})")
        })?;
        let (tls, default_port) = match url.scheme() {
            "tcp" | "mqtt" => (false, 1883),
            "ssl" | "mqtts" | "tls" => (true, 8883),
            other => {
                return Err(format!(
                    "unsupported broker scheme {other:?}: use tcp://, mqtt://, ssl://, mqtts:// or tls://"
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "put credentials in username / password_file, not in the broker URL".into(),
            );
        }
        if !(url.path().is_empty() || url.path() == "/") {
            return Err(format!("a broker URL has no path, found {:?}", url.path()));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("no host in the broker URL {s:?}"))?
            .trim_matches(|c| c == '[' || c == ']')
            .to_owned();
        Ok(BrokerAddress {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
        })
    }
}

impl<'de> Deserialize<'de> for BrokerAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BrokerAddress::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "tcp" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The database URL. Its password never prints.
#[derive(Clone, PartialEq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks the form (`postgres://` or `postgresql://`, a host and a database name).
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(scheme) = url_scheme(s)
            && !matches!(scheme.as_str(), "postgres" | "postgresql")
        {
            return Err(format!(
                "expected a postgresql:// URL, found the scheme {scheme:?}"
            ));
        }
        let url = url::Url::parse(s).map_err(|e| {
            format!(
                "expected a URL such as \"postgresql://postgres@127.0.0.1:5432/m365\", found an invalid one ({e})"
            )
        })?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "expected a postgresql:// URL, found the scheme {:?}",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("no host in the database URL".into());
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err("no database name in the URL (postgresql://user@host/NAME)".into());
        }
        s.parse::<tokio_postgres::Config>()
            .map_err(|e| format!("the database URL is not usable: {e}"))?;
        Ok(DatabaseUrl(s.to_owned()))
    }

    /// The URL as written (with its password, if any: do not log).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password, for logs.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("***"));
                }
                u.to_string()
            }
            Err(_) => "<invalid URL>".into(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        DatabaseUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A subscription topic filter: non-empty, `+` and `#` only as whole levels, `#` last, and not
/// itself a `$share/` filter (the group is set apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter(pub String);

impl TopicFilter {
    /// Checks a filter.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("a topic filter cannot be empty".into());
        }
        if s.starts_with("$share/") {
            return Err(format!(
                "write the filter without $share/…: the group is [mqtt] group (found {s:?})"
            ));
        }
        let levels: Vec<&str> = s.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            let wild = level.contains('+') || level.contains('#');
            if wild && *level != "+" && *level != "#" {
                return Err(format!(
                    "in {s:?}: + and # must stand alone in a level, found {level:?}"
                ));
            }
            if *level == "#" && i + 1 != levels.len() {
                return Err(format!("in {s:?}: # must be the last level"));
            }
        }
        Ok(TopicFilter(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for TopicFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TopicFilter::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A shared subscription group name: no `/`, `+` or `#`; empty means no shared subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicGroup(pub String);

impl<'de> Deserialize<'de> for TopicGroup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.contains(['/', '+', '#']) {
            return Err(serde::de::Error::custom(format!(
                "a group name cannot contain /, + or #, found {s:?}"
            )));
        }
        Ok(TopicGroup(s))
    }
}

/// Receive Maximum: 1 to 65535 messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InFlight(pub u16);

impl<'de> Deserialize<'de> for InFlight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(InFlight)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("expected 1 to 65535 messages, found {n}"))
            })
    }
}

/// Records per batch: 1 to 100000.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize(pub usize);

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        usize::try_from(n)
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .map(BatchSize)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("expected 1 to 100000 records, found {n}"))
            })
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// Parses the text of a configuration file called `file` (used in messages).
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let invalid = |span: Range<usize>, message: String| {
        let (line, column) = line_col(text, span.start);
        ConfigError::Invalid {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    };
    let cfg: Config = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let mut message = e.message().trim().replace('\n', " ");
        if let Some(key) = key_at(text, span.start) {
            message = format!("{key}: {message}");
        }
        invalid(span, message)
    })?;
    // Checks across keys, placed at the section's first key for lack of a better place.
    let table_span = |section: &str, key: &str| -> Range<usize> {
        find_key_span(text, section, key).unwrap_or(0..0)
    };
    let m = &cfg.mqtt;
    if m.reconnect_max.0 < m.reconnect_min.0 {
        return Err(invalid(
            table_span("mqtt", "reconnect_max"),
            "[mqtt] reconnect_max: shorter than reconnect_min".into(),
        ));
    }
    if m.reconnect_min.0.is_zero() {
        return Err(invalid(
            table_span("mqtt", "reconnect_min"),
            "[mqtt] reconnect_min: must be longer than 0".into(),
        ));
    }
    if m.password.is_some() && m.password_file.is_some() {
        return Err(invalid(
            table_span("mqtt", "password_file"),
            "[mqtt] password_file: set password or password_file, not both".into(),
        ));
    }
    if m.client_cert.is_some() != m.client_key.is_some() {
        return Err(invalid(
            table_span(
                "mqtt",
                if m.client_cert.is_some() {
                    "client_cert"
                } else {
                    "client_key"
                },
            ),
            "[mqtt] client_cert and client_key go together".into(),
        ));
    }
    if !m.broker.tls && (m.ca_file.is_some() || m.client_cert.is_some()) {
        return Err(invalid(
            table_span("mqtt", "broker"),
            "[mqtt] broker: ca_file / client_cert need a TLS broker (mqtts://)".into(),
        ));
    }
    if m.telemetry.is_empty()
        && m.availability.is_empty()
        && m.status.is_empty()
        && m.events.is_empty()
    {
        return Err(invalid(
            table_span("mqtt", "telemetry"),
            "[mqtt] telemetry: nothing to subscribe to".into(),
        ));
    }
    if m.client_id.is_empty() {
        return Err(invalid(
            table_span("mqtt", "client_id"),
            "[mqtt] client_id: cannot be empty".into(),
        ));
    }
    if m.session_expiry.0.as_secs() > u64::from(u32::MAX) {
        return Err(invalid(
            table_span("mqtt", "session_expiry"),
            "[mqtt] session_expiry: at most 136 years".into(),
        ));
    }
    if !(5..=u64::from(u16::MAX)).contains(&m.keep_alive.0.as_secs()) {
        return Err(invalid(
            table_span("mqtt", "keep_alive"),
            "[mqtt] keep_alive: 5 s to 65535 s".into(),
        ));
    }
    let db = &cfg.database;
    if db.reconnect_max.0 < db.reconnect_min.0 || db.reconnect_min.0.is_zero() {
        return Err(invalid(
            table_span("database", "reconnect_max"),
            "[database] reconnect_min must be above 0 and not longer than reconnect_max".into(),
        ));
    }
    Ok(cfg)
}

/// Where `key` of `[section]` is written (the value's span), found with the span-preserving
/// parser.
fn find_key_span(text: &str, section: &str, key: &str) -> Option<Range<usize>> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let sec = doc.get_ref().get(section)?;
    match sec.get_ref() {
        toml::de::DeValue::Table(t) => t.get(key).map(toml::Spanned::span).or(Some(sec.span())),
        _ => Some(sec.span()),
    }
}

/// The `[section] key` whose value is written at byte `offset`, if any.
fn key_at(text: &str, offset: usize) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn walk(table: &DeTable<'_>, path: &mut Vec<String>, offset: usize) -> bool {
        for (k, v) in table.iter() {
            path.push(k.get_ref().to_string());
            let found = match v.get_ref() {
                // A table's own span may be only its header: look at its values.
                DeValue::Table(t) => walk(t, path, offset),
                _ => {
                    let span = v.span();
                    span.start <= offset && offset < span.end.max(span.start + 1)
                }
            };
            if found {
                return true;
            }
            path.pop();
        }
        false
    }
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk(doc.get_ref(), &mut path, offset).then_some(())?;
    match path.as_slice() {
        [] => None,
        [section] => Some(format!("[{section}]")),
        [rest @ .., key] => Some(format!("[{}] {key}", rest.join("."))),
    }
}

/// Reads and parses `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[database]\nurl = \"postgresql://postgres@127.0.0.1:5432/m365\"\n";

    fn err(text: &str) -> String {
        parse("ingest.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_file_takes_the_defaults() {
        let c = parse("ingest.toml", MINIMAL).unwrap();
        assert_eq!(c.mqtt, MqttSettings::default());
        assert_eq!(c.mqtt.telemetry[0].0, "m365/+/telemetry");
        assert_eq!(c.mqtt.events[0].0, "m365/+/events");
        assert_eq!(c.mqtt.broker.to_string(), "tcp://127.0.0.1:1883");
        assert_eq!(c.database.postgis, PostgisMode::Auto);
        assert_eq!(c.batch.size, BatchSize(500));
    }

    #[test]
    fn values_with_units_and_tls_brokers() {
        let c = parse(
            "ingest.toml",
            &format!(
                "[mqtt]\nbroker = \"mqtts://broker.example:9000\"\nkeep_alive = \"1m\"\n\
                 reconnect_min = 0.5\ngroup = \"\"\ntelemetry = [\"vehicle/1/realtime\", \"m365/+/compact\"]\n\
                 [batch]\nsize = 50\nlinger = \"50ms\"\n{MINIMAL}[database.x]\n"
            )
            .replace("[database.x]\n", ""),
        )
        .unwrap();
        assert!(c.mqtt.broker.tls);
        assert_eq!(c.mqtt.broker.port, 9000);
        assert_eq!(c.mqtt.keep_alive.0, Duration::from_secs(60));
        assert_eq!(c.mqtt.reconnect_min.0, Duration::from_millis(500));
        assert_eq!(c.batch.linger.0, Duration::from_millis(50));
        assert_eq!(c.mqtt.telemetry.len(), 2);
        assert_eq!(c.mqtt.group.0, "");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = err("[mqtt]\nkeep_alive = \"abc\"\n[database]\nurl = \"postgresql://h/db\"\n");
        assert!(
            e.starts_with("ingest.toml:2:14: [mqtt] keep_alive: "),
            "{e}"
        );
        assert!(e.contains("duration"), "{e}");

        let e = err("[mqtt]\nbroker = \"http://x\"\n[database]\nurl = \"postgresql://h/db\"\n");
        assert!(e.starts_with("ingest.toml:2:10: "), "{e}");
        assert!(e.contains("scheme"), "{e}");

        let e = err("[database]\nurl = \"postgresql://h/db\"\npostgis = \"maybe\"\n");
        assert!(e.starts_with("ingest.toml:3:11: "), "{e}");

        let e = err("[database]\nurl = \"postgresql://h/db\"\nbatch_size = 3\n");
        assert!(e.starts_with("ingest.toml:3:1: "), "{e}");
        assert!(e.contains("batch_size"), "{e}");

        let e = err("[mqtt]\ntelemetry = [\"a/b+/c\"]\n[database]\nurl = \"postgresql://h/db\"\n");
        assert!(e.starts_with("ingest.toml:2:13: "), "{e}");
    }

    #[test]
    fn database_url_is_required_and_checked() {
        let e = err("[mqtt]\n");
        assert!(e.contains("database"), "{e}");
        let e = err("[database]\nurl = \"mysql://h/db\"\n");
        assert!(
            e.starts_with("ingest.toml:2:7: ") && e.contains("postgresql://"),
            "{e}"
        );
        let e = err("[database]\nurl = \"postgresql://h\"\n");
        assert!(e.contains("no database name"), "{e}");
    }

    #[test]
    fn cross_key_checks_point_at_the_key() {
        let e = err(&format!(
            "[mqtt]\nreconnect_min = \"10s\"\nreconnect_max = \"1s\"\n{MINIMAL}"
        ));
        assert!(e.starts_with("ingest.toml:3:17: "), "{e}");
        let e = err(&format!("[mqtt]\nca_file = \"/x.pem\"\n{MINIMAL}"));
        assert!(e.contains("TLS broker"), "{e}");
    }

    #[test]
    fn password_never_prints() {
        let c = parse(
            "ingest.toml",
            "[database]\nurl = \"postgresql://ingest:s3cret@db.example/m365\"\n",
        )
        .unwrap();
        let shown = format!("{:?}", c.database);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(c.database.url.redacted().contains("***"));
        assert!(c.database.url.expose().contains("s3cret"));
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("a\nbé c", 5), (2, 3));
        assert_eq!(line_col("", 10), (1, 1));
    }

    #[test]
    fn the_packaged_example_is_valid_and_shows_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/ingest.toml");
        let c = load(&path).unwrap();
        assert_eq!(c.mqtt, MqttSettings::default());
        assert_eq!(c.batch, BatchSettings::default());
        assert_eq!(c.log, LogSettings::default());
        assert_eq!(c.database.reconnect_min, default_db_reconnect_min());
        assert_eq!(c.database.reconnect_max, default_db_reconnect_max());
    }

    #[test]
    fn hostname_placeholder_is_replaced() {
        let m = MqttSettings::default();
        let id = m.resolved_client_id();
        assert!(id.starts_with("m365-ingest-") && !id.contains('{'), "{id}");
    }

    #[test]
    fn urls_of_other_schemes_are_refused_before_the_url_parser() {
        // A special scheme's host mixing upper case with other characters reached IDNA, whose
        // back-end panicked in debug builds (found by the `ingest_config` fuzz target).
        for s in [
            "http://JJ\u{e9}",
            "HTTP://Jé/db",
            " ht\ttp:/,JJJJ\u{fffd}qls",
            "file://A\u{e9}",
        ] {
            let e = BrokerAddress::parse(s).unwrap_err();
            assert!(e.contains("unsupported broker scheme"), "{e}");
            let e = DatabaseUrl::parse(s).unwrap_err();
            assert!(e.contains("found the scheme"), "{e}");
        }
        let e = err(
            "[mqtt]\nbroker = \"http:/,JJJJJJJJJ\u{fffd}\u{fffd}qls\"\n[database]\nurl = \"postgresql://h/db\"\n",
        );
        assert!(
            e.starts_with("ingest.toml:2:10: [mqtt] broker: unsupported broker scheme \"http\""),
            "{e}"
        );
        assert_eq!(url_scheme(" \tMQ\nTTS://h"), Some("mqtts".into()));
        assert_eq!(url_scheme("no scheme"), None);
        assert!(BrokerAddress::parse("MQTTS://Broker.Example").unwrap().tls);
        assert!(BrokerAddress::parse("broker.example").is_err());
        assert!(DatabaseUrl::parse("postgres://h/db").is_ok());
    }
}
