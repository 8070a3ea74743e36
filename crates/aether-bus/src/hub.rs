//! The in-process fan-out shared by every bus: the subscription index, the
//! per-subscriber bounded queues, the [`Subscription`] stream, statistics and
//! metrics.
//!
//! # Data structure
//!
//! * The index maps a namespace to the subscribers anchored at it (`Exact` and
//!   `Within` patterns separately). It is a copy-on-write snapshot behind an
//!   `RwLock<Arc<Index>>`: a publisher holds the read lock only long enough to
//!   clone the `Arc`, then works on its own snapshot, so publishers never hold a
//!   lock across subscribers' work and never wait for each other. Subscribing
//!   and unsubscribing take the write lock and modify the index in place
//!   (`Arc::make_mut` copies it only while a publisher still holds the old
//!   snapshot).
//! * A publish in `acme.orders.eu` looks up `acme.orders.eu` (exact and within
//!   subscribers) and then each ancestor, `acme.orders` and `acme` (within
//!   subscribers only): one hash lookup per segment, whatever the number of
//!   namespaces. Lookups compare whole segments, so `acme` can never reach
//!   `acme-corp`.
//! * Each subscriber has a bounded `VecDeque`. The queues of all subscribers
//!   anchored at one namespace live in one *shard* behind one mutex (held for
//!   the pushes of one publish or for one pop, never across an `.await`): a
//!   publish locks each anchor's shard once, whatever the number of its
//!   subscribers, and a push is then two reference-count increments (the
//!   namespace and the `Arc<Event>`) — the payload is never copied per
//!   subscriber. Waiting subscribers are woken after the lock is released. A
//!   full queue drops its *oldest* event and counts it; the subscriber's next
//!   poll yields [`BusError::Lagged`] with that count, then continues with
//!   the oldest event still queued — the semantics of
//!   `tokio::sync::broadcast`.
//! * Delivered and dropped counts are labelled by the subscriber's anchor,
//!   whose metric handles each subscriber keeps, so a publish looks nothing
//!   up per subscriber group.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::task::{Context, Poll, Waker};

use aether_core::{BusError, BusEvent, Event, EventFilter, Namespace, NamespacePattern};
use futures_core::Stream;
use metrics::Counter;

/// The default capacity of a subscriber's queue, in events.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Namespaces whose metric handles are cached; past this, handles are looked
/// up per call (correct, only slower), so a flood of namespaces cannot grow
/// memory without bound.
const METRICS_CACHE_LIMIT: usize = 4096;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; if it ever did, the data is
    // still consistent (plain pushes and pops), so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Counters of one bus instance since it was created (all subscribers, all
/// namespaces). The same numbers go to the `metrics` facade with a
/// `namespace` label; these are for callers and tests that have no recorder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Events published through this bus instance.
    pub published: u64,
    /// Events handed to a subscriber's queue (one per subscriber and event).
    pub delivered: u64,
    /// Events dropped from a full subscriber queue (reported to that
    /// subscriber as [`BusError::Lagged`]).
    pub dropped: u64,
    /// Messages received from the transport that were not a valid bus event
    /// and were dropped (always 0 for the local bus).
    pub decode_errors: u64,
    /// Messages received from the transport that this instance had published
    /// itself and that were therefore not delivered again.
    pub echoes_suppressed: u64,
}

#[derive(Default)]
pub(crate) struct AtomicStats {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) echoes_suppressed: AtomicU64,
}

impl AtomicStats {
    fn snapshot(&self) -> BusStats {
        BusStats {
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            echoes_suppressed: self.echoes_suppressed.load(Ordering::Relaxed),
        }
    }
}

/// FNV-1a hashing for the maps a publish looks namespaces up in (the index
/// and the metric caches). Namespaces are short, and these maps are keyed
/// only by what this process publishes in and subscribes to — never by a
/// namespace received from another node — so a keyed hash would buy no
/// protection here, only time on every publish.
#[derive(Default, Clone, Copy)]
struct Fnv;

struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

/// Metric handles of the subscriptions anchored at one namespace.
struct NsMetrics {
    delivered: Counter,
    dropped: Counter,
}

impl NsMetrics {
    fn new(anchor: &Namespace) -> Self {
        let ns = anchor.as_str().to_owned();
        NsMetrics {
            delivered: metrics::counter!("aether_bus_delivered_total", "namespace" => ns.clone()),
            dropped: metrics::counter!("aether_bus_dropped_total", "namespace" => ns),
        }
    }
}

/// Metric handles by namespace, created on first use by `make`.
struct MetricsCache<T> {
    map: RwLock<HashMap<Namespace, Arc<T>, Fnv>>,
    make: fn(&Namespace) -> T,
}

impl<T> MetricsCache<T> {
    fn new(make: fn(&Namespace) -> T) -> Self {
        MetricsCache {
            map: RwLock::new(HashMap::default()),
            make,
        }
    }

    /// Runs `f` on the handles of `namespace` (under the read lock when
    /// they are cached: no reference count is touched).
    fn with<R>(&self, namespace: &Namespace, f: impl FnOnce(&T) -> R) -> R {
        if let Some(m) = read(&self.map).get(namespace.as_str()) {
            return f(m);
        }
        f(&self.get(namespace))
    }

    fn get(&self, namespace: &Namespace) -> Arc<T> {
        if let Some(m) = read(&self.map).get(namespace.as_str()) {
            return Arc::clone(m);
        }
        let mut map = write(&self.map);
        if map.len() >= METRICS_CACHE_LIMIT {
            return Arc::new((self.make)(namespace));
        }
        Arc::clone(
            map.entry(namespace.clone())
                .or_insert_with(|| Arc::new((self.make)(namespace))),
        )
    }
}

fn published_counter(namespace: &Namespace) -> Counter {
    metrics::counter!("aether_bus_published_total", "namespace" => namespace.as_str().to_owned())
}

/// The queues of the subscribers anchored at one namespace, behind one
/// lock: a publish locks it once for all of them, not once per subscriber.
#[derive(Default)]
pub(crate) struct Shard {
    inner: Mutex<ShardInner>,
}

#[derive(Default)]
struct ShardInner {
    /// Indexed by [`Slot::at`]; entries of dropped slots are reused.
    states: Vec<SlotState>,
    free: Vec<usize>,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ShardInner> {
        lock(&self.inner)
    }
}

/// One subscriber: its filter, and where its bounded queue is.
pub(crate) struct Slot {
    id: u64,
    filter: EventFilter,
    capacity: usize,
    shard: Arc<Shard>,
    /// The index of this subscriber's queue in its shard.
    at: usize,
    /// The metric handles of the namespace the subscription is anchored at.
    metrics: Arc<NsMetrics>,
}

#[derive(Default)]
struct SlotState {
    queue: VecDeque<BusEvent>,
    missed: u64,
    waker: Option<Waker>,
    closed: bool,
}

enum Offer {
    Filtered,
    Delivered,
    /// Delivered, and the oldest queued event was dropped.
    DeliveredDropping,
}

impl Slot {
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "used by the NATS bus")
    )]
    pub(crate) fn filter(&self) -> &EventFilter {
        &self.filter
    }

    /// Whether the filter passes `event`. `pattern_checked` says the caller
    /// already knows the namespace pattern covers `namespace` (the index
    /// lookup did that), so only types and actor prefix are checked.
    fn passes(&self, namespace: &Namespace, event: &Event, pattern_checked: bool) -> bool {
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

    /// Queues `event` in this slot's state (the caller holds its shard's
    /// lock and checked the filter). The waker of a waiting subscriber is
    /// pushed to `wakers`, for the caller to wake once the lock is released.
    fn push(
        &self,
        shard: &mut ShardInner,
        namespace: &Namespace,
        event: &Arc<Event>,
        wakers: &mut Vec<Waker>,
    ) -> Offer {
        let Some(st) = shard.states.get_mut(self.at) else {
            return Offer::Filtered;
        };
        if st.closed {
            return Offer::Filtered;
        }
        let dropped = st.queue.len() >= self.capacity;
        if dropped {
            st.missed = st.missed.saturating_add(1);
            st.queue.pop_front();
        }
        st.queue.push_back(BusEvent {
            namespace: namespace.clone(),
            event: Arc::clone(event),
        });
        if let Some(w) = st.waker.take() {
            wakers.push(w);
        }
        if dropped {
            Offer::DeliveredDropping
        } else {
            Offer::Delivered
        }
    }

    /// Runs `f` on this slot's state under its shard's lock.
    fn with_state<R>(&self, f: impl FnOnce(&mut SlotState) -> R) -> Option<R> {
        self.shard.lock().states.get_mut(self.at).map(f)
    }

    /// Wakes the subscriber's task if it is waiting (used by the NATS bus
    /// when messages arrive for its group).
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "used by the NATS bus")
    )]
    pub(crate) fn wake_waiting(&self) {
        if let Some(w) = self.with_state(|st| st.waker.take()).flatten() {
            w.wake();
        }
    }

    pub(crate) fn close(&self) {
        let waker = self
            .with_state(|st| {
                st.closed = true;
                st.waker.take()
            })
            .flatten();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Frees the queue (and the events in it) and lets a new subscriber
        // of the shard reuse the entry.
        let old = {
            let mut shard = self.shard.lock();
            let old = shard
                .states
                .get_mut(self.at)
                .map(std::mem::take)
                .unwrap_or_default();
            shard.free.push(self.at);
            old
        };
        drop(old);
    }
}

/// Offers `event` to each of `slots` whose filter passes it, locking each
/// shard once for a run of slots that share it (all the slots of one
/// anchor do). Wakers go to `wakers`.
fn offer_all<'a>(
    slots: impl IntoIterator<Item = &'a Arc<Slot>>,
    namespace: &Namespace,
    event: &Arc<Event>,
    pattern_checked: bool,
    wakers: &mut Vec<Waker>,
) -> Tally<'a> {
    let mut tally = Tally::default();
    let mut held: Option<(&'a Arc<Shard>, MutexGuard<'a, ShardInner>)> = None;
    for slot in slots {
        if !slot.passes(namespace, event, pattern_checked) {
            continue;
        }
        let same = held
            .as_ref()
            .is_some_and(|(shard, _)| Arc::ptr_eq(shard, &slot.shard));
        if !same {
            // Never two shard locks at once.
            drop(held.take());
            held = Some((&slot.shard, slot.shard.lock()));
        }
        if let Some((_, guard)) = held.as_mut() {
            tally.add(slot.push(guard, namespace, event, wakers));
            tally.metrics.get_or_insert(&slot.metrics);
        }
    }
    tally
}

/// Subscribers of one anchor namespace.
#[derive(Default, Clone)]
struct Topic {
    exact: Vec<Arc<Slot>>,
    within: Vec<Arc<Slot>>,
}

impl Topic {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.within.is_empty()
    }
}

#[derive(Default, Clone)]
struct Index {
    topics: HashMap<Namespace, Topic, Fnv>,
}

/// The fan-out core of a bus.
pub(crate) struct Hub {
    index: RwLock<Arc<Index>>,
    /// The live shard of each anchor namespace (see [`Shard`]).
    shards: Mutex<HashMap<Namespace, Weak<Shard>>>,
    next_id: AtomicU64,
    capacity: usize,
    closed: AtomicBool,
    pub(crate) stats: AtomicStats,
    /// `aether_bus_published_total` by the namespace published in.
    published: MetricsCache<Counter>,
    /// Delivered and dropped counts by subscription anchor.
    metrics: MetricsCache<NsMetrics>,
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Self {
        Hub {
            index: RwLock::new(Arc::new(Index::default())),
            shards: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            stats: AtomicStats::default(),
            published: MetricsCache::new(published_counter),
            metrics: MetricsCache::new(NsMetrics::new),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> BusStats {
        self.stats.snapshot()
    }

    /// Creates a subscriber slot (not yet in the index).
    pub(crate) fn new_slot(&self, filter: EventFilter, capacity: Option<usize>) -> Arc<Slot> {
        let capacity = capacity.unwrap_or(self.capacity).max(1);
        let shard = {
            let mut shards = lock(&self.shards);
            let anchor = filter.namespaces.root();
            match shards.get(anchor).and_then(Weak::upgrade) {
                Some(shard) => shard,
                None => {
                    // Forget the shards of anchors nobody subscribes to any
                    // more, now and then (amortised over the inserts).
                    if shards.len() >= 64 && shards.len().is_power_of_two() {
                        shards.retain(|_, w| w.strong_count() > 0);
                    }
                    let shard = Arc::new(Shard::default());
                    shards.insert(anchor.clone(), Arc::downgrade(&shard));
                    shard
                }
            }
        };
        let state = SlotState {
            queue: VecDeque::with_capacity(capacity.min(64)),
            ..SlotState::default()
        };
        let at = {
            let mut inner = shard.lock();
            match inner.free.pop() {
                Some(at) => {
                    inner.states[at] = state;
                    at
                }
                None => {
                    inner.states.push(state);
                    inner.states.len() - 1
                }
            }
        };
        let metrics = self.metrics.get(filter.namespaces.root());
        Arc::new(Slot {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            filter,
            capacity,
            shard,
            at,
            metrics,
        })
    }

    /// Adds `slot` to the index, so local publishes reach it.
    ///
    /// # Errors
    /// [`BusError::Closed`] if the hub was closed.
    pub(crate) fn insert(&self, slot: &Arc<Slot>) -> Result<(), BusError> {
        let mut guard = write(&self.index);
        // Checked under the write lock, so `close` cannot miss this slot.
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        let index = Arc::make_mut(&mut guard);
        let (anchor, within) = match &slot.filter.namespaces {
            NamespacePattern::Exact(ns) => (ns, false),
            NamespacePattern::Within(ns) => (ns, true),
            // `NamespacePattern` is non-exhaustive: a pattern this crate does
            // not know is refused rather than guessed at.
            _ => {
                return Err(BusError::Unavailable {
                    message: "unsupported namespace pattern".to_owned(),
                    source: None,
                });
            }
        };
        let topic = index.topics.entry(anchor.clone()).or_default();
        if within {
            topic.within.push(Arc::clone(slot));
        } else {
            topic.exact.push(Arc::clone(slot));
        }
        Ok(())
    }

    /// Removes `slot` from the index and closes it.
    pub(crate) fn remove(&self, slot: &Arc<Slot>) {
        slot.close();
        let mut guard = write(&self.index);
        let index = Arc::make_mut(&mut guard);
        let anchor = slot.filter.namespaces.root();
        if let Entry::Occupied(mut e) = index.topics.entry(anchor.clone()) {
            let topic = e.get_mut();
            topic.exact.retain(|s| s.id != slot.id);
            topic.within.retain(|s| s.id != slot.id);
            if topic.is_empty() {
                e.remove();
            }
        }
    }

    /// Closes the hub: every subscription ends after its queued events, and
    /// later publishes and subscribes fail with [`BusError::Closed`].
    pub(crate) fn close(&self) {
        let old = {
            let mut guard = write(&self.index);
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *guard)
        };
        for topic in old.topics.values() {
            for slot in topic.exact.iter().chain(&topic.within) {
                slot.close();
            }
        }
    }

    /// Counts one publish in `namespace` and delivers `event` to every local
    /// subscriber whose filter passes it. Returns the number of subscribers
    /// that received it.
    pub(crate) fn publish_local(&self, namespace: &Namespace, event: &Arc<Event>) -> usize {
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        self.published.with(namespace, |c| c.increment(1));

        let index = Arc::clone(&read(&self.index));
        if index.topics.is_empty() {
            return 0;
        }
        let name = namespace.as_str();
        let mut delivered = 0;
        let mut wakers = Vec::new();
        if let Some(topic) = index.topics.get(name) {
            let slots = topic.exact.iter().chain(&topic.within);
            delivered += self.account(offer_all(slots, namespace, event, true, &mut wakers));
        }
        for (at, _) in name.match_indices('.') {
            if let Some(topic) = index.topics.get(&name[..at]) {
                delivered += self.account(offer_all(
                    &topic.within,
                    namespace,
                    event,
                    true,
                    &mut wakers,
                ));
            }
        }
        drop(index);
        for w in wakers {
            w.wake();
        }
        delivered
    }

    /// Delivers `event` to those of `slots` whose filter passes it (remote
    /// deliveries, which go to one group of subscribers; the filter is
    /// checked in full, namespace pattern included).
    ///
    /// Subscribers are not woken here: the wakers of those that were waiting
    /// are pushed to `wakers`, so that a caller delivering a batch of events
    /// wakes each subscriber once per batch rather than once per event.
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "used by the NATS bus")
    )]
    pub(crate) fn deliver_to(
        &self,
        slots: &[Arc<Slot>],
        namespace: &Namespace,
        event: &Arc<Event>,
        wakers: &mut Vec<Waker>,
    ) -> usize {
        self.account(offer_all(slots, namespace, event, false, wakers))
    }

    /// Counts `tally`'s deliveries and drops under the `namespace` label of
    /// the namespace the receiving subscriptions are anchored at (their
    /// pattern's root), never the namespace a message claims, so the label
    /// values are bounded by this node's own subscriptions.
    fn account(&self, tally: Tally<'_>) -> usize {
        let Some(metrics) = tally.metrics.filter(|_| tally.delivered > 0) else {
            return 0;
        };
        self.stats
            .delivered
            .fetch_add(tally.delivered as u64, Ordering::Relaxed);
        metrics.delivered.increment(tally.delivered as u64);
        if tally.dropped > 0 {
            self.stats
                .dropped
                .fetch_add(tally.dropped as u64, Ordering::Relaxed);
            metrics.dropped.increment(tally.dropped as u64);
        }
        tally.delivered
    }
}

/// What one run of offers did; the slots of one run share an anchor.
#[derive(Default)]
struct Tally<'a> {
    delivered: usize,
    dropped: usize,
    /// The anchor's handles, from a slot that received the event.
    metrics: Option<&'a NsMetrics>,
}

impl Tally<'_> {
    fn add(&mut self, offer: Offer) {
        match offer {
            Offer::Filtered => {}
            Offer::Delivered => self.delivered += 1,
            Offer::DeliveredDropping => {
                self.delivered += 1;
                self.dropped += 1;
            }
        }
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
    owner: Weak<dyn Detach>,
    pump: Option<Arc<dyn Pump>>,
}

impl Subscription {
    pub(crate) fn new(slot: Arc<Slot>, owner: Weak<dyn Detach>) -> Self {
        Subscription {
            slot,
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
        Subscription {
            slot,
            owner,
            pump: Some(pump),
        }
    }

    /// The next queued item, `Ready(None)` at the end, `Pending` when the
    /// queue is empty (registering `cx`'s waker if one is given).
    fn take(&self, cx: Option<&mut Context<'_>>) -> Poll<Option<Result<BusEvent, BusError>>> {
        let mut shard = self.slot.shard.lock();
        let Some(st) = shard.states.get_mut(self.slot.at) else {
            return Poll::Ready(None);
        };
        if st.missed > 0 {
            let missed = std::mem::take(&mut st.missed);
            return Poll::Ready(Some(Err(BusError::Lagged { missed })));
        }
        if let Some(event) = st.queue.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        if let Some(cx) = cx {
            match &mut st.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
        }
        Poll::Pending
    }

    fn pump(&self) {
        if let Some(p) = &self.pump {
            p.pump();
        }
    }

    /// The filter this subscription was created with.
    pub fn filter(&self) -> &EventFilter {
        &self.slot.filter
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
    pub fn try_recv(&mut self) -> Option<Result<BusEvent, BusError>> {
        if let Poll::Ready(item) = self.take(None) {
            return item;
        }
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
        self.slot.with_state(|st| st.queue.len()).unwrap_or(0)
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.slot.filter)
            .field("capacity", &self.slot.capacity)
            .finish_non_exhaustive()
    }
}

impl Stream for Subscription {
    type Item = Result<BusEvent, BusError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &*self;
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
        (self.slot.with_state(|st| st.queue.len()).unwrap_or(0), None)
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
