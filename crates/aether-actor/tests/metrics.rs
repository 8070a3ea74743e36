//! The runtime's metrics, read from a recorder installed for this test
//! binary (one test: the recorder is process-wide).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_actor::{ActorSystem, AskError};
use aether_core::{Command, Repository};
use aether_store_memory::InMemoryEventStore;
use aether_testkit_nats::wait_until;
use common::{Cmd, Counter as Sum, id};
use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

type Values = Arc<Mutex<BTreeMap<String, f64>>>;

/// Counters add, gauges follow, histograms count their samples.
struct Cell {
    name: String,
    values: Values,
}

impl Cell {
    fn update(&self, f: impl FnOnce(&mut f64)) {
        let mut values = self.values.lock().expect("values");
        f(values.entry(self.name.clone()).or_insert(0.0));
    }
}

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.update(|v| *v += value as f64);
    }
    fn absolute(&self, value: u64) {
        self.update(|v| *v = value as f64);
    }
}

impl GaugeFn for Cell {
    fn increment(&self, value: f64) {
        self.update(|v| *v += value);
    }
    fn decrement(&self, value: f64) {
        self.update(|v| *v -= value);
    }
    fn set(&self, value: f64) {
        self.update(|v| *v = value);
    }
}

impl HistogramFn for Cell {
    fn record(&self, _: f64) {
        self.update(|v| *v += 1.0);
    }
}

struct Recording(Values);

impl Recording {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        Arc::new(Cell {
            name: format!("{}{{{}}}", key.name(), labels.join(",")),
            values: self.0.clone(),
        })
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

fn get(values: &Values, name: &str) -> f64 {
    values
        .lock()
        .expect("values")
        .get(name)
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_reports_activations_passivations_retries_and_latency() {
    let values: Values = Arc::default();
    metrics::set_global_recorder(Recording(values.clone())).expect("the only recorder");
    let store = Arc::new(InMemoryEventStore::new());
    let system = ActorSystem::builder(store.clone())
        .register::<Sum>()
        // Long enough not to passivate between the asks below, short
        // enough to wait for.
        .idle_timeout(Duration::from_millis(500))
        .build()
        .expect("system");
    let a = system.actor::<Sum>(id("m"));
    a.ask(Cmd::Add(1)).await.expect("ask");
    assert_eq!(get(&values, "aether_actors_active{kind=counter}"), 1.0);
    assert_eq!(
        get(&values, "aether_actor_activations_total{kind=counter}"),
        1.0
    );
    assert_eq!(
        get(
            &values,
            "aether_actor_commands_total{kind=counter,outcome=applied}"
        ),
        1.0
    );
    assert_eq!(
        get(
            &values,
            "aether_actor_ask_duration_seconds{kind=counter,route=local}"
        ),
        1.0
    );
    // A write behind the actor's back: a conflict, counted as a retry.
    Repository::new(store.clone())
        .execute::<Sum>(&id("counter:m"), Cmd::Add(10))
        .await
        .expect("other writer");
    assert_eq!(a.ask(Cmd::Add(1)).await.expect("ask").retries, 1);
    assert_eq!(
        get(
            &values,
            "aether_actor_retries_total{kind=counter,reason=conflict}"
        ),
        1.0
    );
    assert!(matches!(
        a.ask(Cmd::Refuse).await,
        Err(AskError::Rejected(_))
    ));
    assert_eq!(
        get(
            &values,
            "aether_actor_commands_total{kind=counter,outcome=rejected}"
        ),
        1.0
    );
    wait_until(
        Duration::from_secs(10),
        "the idle actor passivates",
        async || {
            get(
                &values,
                "aether_actor_passivations_total{kind=counter,reason=idle}",
            ) == 1.0
        },
    )
    .await;
    wait_until(
        Duration::from_secs(10),
        "the active gauge drops",
        async || get(&values, "aether_actors_active{kind=counter}") == 0.0,
    )
    .await;
    let dup = Command::new(Cmd::Add(5));
    a.ask(dup.clone().inner().clone())
        .id(dup.clone().command_id())
        .await
        .expect("first");
    assert!(
        a.ask(dup.inner().clone())
            .id(dup.command_id())
            .await
            .expect("again")
            .duplicate
    );
    assert_eq!(
        get(
            &values,
            "aether_actor_commands_total{kind=counter,outcome=duplicate}"
        ),
        1.0
    );
    assert_eq!(
        get(&values, "aether_actor_activations_total{kind=counter}"),
        2.0
    );
    system.shutdown().await;
    assert_eq!(
        get(
            &values,
            "aether_actor_passivations_total{kind=counter,reason=shutdown}"
        ),
        1.0
    );
}
