//! Prints an effective configuration as TOML for `m365 config check`: every key with the value
//! in force (defaults filled in), the password as `****`. Apart from the masked password, the
//! output reads back as the same configuration.

use super::units::{format_duration, format_size};
use super::{Config, PASSWORD_ENV, PasswordSource};
use std::fmt::Write as _;
use std::path::Path;

/// The mask printed instead of a secret.
pub const MASK: &str = "****";

/// Renders `config` as TOML, secrets masked.
pub fn render(config: &Config) -> String {
    let mut out = Toml::default();
    let Config {
        mqtt,
        scooters,
        gps,
        telemetry,
        spool,
        commands,
        events,
        homeassistant,
        log,
    } = config;

    let header = if scooters.len() > 1 {
        "[[scooter]]"
    } else {
        "[scooter]"
    };
    for entry in scooters {
        let scooter = &entry.link;
        out.header(header);
        out.string("id", &entry.id);
        match &scooter.mac {
            Some(mac) => out.string("mac", &mac.to_string()),
            None => out.unset(
                "mac",
                &format!("the first scooter named {}…", scooter.name_prefix),
            ),
        }
        out.path("token_file_path", &scooter.token_file);
        out.string("name_prefix", &scooter.name_prefix);
        out.string("protocol", scooter.protocol.as_str());
        out.duration("scan_timeout", scooter.scan_timeout);
        out.duration("reconnect_window", scooter.reconnect_window);
        out.duration("session_reuse", scooter.session_reuse);
        out.duration("request_timeout", scooter.request_timeout);
        out.raw("read_cells", &scooter.read_cells.to_string());
        out.duration("interval", entry.telemetry.interval);
        out.duration("parked_interval", entry.telemetry.parked_interval);
        out.duration("heartbeat", entry.telemetry.heartbeat);
        out.raw(
            "commands",
            &names(entry.commands.iter().map(|c| c.as_str())),
        );
        if scooters.len() > 1 {
            out.comment(&format!("spool {}", entry.spool_path.display()));
        }
    }

    out.header("[telemetry]");
    out.duration("interval", telemetry.interval);
    out.duration("parked_interval", telemetry.parked_interval);
    out.duration("heartbeat", telemetry.heartbeat);

    out.header("[events]");
    out.raw("battery_low", &events.battery_low_percent.to_string());
    out.raw("trip_start_speed", &float(events.trip_start_kmh));
    out.duration("trip_end_after", events.trip_end_after);
    out.raw("moved_radius", &float(events.moved_radius_m));
    out.raw("moved_speed", &float(events.moved_wheel_kmh));

    out.header("[commands]");
    out.raw("allow", &names(commands.allow.iter().map(|c| c.as_str())));
    out.string("topic", &commands.topic);
    out.string("result_topic", &commands.result_topic);
    out.duration("max_ttl", commands.max_ttl);

    out.header("[gps]");
    out.string("source", gps.source.as_str());
    out.string("kind", gps.kind.as_str());
    out.path("device", &gps.device);
    out.raw("baud", &gps.baud.to_string());
    out.string("gpsd", &gps.gpsd);
    out.duration("max_age", gps.max_age);

    out.header("[mqtt]");
    out.string("broker", &mqtt.broker.to_string());
    out.string("client", &mqtt.client_id);
    out.string("protocol", mqtt.protocol.as_str());
    out.string("topic", &mqtt.topic);
    out.string("encoding", mqtt.encoding.name());
    out.string("legacy_no_fix", mqtt.legacy_no_fix.as_str());
    out.string("availability_topic", &mqtt.availability_topic);
    out.string("events_topic", mqtt.events_topic.as_deref().unwrap_or(""));
    out.duration("batch_window", mqtt.batch_window);
    out.duration("status_interval", mqtt.status_interval);
    out.duration("keep_alive", mqtt.keep_alive);
    out.duration("reconnect_min", mqtt.reconnect_min);
    out.duration("reconnect_max", mqtt.reconnect_max);
    out.raw("in_flight", &mqtt.in_flight.to_string());
    match &mqtt.username {
        Some(user) => out.string("username", user),
        None => out.unset("username", "anonymous"),
    }
    match &mqtt.password_source {
        None => out.unset("password", "no password"),
        Some(PasswordSource::Inline) => out.string("password", MASK),
        Some(PasswordSource::Env) => {
            out.string("password", MASK);
            out.comment(&format!("password from {PASSWORD_ENV}"));
        }
        Some(PasswordSource::File(path)) => {
            out.path("password_file", path);
            out.comment(&format!("password ({MASK}) read from that file"));
        }
    }
    for mirror in &mqtt.mirror {
        out.header("[[mqtt.mirror]]");
        out.string("topic", &mirror.topic);
        out.string("encoding", mirror.encoding.name());
    }
    if let Some(tls) = &mqtt.tls {
        out.header("[mqtt.tls]");
        match &tls.ca_file {
            Some(p) => out.path("ca_file", p),
            None => out.unset("ca_file", "no extra CA"),
        }
        match (&tls.client_cert, &tls.client_key) {
            (Some(cert), Some(key)) => {
                out.path("client_cert", cert);
                out.path("client_key", key);
            }
            _ => out.unset("client_cert", "no client certificate"),
        }
        out.raw("system_roots", &tls.system_roots.to_string());
    }

    out.header("[spool]");
    out.path("path", &spool.path);
    out.string("max_bytes", &format_size(spool.max_bytes));
    out.duration("max_age", spool.max_age);
    out.string("sync", spool.sync.as_str());
    out.raw("batch", &spool.batch.to_string());

    out.header("[homeassistant]");
    out.raw("discovery", &homeassistant.discovery.to_string());
    out.string("prefix", &homeassistant.prefix);

    out.header("[log]");
    out.string("level", &log.level);
    out.string("format", log.format.as_str());

    out.text
}

/// A small TOML writer: the output shape is fixed, so a serializer would add nothing.
#[derive(Default)]
struct Toml {
    text: String,
}

impl Toml {
    fn header(&mut self, header: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        let _ = writeln!(self.text, "{header}");
    }

    fn raw(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.text, "{key} = {value}");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.raw(key, &quote(value));
    }

    fn path(&mut self, key: &str, value: &Path) {
        self.string(key, &value.to_string_lossy());
    }

    fn duration(&mut self, key: &str, value: std::time::Duration) {
        self.string(key, &format_duration(value));
    }

    fn unset(&mut self, key: &str, meaning: &str) {
        let _ = writeln!(self.text, "# {key} is not set: {meaning}");
    }

    fn comment(&mut self, text: &str) {
        let _ = writeln!(self.text, "# ({text})");
    }
}

/// A TOML float (always with a decimal point, so it reads back as a number).
fn float(value: f64) -> String {
    let text = value.to_string();
    if text.contains(['.', 'e', 'E']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// A TOML array of strings.
fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(quote).collect();
    format!("[{}]", quoted.join(", "))
}

/// A TOML basic string. JSON string escapes are a subset of TOML's, so serde_json does the
/// escaping of quotes, backslashes and control characters.
fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| format!("{value:?}"))
}
