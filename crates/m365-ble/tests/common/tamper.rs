//! A transport wrapper that lets a test play a scooter that behaves differently from the
//! simulator: it sees every write before it goes out and every event before the client does,
//! and may swallow, rewrite or add to them. Used for what real scooters do and the simulator
//! does not (answers with RW 0x02 or another length, `22` at login, `E0`–`E3`). Zero-length
//! notifications a hook adds are delivered (and counted), unlike a real transport, which drops
//! them: so a test shows that every consumer ignores them too.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use m365_ble::BdAddr;
use m365_ble::transport::{Transport, TransportError, TransportEvent, WriteKind};
use m365_proto::frame::Frame;
use m365_proto::gatt::{ATT_PAYLOAD, Char};
use m365_proto::model::Generation;
use m365_proto::reassembly::Reassembler;

/// Decides about one write: `true` sends it on; the events are delivered to the client next.
pub(crate) type WriteHook = Box<dyn FnMut(Char, &[u8]) -> (bool, Vec<TransportEvent>) + Send>;
/// Replaces one event by any number of events.
pub(crate) type EventHook = Box<dyn FnMut(TransportEvent) -> Vec<TransportEvent> + Send>;

/// `inner` with hooks on its writes and events.
pub(crate) struct Tampered<T> {
    inner: T,
    on_write: WriteHook,
    on_event: EventHook,
    queue: VecDeque<TransportEvent>,
    connects: Arc<AtomicU32>,
    empty: u64,
}

impl<T> std::fmt::Debug for Tampered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tampered").finish_non_exhaustive()
    }
}

impl<T: Transport> Tampered<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T, on_write: WriteHook, on_event: EventHook) -> Tampered<T> {
        Tampered {
            inner,
            on_write,
            on_event,
            queue: VecDeque::new(),
            connects: Arc::new(AtomicU32::new(0)),
            empty: 0,
        }
    }

    /// Connections made so far, readable from a hook.
    pub(crate) fn connects(&self) -> Arc<AtomicU32> {
        self.connects.clone()
    }

    /// Replaces the write hook (e.g. with one that reads [`Tampered::connects`]).
    pub(crate) fn set_write_hook(&mut self, on_write: WriteHook) {
        self.on_write = on_write;
    }
}

/// A write hook that sends everything on.
pub(crate) fn pass_writes() -> WriteHook {
    Box::new(|_, _| (true, Vec::new()))
}

/// An event hook that changes nothing.
pub(crate) fn pass_events() -> EventHook {
    Box::new(|event| vec![event])
}

/// An event hook for a plain (generation A) scooter: every UART frame the scooter sends goes
/// through `rewrite`, and what it returns is sent on in 20-byte notifications.
pub(crate) fn rewrite_plain_frames(
    mut rewrite: impl FnMut(Frame) -> Vec<Frame> + Send + 'static,
) -> EventHook {
    let mut reassembler = Reassembler::new(Generation::Plain);
    Box::new(move |event| match event {
        TransportEvent::Notification {
            char: Char::UartNotify,
            data,
        } => {
            reassembler.push(&data);
            let mut out = Vec::new();
            while let Some(wire) = reassembler.next_frame() {
                let Ok(frame) = Frame::decode(&wire) else {
                    continue;
                };
                for frame in rewrite(frame) {
                    out.extend(frame.encode().chunks(ATT_PAYLOAD).map(|chunk| {
                        TransportEvent::Notification {
                            char: Char::UartNotify,
                            data: chunk.to_vec(),
                        }
                    }));
                }
            }
            out
        }
        other => vec![other],
    })
}

/// A UPNP notification carrying the control word `byte 00 00 00`.
pub(crate) fn control(byte: u8) -> TransportEvent {
    TransportEvent::Notification {
        char: Char::Upnp,
        data: vec![byte, 0, 0, 0],
    }
}

impl<T: Transport> Transport for Tampered<T> {
    async fn start_scan(&mut self) -> Result<(), TransportError> {
        self.inner.start_scan().await
    }

    async fn stop_scan(&mut self) -> Result<(), TransportError> {
        self.inner.stop_scan().await
    }

    async fn connect(&mut self, address: BdAddr, timeout: Duration) -> Result<(), TransportError> {
        self.queue
            .retain(|e| matches!(e, TransportEvent::Advertisement(_)));
        self.inner.connect(address, timeout).await?;
        self.connects.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn discover(&mut self) -> Result<Vec<u128>, TransportError> {
        self.inner.discover().await
    }

    async fn subscribe(&mut self, char: Char) -> Result<(), TransportError> {
        self.inner.subscribe(char).await
    }

    async fn write(
        &mut self,
        char: Char,
        data: &[u8],
        kind: WriteKind,
    ) -> Result<(), TransportError> {
        let (forward, inject) = (self.on_write)(char, data);
        self.queue.extend(inject);
        if forward {
            self.inner.write(char, data, kind).await
        } else {
            Ok(())
        }
    }

    async fn read(&mut self, uuid: u128) -> Result<Vec<u8>, TransportError> {
        self.inner.read(uuid).await
    }

    async fn disconnect(&mut self) -> Result<(), TransportError> {
        self.inner.disconnect().await
    }

    async fn remove_device(&mut self, address: BdAddr) -> Result<(), TransportError> {
        self.inner.remove_device(address).await
    }

    async fn next_event(&mut self) -> Option<TransportEvent> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                if matches!(&event, TransportEvent::Notification { data, .. } if data.is_empty()) {
                    self.empty += 1;
                }
                return Some(event);
            }
            let event = self.inner.next_event().await?;
            let out = (self.on_event)(event);
            self.queue.extend(out);
        }
    }

    fn empty_notifications(&self) -> u64 {
        self.inner.empty_notifications() + self.empty
    }

    async fn is_connected(&mut self) -> bool {
        self.inner.is_connected().await
    }
}
