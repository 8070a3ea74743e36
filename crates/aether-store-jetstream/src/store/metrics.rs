//! The store's metric keys (labels `namespace`, `backend="jetstream"`),
//! built once when the store is opened and looked up in the current
//! recorder at each emission (see [`aether_core::metrics`]).

use aether_core::Namespace;
use aether_core::metrics::{CounterKey, HistogramKey, StoreLabels};

pub(crate) struct Metrics {
    pub(crate) append_seconds: HistogramKey,
    pub(crate) appends: CounterKey,
    pub(crate) events_appended: CounterKey,
    pub(crate) conflicts: CounterKey,
    pub(crate) append_errors: CounterKey,
    pub(crate) retries: CounterKey,
    pub(crate) events_read: CounterKey,
    pub(crate) snapshots_saved: CounterKey,
    pub(crate) cache_hits: CounterKey,
    pub(crate) cache_misses: CounterKey,
    pub(crate) read_resumes: CounterKey,
}

impl Metrics {
    pub(crate) fn new(ns: &Namespace) -> Self {
        let labels = StoreLabels::new(ns, "jetstream");
        let c = |name| labels.counter(name);
        Metrics {
            append_seconds: labels.histogram("aether_append_duration_seconds"),
            appends: c("aether_appends_total"),
            events_appended: c("aether_events_appended_total"),
            conflicts: c("aether_append_conflicts_total"),
            append_errors: c("aether_append_errors_total"),
            retries: c("aether_append_retries_total"),
            events_read: c("aether_events_read_total"),
            snapshots_saved: c("aether_snapshots_saved_total"),
            cache_hits: c("aether_version_cache_hits_total"),
            cache_misses: c("aether_version_cache_misses_total"),
            read_resumes: c("aether_read_resumes_total"),
        }
    }
}
