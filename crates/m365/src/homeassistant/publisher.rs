//! The short-lived MQTT client that publishes the discovery messages at start-up: retained, QoS
//! 1, on a connection of its own so the telemetry connection never waits for it. It connects
//! with the pipeline's settings through [`m365_pipeline::MqttConfig::connect_params`] and
//! [`m365_pipeline::MqttConfig::credentials`], the same broker URL, TLS and password handling
//! as the pipeline, and retries with the workspace's back-off.

use std::time::Duration;

use m365_backoff::Backoff;
use m365_pipeline::MqttConfig as WireMqtt;
use m365_pipeline::mqtt::{ConnectParams, Connection, NetEvent};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::JoinHandle;

use super::{DiscoveryError, DiscoveryMessage};

/// How long one publishing attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes `messages` retained with QoS 1 on the broker of `mqtt` (the pipeline's settings),
/// under client id `<client>-ha`, retrying with back-off (`reconnect_min` to `reconnect_max`)
/// until all are acknowledged.
///
/// Returns at once; the task ends when the broker has taken every message. Abort it to stop
/// trying. Fails only when the broker settings themselves are unusable.
pub fn spawn_publisher(
    mqtt: &WireMqtt,
    messages: Vec<DiscoveryMessage>,
) -> Result<JoinHandle<()>, DiscoveryError> {
    mqtt.validate()?;
    let count = u16::try_from(messages.len()).unwrap_or(u16::MAX);
    let params = mqtt.connect_params(
        // Its own client id: the broker would otherwise close the telemetry connection.
        format!("{}-ha", mqtt.client),
        count.saturating_add(1),
        // No last will: this client's going away says nothing about the scooter.
        None,
    )?;
    let (min, max) = mqtt.reconnect_bounds();
    let mut backoff = Backoff::new(min, max);
    let mqtt = mqtt.clone();
    let payloads: Vec<(String, Vec<u8>)> = messages
        .into_iter()
        .map(|m| (m.topic, m.payload.to_string().into_bytes()))
        .collect();
    Ok(tokio::spawn(async move {
        let mut rng = StdRng::from_entropy();
        let mut warned = false;
        loop {
            // Read at each attempt, as the pipeline does, so a rotated password is picked up.
            let outcome = match mqtt.credentials() {
                Ok(credentials) => {
                    let attempt = ConnectParams {
                        credentials,
                        ..params.clone()
                    };
                    publish_once(&attempt, &payloads).await
                }
                Err(e) => Err(e.to_string()),
            };
            let error = match outcome {
                Ok(()) => {
                    tracing::info!(
                        entities = payloads.len(),
                        "Home Assistant discovery published"
                    );
                    return;
                }
                Err(error) => error,
            };
            let delay = backoff.next_delay(&mut rng);
            if warned {
                tracing::debug!(%error, retry_in = ?delay, "Home Assistant discovery");
            } else {
                tracing::warn!(%error, retry_in = ?delay, "cannot publish Home Assistant discovery; retrying");
                warned = true;
            }
            tokio::time::sleep(delay).await;
        }
    }))
}

/// One connection: connect, publish everything retained, wait for every PUBACK.
async fn publish_once(
    params: &ConnectParams,
    payloads: &[(String, Vec<u8>)],
) -> Result<(), String> {
    let (conn, mut events) = Connection::open(params);
    let work = async {
        let mut acked = 0usize;
        while let Some(event) = events.recv().await {
            match event {
                NetEvent::Connected => {
                    for (topic, payload) in payloads {
                        conn.publish(topic, payload.clone(), true, Some("application/json"))?;
                    }
                    if payloads.is_empty() {
                        return Ok(());
                    }
                }
                NetEvent::Acked(_, Ok(())) => {
                    acked += 1;
                    if acked >= payloads.len() {
                        return Ok(());
                    }
                }
                NetEvent::Acked(_, Err(reason)) => {
                    return Err(format!("the broker refused a discovery message: {reason}"));
                }
                NetEvent::Closed(reason) => return Err(reason.to_string()),
                // `Sent` and whatever else the connection reports: only acknowledgements count.
                _ => {}
            }
        }
        Err("the connection ended".to_owned())
    };
    match tokio::time::timeout(ATTEMPT_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err("timed out".to_owned()),
    }
}
