//! `[scooter]`: which scooter to find, how to log in, and how patient to be with the radio link.
//!
//! `mac` and `token_file_path` are the earlier client's keys, with the same meaning: the address
//! (now also accepted with `:` or `-`), and the 12-byte `.mi-token` file written by pairing,
//! relative to the working directory.

use super::mac::parse_mac;
use super::reader::{Refusal, Section};
use m365_ble::BdAddr;
use std::path::PathBuf;
use std::time::Duration;
use toml::de::DeValue;

/// Which protocol generation to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScooterProtocol {
    /// Detect it from the advertisement and the GATT services.
    Auto,
    /// Encrypted Mi-auth (Pro 2, 1S, Lite, Mi 3 on BLE 15x and later).
    MiAuth,
    /// XOR-obfuscated `55 AB` (classic m365 on BLE 081+).
    Xor,
    /// Plain `55 AA` (classic m365 on BLE 072 and older).
    Plain,
}

impl ScooterProtocol {
    const NAMES: &[&str] = &["auto", "miauth", "xor", "plain"];

    /// As written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ScooterProtocol::Auto => "auto",
            ScooterProtocol::MiAuth => "miauth",
            ScooterProtocol::Xor => "xor",
            ScooterProtocol::Plain => "plain",
        }
    }
}

/// The effective `[scooter]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScooterConfig {
    /// The scooter's address; without it the first scooter whose name starts with
    /// `name_prefix` is used.
    pub mac: Option<BdAddr>,
    /// The pairing token file (12 raw bytes), relative to the working directory.
    pub token_file: PathBuf,
    /// Advertised name prefix that marks a scooter.
    pub name_prefix: String,
    /// Protocol generation.
    pub protocol: ScooterProtocol,
    /// How long to scan before giving up (exit code "scooter not found").
    pub scan_timeout: Duration,
    /// How long to keep trying to reconnect after the link drops before giving up
    /// (exit code "scooter lost").
    pub reconnect_window: Duration,
    /// A link that comes back within this time tries to keep its session (no new login); zero,
    /// the default, always logs in again, as real scooters require (protocol.md §3.7).
    pub session_reuse: Duration,
    /// How long to wait for the answer to one register read.
    pub request_timeout: Duration,
    /// Read the per-cell battery voltages (one more request per sample).
    pub read_cells: bool,
}

impl Default for ScooterConfig {
    fn default() -> Self {
        Self {
            mac: None,
            token_file: PathBuf::from(".mi-token"),
            name_prefix: "MIScooter".to_owned(),
            protocol: ScooterProtocol::Auto,
            scan_timeout: Duration::from_secs(60),
            reconnect_window: Duration::from_secs(60),
            session_reuse: Duration::ZERO,
            request_timeout: Duration::from_secs(2),
            read_cells: true,
        }
    }
}

pub(crate) fn read(section: &mut Section<'_, '_>) -> ScooterConfig {
    let d = ScooterConfig::default();
    let secs = Duration::from_secs;
    ScooterConfig {
        mac: section
            .value("mac", |v| match v {
                DeValue::String(s) => parse_mac(s).map_err(|e| Refusal::Invalid(e.to_string())),
                _ => Err(Refusal::Expected("a Bluetooth address string")),
            })
            .map(|m| m.value),
        token_file: section
            .non_empty_string("token_file_path")
            .map_or(d.token_file, |p| PathBuf::from(p.value)),
        name_prefix: section
            .non_empty_string("name_prefix")
            .map_or(d.name_prefix, |p| p.value),
        protocol: section.choice("protocol", ScooterProtocol::NAMES).map_or(
            d.protocol,
            |p| match p.value {
                "miauth" => ScooterProtocol::MiAuth,
                "xor" => ScooterProtocol::Xor,
                "plain" => ScooterProtocol::Plain,
                _ => ScooterProtocol::Auto,
            },
        ),
        scan_timeout: section
            .duration("scan_timeout", secs(1)..=secs(3600))
            .map_or(d.scan_timeout, |v| v.value),
        reconnect_window: section
            .duration("reconnect_window", secs(1)..=secs(86_400))
            .map_or(d.reconnect_window, |v| v.value),
        session_reuse: section
            .duration("session_reuse", Duration::ZERO..=secs(60))
            .map_or(d.session_reuse, |v| v.value),
        request_timeout: section
            .duration("request_timeout", Duration::from_millis(100)..=secs(60))
            .map_or(d.request_timeout, |v| v.value),
        read_cells: section.bool("read_cells").map_or(d.read_cells, |v| v.value),
    }
}
