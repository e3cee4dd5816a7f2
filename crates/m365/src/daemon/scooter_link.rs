//! The scooter side of the daemon's configuration and failures: `[scooter]` becomes the
//! [`LinkConfig`] of `m365-ble`, and each way the link can give up becomes its exit status.

use m365_ble::error::BleError;
use m365_ble::link::LinkConfig;
use m365_ble::reconnect::ReconnectConfig;
use m365_ble::scanner::ScanFilter;
use m365_ble::session::ExchangeConfig;
use m365_ble::transport::TransportError;
use m365_proto::model::Generation;

use crate::config::{ScooterConfig, ScooterProtocol};
use crate::exit::ExitStatus;

/// The link settings for `[scooter]`.
pub fn link_config(scooter: &ScooterConfig) -> LinkConfig {
    let mut link = LinkConfig::new(scooter.token_file.clone());
    link.filter = ScanFilter {
        name_prefix: scooter.name_prefix.clone(),
        address: scooter.mac,
    };
    link.protocol = match scooter.protocol {
        ScooterProtocol::Auto => None,
        ScooterProtocol::MiAuth => Some(Generation::MiAuth),
        ScooterProtocol::Xor => Some(Generation::Xor),
        ScooterProtocol::Plain => Some(Generation::Plain),
    };
    link.reconnect = ReconnectConfig {
        scan_timeout: scooter.scan_timeout,
        reconnect_window: scooter.reconnect_window,
        session_reuse: scooter.session_reuse,
        ..ReconnectConfig::default()
    };
    link.exchange = ExchangeConfig {
        request_timeout: scooter.request_timeout,
        ..ExchangeConfig::default()
    };
    link.read_cells = scooter.read_cells;
    link
}

/// The exit status for a failure of the link, or `None` when the next sample may well succeed
/// (a read that timed out, an answer that did not decode, a GATT hiccup).
pub fn fatal_status(error: &BleError) -> Option<ExitStatus> {
    if error.needs_pairing() {
        return Some(ExitStatus::NeedsPairing);
    }
    match error {
        BleError::NotFound { .. } => Some(ExitStatus::ScooterNotFound),
        BleError::Lost { .. } => Some(ExitStatus::ScooterLost),
        // An unreadable token file (permissions, a directory) also needs a person.
        BleError::TokenFile(_) => Some(ExitStatus::NeedsPairing),
        BleError::Unsupported(_) => Some(ExitStatus::Internal),
        BleError::Transport(TransportError::NoAdapter(_) | TransportError::Closed) => {
            Some(ExitStatus::Internal)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_ble::BdAddr;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn scooter_settings_reach_the_link() {
        let scooter = ScooterConfig {
            mac: Some(BdAddr([1, 2, 3, 4, 5, 6])),
            protocol: ScooterProtocol::Xor,
            scan_timeout: Duration::from_secs(7),
            request_timeout: Duration::from_millis(300),
            read_cells: false,
            ..ScooterConfig::default()
        };
        let link = link_config(&scooter);
        assert_eq!(link.filter.address, Some(BdAddr([1, 2, 3, 4, 5, 6])));
        assert_eq!(link.protocol, Some(Generation::Xor));
        assert_eq!(link.reconnect.scan_timeout, Duration::from_secs(7));
        assert_eq!(link.reconnect.reconnect_window, scooter.reconnect_window);
        assert_eq!(link.exchange.request_timeout, Duration::from_millis(300));
        assert!(!link.read_cells);
        assert_eq!(link.token_path, PathBuf::from(".mi-token"));
    }

    #[test]
    fn each_way_of_giving_up_has_its_exit_status() {
        let not_found = BleError::NotFound {
            timeout: Duration::from_secs(1),
            wanted: "x".into(),
        };
        assert_eq!(fatal_status(&not_found), Some(ExitStatus::ScooterNotFound));
        let lost = BleError::Lost {
            address: BdAddr([0; 6]),
            window: Duration::from_secs(1),
        };
        assert_eq!(fatal_status(&lost), Some(ExitStatus::ScooterLost));
        let rejected = BleError::TokenRejected {
            path: ".mi-token".into(),
        };
        assert_eq!(fatal_status(&rejected), Some(ExitStatus::NeedsPairing));
        assert_eq!(fatal_status(&BleError::LinkLost), None);
        let timeout = BleError::Timeout {
            what: "x".into(),
            after: Duration::from_secs(1),
            attempts: 3,
        };
        assert_eq!(fatal_status(&timeout), None);
    }
}
