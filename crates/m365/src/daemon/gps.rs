//! `[gps]` as a running source: the serial receiver or modem, gpsd, or nothing. The source is
//! a task of its own (`m365-gps`); the sampler only ever reads the latest fix it holds.
//!
//! A serial device that does not exist at start-up ends the daemon with "GPS device missing"
//! (a USB modem that has not enumerated yet: the restart finds it). Once running, a device that
//! disappears is the source task's business: it keeps the last fix, whose age grows, and
//! reopens the device with back-off.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use m365_gps::sim7600::InfoCommand;
use m365_gps::source::{DEFAULT_POLL_INTERVAL, SourceConfig};

use crate::config::{GpsConfig, GpsKind, GpsSource};

/// The GPS source cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum GpsSetupError {
    /// The serial device is absent or unreadable.
    #[error("GPS device {path}: {source}")]
    Device {
        /// The configured device.
        path: PathBuf,
        /// Why it cannot be used.
        source: std::io::Error,
    },
    /// The gpsd address does not resolve.
    #[error("gpsd address {address:?}: {reason}")]
    Gpsd {
        /// As configured.
        address: String,
        /// Why it does not resolve.
        reason: String,
    },
}

/// The source for `[gps]`, or `None` for `source = "none"`.
pub fn source_config(gps: &GpsConfig) -> Result<Option<SourceConfig>, GpsSetupError> {
    match gps.source {
        GpsSource::None => Ok(None),
        GpsSource::Serial => {
            // Opening the device is the source task's job; here only its presence is checked so
            // that a missing device gets its own exit status instead of a silent retry loop.
            std::fs::metadata(&gps.device).map_err(|source| GpsSetupError::Device {
                path: gps.device.clone(),
                source,
            })?;
            Ok(Some(match gps.kind {
                GpsKind::Nmea => SourceConfig::Nmea {
                    path: gps.device.clone(),
                    baud: gps.baud,
                },
                GpsKind::Sim7600 => SourceConfig::Sim7600 {
                    path: gps.device.clone(),
                    baud: gps.baud,
                    // What the earlier client polled; every SIM7600 firmware answers it.
                    command: InfoCommand::Cgpsinfo,
                    interval: DEFAULT_POLL_INTERVAL,
                },
            }))
        }
        GpsSource::Gpsd => Ok(Some(SourceConfig::Gpsd {
            addr: resolve(&gps.gpsd)?,
        })),
    }
}

fn resolve(address: &str) -> Result<SocketAddr, GpsSetupError> {
    let error = |reason: String| GpsSetupError::Gpsd {
        address: address.to_owned(),
        reason,
    };
    address
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .next()
        .ok_or_else(|| error("resolves to no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_serial_device_is_refused_and_none_needs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let gps = GpsConfig {
            source: GpsSource::Serial,
            device: dir.path().join("ttyNONE"),
            ..GpsConfig::default()
        };
        let err = source_config(&gps).unwrap_err();
        assert!(matches!(err, GpsSetupError::Device { .. }), "{err}");
        assert!(err.to_string().contains("ttyNONE"), "{err}");
        assert_eq!(source_config(&GpsConfig::default()).unwrap(), None);
    }

    #[test]
    fn present_devices_and_gpsd_become_sources() {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("ttyGPS");
        std::fs::write(&device, b"").unwrap();
        let gps = GpsConfig {
            source: GpsSource::Serial,
            kind: GpsKind::Sim7600,
            device: device.clone(),
            baud: 115_200,
            ..GpsConfig::default()
        };
        match source_config(&gps).unwrap() {
            Some(SourceConfig::Sim7600 { path, baud, .. }) => {
                assert_eq!((path, baud), (device, 115_200));
            }
            other => panic!("{other:?}"),
        }
        let gpsd = GpsConfig {
            source: GpsSource::Gpsd,
            gpsd: "127.0.0.1:2947".into(),
            ..GpsConfig::default()
        };
        assert_eq!(
            source_config(&gpsd).unwrap(),
            Some(SourceConfig::Gpsd {
                addr: "127.0.0.1:2947".parse().unwrap()
            })
        );
    }
}
