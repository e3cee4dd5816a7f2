//! Drives the proto crate's sans-IO handshake machines (registration, login) over a
//! [`Transport`]: writes what they want sent, feeds them notifications with the current time,
//! and fires their deadlines on tokio's clock.

use m365_proto::gatt::{Char, Transmit};
use m365_proto::login::{self, ClientLogin};
use m365_proto::pairing::{self, ClientPairing};
use tokio::time::Instant;

use crate::error::BleError;
use crate::transport::{Transport, TransportError, TransportEvent, WriteKind};

/// A client-role machine with the quinn-style driving contract.
pub(crate) trait Machine {
    type Event;
    fn notify(&mut self, now: std::time::Instant, char: Char, data: &[u8]);
    fn timeout(&mut self, now: std::time::Instant);
    fn transmit(&mut self) -> Option<Transmit>;
    fn event(&mut self) -> Option<Self::Event>;
    fn deadline(&self) -> Option<std::time::Instant>;
}

impl Machine for ClientPairing {
    type Event = pairing::ClientEvent;
    fn notify(&mut self, now: std::time::Instant, char: Char, data: &[u8]) {
        self.handle_notification(now, char, data);
    }
    fn timeout(&mut self, now: std::time::Instant) {
        self.handle_timeout(now);
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<Self::Event> {
        self.poll_event()
    }
    fn deadline(&self) -> Option<std::time::Instant> {
        self.poll_timeout()
    }
}

impl Machine for ClientLogin {
    type Event = login::ClientEvent;
    fn notify(&mut self, now: std::time::Instant, char: Char, data: &[u8]) {
        self.handle_notification(now, char, data);
    }
    fn timeout(&mut self, now: std::time::Instant) {
        self.handle_timeout(now);
    }
    fn transmit(&mut self) -> Option<Transmit> {
        self.poll_transmit()
    }
    fn event(&mut self) -> Option<Self::Event> {
        self.poll_event()
    }
    fn deadline(&self) -> Option<std::time::Instant> {
        self.poll_timeout()
    }
}

/// The current time on tokio's clock, as the machines take it.
pub(crate) fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Runs `machine` until it reports an event.
pub(crate) async fn drive<T: Transport, M: Machine>(
    transport: &mut T,
    machine: &mut M,
) -> Result<M::Event, BleError> {
    loop {
        while let Some(t) = machine.transmit() {
            transport
                .write(t.char, &t.data, WriteKind::WithoutResponse)
                .await
                .map_err(|e| match e {
                    TransportError::NotConnected => BleError::LinkLost,
                    e => e.into(),
                })?;
        }
        if let Some(event) = machine.event() {
            return Ok(event);
        }
        let Some(deadline) = machine.deadline() else {
            // Finished without an event: cannot happen with the proto machines, which report
            // an outcome before they stop; treat it as a lost exchange rather than hang.
            return Err(BleError::LinkLost);
        };
        tokio::select! {
            event = transport.next_event() => match event {
                Some(TransportEvent::Notification { char, data }) => {
                    machine.notify(now(), char, &data);
                }
                Some(TransportEvent::Disconnected) => return Err(BleError::LinkLost),
                Some(TransportEvent::Advertisement(_)) => {}
                None => return Err(TransportError::Closed.into()),
            },
            () = tokio::time::sleep_until(Instant::from_std(deadline)) => machine.timeout(now()),
        }
    }
}
