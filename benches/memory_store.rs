//! In-memory store benchmarks, each beside a same-run baseline: a plain
//! `Vec<Event>` behind the same kind of lock (`RwLock`), doing the same
//! version check, copy or fold by hand. The ratio store/baseline is the cost
//! of the store's contract (validation, idempotency index, namespaces, metrics).
//!
//! `cargo bench -p aether-benches --bench memory_store`

use std::hint::black_box;
use std::sync::RwLock;

use aether_core::{
    ActorId, ActorSnapshot, Aggregate, DomainEvent, Event, EventStore, EventStoreExt,
    SnapshotStore, Version, rehydrate,
};
use aether_store_memory::InMemoryEventStore;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use serde::{Deserialize, Serialize};

/// The baseline: one actor's events in a `Vec` under a `RwLock`.
#[derive(Default)]
struct VecLog(RwLock<Vec<Event>>);

impl VecLog {
    fn append(&self, expected: Version, events: Vec<Event>) -> Result<Version, Version> {
        let mut log = self.0.write().expect("lock");
        let latest = Version::new(log.len() as u64);
        if latest != expected {
            return Err(latest);
        }
        log.extend(events);
        Ok(Version::new(log.len() as u64))
    }

    fn read(&self, from: Version) -> Vec<Event> {
        let log = self.0.read().expect("lock");
        log[from.get().saturating_sub(1) as usize..].to_vec()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct Added {
    amount: u64,
}

impl DomainEvent for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("never")]
struct Never;

impl Aggregate for Counter {
    type Command = u64;
    type Event = Added;
    type Error = Never;
    const KIND: &'static str = "counter";
    fn handle(&self, amount: u64) -> Result<Vec<Added>, Never> {
        Ok(vec![Added { amount }])
    }
    fn apply(&mut self, e: &Added) {
        self.total += e.amount;
        self.count += 1;
    }
}

fn events(actor: &ActorId, after: u64, n: u64) -> Vec<Event> {
    (1..=n)
        .map(|i| {
            Event::from_domain(actor.clone(), Version::new(after + i), &Added { amount: i })
                .expect("encode")
        })
        .collect()
}

fn save_event(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory/save_event");
    g.throughput(Throughput::Elements(1));
    let actor = ActorId::new("bench").expect("id");

    let store = InMemoryEventStore::new();
    let mut next = 0u64;
    g.bench_function("aether", |b| {
        b.iter_batched(
            || {
                next += 1;
                events(&actor, next - 1, 1).remove(0)
            },
            |e| block_on(store.save_event(e)).expect("save"),
            BatchSize::SmallInput,
        )
    });

    let log = VecLog::default();
    let mut next = 0u64;
    g.bench_function("baseline_vec_rwlock", |b| {
        b.iter_batched(
            || {
                next += 1;
                events(&actor, next - 1, 1)
            },
            |e| {
                log.append(Version::new(e[0].version.get() - 1), e)
                    .expect("append")
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn append_10(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory/append_10");
    g.throughput(Throughput::Elements(10));
    let actor = ActorId::new("bench").expect("id");

    let store = InMemoryEventStore::new();
    let mut next = 0u64;
    g.bench_function("aether", |b| {
        b.iter_batched(
            || {
                next += 10;
                (Version::new(next - 10), events(&actor, next - 10, 10))
            },
            |(expected, batch)| block_on(store.append(&actor, expected, batch)).expect("append"),
            BatchSize::SmallInput,
        )
    });

    let log = VecLog::default();
    let mut next = 0u64;
    g.bench_function("baseline_vec_rwlock", |b| {
        b.iter_batched(
            || {
                next += 10;
                (Version::new(next - 10), events(&actor, next - 10, 10))
            },
            |(expected, batch)| log.append(expected, batch).expect("append"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn get_events(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory/get_events");
    for n in [1_000u64, 100_000] {
        g.throughput(Throughput::Elements(n));
        if n > 10_000 {
            g.sample_size(20);
        }
        let actor = ActorId::new("bench").expect("id");
        let store = InMemoryEventStore::new();
        let log = VecLog::default();
        for chunk in 0..n / 1000 {
            let batch = events(&actor, chunk * 1000, 1000);
            block_on(store.append(&actor, Version::new(chunk * 1000), batch.clone()))
                .expect("append");
            log.append(Version::new(chunk * 1000), batch)
                .expect("append");
        }
        g.bench_with_input(BenchmarkId::new("aether", n), &n, |b, _| {
            b.iter(|| black_box(block_on(store.get_events(&actor, Version::ZERO)).expect("read")))
        });
        g.bench_with_input(BenchmarkId::new("baseline_vec_rwlock", n), &n, |b, _| {
            b.iter(|| black_box(log.read(Version::ZERO)))
        });
    }
    g.finish();
}

fn rehydration(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory/rehydrate_1000");
    g.throughput(Throughput::Elements(1000));
    let actor = ActorId::new("bench").expect("id");
    let store = InMemoryEventStore::new();
    block_on(store.append(&actor, Version::ZERO, events(&actor, 0, 1000))).expect("append");
    let all = block_on(store.get_events(&actor, Version::ZERO)).expect("read");
    let state = rehydrate::<Counter>(&actor, None, &all[..990])
        .expect("fold")
        .state;
    block_on(store.save_snapshot(
        ActorSnapshot::new(actor.clone(), Version::new(990), &state).expect("snap"),
    ))
    .expect("snapshot");

    g.bench_function("aether_full_replay", |b| {
        b.iter(|| {
            let events = block_on(store.get_events(&actor, Version::ZERO)).expect("read");
            black_box(rehydrate::<Counter>(&actor, None, &events).expect("fold"))
        })
    });
    g.bench_function("aether_snapshot_plus_10", |b| {
        b.iter(|| {
            let snap = block_on(store.get_latest_snapshot(&actor)).expect("snap");
            let from = snap.as_ref().map_or(Version::ZERO, |s| s.version.next());
            let events = block_on(store.get_events(&actor, from)).expect("read");
            black_box(rehydrate::<Counter>(&actor, snap.as_ref(), &events).expect("fold"))
        })
    });
    // Baseline: the same decode-and-fold written by hand over a Vec.
    let log = VecLog::default();
    log.append(Version::ZERO, all).expect("append");
    g.bench_function("baseline_vec_decode_fold", |b| {
        b.iter(|| {
            let mut state = Counter::default();
            for e in log.read(Version::ZERO) {
                state.apply(&rmp_serde::from_slice::<Added>(&e.data).expect("decode"));
            }
            black_box(state)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = save_event, append_10, get_events, rehydration
}
criterion_main!(benches);
