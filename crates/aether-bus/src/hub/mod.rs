//! The in-process fan-out shared by every bus: the subscription index, the
//! subscriber groups and their event rings, the [`Subscription`] stream,
//! statistics and metrics.
//!
//! # Data structure
//!
//! Subscribers with the same filter form a [`Group`], which keeps the events
//! that passed its filter once, in a ring of write-once segments that each
//! subscriber reads at its own position ([`ring`]). An index from namespace
//! to groups leads a local publish to the groups it reaches ([`index`]); a
//! [`Subscription`] takes events from its group's ring without a lock and
//! waits when none is left ([`subscription`]); what is published, delivered
//! and dropped is counted for [`BusStats`] and the metrics ([`stats`]). The
//! [`Hub`] holds the index and the live groups and ties them together:
//! subscribing, unsubscribing, publishing and closing.

mod index;
mod ring;
mod stats;
mod subscription;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::task::Waker;

use aether_core::{BusError, Event, EventFilter, Namespace};
use metrics::Counter;

use self::index::Index;
use self::ring::Group;
pub use self::stats::BusStats;
#[cfg(feature = "nats")]
pub(crate) use self::stats::published_counter;
use self::stats::{AtomicStats, MetricsCache, NsMetrics};
#[cfg(feature = "nats")]
pub(crate) use self::subscription::Pump;
pub use self::subscription::Subscription;
pub(crate) use self::subscription::{Detach, Slot};

/// The default capacity of a subscriber's queue, in events.
pub const DEFAULT_CAPACITY: usize = 1024;

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

/// The fan-out core of a bus.
pub(crate) struct Hub {
    index: RwLock<Index>,
    /// The number of groups in the index, changed under its write lock: a
    /// publish that reads 0 has no local subscriber to reach, and needs
    /// neither the index nor an `Arc` for the event.
    indexed: AtomicUsize,
    /// The live groups by anchor namespace (see [`Group`]).
    groups: Mutex<HashMap<Namespace, Vec<Weak<Group>>>>,
    next_id: AtomicU64,
    capacity: usize,
    closed: AtomicBool,
    pub(crate) stats: Arc<AtomicStats>,
    /// Delivered and dropped counts by subscription anchor.
    metrics: MetricsCache<NsMetrics>,
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Self {
        Hub {
            index: RwLock::new(Index::default()),
            indexed: AtomicUsize::new(0),
            groups: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            capacity: capacity.max(1),
            closed: AtomicBool::new(false),
            stats: Arc::new(AtomicStats::default()),
            metrics: MetricsCache::new(NsMetrics::new),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The hub's counters plus those of the live groups, summed while no
    /// group's counts move to the hub's.
    pub(crate) fn stats(&self) -> BusStats {
        let _retire = lock(&self.stats.retire);
        let groups: Vec<Arc<Group>> = lock(&self.groups)
            .values()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect();
        let mut stats = self.stats.snapshot();
        for group in &groups {
            let ring = group.lock();
            stats.delivered += ring.delivered;
            stats.dropped += ring.dropped;
            stats.published += ring.published;
        }
        stats
    }

    /// Creates a subscriber slot, reading its group's events from now on
    /// (its group reaches local publishes once [`insert`](Self::insert)ed).
    pub(crate) fn new_slot(&self, filter: EventFilter, capacity: Option<usize>) -> Arc<Slot> {
        let capacity = capacity.unwrap_or(self.capacity).max(1);
        let group = {
            let mut groups = lock(&self.groups);
            let anchor = filter.namespaces.root();
            let found = groups.get_mut(anchor).and_then(|list| {
                list.retain(|w| w.strong_count() > 0);
                list.iter()
                    .filter_map(Weak::upgrade)
                    .find(|g| g.filter == filter)
            });
            match found {
                Some(group) => group,
                None => {
                    // Forget the anchors nobody subscribes to any more, now
                    // and then (amortised over the inserts).
                    if groups.len() >= 64 && groups.len().is_power_of_two() {
                        groups.retain(|_, list| list.iter().any(|w| w.strong_count() > 0));
                    }
                    let metrics = self.metrics.get(anchor);
                    let group = Arc::new(Group::new(filter, metrics, Arc::clone(&self.stats)));
                    groups
                        .entry(group.filter.namespaces.root().clone())
                        .or_default()
                        .push(Arc::downgrade(&group));
                    group
                }
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Arc::new(Slot::join(id, capacity, group))
    }

    /// Adds `slot`'s group to the index, so local publishes reach it.
    ///
    /// # Errors
    /// [`BusError::Closed`] if the hub was closed.
    pub(crate) fn insert(&self, slot: &Arc<Slot>) -> Result<(), BusError> {
        let mut index = write(&self.index);
        // Checked under the write lock, so `close` cannot miss this slot.
        if self.is_closed() {
            return Err(BusError::Closed);
        }
        if index.insert(&slot.group)? {
            self.indexed.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Takes `slot` out of its group, and the group out of the index when
    /// it was the last one in it.
    pub(crate) fn remove(&self, slot: &Arc<Slot>) {
        let mut index = write(&self.index);
        if !slot.leave() {
            return;
        }
        let removed = index.remove(&slot.group);
        self.indexed.fetch_sub(removed, Ordering::Release);
    }

    /// Closes the hub: every subscription ends after its queued events, and
    /// later publishes and subscribes fail with [`BusError::Closed`].
    pub(crate) fn close(&self) {
        let old = {
            let mut guard = write(&self.index);
            self.closed.store(true, Ordering::Release);
            self.indexed.store(0, Ordering::Release);
            std::mem::take(&mut *guard)
        };
        // Every group, inserted or not yet.
        let groups: Vec<Arc<Group>> = lock(&self.groups)
            .values()
            .flatten()
            .filter_map(Weak::upgrade)
            .collect();
        for group in groups {
            let wakers = group.close();
            for w in wakers {
                w.wake();
            }
        }
        drop(old);
    }

    /// Counts one publish in `namespace` and delivers `event` to every local
    /// subscriber whose filter passes it. Returns the number of subscribers
    /// that received it.
    pub(crate) fn publish_local(&self, namespace: &Namespace, event: Arc<Event>) -> usize {
        let name = namespace.as_str();
        let mut index = read(&self.index);
        let mut topic = index.topic(name);
        if !index.count_publish(topic, namespace) {
            // The first publish in this namespace: keep its counter in the
            // index, beside its subscribers.
            drop(index);
            write(&self.index).add_published_counter(namespace);
            index = read(&self.index);
            topic = index.topic(name);
        }
        let (delivered, wakers) = index.fan_out(topic, namespace, event, &self.stats);
        drop(index);
        for w in wakers {
            w.wake();
        }
        delivered
    }

    /// Whether some local subscriber group may receive a publish. While
    /// none is indexed, a publish only counts itself
    /// ([`count_unreceived`](Self::count_unreceived)): a group indexed
    /// before the publish began is always seen.
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "used by the NATS bus")
    )]
    pub(crate) fn has_groups(&self) -> bool {
        self.indexed.load(Ordering::Acquire) > 0
    }

    /// Counts a publish no local subscriber received, on `published` (the
    /// namespace's `aether_bus_published_total`) and in [`stats`](Self::stats):
    /// what [`publish_local`](Self::publish_local) does when no group is
    /// indexed.
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "used by the NATS bus")
    )]
    pub(crate) fn count_unreceived(&self, published: &Counter) {
        published.increment(1);
        self.stats.published.fetch_add(1, Ordering::Relaxed);
    }

    /// Delivers `event` to those of `slots` whose filter passes it (remote
    /// deliveries, which go to one group of subscribers; the filter is
    /// checked in full, namespace pattern included), once per [`Group`].
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
        let mut delivered = 0;
        for (i, slot) in slots.iter().enumerate() {
            let group = &slot.group;
            // Each group once, at its first subscriber in `slots` (a scan
            // rather than a set: no allocation per event, and the slots of
            // one pattern are few groups, usually one).
            if slots[..i].iter().any(|s| Arc::ptr_eq(&s.group, group)) {
                continue;
            }
            if group.passes(namespace, event, false) {
                let tally = group.append(namespace, Arc::clone(event), false, wakers);
                delivered += group.metrics.account(tally);
            }
        }
        delivered
    }
}
