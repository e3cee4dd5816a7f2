//! `[mqtt]`: the broker, credentials, TLS, topics and their encodings, and the reconnect policy.
//!
//! Keys of the earlier client keep their meaning: `broker`, `client` (client id), `topic`,
//! `keep_alive`, `reconnect_min` / `reconnect_max` (seconds; the retry delay starts at the minimum
//! and doubles after each failure up to the maximum, each delay drawn from the upper half of its
//! range). Its `send_interval` is read by `[telemetry]` handling in `mod.rs`, since it sets the
//! sampling interval.
//!
//! The values are the pipeline's own types ([`BrokerUrl`], [`MqttProtocol`], [`Encoding`]), read
//! with the pipeline's parsers where one exists (broker URL, protocol version, password file), so
//! each setting is parsed in one place; this module adds the file positions to the errors.

use super::reader::{Located, Refusal, Section};
use m365_pipeline::Secret;
pub(crate) use m365_pipeline::encoding::NoFix;
use m365_pipeline::mqtt::credentials::read_password_file;
pub use m365_pipeline::{BrokerUrl, Encoding, MqttProtocol};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::de::DeValue;

/// Environment variable that overrides `[mqtt] password` / `password_file`.
pub const PASSWORD_ENV: &str = "M365_MQTT_PASSWORD";
/// Environment variable that overrides `[mqtt] username`.
pub const USERNAME_ENV: &str = "M365_MQTT_USERNAME";

pub(crate) const KEYS: &[&str] = &[
    "broker",
    "client",
    "topic",
    "encoding",
    "legacy_no_fix",
    "mirror",
    "availability_topic",
    "events_topic",
    "batch_window",
    "status_interval",
    "protocol",
    "keep_alive",
    "reconnect_min",
    "reconnect_max",
    "username",
    "password",
    "password_file",
    "tls",
    "in_flight",
    "send_interval",
];
const TLS_KEYS: &[&str] = &["ca_file", "client_cert", "client_key", "system_roots"];
const MIRROR_KEYS: &[&str] = &["topic", "encoding"];

/// Every encoding; the configuration names each by [`Encoding::name`].
const ENCODINGS: [Encoding; 3] = [Encoding::Legacy, Encoding::Json, Encoding::Compact];
/// Their names, as `[mqtt] encoding` accepts them.
const ENCODING_NAMES: &[&str] = &["legacy", "json", "compact"];

/// A topic and the encoding of what is published on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicEncoding {
    /// The topic (with `{id}` already replaced by the scooter id).
    pub topic: String,
    /// The encoding of records published there.
    pub encoding: Encoding,
}

/// Where the password came from (shown by `m365 config check`, never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password = "…"` in the file.
    Inline,
    /// `password_file = "…"`.
    File(PathBuf),
    /// The environment variable [`PASSWORD_ENV`].
    Env,
}

/// TLS settings; present exactly when the broker URL asks for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) to trust, e.g. for a self-signed broker.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS; given together with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Also trust the operating system's root CAs (Debian's `ca-certificates` on the Pi).
    pub system_roots: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            client_cert: None,
            client_key: None,
            system_roots: true,
        }
    }
}

/// The effective `[mqtt]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// The broker.
    pub broker: BrokerUrl,
    /// MQTT client id (`{id}` replaced).
    pub client_id: String,
    /// Telemetry topic (`{id}` replaced).
    pub topic: String,
    /// Encoding on `topic`.
    pub encoding: Encoding,
    /// What `legacy` topics send for a record without a usable fix.
    pub legacy_no_fix: NoFix,
    /// More topics that receive the same records in another encoding.
    pub mirror: Vec<TopicEncoding>,
    /// Retained "online"/"offline" topic (also the last will).
    pub availability_topic: String,
    /// Ride events (`{id}` replaced), in the encoding of `topic`; `None` when set to `""`.
    pub events_topic: Option<String>,
    /// How long a live record may wait for others to share its `compact` message: longer
    /// windows send fewer, larger messages (fewer bytes per record), shorter ones arrive sooner.
    pub batch_window: Duration,
    /// How often the retained health message is refreshed on `m365/{id}/status` (it is also
    /// sent at each connection and when samples start being dropped).
    pub status_interval: Duration,
    /// Protocol version.
    pub protocol: MqttProtocol,
    /// Keep-alive (1 s resolution; zero turns it off with MQTT 3.1.1, see
    /// [`MqttProtocol::keep_alive`] for what each version carries).
    pub keep_alive: Duration,
    /// First (and shortest) reconnect delay; the back-off doubles from it after each failed
    /// attempt, with jitter.
    pub reconnect_min: Duration,
    /// Longest reconnect delay.
    pub reconnect_max: Duration,
    /// User name, if the broker wants one.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<Secret>,
    /// Where `password` came from.
    pub password_source: Option<PasswordSource>,
    /// TLS settings when the broker URL is `mqtts://` (or `ssl://`, `tls://`).
    pub tls: Option<TlsConfig>,
    /// Most QoS 1 publishes awaiting their acknowledgement at once.
    pub in_flight: u16,
}

impl MqttConfig {
    /// These settings as they apply to scooter `id`: `{id}` replaced in the client id and every
    /// topic.
    pub fn for_scooter(&self, id: &str) -> MqttConfig {
        let put = |t: &str| t.replace("{id}", id);
        MqttConfig {
            client_id: put(&self.client_id),
            topic: put(&self.topic),
            mirror: self
                .mirror
                .iter()
                .map(|m| TopicEncoding {
                    topic: put(&m.topic),
                    encoding: m.encoding,
                })
                .collect(),
            availability_topic: put(&self.availability_topic),
            events_topic: self.events_topic.as_deref().map(put),
            ..self.clone()
        }
    }

    /// The client id and topics that must name the scooter when one process serves several
    /// (they would collide otherwise), as `(key, value)`.
    pub(crate) fn per_scooter_names(&self) -> Vec<(&'static str, &str)> {
        let mut names = vec![
            ("client", self.client_id.as_str()),
            ("topic", self.topic.as_str()),
            ("availability_topic", self.availability_topic.as_str()),
        ];
        names.extend(self.mirror.iter().map(|m| ("mirror", m.topic.as_str())));
        if let Some(events) = &self.events_topic {
            names.push(("events_topic", events.as_str()));
        }
        names
    }

    /// Every topic that receives records, with its encoding: `topic` first, then the mirrors.
    pub fn topics(&self) -> Vec<TopicEncoding> {
        let mut topics = vec![TopicEncoding {
            topic: self.topic.clone(),
            encoding: self.encoding,
        }];
        topics.extend(self.mirror.iter().cloned());
        topics
    }
}

/// Default values, before `{id}` is replaced.
pub(crate) mod defaults {
    use super::BrokerUrl;

    /// `tcp://127.0.0.1:1883`: a broker on the Pi itself (e.g. a bridging Mosquitto).
    pub(crate) fn broker() -> BrokerUrl {
        BrokerUrl {
            tls: false,
            host: "127.0.0.1".to_owned(),
            port: 1883,
        }
    }
    pub(crate) const CLIENT: &str = "m365-{id}";
    pub(crate) const TOPIC: &str = "m365/{id}/telemetry";
    pub(crate) const AVAILABILITY_TOPIC: &str = "m365/{id}/availability";
    pub(crate) const EVENTS_TOPIC: &str = "m365/{id}/events";
    pub(crate) const BATCH_WINDOW_SECS: u64 = 5;
    pub(crate) const STATUS_INTERVAL_SECS: u64 = 300;
    pub(crate) const KEEP_ALIVE_SECS: u64 = 30;
    pub(crate) const RECONNECT_MIN_SECS: u64 = 1;
    pub(crate) const RECONNECT_MAX_SECS: u64 = 30;
    pub(crate) const IN_FLIGHT: u16 = 10;
}

/// Reads `[mqtt]`; `id` replaces `{id}` in topics and the client id; `env` looks up variables.
pub(crate) fn read(
    section: &mut Section<'_, '_>,
    id: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> MqttConfig {
    let broker_value = section.value("broker", |v| match v {
        DeValue::String(s) => s
            .parse::<BrokerUrl>()
            .map_err(|e| Refusal::Invalid(e.to_string())),
        _ => Err(Refusal::Expected("a broker URL string")),
    });
    let broker = broker_value.map_or_else(defaults::broker, |b| b.value);

    let topic =
        read_topic(section, "topic", id).unwrap_or_else(|| defaults::TOPIC.replace("{id}", id));
    let encoding = read_encoding(section, "encoding").unwrap_or(Encoding::Legacy);
    let legacy_no_fix =
        section
            .choice("legacy_no_fix", &["zeros", "null"])
            .map_or(NoFix::default(), |c| match c.value {
                "null" => NoFix::Null,
                _ => NoFix::Zeros,
            });
    let mut mirror = Vec::new();
    for mut m in section.tables("mirror", MIRROR_KEYS) {
        let t = read_topic(&mut m, "topic", id);
        if t.is_none() && !m.has("topic") {
            m.problem_here("topic", "every [[mqtt.mirror]] needs a topic");
        }
        let e = read_encoding(&mut m, "encoding").unwrap_or(Encoding::Json);
        if let Some(t) = t {
            mirror.push(TopicEncoding {
                topic: t,
                encoding: e,
            });
        }
    }

    let protocol = section
        .value("protocol", |v| {
            let parsed = match v {
                DeValue::String(s) => s.parse::<MqttProtocol>().ok(),
                DeValue::Integer(i) => i.as_str().parse::<MqttProtocol>().ok(),
                _ => None,
            };
            parsed.ok_or_else(|| {
                Refusal::Invalid(format!(
                    "expected \"3.1.1\" or \"5\", found {}",
                    super::reader::describe(v)
                ))
            })
        })
        .map_or(MqttProtocol::V5, |p| p.value);

    let keep_alive = section
        .duration(
            "keep_alive",
            Duration::ZERO..=Duration::from_secs(u64::from(u16::MAX)),
        )
        .map_or(Duration::from_secs(defaults::KEEP_ALIVE_SECS), |d| d.value);
    let reconnect_min = section.duration(
        "reconnect_min",
        Duration::from_millis(100)..=Duration::from_secs(3600),
    );
    let reconnect_max = section.duration(
        "reconnect_max",
        Duration::from_secs(1)..=Duration::from_secs(3600),
    );
    if let (Some(min), Some(max)) = (&reconnect_min, &reconnect_max)
        && min.value > max.value
    {
        section.problem(
            "reconnect_max",
            &max.span,
            format!(
                "must not be shorter than reconnect_min ({})",
                super::units::format_duration(min.value)
            ),
        );
    }
    let reconnect_min = reconnect_min
        .map_or(Duration::from_secs(defaults::RECONNECT_MIN_SECS), |d| {
            d.value
        });
    let reconnect_max = reconnect_max.map_or(
        Duration::from_secs(defaults::RECONNECT_MAX_SECS).max(reconnect_min),
        |d| d.value,
    );

    let username = match env(USERNAME_ENV).filter(|u| !u.is_empty()) {
        Some(u) => {
            section.string("username");
            Some(u)
        }
        None => section.non_empty_string("username").map(|u| u.value),
    };
    let (password, password_source) = password(section, env);

    let tls_span = section.span_of("tls");
    let mut tls_section = section.table("tls", TLS_KEYS);
    let tls = if broker.tls {
        Some(read_tls(&mut tls_section))
    } else {
        if let Some(span) = tls_span {
            section.problem(
                "tls",
                &span,
                format!(
                    "TLS settings need a TLS broker URL (mqtts://{}:8883), but broker is {}",
                    broker.host, broker
                ),
            );
        }
        // Still read the keys so they are not reported as unknown on top of the error above.
        read_tls(&mut tls_section);
        None
    };
    drop(tls_section);

    let client_id = section.non_empty_string("client").map_or_else(
        || defaults::CLIENT.replace("{id}", id),
        |c| c.value.replace("{id}", id),
    );
    let availability_topic = read_topic(section, "availability_topic", id)
        .unwrap_or_else(|| defaults::AVAILABILITY_TOPIC.replace("{id}", id));
    let default_events = || defaults::EVENTS_TOPIC.replace("{id}", id);
    let events_topic = match section.string("events_topic") {
        // Written empty: no events topic.
        Some(t) if t.value.is_empty() => None,
        Some(t) if t.value.contains(['+', '#']) => {
            section.problem(
                "events_topic",
                &t.span,
                format!(
                    "a publish topic cannot contain the wildcards + or #, found {:?}",
                    t.value
                ),
            );
            Some(default_events())
        }
        Some(t) => Some(t.value.replace("{id}", id)),
        None => Some(default_events()),
    };
    let batch_window = section
        .duration("batch_window", Duration::ZERO..=Duration::from_secs(3600))
        .map_or(Duration::from_secs(defaults::BATCH_WINDOW_SECS), |d| {
            d.value
        });
    let status_interval = section
        .duration(
            "status_interval",
            Duration::from_secs(10)..=Duration::from_secs(86_400),
        )
        .map_or(Duration::from_secs(defaults::STATUS_INTERVAL_SECS), |d| {
            d.value
        });
    let in_flight = section
        .integer("in_flight", 1..=u64::from(u16::MAX))
        .and_then(|n| u16::try_from(n.value).ok())
        .unwrap_or(defaults::IN_FLIGHT);

    MqttConfig {
        broker,
        client_id,
        topic,
        encoding,
        legacy_no_fix,
        mirror,
        availability_topic,
        events_topic,
        batch_window,
        status_interval,
        protocol,
        keep_alive,
        reconnect_min,
        reconnect_max,
        username,
        password,
        password_source,
        tls,
        in_flight,
    }
}

/// A publish topic: non-empty, no wildcards; `{id}` replaced.
fn read_topic(section: &mut Section<'_, '_>, key: &str, id: &str) -> Option<String> {
    section
        .value(key, |v| match v {
            DeValue::String(s) if s.is_empty() => Err(Refusal::Invalid("must not be empty".into())),
            DeValue::String(s) if s.contains(['+', '#']) => Err(Refusal::Invalid(format!(
                "a publish topic cannot contain the wildcards + or #, found {s:?}"
            ))),
            DeValue::String(s) => Ok(s.replace("{id}", id)),
            _ => Err(Refusal::Expected("a topic string")),
        })
        .map(|t| t.value)
}

fn read_encoding(section: &mut Section<'_, '_>, key: &str) -> Option<Encoding> {
    let chosen = section.choice(key, ENCODING_NAMES)?;
    ENCODINGS.into_iter().find(|e| e.name() == chosen.value)
}

/// The password from, in order of precedence: the environment, `password_file`, `password`.
fn password(
    section: &mut Section<'_, '_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<Secret>, Option<PasswordSource>) {
    let inline = section.string("password");
    let file = section.non_empty_string("password_file");
    if let (Some(_), Some(f)) = (&inline, &file) {
        section.problem(
            "password_file",
            &f.span,
            "set either password or password_file, not both",
        );
    }
    if let Some(p) = env(PASSWORD_ENV).filter(|p| !p.is_empty()) {
        return (Some(Secret::new(p)), Some(PasswordSource::Env));
    }
    if let Some(Located { value: path, span }) = file {
        // Read as the pipeline reads it at each connection, so a file that passes here works.
        return match read_password_file(Path::new(&path)) {
            Ok(secret) => (
                Some(Secret::new(secret)),
                Some(PasswordSource::File(path.into())),
            ),
            Err(e) => {
                section.problem("password_file", &span, e.to_string());
                (None, None)
            }
        };
    }
    match inline {
        Some(p) => (Some(Secret::new(p.value)), Some(PasswordSource::Inline)),
        None => (None, None),
    }
}

fn read_tls(section: &mut Section<'_, '_>) -> TlsConfig {
    let ca_file = readable_file(section, "ca_file");
    let client_cert = readable_file(section, "client_cert");
    let client_key = readable_file(section, "client_key");
    let system_roots = section.bool("system_roots").is_none_or(|b| b.value);
    match (&client_cert, &client_key) {
        (Some(_), None) => section.problem_here(
            "client_key",
            "client_cert is set, so client_key is needed too",
        ),
        (None, Some(_)) => section.problem_here(
            "client_cert",
            "client_key is set, so client_cert is needed too",
        ),
        _ => {}
    }
    if !system_roots && ca_file.is_none() && (section.has("system_roots")) {
        section.problem_here(
            "ca_file",
            "system_roots = false needs a ca_file, or no server could be trusted",
        );
    }
    TlsConfig {
        ca_file,
        client_cert,
        client_key,
        system_roots,
    }
}

/// A path that must name a readable file (checked now, so a typo fails `config check`).
pub(crate) fn readable_file(section: &mut Section<'_, '_>, key: &str) -> Option<PathBuf> {
    let Located { value, span } = section.non_empty_string(key)?;
    match std::fs::File::open(&value) {
        Ok(_) => Some(PathBuf::from(value)),
        Err(e) => {
            section.problem(key, &span, format!("cannot read {value}: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_has_its_configuration_name() {
        let names: Vec<&str> = ENCODINGS.iter().map(|e| e.name()).collect();
        assert_eq!(names, ENCODING_NAMES);
    }
}
