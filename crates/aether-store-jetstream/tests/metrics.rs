//! The store's metrics reach a recorder installed *after* the store was
//! opened (the global recorder is per process: this file holds one test),
//! and the set is the one both stores emit.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::{ActorId, ActorSnapshot, EventStore, EventStoreExt, SnapshotStore, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::connect;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

#[derive(Default)]
struct Recorded {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
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
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(entry(&self.0.histograms, key))
    }
}

impl Recorded {
    fn counter(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }

    fn samples(&self, name: &str) -> usize {
        self.histograms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map_or(0, |h| {
                h.0.lock().unwrap_or_else(PoisonError::into_inner).len()
            })
    }
}

#[tokio::test]
async fn metrics_reach_a_recorder_installed_after_open() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("metrics");
    let store = JetStreamEventStore::builder(client)
        .namespace(ns.clone())
        .open()
        .await
        .unwrap();

    let recorded = Arc::new(Recorded::default());
    metrics::set_global_recorder(Shared(recorded.clone())).expect("first recorder");

    let a = ActorId::new("m").unwrap();
    store.save_event(test_event(&a, 1, "one")).await.unwrap();
    store
        .append(
            &a,
            Version::new(1),
            vec![test_event(&a, 2, "two"), test_event(&a, 3, "three")],
        )
        .await
        .unwrap();
    let conflict = store.save_event(test_event(&a, 2, "stale")).await;
    assert!(conflict.is_err());
    assert_eq!(store.get_events(&a, Version::ZERO).await.unwrap().len(), 3);
    store
        .save_snapshot(ActorSnapshot::new(a.clone(), Version::new(3), &3u8).unwrap())
        .await
        .unwrap();

    let l = format!("{{backend=jetstream,namespace={ns}}}");
    assert_eq!(recorded.counter(&format!("aether_appends_total{l}")), 3);
    assert_eq!(
        recorded.counter(&format!("aether_events_appended_total{l}")),
        3
    );
    assert_eq!(
        recorded.counter(&format!("aether_append_conflicts_total{l}")),
        1
    );
    assert_eq!(
        recorded.counter(&format!("aether_append_errors_total{l}")),
        0
    );
    // The three of the read, and the one the refused append read back to
    // tell a retry of a stored batch from a conflict.
    assert_eq!(recorded.counter(&format!("aether_events_read_total{l}")), 4);
    assert_eq!(
        recorded.counter(&format!("aether_snapshots_saved_total{l}")),
        1
    );
    assert_eq!(
        recorded.samples(&format!("aether_append_duration_seconds{l}")),
        3
    );
    assert!(recorded.counter(&format!("aether_version_cache_hits_total{l}")) >= 1);
}
