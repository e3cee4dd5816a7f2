//! Test support of the pipeline's tests: the workspace's broker harness (`m365_testkit::broker`:
//! a real broker on a reserved loopback port, a subscriber that returns after its SUBACK) in the
//! pipeline's terms, a pipeline configuration for tests, and checks on the sequence numbers a
//! subscriber received. Cases that stop, restart or configure the broker (password file, TLS
//! listener) need mosquitto and say so when it is missing.
// Each test binary uses a part of it.
#![allow(dead_code, unused_imports)]

use std::path::Path;

use m365_pipeline::{
    Encoding, MqttConfig, MqttProtocol, OutputConfig, PipelineConfig, SpoolConfig, SyncPolicy,
};
pub(crate) use m365_testkit::broker::{
    Broker, BrokerOptions, Inbox, MqttVersion, SubscriberOptions, client_id, have_mosquitto,
    publish, require_mosquitto, subscribe, subscribe_with,
};
pub(crate) use m365_testkit::net::ReservedPort;

/// The testkit's protocol versions as the pipeline's configuration names them.
pub(crate) trait PipelineBroker {
    /// Protocols a publisher may use with the test subscriber, the preferred one first.
    fn protocols(&self) -> Vec<MqttProtocol>;
    /// Port for a client of `protocol`.
    fn port_for(&self, protocol: MqttProtocol) -> u16;
}

impl PipelineBroker for Broker {
    fn protocols(&self) -> Vec<MqttProtocol> {
        self.versions()
            .into_iter()
            .map(|v| match v {
                MqttVersion::V5 => MqttProtocol::V5,
                MqttVersion::V311 => MqttProtocol::V311,
            })
            .collect()
    }

    fn port_for(&self, protocol: MqttProtocol) -> u16 {
        self.port_of(match protocol {
            MqttProtocol::V5 => MqttVersion::V5,
            MqttProtocol::V311 => MqttVersion::V311,
        })
    }
}

/// What the pipeline's `json` encoding carries, read back from a subscriber's messages.
pub(crate) trait JsonSeqs {
    /// `(seq, record_id)` of every `json` message on `topic`.
    fn json_seqs(&self, topic: &str) -> Vec<(u64, String)>;
}

impl JsonSeqs for Inbox {
    fn json_seqs(&self, topic: &str) -> Vec<(u64, String)> {
        self.on(topic)
            .iter()
            .map(|p| {
                let v: serde_json::Value = serde_json::from_slice(p).unwrap();
                (
                    v["seq"].as_u64().unwrap(),
                    v["record_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// Waits (up to 20 s) until `n` distinct sequence numbers arrived on `topic`.
pub(crate) async fn wait_delivered(inbox: &Inbox, topic: &str, n: u64) -> bool {
    inbox
        .wait_for(std::time::Duration::from_secs(20), |i| {
            let seqs: std::collections::BTreeSet<u64> =
                i.json_seqs(topic).iter().map(|s| s.0).collect();
            seqs.len() as u64 >= n
        })
        .await
}

/// A pipeline configuration for tests: quick reconnects, one `json` output.
pub(crate) fn config(
    spool_dir: &Path,
    broker_url: &str,
    topic: &str,
    protocol: MqttProtocol,
) -> PipelineConfig {
    PipelineConfig {
        spool: SpoolConfig {
            path: spool_dir.join("spool.sqlite"),
            sync: SyncPolicy::Normal,
            commit_every: 10,
            commit_interval_ms: 50,
            ..SpoolConfig::default()
        },
        mqtt: MqttConfig {
            broker: broker_url.to_owned(),
            protocol,
            client: client_id("m365-test"),
            reconnect_min: 0.1,
            reconnect_max: 0.5,
            connect_timeout: 2,
            keep_alive: 5,
            max_in_flight: 16,
            live_reserved: 4,
            outputs: vec![OutputConfig {
                topic: topic.to_owned(),
                encoding: Encoding::Json,
                batch: None,
                linger_ms: None,
                legacy_no_fix: Default::default(),
            }],
            ..MqttConfig::default()
        },
        channel_capacity: 256,
    }
}

/// Asserts that `seqs` covers exactly 1..=n and that every duplicate carries the same record id.
pub(crate) fn assert_complete(seqs: &[(u64, String)], n: u64) -> usize {
    let mut by_seq = std::collections::BTreeMap::new();
    let mut dups = 0;
    for (s, id) in seqs {
        if let Some(prev) = by_seq.insert(*s, id.clone()) {
            assert_eq!(
                &prev, id,
                "seq {s} published twice with different record ids"
            );
            dups += 1;
        }
    }
    let got: Vec<u64> = by_seq.keys().copied().collect();
    let want: Vec<u64> = (1..=n).collect();
    if got != want {
        let missing: Vec<u64> = want
            .iter()
            .filter(|s| !by_seq.contains_key(s))
            .copied()
            .collect();
        panic!(
            "expected seq 1..={n}; missing {missing:?}; extra {:?}",
            got.iter().filter(|s| **s > n).collect::<Vec<_>>()
        );
    }
    dups
}

/// Sequence numbers in arrival order with QoS 1 resends removed: a record id seen before is a
/// resend, which is what a consumer deduplicating by `record_id` drops.
pub(crate) fn first_arrivals(seqs: &[(u64, String)]) -> Vec<u64> {
    let mut seen = std::collections::HashSet::new();
    seqs.iter()
        .filter(|(_, id)| seen.insert(id.clone()))
        .map(|(s, _)| *s)
        .collect()
}

/// Asserts strictly ascending sequence numbers.
pub(crate) fn assert_ascending(seqs: &[u64]) {
    if let Some(w) = seqs.windows(2).find(|w| w[0] >= w[1]) {
        panic!("{} before {}: {seqs:?}", w[0], w[1]);
    }
}

/// Asserts the order the schema promises while a backlog drains next to live records: there is
/// a split `k` such that the records up to `k` (the backlog) arrive ascending and the records
/// above `k` (live) arrive ascending. Returns the smallest such `k`.
pub(crate) fn assert_two_ascending_runs(seqs: &[u64]) -> u64 {
    let ascending = |it: &mut dyn Iterator<Item = u64>| {
        let v: Vec<u64> = it.collect();
        v.windows(2).all(|w| w[0] < w[1])
    };
    let mut splits: Vec<u64> = seqs.to_vec();
    splits.push(0);
    splits.sort_unstable();
    splits.dedup();
    for k in splits {
        if ascending(&mut seqs.iter().copied().filter(|s| *s <= k))
            && ascending(&mut seqs.iter().copied().filter(|s| *s > k))
        {
            return k;
        }
    }
    panic!("not two ascending runs: {seqs:?}");
}
