//! [`Recorded`]: a `metrics` recorder for tests that keeps every counter,
//! gauge and histogram by `name{label=value,…}` (labels sorted), so a test
//! can assert what a store or repository emitted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// What a test recorder saw. Install it with [`Recorded::install`].
#[derive(Default)]
pub struct Recorded {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }
}

fn name_of(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

fn entry<T: Default>(map: &Mutex<BTreeMap<String, Arc<T>>>, key: &Key) -> Arc<T> {
    map.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name_of(key))
        .or_default()
        .clone()
}

struct Shared(Arc<Recorded>);

impl Recorder for Shared {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(entry(&self.0.counters, key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(entry(&self.0.gauges, key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(entry(&self.0.histograms, key))
    }
}

impl Recorded {
    /// Installs a fresh recorder as the process's global recorder and
    /// returns what it records.
    ///
    /// # Panics
    ///
    /// When a global recorder is installed already (there is one per
    /// process: keep a test that installs one in its own test binary).
    pub fn install() -> Arc<Recorded> {
        let recorded = Arc::new(Recorded::default());
        metrics::set_global_recorder(Shared(recorded.clone()))
            .expect("the only global metrics recorder of this test process");
        recorded
    }

    /// The value of counter `name` (`name{label=value,…}`), 0 when never
    /// registered.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    /// How many samples histogram `name` received.
    pub fn samples(&self, name: &str) -> usize {
        self.histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or(0, |h| {
                h.0.lock().unwrap_or_else(PoisonError::into_inner).len()
            })
    }

    /// Whether gauge `name` was registered.
    pub fn has_gauge(&self, name: &str) -> bool {
        self.gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
    }
}
