//! A subscriber: its [`Slot`] in a group, and the [`Subscription`] stream
//! that reads the group's ring from it and waits when nothing is queued.
//!
//! * A subscriber reads the group's sequence at its own position
//!   ([`Slot::pos`]) without a lock: it keeps the segment it reads from and
//!   follows the segment's (weak) link to the next one; it takes an event by
//!   cloning it out of the slot and moving its position on with one
//!   compare-and-swap ([`Position::take`]). It locks the group only when
//!   nothing is left to read (to register its waker) or to find a segment it
//!   did not follow.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use aether_core::{BusError, BusEvent, EventFilter, Namespace};
use futures_core::Stream;

use super::lock;
use super::ring::{Group, Position, Reader, Segment};

/// One subscriber: its group, its capacity, and its position in the group's
/// sequence.
pub(crate) struct Slot {
    id: u64,
    capacity: usize,
    pub(super) group: Arc<Group>,
    /// Its position in the group's sequence, which it and the group's
    /// publishers move on.
    pos: Arc<Position>,
    /// `pos` when the subscriber joined.
    start: u64,
}

impl Slot {
    /// Joins `group` as the subscriber `id`, reading its events from now on.
    pub(super) fn join(id: u64, capacity: usize, group: Arc<Group>) -> Self {
        let (pos, start) = group.join(id, capacity as u64);
        Slot {
            id,
            capacity,
            group,
            pos,
            start,
        }
    }

    pub(crate) fn filter(&self) -> &EventFilter {
        &self.group.filter
    }

    /// Runs `f` on this subscriber's entry in its group, under the lock.
    fn with_reader<R>(&self, f: impl FnOnce(&mut Reader) -> R) -> Option<R> {
        self.group
            .lock()
            .readers
            .iter_mut()
            .find(|r| r.id == self.id)
            .map(f)
    }

    /// Wakes the subscriber's task if it is waiting (used by the NATS bus
    /// when messages arrive for its group).
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "used by the NATS bus")
    )]
    pub(crate) fn wake_waiting(&self) {
        if let Some(w) = self.with_reader(|r| r.waker.take()).flatten() {
            w.wake();
        }
    }

    pub(crate) fn close(&self) {
        let waker = self
            .with_reader(|r| {
                r.closed = true;
                r.waker.take()
            })
            .flatten();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Events queued for this subscriber and not yet taken.
    fn queued(&self) -> usize {
        let head = self.group.lock().head;
        usize::try_from(head.saturating_sub(self.pos.load())).unwrap_or(usize::MAX)
    }

    /// Leaves the group: publishes no longer reach this subscriber. Returns
    /// whether it was the last reader; the group's counts then move to the
    /// hub's (nothing is appended to a group without readers).
    pub(super) fn leave(&self) -> bool {
        let stats = &self.group.stats;
        let _retire = lock(&stats.retire);
        let mut ring = self.group.lock();
        ring.readers.retain(|r| r.id != self.id);
        if !ring.readers.is_empty() {
            return false;
        }
        let delivered = std::mem::take(&mut ring.delivered);
        let dropped = std::mem::take(&mut ring.dropped);
        let published = std::mem::take(&mut ring.published);
        stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        stats.dropped.fetch_add(dropped, Ordering::Relaxed);
        stats.published.fetch_add(published, Ordering::Relaxed);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.leave();
    }
}

/// What a bus does when a [`Subscription`] is dropped.
pub(crate) trait Detach: Send + Sync {
    fn detach(&self, slot: &Arc<Slot>);
}

/// Moves whatever the transport has received into the queues of its
/// subscribers, on the thread of whichever subscriber asks first (the NATS
/// bus: see `nats.rs`). Never blocks: when another thread is already
/// pumping, it returns at once (that thread delivers and wakes).
pub(crate) trait Pump: Send + Sync {
    fn pump(&self);
}

/// A live subscription: a [`Stream`] of the events that pass its filter, from
/// the moment [`subscribe`](aether_core::EventBus::subscribe) returned.
///
/// * Items are `Ok(BusEvent)` in the order the bus delivered them (per
///   publisher, the publish order), or `Err(BusError::Lagged { missed })` when
///   the subscriber's queue overflowed and its `missed` oldest events were
///   dropped; the stream goes on after it.
/// * The stream ends (`None`) after the queued events once the bus is closed
///   or every handle to it is dropped.
/// * Dropping the subscription unsubscribes (for the NATS bus, the last local
///   subscriber of a pattern also removes the NATS subscription).
#[must_use = "a subscription receives nothing unless polled, and unsubscribes when dropped"]
pub struct Subscription {
    slot: Arc<Slot>,
    /// The sequence number of the next event this subscription expects:
    /// when [`Slot::pos`] is past it, publishers dropped the difference.
    next: u64,
    /// The segment it last read from.
    segment: Option<Arc<Segment>>,
    /// The namespace the subscription is anchored at (that of every event
    /// of an `Exact` group).
    anchor: Namespace,
    /// [`Slot::pos`], one pointer nearer.
    pos: Arc<Position>,
    owner: Weak<dyn Detach>,
    pump: Option<Arc<dyn Pump>>,
}

impl Subscription {
    pub(crate) fn new(slot: Arc<Slot>, owner: Weak<dyn Detach>) -> Self {
        Subscription {
            next: slot.start,
            anchor: slot.filter().namespaces.root().clone(),
            pos: Arc::clone(&slot.pos),
            slot,
            segment: None,
            owner,
            pump: None,
        }
    }

    /// A subscription whose events arrive through `pump` (run whenever its
    /// queue is empty) rather than being pushed by a publisher.
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "used by the NATS bus")
    )]
    pub(crate) fn with_pump(slot: Arc<Slot>, owner: Weak<dyn Detach>, pump: Arc<dyn Pump>) -> Self {
        let mut subscription = Subscription::new(slot, owner);
        subscription.pump = Some(pump);
        subscription
    }

    /// A copy of the event at `seq` from the segment last read, or the
    /// one after it; `None` if it is in neither (not yet published, or the
    /// reader jumped further).
    fn event_at(&mut self, seq: u64) -> Option<BusEvent> {
        let segment = self.segment.as_ref()?;
        if !segment.covers(seq) {
            let next = segment.next()?;
            if !next.covers(seq) {
                return None;
            }
            self.segment = Some(next);
        }
        Some(self.segment.as_ref()?.get(seq)?.to_bus_event(&self.anchor))
    }

    /// The next event if it is in the segment last read and nothing was
    /// dropped before it: one load, one copy and one compare-and-swap, with
    /// no lock and a small return value. `None` says "ask [`take`](Self::take)".
    #[inline]
    fn take_fast(&mut self) -> Option<BusEvent> {
        let pos = self.pos.load();
        if pos != self.next {
            return None;
        }
        let event = self.segment.as_ref()?.get(pos)?.to_bus_event(&self.anchor);
        if !self.pos.take(pos) {
            return None;
        }
        self.next = pos + 1;
        Some(event)
    }

    /// The next queued item, `Ready(None)` at the end, `Pending` when the
    /// queue is empty (registering `cx`'s waker if one is given).
    ///
    /// An event is read from the group's segment without a lock and taken
    /// with one compare-and-swap on [`Slot::pos`]; the group's lock is
    /// taken only when that segment does not hold the next event.
    fn take(
        &mut self,
        mut cx: Option<&mut Context<'_>>,
    ) -> Poll<Option<Result<BusEvent, BusError>>> {
        loop {
            let pos = self.pos.load();
            if pos != self.next {
                // Publishers dropped the events in between.
                let missed = pos.saturating_sub(self.next);
                self.next = pos;
                return Poll::Ready(Some(Err(BusError::Lagged { missed })));
            }
            if let Some(event) = self.event_at(pos) {
                if self.pos.take(pos) {
                    self.next = pos + 1;
                    return Poll::Ready(Some(Ok(event)));
                }
                // Dropped meanwhile: report it.
                continue;
            }
            let mut ring = self.slot.group.lock();
            if pos < ring.head {
                // Published, in a segment this subscription does not hold.
                match ring.segment_of(pos) {
                    Some(segment) => {
                        self.segment = Some(segment);
                        continue;
                    }
                    // Not reached: segments are kept from the oldest
                    // reader's position on.
                    None => return Poll::Ready(None),
                }
            }
            let closed = ring.closed;
            let Some(reader) = ring.readers.iter_mut().find(|r| r.id == self.slot.id) else {
                return Poll::Ready(None);
            };
            if closed || reader.closed {
                return Poll::Ready(None);
            }
            if let Some(cx) = cx.take() {
                match &mut reader.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
            }
            return Poll::Pending;
        }
    }

    fn pump(&self) {
        if let Some(p) = &self.pump {
            p.pump();
        }
    }

    /// The filter this subscription was created with.
    pub fn filter(&self) -> &EventFilter {
        self.slot.filter()
    }

    /// The most events this subscription queues before dropping the oldest.
    pub fn capacity(&self) -> usize {
        self.slot.capacity
    }

    /// Waits for the next item: the same as `StreamExt::next`, without
    /// importing a stream extension trait. `None` once the bus is closed and
    /// the queue is empty.
    pub async fn recv(&mut self) -> Option<Result<BusEvent, BusError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// Takes the next item without waiting: `None` when nothing is queued
    /// (or the stream has ended), otherwise what [`Stream::poll_next`] would
    /// yield.
    ///
    /// (Named `try_recv` like `tokio::sync::broadcast::Receiver::try_recv`;
    /// `futures::TryStreamExt::try_next` is the awaiting stream method.)
    #[inline]
    pub fn try_recv(&mut self) -> Option<Result<BusEvent, BusError>> {
        if let Some(event) = self.take_fast() {
            return Some(Ok(event));
        }
        self.try_recv_slow()
    }

    fn try_recv_slow(&mut self) -> Option<Result<BusEvent, BusError>> {
        if let Poll::Ready(item) = self.take(None) {
            return item;
        }
        // Without a pump, nothing can arrive before a second look.
        self.pump.as_ref()?;
        self.pump();
        match self.take(None) {
            Poll::Ready(item) => item,
            Poll::Pending => None,
        }
    }

    /// Events queued and not yet taken (for the NATS bus, after moving in
    /// what the connection has already received).
    pub fn len(&self) -> usize {
        self.pump();
        self.slot.queued()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", self.slot.filter())
            .field("capacity", &self.slot.capacity)
            .finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = Result<BusEvent, BusError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(event) = this.take_fast() {
            return Poll::Ready(Some(Ok(event)));
        }
        if this.pump.is_none() {
            return this.take(Some(cx));
        }
        // Pumped: take what is queued, else pump and look again; only then
        // register the waker and pump once more, so a message that arrived
        // between the pump and the registration is not missed (the pump's
        // waker wakes registered subscribers), and a pump that finds
        // something does not wake this task for nothing.
        if let Poll::Ready(item) = this.take(None) {
            return Poll::Ready(item);
        }
        this.pump();
        if let Poll::Ready(item) = this.take(Some(cx)) {
            return Poll::Ready(item);
        }
        this.pump();
        this.take(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.slot.queued(), None)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.upgrade() {
            owner.detach(&self.slot);
        } else {
            self.slot.close();
        }
    }
}
