//! `m365 info [--json]`: connects with the configured token and prints every readable register
//! block: identity, firmware versions, state, trip and totals, battery, cells, settings and
//! error codes with their meanings. Also what every BLE command shares: the `[scooter]`
//! settings (from the configuration file when there is one, else the defaults) and how BLE
//! failures become exit codes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use m365_ble::info::Info;
use m365_ble::link::ScooterLink;
use m365_ble::transport::btleplug::BtleplugTransport;
use m365_ble::{BdAddr, BleError};
use serde_json::json;

use crate::config::{self, Config, ConfigError, ScooterConfig, ScooterEntry};
use crate::daemon::scooter_link::fatal_status;
pub use crate::daemon::scooter_link::link_config;
use crate::exit::{ExitStatus, Fatal};

/// Arguments of `m365 info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Which configured scooter: its id or its address (default: the first).
    #[arg(long, value_name = "ID|MAC")]
    pub scooter: Option<String>,
}

/// A scooter's settings: the one named by `which` (its id or address) or else the first, from
/// `--config`, else the first configuration file found, else the defaults (so the BLE commands
/// work before a configuration exists).
pub fn scooter_config(
    explicit: Option<&Path>,
    which: Option<&str>,
) -> anyhow::Result<ScooterConfig> {
    let path = match config::locate(explicit) {
        Ok(path) => path,
        Err(ConfigError::NotFound { .. }) if which.is_none() => {
            return Ok(ScooterConfig::default());
        }
        Err(e) => return Err(e.into()),
    };
    let loaded = config::load_file(&path, &|name| std::env::var(name).ok())?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    select(&loaded.config, which).map(|entry| entry.link.clone())
}

/// The scooter named `which` (an id or an address), or the first one.
pub fn select<'c>(config: &'c Config, which: Option<&str>) -> anyhow::Result<&'c ScooterEntry> {
    let Some(which) = which else {
        return Ok(config.first());
    };
    let by_mac = config::parse_mac(which).ok();
    config
        .scooters
        .iter()
        .find(|s| s.id == which || (by_mac.is_some() && s.link.mac == by_mac))
        .ok_or_else(|| {
            let known: Vec<&str> = config.scooters.iter().map(|s| s.id.as_str()).collect();
            anyhow::Error::from(Fatal {
                status: ExitStatus::Usage,
                error: anyhow::anyhow!(
                    "no configured scooter is named {which:?} (configured: {})",
                    known.join(", ")
                ),
            })
        })
}

/// The exit status a BLE failure maps to (`docs/exit-codes.md`); failures the daemon would
/// retry are internal errors for a one-shot command.
pub fn exit_status(error: &BleError) -> ExitStatus {
    fatal_status(error).unwrap_or(ExitStatus::Internal)
}

/// Wraps a BLE failure so the binary exits with its status.
pub fn fatal(error: BleError) -> Fatal {
    Fatal {
        status: exit_status(&error),
        error: error.into(),
    }
}

/// Runs `m365 info`.
pub fn run(args: InfoArgs, global_config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let scooter = scooter_config(global_config, args.scooter.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (info, found) = runtime.block_on(async {
        let transport = BtleplugTransport::new()
            .await
            .map_err(|e| fatal(e.into()))?;
        let mut link = ScooterLink::open(transport, link_config(&scooter))
            .await
            .map_err(fatal)?;
        let info = link.info().await.map_err(fatal)?;
        let found = (
            link.address(),
            link.discovered().name.clone(),
            link.model(),
            link.generation(),
        );
        let _ = link.close().await;
        Ok::<_, Fatal>((info, found))
    })?;
    let (address, name, model, generation) = found;
    let header = Header {
        address,
        name,
        model: model.map(|m| m.to_string()),
        protocol: generation.map(|g| g.to_string()),
    };
    if args.json {
        println!("{}", to_json(&header, &info));
    } else {
        print!("{}", to_table(&header, &info));
    }
    Ok(ExitCode::SUCCESS)
}

/// What the scan and connection told about the scooter.
struct Header {
    address: BdAddr,
    name: Option<String>,
    model: Option<String>,
    protocol: Option<String>,
}

fn code_json(raw: u16, meaning: String) -> serde_json::Value {
    json!({ "code": raw, "meaning": meaning })
}

fn to_json(h: &Header, i: &Info) -> serde_json::Value {
    let m = &i.motor;
    let b = &i.battery;
    json!({
        "identity": {
            "address": h.address.to_string(),
            "name": h.name,
            "model": h.model,
            "protocol": h.protocol,
            "serial": i.serial,
            "pin": i.pin,
        },
        "versions": {
            "esc": i.esc_version.to_string(),
            "bms": i.bms_version.to_string(),
            "external_bms": i.ext_bms_version.map(|v| v.to_string()),
            "ble": i.ble_version.to_string(),
        },
        "state": {
            "locked": m.status.locked(),
            "alarm": m.status.alarm(),
            "speed_limited": m.status.speed_limited(),
            "status_flags": m.status.raw,
            "speed_kmh": m.speed_kmh,
            "average_speed_kmh": m.average_speed_kmh,
            "frame_temperature_c": i.frame_temperature_c,
            "speed_mode": i.speed_mode.to_string(),
        },
        "trip": {
            "distance_m": m.trip_distance_m,
            "power_on_s": i.session_times.power_on_s,
            "riding_s": i.session_times.riding_s,
            "range_km": i.range_km,
        },
        "totals": {
            "distance_m": i.total_distance_m,
            "power_on_s": i.total_times.power_on_s,
            "riding_s": i.total_times.riding_s,
        },
        "battery": {
            "serial": i.battery_serial,
            "firmware": i.battery_version.to_string(),
            "percent": b.percent,
            "remaining_mah": b.remaining_mah,
            "design_capacity_mah": i.design_capacity_mah,
            "voltage_v": b.voltage_v,
            "current_a": b.current_a,
            "power_w": b.power_w(),
            "temperature1_c": b.temperature1_c,
            "temperature2_c": b.temperature2_c,
            "health_percent": i.health_percent,
            "cycles": i.charges.cycles,
            "charges": i.charges.charges,
            "charging": i.bms_status.charging(),
            "manufactured": format!("{:04}-{:02}-{:02}", i.manufactured.year, i.manufactured.month, i.manufactured.day),
        },
        "cells_mv": i.cells.mv,
        "settings": {
            "kers": i.settings.kers.to_string(),
            "cruise": i.settings.cruise,
            "tail_light_always_on": i.settings.tail_light.always_on(),
            "mph": i.settings.tail_light.mph(),
        },
        "errors": {
            "error": code_json(i.error.raw(), i.error.to_string()),
            "warning": code_json(i.warning.raw(), i.warning.to_string()),
            "motor_error": code_json(m.error.raw(), m.error.to_string()),
            "motor_warning": code_json(m.warning.raw(), m.warning.to_string()),
        },
    })
}

fn to_table(h: &Header, i: &Info) -> String {
    use std::fmt::Write as _;
    let m = &i.motor;
    let b = &i.battery;
    let mut s = String::new();
    let mut section = |title: &str, rows: Vec<(&str, String)>| {
        let _ = writeln!(s, "{title}");
        for (k, v) in rows {
            let _ = writeln!(s, "  {k:<22} {v}");
        }
    };
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    section(
        "Identity",
        vec![
            ("address", h.address.to_string()),
            ("name", or_unknown(&h.name)),
            ("model", or_unknown(&h.model)),
            ("protocol", or_unknown(&h.protocol)),
            ("serial", i.serial.clone()),
            ("PIN", i.pin.clone()),
        ],
    );
    section(
        "Versions",
        vec![
            ("ESC firmware", i.esc_version.to_string()),
            ("BMS firmware", i.bms_version.to_string()),
            (
                "external BMS",
                i.ext_bms_version
                    .map_or_else(|| "none".into(), |v| v.to_string()),
            ),
            ("BLE firmware", i.ble_version.to_string()),
        ],
    );
    section(
        "State",
        vec![
            ("locked", yes_no(m.status.locked())),
            ("alarm", yes_no(m.status.alarm())),
            ("speed", format!("{:.1} km/h", m.speed_kmh)),
            ("average speed", format!("{:.1} km/h", m.average_speed_kmh)),
            ("speed mode", i.speed_mode.to_string()),
            (
                "frame temperature",
                format!("{:.1} °C", i.frame_temperature_c),
            ),
        ],
    );
    section(
        "Trip",
        vec![
            (
                "distance",
                format!("{:.2} km", f64::from(m.trip_distance_m) / 1000.0),
            ),
            ("powered on", format!("{} s", i.session_times.power_on_s)),
            ("riding", format!("{} s", i.session_times.riding_s)),
            ("remaining range", format!("{:.2} km", i.range_km)),
        ],
    );
    section(
        "Totals",
        vec![
            (
                "odometer",
                format!("{:.1} km", f64::from(i.total_distance_m) / 1000.0),
            ),
            (
                "powered on",
                format!("{} h", i.total_times.power_on_s / 3600),
            ),
            ("riding", format!("{} h", i.total_times.riding_s / 3600)),
        ],
    );
    section(
        "Battery",
        vec![
            ("serial", i.battery_serial.clone()),
            ("firmware", i.battery_version.to_string()),
            (
                "charge",
                format!(
                    "{} % ({} mAh of {} mAh design)",
                    b.percent, b.remaining_mah, i.design_capacity_mah
                ),
            ),
            ("voltage", format!("{:.2} V", b.voltage_v)),
            (
                "current",
                format!("{:.2} A ({:.0} W)", b.current_a, b.power_w()),
            ),
            (
                "temperatures",
                format!("{} °C / {} °C", b.temperature1_c, b.temperature2_c),
            ),
            ("health", format!("{} %", i.health_percent)),
            (
                "cycles / charges",
                format!("{} / {}", i.charges.cycles, i.charges.charges),
            ),
            ("charging", yes_no(i.bms_status.charging())),
            (
                "manufactured",
                format!(
                    "{:04}-{:02}-{:02}",
                    i.manufactured.year, i.manufactured.month, i.manufactured.day
                ),
            ),
        ],
    );
    section(
        "Cells",
        i.cells
            .mv
            .iter()
            .enumerate()
            .map(|(n, mv)| {
                (
                    "",
                    format!("{:>2}: {:.3} V", n + 1, f64::from(*mv) / 1000.0),
                )
            })
            .collect(),
    );
    section(
        "Settings",
        vec![
            ("KERS", i.settings.kers.to_string()),
            ("cruise control", yes_no(i.settings.cruise)),
            (
                "tail light always on",
                yes_no(i.settings.tail_light.always_on()),
            ),
            (
                "units",
                if i.settings.tail_light.mph() {
                    "mph".into()
                } else {
                    "km/h".into()
                },
            ),
        ],
    );
    section(
        "Errors",
        vec![
            ("error", format!("{} ({})", i.error.raw(), i.error)),
            ("warning", format!("{} ({})", i.warning.raw(), i.warning)),
        ],
    );
    s
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}
