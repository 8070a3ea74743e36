//! What a hub counts: [`BusStats`] for callers, and the metric handles the
//! same counts go to.
//!
//! * Delivered, dropped and published counts for [`Hub::stats`] are kept in
//!   the group under the lock a publish holds anyway, and move to the hub's
//!   counters when the group's last reader leaves. The metrics are labelled
//!   by the group's anchor, whose handles the group keeps, so a publish
//!   looks nothing up per group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use aether_core::Namespace;
use foldhash::fast::RandomState;
use metrics::Counter;

#[cfg(doc)]
use super::Hub;
#[cfg(doc)]
use super::ring::Ring;
use super::ring::Tally;
use super::{read, write};

/// Namespaces whose metric handles are cached; past this, handles are looked
/// up per call (correct, only slower), so a flood of namespaces cannot grow
/// memory without bound.
pub(super) const METRICS_CACHE_LIMIT: usize = 4096;

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
    /// subscriber as [`BusError::Lagged`](aether_core::BusError::Lagged)).
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
    pub(super) published: AtomicU64,
    /// Deliveries and drops of groups no subscriber reads any more; those
    /// of live groups are counted in their [`Ring`] (see [`Hub::stats`]).
    pub(super) delivered: AtomicU64,
    pub(super) dropped: AtomicU64,
    /// Held while a group's counts move here, and while they are summed.
    /// (`published` counts, as they happen, the publishes no group
    /// received; the others are counted by the last group they reached.)
    pub(super) retire: Mutex<()>,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) echoes_suppressed: AtomicU64,
}

impl AtomicStats {
    pub(super) fn snapshot(&self) -> BusStats {
        BusStats {
            published: self.published.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            echoes_suppressed: self.echoes_suppressed.load(Ordering::Relaxed),
        }
    }
}

/// Metric handles of the subscriptions anchored at one namespace.
pub(super) struct NsMetrics {
    delivered: Counter,
    dropped: Counter,
}

impl NsMetrics {
    pub(super) fn new(anchor: &Namespace) -> Self {
        let ns = anchor.as_str().to_owned();
        NsMetrics {
            delivered: metrics::counter!("aether_bus_delivered_total", "namespace" => ns.clone()),
            dropped: metrics::counter!("aether_bus_dropped_total", "namespace" => ns),
        }
    }

    /// Counts `tally`'s deliveries and drops under the `namespace` label of
    /// the namespace the receiving subscriptions are anchored at (their
    /// pattern's root), never the namespace a message claims, so the label
    /// values are bounded by this node's own subscriptions. Returns the
    /// number delivered.
    ///
    /// (The same counts for [`Hub::stats`] were kept in the group's ring by
    /// the append.)
    pub(super) fn account(&self, tally: Tally) -> usize {
        if tally.delivered == 0 {
            return 0;
        }
        self.delivered.increment(tally.delivered as u64);
        if tally.dropped > 0 {
            self.dropped.increment(tally.dropped as u64);
        }
        tally.delivered
    }
}

/// Metric handles by namespace, created on first use by `make`.
pub(super) struct MetricsCache<T> {
    map: RwLock<HashMap<Namespace, Arc<T>, RandomState>>,
    make: fn(&Namespace) -> T,
}

impl<T> MetricsCache<T> {
    pub(super) fn new(make: fn(&Namespace) -> T) -> Self {
        MetricsCache {
            map: RwLock::new(HashMap::default()),
            make,
        }
    }

    pub(super) fn get(&self, namespace: &Namespace) -> Arc<T> {
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

pub(crate) fn published_counter(namespace: &Namespace) -> Counter {
    metrics::counter!("aether_bus_published_total", "namespace" => namespace.as_str().to_owned())
}
