//! The store's metric keys (labels `namespace`, `backend="jetstream"`),
//! built once when the store is opened.
//!
//! No handle is kept: each emission asks the current recorder for the
//! metric, as the `metrics` macros do, so a recorder installed after the
//! store was opened sees everything. Only the key (name and labels) is built
//! ahead, which spares the per-call label allocation the macros make for
//! run-time label values.

use std::sync::Arc;

use aether_core::Namespace;
use metrics::{Key, Label, Level, Metadata, SharedString};

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A counter, looked up in the current recorder at each emission.
pub(crate) struct CounterKey(Key);

impl CounterKey {
    pub(crate) fn increment(&self, n: u64) {
        metrics::with_recorder(|r| r.register_counter(&self.0, &METADATA)).increment(n);
    }
}

/// A histogram, looked up in the current recorder at each emission.
pub(crate) struct HistogramKey(Key);

impl HistogramKey {
    pub(crate) fn record(&self, value: f64) {
        metrics::with_recorder(|r| r.register_histogram(&self.0, &METADATA)).record(value);
    }
}

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
        let ns: Arc<str> = Arc::from(ns.as_str());
        let key = |name: &'static str| {
            Key::from_parts(
                name,
                vec![
                    Label::new("namespace", SharedString::from_shared(ns.clone())),
                    Label::new("backend", "jetstream"),
                ],
            )
        };
        let c = |name| CounterKey(key(name));
        Metrics {
            append_seconds: HistogramKey(key("aether_append_duration_seconds")),
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
