//! Metric keys built once and looked up in the current recorder at each
//! emission: what both stores use for their metric set.
//!
//! No handle is kept: each emission asks the current recorder for the
//! metric, exactly as the `metrics` macros expand, so a recorder installed
//! after a store was built sees everything. Only the key (name and labels)
//! is built ahead, which spares the per-call label allocation the macros
//! make for run-time label values.

use std::sync::Arc;

use metrics::{Key, Label, Level, Metadata, SharedString};

use crate::Namespace;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The labels of a store's metrics: `namespace` and `backend`.
#[derive(Debug, Clone)]
pub struct StoreLabels {
    namespace: Arc<str>,
    backend: &'static str,
}

impl StoreLabels {
    /// Labels for the store of `namespace` on `backend` (`"memory"`,
    /// `"jetstream"`).
    pub fn new(namespace: &Namespace, backend: &'static str) -> Self {
        Self {
            namespace: Arc::from(namespace.as_str()),
            backend,
        }
    }

    fn key(&self, name: &'static str) -> Key {
        Key::from_parts(
            name,
            vec![
                Label::new(
                    "namespace",
                    SharedString::from_shared(self.namespace.clone()),
                ),
                Label::new("backend", self.backend),
            ],
        )
    }

    /// The counter `name` with these labels.
    pub fn counter(&self, name: &'static str) -> CounterKey {
        CounterKey(self.key(name))
    }

    /// The histogram `name` with these labels.
    pub fn histogram(&self, name: &'static str) -> HistogramKey {
        HistogramKey(self.key(name))
    }

    /// The gauge `name` with these labels.
    pub fn gauge(&self, name: &'static str) -> GaugeKey {
        GaugeKey(self.key(name))
    }
}

/// A counter, looked up in the current recorder at each emission.
#[derive(Debug, Clone)]
pub struct CounterKey(Key);

impl CounterKey {
    /// Adds `n`.
    pub fn increment(&self, n: u64) {
        metrics::with_recorder(|r| r.register_counter(&self.0, &METADATA)).increment(n);
    }
}

/// A histogram, looked up in the current recorder at each emission.
#[derive(Debug, Clone)]
pub struct HistogramKey(Key);

impl HistogramKey {
    /// Records one sample.
    pub fn record(&self, value: f64) {
        metrics::with_recorder(|r| r.register_histogram(&self.0, &METADATA)).record(value);
    }
}

/// A gauge, looked up in the current recorder at each emission.
#[derive(Debug, Clone)]
pub struct GaugeKey(Key);

impl GaugeKey {
    /// Sets the gauge.
    pub fn set(&self, value: f64) {
        metrics::with_recorder(|r| r.register_gauge(&self.0, &METADATA)).set(value);
    }
}
