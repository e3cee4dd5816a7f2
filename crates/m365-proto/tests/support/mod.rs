//! An in-memory link between a client machine and a device machine, in the manner of
//! quinn-proto's test `Pair`: it moves every write and notification across byte for byte, lets a
//! test drop or alter chosen messages, and advances a fake clock to the next deadline when the
//! link is quiet. Whole handshakes run deterministically in microseconds.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use m365_proto::gatt::Transmit;
use m365_proto::keys::Role;
use m365_proto::login::{ClientLogin, DeviceLogin};
use m365_proto::pairing::{ClientPairing, DevicePairing};
use rand_core::{CryptoRng, RngCore};

/// What the pair needs from a machine of either role.
pub(crate) trait Endpoint {
    /// The machine's event type.
    type Event;
    /// Hands over one message from the peer.
    fn receive(&mut self, now: Instant, transmit: &Transmit);
    /// Fires deadlines.
    fn timeout(&mut self, now: Instant);
    /// Next message to the peer.
    fn transmit(&mut self) -> Option<Transmit>;
    /// Next event.
    fn event(&mut self) -> Option<Self::Event>;
    /// Next deadline.
    fn next_timeout(&self) -> Option<Instant>;
}

macro_rules! endpoint {
    ($ty:ty, $event:ty, $handle:ident $(, $generic:ident)?) => {
        impl$(<$generic: RngCore + CryptoRng>)? Endpoint for $ty {
            type Event = $event;
            fn receive(&mut self, now: Instant, t: &Transmit) {
                self.$handle(now, t.char, &t.data);
            }
            fn timeout(&mut self, now: Instant) {
                self.handle_timeout(now);
            }
            fn transmit(&mut self) -> Option<Transmit> {
                self.poll_transmit()
            }
            fn event(&mut self) -> Option<Self::Event> {
                self.poll_event()
            }
            fn next_timeout(&self) -> Option<Instant> {
                self.poll_timeout()
            }
        }
    };
}

endpoint!(
    ClientPairing,
    m365_proto::pairing::ClientEvent,
    handle_notification
);
endpoint!(
    DevicePairing<R>,
    m365_proto::pairing::DeviceEvent,
    handle_write,
    R
);
endpoint!(
    ClientLogin,
    m365_proto::login::ClientEvent,
    handle_notification
);
endpoint!(
    DeviceLogin<R>,
    m365_proto::login::DeviceEvent,
    handle_write,
    R
);

/// One message on the link, as the test sees it afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Who sent it.
    pub from: Role,
    /// What was sent (after any alteration).
    pub transmit: Transmit,
    /// Whether it reached the peer.
    pub delivered: bool,
}

/// What a filter decides for one message.
pub(crate) enum Fate {
    Deliver,
    Drop,
}

type Filter = Box<dyn FnMut(Role, &mut Transmit) -> Fate>;

/// A client and a device joined by a lossless link (unless a filter says otherwise).
pub(crate) struct Pair<C: Endpoint, D: Endpoint> {
    pub client: C,
    pub device: D,
    pub now: Instant,
    pub transcript: Vec<Record>,
    pub client_events: Vec<C::Event>,
    pub device_events: Vec<D::Event>,
    filter: Option<Filter>,
}

impl<C: Endpoint, D: Endpoint> Pair<C, D> {
    pub(crate) fn new(client: C, device: D, now: Instant) -> Self {
        Pair {
            client,
            device,
            now,
            transcript: Vec::new(),
            client_events: Vec::new(),
            device_events: Vec::new(),
            filter: None,
        }
    }

    /// Lets `filter` see (and alter or drop) every message before delivery.
    pub(crate) fn with_filter(
        mut self,
        filter: impl FnMut(Role, &mut Transmit) -> Fate + 'static,
    ) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// Moves everything both sides queued; returns whether anything moved.
    pub(crate) fn step(&mut self) -> bool {
        let mut moved = false;
        while let Some(t) = self.client.transmit() {
            moved = true;
            if let Some(t) = self.pass(Role::Client, t) {
                self.device.receive(self.now, &t);
            }
        }
        self.collect_events();
        while let Some(t) = self.device.transmit() {
            moved = true;
            if let Some(t) = self.pass(Role::Device, t) {
                self.client.receive(self.now, &t);
            }
        }
        self.collect_events();
        moved
    }

    fn pass(&mut self, from: Role, mut transmit: Transmit) -> Option<Transmit> {
        assert!(
            transmit.data.len() <= 20,
            "{from:?} sent {} bytes in one write",
            transmit.data.len()
        );
        let fate = match self.filter.as_mut() {
            Some(filter) => filter(from, &mut transmit),
            None => Fate::Deliver,
        };
        let delivered = matches!(fate, Fate::Deliver);
        self.transcript.push(Record {
            from,
            transmit: transmit.clone(),
            delivered,
        });
        delivered.then_some(transmit)
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.client.event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.device.event() {
            self.device_events.push(e);
        }
    }

    /// Runs until `stop` holds (returns true), or until the link is quiet and no deadline is
    /// left within `limit` of the current time (returns false).
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut stop: impl FnMut(&Self) -> bool,
    ) -> bool {
        let end = self.now + limit;
        loop {
            if stop(self) {
                return true;
            }
            if self.step() {
                continue;
            }
            if stop(self) {
                return true;
            }
            let next = match (self.client.next_timeout(), self.device.next_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => return false,
                },
            };
            if next > end {
                return false;
            }
            self.now = self.now.max(next);
            self.client.timeout(self.now);
            self.device.timeout(self.now);
            self.collect_events();
        }
    }

    /// Runs until nothing more happens within a minute of fake time.
    pub(crate) fn run(&mut self) {
        self.run_until(Duration::from_secs(60), |_| false);
    }

    /// The messages one side sent, in order.
    pub(crate) fn sent_by(&self, from: Role) -> Vec<Vec<u8>> {
        self.transcript
            .iter()
            .filter(|r| r.from == from)
            .map(|r| r.transmit.data.clone())
            .collect()
    }

    /// Splits the pair back into its machines (e.g. to reconnect the device to a new client).
    pub(crate) fn into_parts(self) -> (C, D, Instant) {
        (self.client, self.device, self.now)
    }
}
