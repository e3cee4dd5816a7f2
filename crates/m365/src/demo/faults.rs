//! `m365 demo --faults`: the two troubles a scooter client lives with, staged on a fixed
//! schedule so they can be watched: the radio drops for 2 s (the waiting connect gets the
//! scooter back as soon as it is heard again, and a new login follows, as with a real scooter),
//! then the broker is unreachable for a few seconds (records wait in the spool and are all
//! delivered afterwards). The cycle repeats every [`CYCLE`].

use std::sync::Arc;
use std::time::Duration;

use m365_sim::in_process::SimScooter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::gate::Gate;

/// When, in each cycle, the radio drops.
pub(crate) const LINK_DROP_AT: Duration = Duration::from_secs(4);
/// How long the radio stays down.
pub(crate) const LINK_DROP_FOR: Duration = Duration::from_secs(2);
/// When, in each cycle, the broker becomes unreachable.
pub(crate) const OUTAGE_AT: Duration = Duration::from_secs(8);
/// How long the broker stays unreachable.
pub(crate) const OUTAGE_FOR: Duration = Duration::from_secs(3);
/// Length of one cycle.
pub(crate) const CYCLE: Duration = Duration::from_secs(20);

/// A fault being played, for the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FaultEvent {
    /// The radio link of a scooter dropped.
    LinkDrop {
        /// Scooter id.
        scooter: String,
        /// For how long.
        down_for: Duration,
    },
    /// The path to the broker was cut.
    OutageStarted {
        /// For how long.
        down_for: Duration,
    },
    /// The path to the broker is back.
    OutageEnded,
}

impl std::fmt::Display for FaultEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultEvent::LinkDrop { scooter, down_for } => write!(
                f,
                "fault scooter={scooter} radio link dropped for {}s",
                down_for.as_secs()
            ),
            FaultEvent::OutageStarted { down_for } => write!(
                f,
                "fault broker unreachable for {}s: records wait in the spool",
                down_for.as_secs()
            ),
            FaultEvent::OutageEnded => write!(f, "fault broker reachable again"),
        }
    }
}

/// Plays the schedule from `start` on `scooter` and `gate` until dropped.
pub(crate) async fn play(
    start: Instant,
    scooter_id: String,
    scooter: SimScooter,
    gate: Arc<Gate>,
    events: mpsc::UnboundedSender<FaultEvent>,
) {
    let mut cycle = start;
    loop {
        tokio::time::sleep_until(cycle + LINK_DROP_AT).await;
        scooter.drop_link(LINK_DROP_FOR);
        let _ = events.send(FaultEvent::LinkDrop {
            scooter: scooter_id.clone(),
            down_for: LINK_DROP_FOR,
        });
        tokio::time::sleep_until(cycle + OUTAGE_AT).await;
        gate.cut();
        let _ = events.send(FaultEvent::OutageStarted {
            down_for: OUTAGE_FOR,
        });
        tokio::time::sleep_until(cycle + OUTAGE_AT + OUTAGE_FOR).await;
        gate.restore();
        let _ = events.send(FaultEvent::OutageEnded);
        cycle += CYCLE;
    }
}
