//! The store's metrics reach a recorder installed *after* the store was
//! opened (the global recorder is per process: this file holds one test),
//! and the set is the one both stores emit.

mod common;

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::testkit::metrics::Recorded;
use aether_core::{ActorId, ActorSnapshot, EventStore, EventStoreExt, SnapshotStore, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::connect;

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

    let recorded = Recorded::install();

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
