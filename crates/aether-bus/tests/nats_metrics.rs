//! The NATS bus's metric labels and subjects, against a real `nats-server`.
//!
//! A process of its own (a test binary with one recorder installed
//! globally), so the recorder sees every handle the buses register.
#![cfg(feature = "nats")]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_bus::NatsEventBus;
use aether_core::name::encode_token;
use aether_core::{EventBus, EventFilter, NamespacePattern};
use aether_testkit_nats::{NatsServer, connect, unique_name, wait_until};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

mod common;
use common::{event, ns};

const DEADLINE: Duration = Duration::from_secs(20);

/// Remembers the name and `namespace` label of every counter registered.
#[derive(Default, Clone)]
struct Labels(Arc<Mutex<BTreeSet<(String, String)>>>);

impl Labels {
    fn values_of(&self, name: &str) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl Recorder for Labels {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let ns = key
            .labels()
            .find(|l| l.key() == "namespace")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        self.0.lock().unwrap().insert((key.name().to_owned(), ns));
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Namespaces chosen by a remote publisher never become label values on the
/// receiving node: its delivered and dropped counters are labelled by the
/// namespace its subscription is anchored at.
#[tokio::test]
async fn remote_namespaces_do_not_create_label_values() {
    let labels = Labels::default();
    metrics::set_global_recorder(labels.clone()).expect("the only recorder of this binary");

    let server = NatsServer::start().await;
    let prefix = unique_name("labels");
    let build = |client| {
        NatsEventBus::builder(client)
            .prefix(prefix.clone())
            .capacity(4)
            .build()
            .unwrap()
    };
    let receiver = build(connect(&server.url()).await);
    let remote = build(connect(&server.url()).await);
    let mut sub = receiver
        .subscribe(EventFilter::within(ns("tenant")))
        .await
        .unwrap();

    // 40 namespaces the receiver never named, more than its queue holds, so
    // deliveries and drops are both counted.
    for i in 0..40u64 {
        remote
            .publish(&ns(&format!("tenant.t{i}")), event("a", i + 1, "T"))
            .await
            .unwrap();
    }
    remote.flush().await.unwrap();
    wait_until(
        DEADLINE,
        "all 40 reached the receiver's queue",
        async || {
            let s = receiver.stats();
            s.delivered == 40
        },
    )
    .await;
    assert_eq!(receiver.stats().dropped, 36);
    // The subscriber still sees the lag and the newest events.
    assert!(matches!(
        sub.try_recv(),
        Some(Err(aether_core::BusError::Lagged { missed: 36 }))
    ));

    let anchor = BTreeSet::from(["tenant".to_owned()]);
    assert_eq!(labels.values_of("aether_bus_delivered_total"), anchor);
    assert_eq!(labels.values_of("aether_bus_dropped_total"), anchor);
}

/// The bus builds subjects with `aether-core`'s `encode_token`, segment by
/// segment: one encoding for every NATS subject of the project.
#[tokio::test]
async fn subjects_use_the_core_token_encoding() {
    let server = NatsServer::start().await;
    let prefix = unique_name("subj");
    let bus = NatsEventBus::builder(connect(&server.url()).await)
        .prefix(prefix.clone())
        .build()
        .unwrap();
    for (namespace, event_type) in [
        ("acme", "OrderPlaced"),
        ("acme.orders", "Order.Placed"),
        ("a_b.c-d", "x y*>"),
        ("A1.b2.C3", "ümlaut"),
    ] {
        let segments: Vec<String> = namespace.split('.').map(encode_token).collect();
        let segments = segments.join(".");
        assert_eq!(
            bus.subject_for(&ns(namespace), event_type),
            format!("{prefix}._bus.{segments}.{}", encode_token(event_type))
        );
        assert_eq!(
            bus.subject_pattern(&NamespacePattern::Within(ns(namespace))),
            Some(format!("{prefix}._bus.{segments}.>"))
        );
        assert_eq!(
            bus.subject_pattern(&NamespacePattern::Exact(ns(namespace))),
            Some(format!("{prefix}._bus.{segments}.*"))
        );
    }
}
