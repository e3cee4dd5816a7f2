//! The demo's live view is fed from the broker, not from the client: a separate MQTT client
//! subscribes to every scooter's telemetry and availability topics on the embedded broker, so
//! every row on screen made the whole trip (sampler → spool → MQTT → broker → subscriber).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use m365_pipeline::encoding::json::JsonV1;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Telemetry topic of every scooter (the demo publishes the `json` encoding there).
pub(crate) const TELEMETRY_FILTER: &str = "m365/+/telemetry";
/// Availability topic of every scooter.
pub(crate) const AVAILABILITY_FILTER: &str = "m365/+/availability";

/// What the subscriber saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ViewEvent {
    /// A telemetry record.
    Record(Box<JsonV1>),
    /// A scooter's client went online or offline (the `offline` is the broker's last will).
    Availability {
        /// Scooter id from the topic.
        scooter_id: String,
        /// The payload was `online`.
        online: bool,
    },
}

/// The subscriber task; dropping it stops the task.
#[derive(Debug)]
pub(crate) struct Subscriber {
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `broker`, subscribes, and returns once the broker confirmed the subscription,
/// so nothing published afterwards can be missed.
pub(crate) async fn subscribe(
    broker: SocketAddr,
) -> anyhow::Result<(Subscriber, mpsc::UnboundedReceiver<ViewEvent>)> {
    let mut options = MqttOptions::new("m365-demo-view", broker.ip().to_string(), broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    for filter in [TELEMETRY_FILTER, AVAILABILITY_FILTER] {
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .context("cannot queue the subscription")?;
    }
    let mut acks = 0;
    let ready = async {
        while acks < 2 {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => acks += 1,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), ready)
        .await
        .context("the broker did not confirm the subscription in time")?
        .context("cannot subscribe to the embedded broker")?;
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        // The client must live as long as the event loop, or the loop ends.
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(event) = parse(&p.topic, &p.payload)
                        && tx.send(event).is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "live view subscriber");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Ok((Subscriber { task }, rx))
}

/// Decodes one message of the subscribed topics.
pub(crate) fn parse(topic: &str, payload: &[u8]) -> Option<ViewEvent> {
    let mut parts = topic.split('/');
    let (Some("m365"), Some(id), Some(kind), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    match kind {
        "telemetry" => match serde_json::from_slice::<JsonV1>(payload) {
            Ok(record) => Some(ViewEvent::Record(Box::new(record))),
            Err(e) => {
                tracing::warn!(error = %e, topic, "undecodable telemetry");
                None
            }
        },
        "availability" => Some(ViewEvent::Availability {
            scooter_id: id.to_owned(),
            online: payload == b"online",
        }),
        _ => None,
    }
}

/// What the view knows of one scooter.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ScooterView {
    /// The latest record.
    pub last: Option<JsonV1>,
    /// Its client is connected to the broker (retained availability).
    pub online: bool,
    /// Sequence numbers received (duplicates after a reconnect count once).
    pub seqs: BTreeSet<u64>,
    /// Messages received, duplicates included.
    pub messages: u64,
}

/// Everything received so far, per scooter id.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Live {
    /// By scooter id.
    pub scooters: BTreeMap<String, ScooterView>,
}

impl Live {
    /// Takes an event into account.
    pub(crate) fn apply(&mut self, event: &ViewEvent) {
        match event {
            ViewEvent::Record(record) => {
                let view = self.scooters.entry(record.scooter_id.clone()).or_default();
                view.seqs.insert(record.seq);
                view.messages += 1;
                let newer = view.last.as_ref().is_none_or(|l| record.seq >= l.seq);
                if newer {
                    view.last = Some((**record).clone());
                }
            }
            ViewEvent::Availability { scooter_id, online } => {
                self.scooters.entry(scooter_id.clone()).or_default().online = *online;
            }
        }
    }

    /// Distinct records received from `scooter_id`.
    pub(crate) fn received(&self, scooter_id: &str) -> u64 {
        self.scooters
            .get(scooter_id)
            .map_or(0, |v| v.seqs.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_told_apart_and_duplicates_count_once() {
        assert_eq!(
            parse("m365/abc/availability", b"offline"),
            Some(ViewEvent::Availability {
                scooter_id: "abc".into(),
                online: false
            })
        );
        assert_eq!(parse("m365/abc/other", b"x"), None);
        assert_eq!(parse("m365/abc/telemetry", b"not json"), None);
        let mut live = Live::default();
        live.apply(&ViewEvent::Availability {
            scooter_id: "abc".into(),
            online: true,
        });
        assert!(live.scooters["abc"].online);
        assert_eq!(live.received("abc"), 0);
    }
}
