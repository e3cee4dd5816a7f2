//! The daemon's one-line status (`STATUS=` for `systemctl status`, and the log when it
//! changes), computed from the sampler's state and the pipeline's counters.

use std::time::Duration;

use m365_pipeline::{BrokerState, HealthSnapshot};

use super::sampler::{SamplerPhase, SamplerState};
use crate::notify::DaemonStatus;

/// The status now, given the sampling `interval`. A link whose last sample is older than a few
/// intervals is shown as reconnecting: the sampler is then inside a read that waits for the link
/// to come back.
pub fn daemon_status(
    sampler: &SamplerState,
    health: &HealthSnapshot,
    interval: Duration,
    since_last_sample: Option<Duration>,
) -> DaemonStatus {
    let late = interval.saturating_mul(3).max(Duration::from_secs(5));
    let scooter = match sampler.phase {
        SamplerPhase::Online if since_last_sample.is_some_and(|d| d > late) => "reconnecting",
        phase => phase.describe(),
    };
    DaemonStatus {
        broker_connected: health.broker == BrokerState::Connected,
        scooter: scooter.to_owned(),
        backlog: health.spool_records,
    }
}

/// The status of several scooters in one line: with one scooter exactly its
/// [`DaemonStatus`]; with several, how many are logged in and each scooter's state, the broker
/// connections and the backlog summed.
pub fn fleet_status(parts: &[(String, DaemonStatus)]) -> String {
    if let [(_, only)] = parts {
        return only.to_string();
    }
    let connected = parts.iter().filter(|(_, s)| s.broker_connected).count();
    let online = parts
        .iter()
        .filter(|(_, s)| s.scooter == SamplerPhase::Online.describe())
        .count();
    let backlog: u64 = parts.iter().map(|(_, s)| s.backlog).sum();
    let plural = if backlog == 1 { "" } else { "s" };
    let each: Vec<String> = parts
        .iter()
        .map(|(id, s)| format!("{id} {}", s.scooter))
        .collect();
    format!(
        "scooters {online}/{n} logged in ({}); broker {connected}/{n} connected; backlog {backlog} record{plural}",
        each.join(", "),
        n = parts.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(broker: BrokerState, spool_records: u64) -> HealthSnapshot {
        HealthSnapshot {
            sampled: 0,
            dropped_channel: 0,
            spooled: 0,
            published: 0,
            acknowledged: 0,
            dropped_spool: 0,
            spool_records,
            spool_bytes: 0,
            in_flight: 0,
            connect_failures: 0,
            spool_recoveries: 0,
            quarantined: 0,
            broker,
        }
    }

    #[test]
    fn the_status_follows_the_sampler_and_the_broker() {
        let second = Duration::from_secs(1);
        let online = SamplerState {
            phase: SamplerPhase::Online,
            ..SamplerState::default()
        };
        let s = daemon_status(
            &online,
            &health(BrokerState::Connected, 0),
            second,
            Some(second),
        );
        assert_eq!(
            s.to_string(),
            "broker connected; scooter logged in; backlog 0 records"
        );
        let late = daemon_status(
            &online,
            &health(BrokerState::Backoff, 12),
            second,
            Some(Duration::from_secs(6)),
        );
        assert_eq!(
            late.to_string(),
            "broker disconnected; scooter reconnecting; backlog 12 records"
        );
        let scanning = daemon_status(
            &SamplerState::default(),
            &health(BrokerState::Connecting, 0),
            second,
            None,
        );
        assert_eq!(scanning.scooter, "scanning");
    }

    #[test]
    fn several_scooters_share_one_line() {
        let part = |scooter: &str, broker_connected, backlog| DaemonStatus {
            broker_connected,
            scooter: scooter.to_owned(),
            backlog,
        };
        let one = [("a".to_owned(), part("logged in", true, 1))];
        assert_eq!(
            fleet_status(&one),
            "broker connected; scooter logged in; backlog 1 record"
        );
        let three = [
            ("a".to_owned(), part("logged in", true, 2)),
            ("b".to_owned(), part("out of reach", true, 5)),
            ("c".to_owned(), part("logged in", false, 0)),
        ];
        assert_eq!(
            fleet_status(&three),
            "scooters 2/3 logged in (a logged in, b out of reach, c logged in); \
             broker 2/3 connected; backlog 7 records"
        );
    }
}
