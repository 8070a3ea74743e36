//! The subscription index: which groups a local publish reaches, and the
//! published counter of each namespace published in.
//!
//! * Subscribers with the same filter form a [`Group`]. The index maps a
//!   namespace to the groups anchored at it (`Exact` and `Within` patterns
//!   separately) and to the namespace's published counter, behind one
//!   `RwLock`. A publisher holds the read lock for its whole offer, so
//!   publishers share it and never wait for each other; subscribing and
//!   unsubscribing take the write lock for a vector push or removal.
//! * A publish in `acme.orders.eu` looks up `acme.orders.eu` (its counter, its
//!   exact and within groups) and then each ancestor, `acme.orders` and
//!   `acme` (within groups only), skipping the depths at which no `Within`
//!   group is anchored: at most one hash lookup per segment, whatever the
//!   number of namespaces, and one when no ancestor has subscribers. Lookups
//!   compare whole segments, so `acme` can never reach `acme-corp`. The
//!   filter's types and actor prefix are checked once per group, not per
//!   subscriber.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;

use aether_core::{BusError, Event, Namespace, NamespacePattern};
use foldhash::fast::RandomState;
use metrics::Counter;

#[cfg(doc)]
use super::Hub;
use super::ring::Group;
use super::stats::{AtomicStats, METRICS_CACHE_LIMIT, published_counter};

/// What the index keeps for one namespace: the groups of subscribers
/// anchored at it and, once something was published in it, its published
/// counter.
#[derive(Default)]
pub(super) struct Topic {
    exact: Vec<Arc<Group>>,
    within: Vec<Arc<Group>>,
    /// `aether_bus_published_total` for this namespace (see
    /// [`Index::counters`]).
    published: Option<Counter>,
}

impl Topic {
    fn is_unused(&self) -> bool {
        self.exact.is_empty() && self.within.is_empty() && self.published.is_none()
    }
}

#[derive(Default)]
pub(super) struct Index {
    topics: HashMap<Namespace, Topic, RandomState>,
    /// The number of `Within` groups by the number of segments of their
    /// anchor: a publish looks up an ancestor only at a depth where some
    /// are anchored.
    within_at_depth: Vec<u32>,
    /// Their sum: with none, a publish looks no ancestor up.
    within_groups: usize,
    /// Topics holding a published counter, at most
    /// [`METRICS_CACHE_LIMIT`]; past it a publish makes its handle per call.
    counters: usize,
}

impl Index {
    fn has_within_at(&self, depth: usize) -> bool {
        self.within_at_depth.get(depth).is_some_and(|&n| n > 0)
    }

    /// The topic of the namespace named `name`, if it has one.
    #[inline]
    pub(super) fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    /// Adds `group` to the groups anchored at its pattern's root. Returns
    /// whether it was added (`false`: it was there already).
    ///
    /// # Errors
    /// [`BusError::Unavailable`] for a namespace pattern this crate does
    /// not know.
    pub(super) fn insert(&mut self, group: &Arc<Group>) -> Result<bool, BusError> {
        let (anchor, within) = match &group.filter.namespaces {
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
        let topic = self.topics.entry(anchor.clone()).or_default();
        let list = if within {
            &mut topic.within
        } else {
            &mut topic.exact
        };
        if list.iter().any(|g| Arc::ptr_eq(g, group)) {
            return Ok(false);
        }
        list.push(Arc::clone(group));
        if within {
            let depth = depth(anchor);
            if self.within_at_depth.len() <= depth {
                self.within_at_depth.resize(depth + 1, 0);
            }
            self.within_at_depth[depth] += 1;
            self.within_groups += 1;
        }
        Ok(true)
    }

    /// Takes `group` out of the index. Returns the number of entries
    /// removed (0 if it was not in it).
    pub(super) fn remove(&mut self, group: &Arc<Group>) -> usize {
        let anchor = group.filter.namespaces.root();
        let MapEntry::Occupied(mut e) = self.topics.entry(anchor.clone()) else {
            return 0;
        };
        let topic = e.get_mut();
        let before = topic.exact.len() + topic.within.len();
        topic.exact.retain(|g| !Arc::ptr_eq(g, group));
        let within = topic.within.len();
        topic.within.retain(|g| !Arc::ptr_eq(g, group));
        let gone = within - topic.within.len();
        let removed = before - topic.exact.len() - topic.within.len();
        if gone > 0
            && let Some(n) = self.within_at_depth.get_mut(depth(anchor))
        {
            *n = n.saturating_sub(gone as u32);
            self.within_groups = self.within_groups.saturating_sub(gone);
        }
        if topic.is_unused() {
            e.remove();
        }
        removed
    }

    /// Counts one publish in `namespace`, whose topic is `topic`, on its
    /// published counter: the one the index keeps or, once it keeps
    /// [`METRICS_CACHE_LIMIT`], one made for this call. Returns `false`,
    /// counting nothing, when the namespace has no counter yet and the
    /// index has room for it: the caller then adds it
    /// ([`add_published_counter`](Self::add_published_counter)).
    #[inline]
    pub(super) fn count_publish(&self, topic: Option<&Topic>, namespace: &Namespace) -> bool {
        if let Some(counter) = topic.and_then(|t| t.published.as_ref()) {
            counter.increment(1);
        } else if self.counters >= METRICS_CACHE_LIMIT {
            published_counter(namespace).increment(1);
        } else {
            return false;
        }
        true
    }

    /// Registers `namespace`'s published counter, counts one publish on it
    /// and keeps it in the index for the next publishes.
    pub(super) fn add_published_counter(&mut self, namespace: &Namespace) {
        if let Some(counter) = self
            .topics
            .get(namespace.as_str())
            .and_then(|t| t.published.as_ref())
        {
            counter.increment(1);
            return;
        }
        let counter = published_counter(namespace);
        counter.increment(1);
        if self.counters < METRICS_CACHE_LIMIT {
            self.counters += 1;
            self.topics.entry(namespace.clone()).or_default().published = Some(counter);
        }
    }

    /// Appends `event`, published in `namespace` (whose topic is `topic`),
    /// to every group whose filter passes it: those anchored at `namespace`
    /// and the `Within` groups of its ancestors. Counts the publish for
    /// [`Hub::stats`]; returns the number of subscribers reached and the
    /// wakers of those that were waiting, to wake once the index is
    /// released.
    pub(super) fn fan_out(
        &self,
        topic: Option<&Topic>,
        namespace: &Namespace,
        event: Arc<Event>,
        stats: &AtomicStats,
    ) -> (usize, Vec<Waker>) {
        let name = namespace.as_str();
        let mut fanout = Fanout::new();
        if let Some(topic) = topic {
            let groups = topic.exact.iter().chain(&topic.within);
            fanout.offer(groups, namespace, &event, true);
        }
        let ancestors = if self.within_groups > 0 {
            name.match_indices('.')
        } else {
            "".match_indices('.')
        };
        for (depth, (at, _)) in ancestors.enumerate() {
            if !self.has_within_at(depth + 1) {
                continue;
            }
            if let Some(topic) = self.topics.get(&name[..at]) {
                fanout.offer(&topic.within, namespace, &event, true);
            }
        }
        fanout.finish(stats, namespace, event)
    }
}

fn depth(namespace: &Namespace) -> usize {
    namespace.as_str().bytes().filter(|&b| b == b'.').count() + 1
}

/// Appends an event to each group whose filter passes it. The event's
/// `Arc` is cloned for every group but the last, which gets the caller's:
/// each offer is held back until the next one, or [`finish`](Self::finish).
struct Fanout<'a> {
    held: Option<&'a Group>,
    delivered: usize,
    wakers: Vec<Waker>,
}

impl<'a> Fanout<'a> {
    fn new() -> Self {
        Fanout {
            held: None,
            delivered: 0,
            wakers: Vec::new(),
        }
    }

    fn offer(
        &mut self,
        groups: impl IntoIterator<Item = &'a Arc<Group>>,
        namespace: &Namespace,
        event: &Arc<Event>,
        pattern_checked: bool,
    ) {
        for group in groups {
            if group.passes(namespace, event, pattern_checked)
                && let Some(prev) = self.held.replace(group)
            {
                let tally = prev.append(namespace, Arc::clone(event), false, &mut self.wakers);
                self.delivered += prev.metrics.account(tally);
            }
        }
    }

    /// Appends to the last group offered, which counts the publish for
    /// [`Hub::stats`] (else `stats` does); returns the number of
    /// subscribers reached and the wakers to wake.
    fn finish(
        mut self,
        stats: &AtomicStats,
        namespace: &Namespace,
        event: Arc<Event>,
    ) -> (usize, Vec<Waker>) {
        let mut counted = false;
        if let Some(last) = self.held.take() {
            let tally = last.append(namespace, event, true, &mut self.wakers);
            counted = tally.published;
            self.delivered += last.metrics.account(tally);
        }
        if !counted {
            stats.published.fetch_add(1, Ordering::Relaxed);
        }
        (self.delivered, self.wakers)
    }
}
