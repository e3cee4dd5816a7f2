//! Counters for logs, the status topic and the daemon's status: how many samples came in, were
//! spooled, published, acknowledged or dropped, the spool's size and the broker state. Shared
//! through atomics so readers never block the publisher.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::failure::{ErrorKind, LastError};

/// Broker connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerState {
    /// Not yet tried.
    Idle,
    /// Connecting.
    Connecting,
    /// Connected and publishing.
    Connected,
    /// Waiting before the next attempt.
    Backoff,
}

impl BrokerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => BrokerState::Connecting,
            2 => BrokerState::Connected,
            3 => BrokerState::Backoff,
            _ => BrokerState::Idle,
        }
    }
}

/// A consistent-enough copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    /// Samples received from the sampler.
    pub sampled: u64,
    /// Samples dropped because the channel into the pipeline was full.
    pub dropped_channel: u64,
    /// Records committed to the spool.
    pub spooled: u64,
    /// Records handed to the MQTT client (resends included).
    pub published: u64,
    /// Records acknowledged by the broker (per output).
    pub acknowledged: u64,
    /// Records dropped by the spool bounds (total kept in the spool file).
    pub dropped_spool: u64,
    /// Records in the spool.
    pub spool_records: u64,
    /// Bytes in the spool.
    pub spool_bytes: u64,
    /// Messages in flight.
    pub in_flight: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Spool files moved aside as corrupt.
    pub spool_recoveries: u64,
    /// Records kept because they could not be turned into a message; tried again at the next
    /// start.
    #[serde(default)]
    pub quarantined: u64,
    /// Broker state.
    pub broker: BrokerState,
}

/// Shared counters.
#[derive(Debug, Default)]
pub(crate) struct Health {
    sampled: AtomicU64,
    dropped_channel: AtomicU64,
    spooled: AtomicU64,
    published: AtomicU64,
    acknowledged: AtomicU64,
    dropped_spool: AtomicU64,
    spool_records: AtomicU64,
    spool_bytes: AtomicU64,
    in_flight: AtomicU64,
    connect_failures: AtomicU64,
    spool_recoveries: AtomicU64,
    quarantined: AtomicU64,
    broker: AtomicU8,
    last_error: Mutex<Option<LastError>>,
}

/// Which counter to add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// [`HealthSnapshot::sampled`].
    Sampled,
    /// [`HealthSnapshot::dropped_channel`].
    DroppedChannel,
    /// [`HealthSnapshot::spooled`].
    Spooled,
    /// [`HealthSnapshot::published`].
    Published,
    /// [`HealthSnapshot::acknowledged`].
    Acknowledged,
    /// [`HealthSnapshot::connect_failures`].
    ConnectFailures,
    /// [`HealthSnapshot::spool_recoveries`].
    SpoolRecoveries,
}

impl Health {
    /// Fresh counters behind an `Arc`.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Health::default())
    }

    /// Adds `n` to a counter.
    pub(crate) fn add(&self, c: Counter, n: u64) {
        let a = match c {
            Counter::Sampled => &self.sampled,
            Counter::DroppedChannel => &self.dropped_channel,
            Counter::Spooled => &self.spooled,
            Counter::Published => &self.published,
            Counter::Acknowledged => &self.acknowledged,
            Counter::ConnectFailures => &self.connect_failures,
            Counter::SpoolRecoveries => &self.spool_recoveries,
        };
        a.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the gauges that mirror the spool and the window.
    pub(crate) fn set_gauges(
        &self,
        spool_records: u64,
        spool_bytes: u64,
        dropped_spool: u64,
        in_flight: u64,
    ) {
        self.spool_records.store(spool_records, Ordering::Relaxed);
        self.spool_bytes.store(spool_bytes, Ordering::Relaxed);
        self.dropped_spool.store(dropped_spool, Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }

    /// Sets the number of quarantined records.
    pub(crate) fn set_quarantined(&self, n: u64) {
        self.quarantined.store(n, Ordering::Relaxed);
    }

    /// Sets the broker state.
    pub(crate) fn set_broker(&self, s: BrokerState) {
        self.broker.store(s as u8, Ordering::Relaxed);
    }

    /// Records the latest connection or spool error (shown by the daemon's status).
    pub(crate) fn set_last_error(&self, e: Option<LastError>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }

    /// The latest connection or spool error, cleared on a successful connection.
    pub(crate) fn last_error(&self) -> Option<LastError> {
        self.last_error.lock().ok().and_then(|g| g.clone())
    }

    /// The kind of the latest error.
    pub(crate) fn last_error_kind(&self) -> Option<ErrorKind> {
        self.last_error().map(|e| e.kind)
    }

    /// Copies the counters.
    pub(crate) fn snapshot(&self) -> HealthSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HealthSnapshot {
            sampled: g(&self.sampled),
            dropped_channel: g(&self.dropped_channel),
            spooled: g(&self.spooled),
            published: g(&self.published),
            acknowledged: g(&self.acknowledged),
            dropped_spool: g(&self.dropped_spool),
            spool_records: g(&self.spool_records),
            spool_bytes: g(&self.spool_bytes),
            in_flight: g(&self.in_flight),
            connect_failures: g(&self.connect_failures),
            spool_recoveries: g(&self.spool_recoveries),
            quarantined: g(&self.quarantined),
            broker: BrokerState::from_u8(self.broker.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_state_round_trip() {
        let h = Health::new();
        h.add(Counter::Sampled, 3);
        h.add(Counter::Acknowledged, 2);
        h.set_gauges(10, 2048, 1, 4);
        h.set_broker(BrokerState::Backoff);
        let s = h.snapshot();
        assert_eq!(
            (s.sampled, s.acknowledged, s.spool_records, s.spool_bytes),
            (3, 2, 10, 2048)
        );
        assert_eq!((s.dropped_spool, s.in_flight), (1, 4));
        assert_eq!(s.broker, BrokerState::Backoff);
    }
}
