//! The store's metric handles.

use aether_core::Namespace;
use metrics::{Counter, Histogram};

pub(crate) struct Metrics {
    pub(crate) append_seconds: Histogram,
    pub(crate) appends: Counter,
    pub(crate) events_appended: Counter,
    pub(crate) conflicts: Counter,
    pub(crate) append_errors: Counter,
    pub(crate) retries: Counter,
    pub(crate) events_read: Counter,
    pub(crate) snapshots_saved: Counter,
    pub(crate) cache_hits: Counter,
    pub(crate) cache_misses: Counter,
    pub(crate) read_resumes: Counter,
}

impl Metrics {
    pub(crate) fn new(ns: &Namespace) -> Self {
        let ns = ns.as_str().to_owned();
        macro_rules! c {
            ($name:literal) => {
                metrics::counter!($name, "namespace" => ns.clone(), "backend" => "jetstream")
            };
        }
        Metrics {
            append_seconds: metrics::histogram!("aether_append_duration_seconds", "namespace" => ns.clone(), "backend" => "jetstream"),
            appends: c!("aether_appends_total"),
            events_appended: c!("aether_events_appended_total"),
            conflicts: c!("aether_append_conflicts_total"),
            append_errors: c!("aether_append_errors_total"),
            retries: c!("aether_append_retries_total"),
            events_read: c!("aether_events_read_total"),
            snapshots_saved: c!("aether_snapshots_saved_total"),
            cache_hits: c!("aether_version_cache_hits_total"),
            cache_misses: c!("aether_version_cache_misses_total"),
            read_resumes: c!("aether_read_resumes_total"),
        }
    }
}
