//! `[gps]`: where fixes come from. The earlier client's `[serial]` section (`serial_port`,
//! `baudrate`) meant "a SIM7600 modem answering AT commands on this port", and is read here as
//! exactly that.

use super::reader::{Refusal, Section};
use std::path::PathBuf;
use std::time::Duration;
use toml::de::DeValue;

pub(crate) const KEYS: &[&str] = &["source", "kind", "device", "baud", "gpsd", "max_age"];
pub(crate) const LEGACY_KEYS: &[&str] = &["serial_port", "baudrate"];

/// Where fixes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpsSource {
    /// A receiver or modem on a serial port.
    Serial,
    /// A gpsd daemon.
    Gpsd,
    /// No GPS: records carry no position.
    None,
}

impl GpsSource {
    const NAMES: &[&str] = &["serial", "gpsd", "none"];

    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            GpsSource::Serial => "serial",
            GpsSource::Gpsd => "gpsd",
            GpsSource::None => "none",
        }
    }
}

/// What speaks on the serial port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpsKind {
    /// A receiver that streams NMEA 0183 sentences.
    Nmea,
    /// A SIM7600 modem polled with `AT+CGPSINFO`.
    Sim7600,
}

impl GpsKind {
    const NAMES: &[&str] = &["nmea", "sim7600"];

    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            GpsKind::Nmea => "nmea",
            GpsKind::Sim7600 => "sim7600",
        }
    }

    /// The usual speed of this kind of device: 9600 for NMEA receivers, 115200 for the modem.
    pub fn default_baud(self) -> u32 {
        match self {
            GpsKind::Nmea => 9600,
            GpsKind::Sim7600 => 115_200,
        }
    }
}

/// The effective `[gps]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpsConfig {
    /// Where fixes come from.
    pub source: GpsSource,
    /// What speaks on the serial port (for `source = "serial"`).
    pub kind: GpsKind,
    /// Serial device (for `source = "serial"`).
    pub device: PathBuf,
    /// Serial speed.
    pub baud: u32,
    /// gpsd address as `host:port` (for `source = "gpsd"`).
    pub gpsd: String,
    /// A fix older than this is no fix: records carry no position (every encoding says so).
    pub max_age: Duration,
}

impl Default for GpsConfig {
    fn default() -> Self {
        Self {
            source: GpsSource::None,
            kind: GpsKind::Nmea,
            device: PathBuf::from("/dev/serial0"),
            baud: GpsKind::Nmea.default_baud(),
            gpsd: "127.0.0.1:2947".to_owned(),
            max_age: Duration::from_secs(5),
        }
    }
}

fn baud(section: &mut Section<'_, '_>, key: &str) -> Option<u32> {
    section
        .integer(key, 300..=4_000_000)
        .and_then(|b| u32::try_from(b.value).ok())
}

/// Reads `[gps]`, or the earlier client's `[serial]` when `[gps]` does not choose a source.
pub(crate) fn read(gps: &mut Section<'_, '_>, serial: &mut Section<'_, '_>) -> GpsConfig {
    let d = GpsConfig::default();
    let source = gps
        .choice("source", GpsSource::NAMES)
        .map(|s| match s.value {
            "serial" => GpsSource::Serial,
            "gpsd" => GpsSource::Gpsd,
            _ => GpsSource::None,
        });
    let kind = gps.choice("kind", GpsKind::NAMES).map(|k| match k.value {
        "sim7600" => GpsKind::Sim7600,
        _ => GpsKind::Nmea,
    });
    let device = gps
        .non_empty_string("device")
        .map(|p| PathBuf::from(p.value));
    let baud_value = baud(gps, "baud");
    let gpsd = gps
        .value("gpsd", |v| match v {
            DeValue::String(s) => match s.rsplit_once(':') {
                Some((host, port))
                    if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) =>
                {
                    Ok(s.to_string())
                }
                _ => Err(Refusal::Invalid(format!(
                    "expected host:port such as \"127.0.0.1:2947\", found {s:?}"
                ))),
            },
            _ => Err(Refusal::Expected("a host:port string")),
        })
        .map_or(d.gpsd, |g| g.value);

    let max_age = gps
        .duration(
            "max_age",
            Duration::from_millis(500)..=Duration::from_secs(3600),
        )
        .map_or(d.max_age, |a| a.value);

    let legacy_port = serial.non_empty_string("serial_port");
    let legacy_baud = baud(serial, "baudrate");
    if serial.is_present() {
        if gps.has("source") {
            serial.problem_here(
                "serial_port",
                "both [serial] (earlier format) and [gps] source are set; keep only [gps]",
            );
        } else if let Some(port) = legacy_port {
            // The earlier client always drove a SIM7600 modem with AT commands on this port.
            return GpsConfig {
                source: GpsSource::Serial,
                kind: GpsKind::Sim7600,
                device: PathBuf::from(port.value),
                baud: legacy_baud.unwrap_or(GpsKind::Sim7600.default_baud()),
                gpsd,
                max_age,
            };
        } else if !serial.has("serial_port") {
            serial.problem_here("serial_port", "[serial] needs serial_port (or use [gps])");
        }
    }

    let kind = kind.unwrap_or(d.kind);
    GpsConfig {
        source: source.unwrap_or(d.source),
        kind,
        device: device.unwrap_or(d.device),
        baud: baud_value.unwrap_or(kind.default_baud()),
        gpsd,
        max_age,
    }
}
