//! The demo's closing counters, as one human sentence and one machine-checkable line:
//! `summary key=value …`, where `lost` counts records committed to a spool that the subscriber
//! never received from the broker.

use std::fmt;

/// Totals over every scooter of the demo.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    /// Simulated scooters.
    pub scooters: u64,
    /// Whole seconds the demo sampled.
    pub seconds: u64,
    /// Samples taken by the samplers.
    pub sampled: u64,
    /// Records committed to the spools.
    pub spooled: u64,
    /// Records handed to MQTT (resends after an outage included).
    pub published: u64,
    /// Records the broker acknowledged.
    pub acknowledged: u64,
    /// Distinct records the subscriber received.
    pub received: u64,
    /// Spooled records the subscriber never received.
    pub lost: u64,
    /// Samples dropped before the spool (pipeline busy).
    pub dropped: u64,
    /// Logins (one per scooter, plus one per session that could not be reused).
    pub logins: u64,
    /// Radio links lost.
    pub link_losses: u64,
    /// Links back without a new login.
    pub sessions_reused: u64,
}

impl Summary {
    /// "published 120, acknowledged 120, lost 0".
    pub(crate) fn sentence(&self) -> String {
        format!(
            "published {}, acknowledged {}, lost {}",
            self.published, self.acknowledged, self.lost
        )
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "summary scooters={} seconds={} sampled={} spooled={} published={} acknowledged={} \
             received={} lost={} dropped={} logins={} link_losses={} sessions_reused={}",
            self.scooters,
            self.seconds,
            self.sampled,
            self.spooled,
            self.published,
            self.acknowledged,
            self.received,
            self.lost,
            self.dropped,
            self.logins,
            self.link_losses,
            self.sessions_reused
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_key_value_pairs() {
        let s = Summary {
            scooters: 2,
            spooled: 10,
            received: 10,
            ..Summary::default()
        };
        let line = s.to_string();
        let pairs: Vec<(&str, &str)> = line
            .strip_prefix("summary ")
            .unwrap()
            .split(' ')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        assert_eq!(pairs.len(), 12);
        assert!(pairs.contains(&("scooters", "2")) && pairs.contains(&("lost", "0")));
        assert_eq!(s.sentence(), "published 0, acknowledged 0, lost 0");
    }
}
