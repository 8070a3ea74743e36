//! A subscriber group and its ring: the events that passed the group's
//! filter, written once and read by every subscriber at its own position.
//!
//! * Each group keeps one sequence of the events that passed its filter, in
//!   *segments* of 64 write-once slots (`OnceLock`): a publish locks the
//!   group's mutex once (never across an `.await`) and writes the event once,
//!   one `Arc<Event>` (the publisher's own for the last group it reaches)
//!   and, in a `Within` group, the namespace — the payload is never copied,
//!   and nothing is written per subscriber.
//! * Each subscriber's queue is bounded by its own `capacity`: a publish
//!   moves the position of every subscriber that is `capacity` events
//!   behind one event on, with a compare-and-swap on the same word, so a
//!   take and a drop of the same event are settled by one of them winning
//!   (both are [`Position`]'s). The subscriber sees its position ahead of
//!   where it left off and yields [`BusError::Lagged`] with the difference,
//!   then continues with the oldest event still queued — the semantics of
//!   `tokio::sync::broadcast`. Waiting subscribers are woken after the lock
//!   is released.
//! * A group keeps the segments from the one holding its oldest reader's
//!   position on, so memory is bounded by the largest queue and by
//!   [`SEGMENT`] events per subscriber that stopped reading (a dropped
//!   subscription leaves its group at once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::Waker;

#[cfg(doc)]
use aether_core::BusError;
use aether_core::{BusEvent, Event, EventFilter, Namespace, NamespacePattern};

use super::lock;
use super::stats::{AtomicStats, NsMetrics};

/// Events per [`Segment`].
pub(super) const SEGMENT: u64 = 64;

/// A block of [`SEGMENT`] consecutive events of one group's sequence, each
/// written once by a publisher (under the group's lock) and read by every
/// subscriber of the group without a lock.
pub(super) struct Segment {
    /// The sequence number of `events[0]`.
    start: u64,
    events: [OnceLock<Entry>; SEGMENT as usize],
    /// The segment after this one, once there is one. Weak, so that a
    /// subscriber that stopped reading keeps one segment alive, not the
    /// whole chain after it.
    next: OnceLock<Weak<Segment>>,
}

impl Segment {
    fn new(start: u64) -> Arc<Self> {
        Arc::new(Segment {
            start,
            events: std::array::from_fn(|_| OnceLock::new()),
            next: OnceLock::new(),
        })
    }

    #[inline]
    pub(super) fn covers(&self, seq: u64) -> bool {
        seq >= self.start && seq - self.start < SEGMENT
    }

    #[inline]
    pub(super) fn get(&self, seq: u64) -> Option<&Entry> {
        let at = usize::try_from(seq.checked_sub(self.start)?).ok()?;
        self.events.get(at)?.get()
    }

    /// The segment after this one, if there is one and it is still kept.
    #[inline]
    pub(super) fn next(&self) -> Option<Arc<Segment>> {
        self.next.get()?.upgrade()
    }
}

/// One event of a group's sequence.
pub(super) struct Entry {
    /// The namespace it was published in; `None` in an `Exact` group, whose
    /// events are all in its anchor (the subscription keeps a copy).
    namespace: Option<Namespace>,
    event: Arc<Event>,
}

impl Entry {
    #[inline]
    pub(super) fn to_bus_event(&self, anchor: &Namespace) -> BusEvent {
        BusEvent {
            namespace: self.namespace.as_ref().unwrap_or(anchor).clone(),
            event: Arc::clone(&self.event),
        }
    }
}

/// A reader's position in its group's sequence: the sequence number of the
/// next event to take. The subscriber moves it on when it takes an event
/// ([`take`](Self::take)), a publisher when it drops one (the reader is
/// `capacity` behind: [`drop_oldest`](Self::drop_oldest)); both with a
/// compare-and-swap, so that a take and a drop of the same event are
/// settled by one of them winning.
pub(super) struct Position(AtomicU64);

impl Position {
    fn new(seq: u64) -> Self {
        Position(AtomicU64::new(seq))
    }

    #[inline]
    pub(super) fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Takes the event at `seq`: moves the position from `seq` to the next
    /// event. `false` if it was not at `seq` (a publisher dropped the event).
    #[inline]
    pub(super) fn take(&self, seq: u64) -> bool {
        self.0
            .compare_exchange(seq, seq + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Drops the reader's oldest events until it is at most `capacity`
    /// behind `head`. `pos` is where the position was last seen, and is
    /// left where the reader is. Returns the number of events dropped.
    #[inline]
    fn drop_oldest(&self, pos: &mut u64, head: u64, capacity: u64) -> usize {
        let mut dropped = 0;
        // The reader may take its oldest event meanwhile: then the
        // exchange fails and its position is looked at again.
        while head - *pos > capacity {
            match self
                .0
                .compare_exchange_weak(*pos, *pos + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    dropped += 1;
                    *pos += 1;
                }
                Err(now) => *pos = now,
            }
        }
        dropped
    }
}

/// The subscribers with one filter (hence one anchor and pattern): they see
/// the same sequence of events, kept once in `ring`, each reading it at its
/// own position.
pub(crate) struct Group {
    pub(super) filter: EventFilter,
    /// The metric handles of the namespace the group is anchored at.
    pub(super) metrics: Arc<NsMetrics>,
    ring: Mutex<Ring>,
    /// The hub's counters, where `ring`'s counts go when its last reader
    /// leaves.
    pub(super) stats: Arc<AtomicStats>,
}

#[derive(Default)]
pub(super) struct Ring {
    /// The sequence number of the next event.
    pub(super) head: u64,
    /// The segments from the one holding the oldest position of a reader to
    /// the newest; older ones are released.
    segments: VecDeque<Arc<Segment>>,
    pub(super) readers: Vec<Reader>,
    /// The hub was closed: nothing more is appended.
    pub(super) closed: bool,
    /// Events handed to readers and dropped from them, and local publishes
    /// whose last receiving group this was, counted under the lock a
    /// publish holds anyway (no atomic per publish).
    pub(super) delivered: u64,
    pub(super) dropped: u64,
    pub(super) published: u64,
}

impl Ring {
    /// The segment holding `seq`, if it is still kept.
    pub(super) fn segment_of(&self, seq: u64) -> Option<Arc<Segment>> {
        self.segments.iter().rev().find(|s| s.covers(seq)).cloned()
    }
}

/// A subscriber as its group's publishers see it.
pub(super) struct Reader {
    pub(super) id: u64,
    /// Shared with [`Slot::pos`](super::Slot::pos).
    pos: Arc<Position>,
    capacity: u64,
    pub(super) waker: Option<Waker>,
    pub(super) closed: bool,
}

/// What one append did.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) delivered: usize,
    pub(super) dropped: usize,
    /// The publish was counted in the group's ring.
    pub(super) published: bool,
}

impl Group {
    pub(super) fn new(
        filter: EventFilter,
        metrics: Arc<NsMetrics>,
        stats: Arc<AtomicStats>,
    ) -> Self {
        Group {
            filter,
            metrics,
            ring: Mutex::new(Ring::default()),
            stats,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Ring> {
        lock(&self.ring)
    }

    /// Adds the reader `id`, reading the events appended from now on.
    /// Returns its position and the sequence number it starts at.
    pub(super) fn join(&self, id: u64, capacity: u64) -> (Arc<Position>, u64) {
        let mut ring = self.lock();
        let start = ring.head;
        let closed = ring.closed;
        let pos = Arc::new(Position::new(start));
        ring.readers.push(Reader {
            id,
            pos: Arc::clone(&pos),
            capacity,
            waker: None,
            closed,
        });
        (pos, start)
    }

    /// Closes the group: nothing more is appended. Returns the wakers of
    /// the waiting readers, for the caller to wake once the lock is
    /// released.
    pub(super) fn close(&self) -> Vec<Waker> {
        let mut ring = self.lock();
        ring.closed = true;
        ring.readers
            .iter_mut()
            .filter_map(|r| r.waker.take())
            .collect()
    }

    /// Whether the filter passes `event`. `pattern_checked` says the caller
    /// already knows the namespace pattern covers `namespace` (the index
    /// lookup did that), so only types and actor prefix are checked.
    pub(super) fn passes(
        &self,
        namespace: &Namespace,
        event: &Event,
        pattern_checked: bool,
    ) -> bool {
        let f = &self.filter;
        if pattern_checked {
            f.event_types
                .as_ref()
                .is_none_or(|t| t.contains(&*event.event_type))
                && f.actor_prefix
                    .as_ref()
                    .is_none_or(|p| event.actor_id.as_str().starts_with(p.as_str()))
        } else {
            f.matches(namespace, event)
        }
    }

    /// Appends `event` to the group's sequence (the caller checked the
    /// filter) and moves every reader that is `capacity` events behind one
    /// event on: its oldest is dropped. The wakers of waiting readers are
    /// pushed to `wakers`, for the caller to wake once the lock is released.
    ///
    /// With `count_publish`, the publish is counted in the group's ring if
    /// the event is appended ([`Tally::published`]).
    pub(super) fn append(
        &self,
        namespace: &Namespace,
        event: Arc<Event>,
        count_publish: bool,
        wakers: &mut Vec<Waker>,
    ) -> Tally {
        let mut ring = self.lock();
        let ring = &mut *ring;
        if ring.closed || !ring.readers.iter().any(|r| !r.closed) {
            return Tally::default();
        }
        if count_publish {
            ring.published += 1;
        }
        let seq = ring.head;
        if !ring.segments.back().is_some_and(|last| last.covers(seq)) {
            let segment = Segment::new(seq);
            if let Some(last) = ring.segments.back() {
                let _ = last.next.set(Arc::downgrade(&segment));
            }
            ring.segments.push_back(segment);
        }
        if let Some(last) = ring.segments.back()
            && let Some(slot) = last.events.get((seq - last.start) as usize)
        {
            // Each sequence number is written once, under the lock.
            let namespace = match self.filter.namespaces {
                NamespacePattern::Exact(_) => None,
                _ => Some(namespace.clone()),
            };
            let _ = slot.set(Entry { namespace, event });
        }
        let head = seq + 1;
        ring.head = head;

        let mut tally = Tally::default();
        let mut oldest = head;
        for reader in &mut ring.readers {
            let mut pos = reader.pos.load();
            if !reader.closed {
                tally.delivered += 1;
                tally.dropped += reader.pos.drop_oldest(&mut pos, head, reader.capacity);
                if let Some(w) = reader.waker.take() {
                    wakers.push(w);
                }
            }
            oldest = oldest.min(pos);
        }
        ring.delivered += tally.delivered as u64;
        ring.dropped += tally.dropped as u64;
        tally.published = count_publish;
        // Release the segments every reader is past.
        while ring.segments.len() > 1
            && ring
                .segments
                .front()
                .is_some_and(|s| s.start + SEGMENT <= oldest)
        {
            ring.segments.pop_front();
        }
        tally
    }
}
