//! In-memory store benchmarks, each beside a same-run baseline: a plain
//! `HashMap<ActorId, Vec<Event>>` behind one `RwLock`, doing the same
//! version check, copy or fold by hand. The ratio store/baseline is the cost
//! of the store's contract (validation, idempotency index, namespaces, metrics).
//!
//! `cargo bench -p aether-benches --bench memory_store`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use aether_benches::{Added, Counter, added_events};
use aether_core::{
    ActorId, ActorSnapshot, Aggregate, Event, EventStore, EventStoreExt, SnapshotStore, Version,
    rehydrate,
};
use aether_store_memory::InMemoryEventStore;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;

/// The baseline: what one writes by hand, every actor's events in a `Vec`
/// inside a `HashMap` behind one `RwLock`, with the same version check.
#[derive(Default)]
struct VecLog(RwLock<HashMap<ActorId, Vec<Event>>>);

impl VecLog {
    fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, Version> {
        let mut map = self.0.write().expect("lock");
        let log = map.entry(actor.clone()).or_default();
        let latest = Version::new(log.len() as u64);
        if latest != expected {
            return Err(latest);
        }
        log.extend(events);
        Ok(Version::new(log.len() as u64))
    }

    fn read(&self, actor: &ActorId, from: Version) -> Vec<Event> {
        let map = self.0.read().expect("lock");
        map.get(actor)
            .map(|log| log[from.get().saturating_sub(1) as usize..].to_vec())
            .unwrap_or_default()
    }
}

/// Events written into a fresh store per measured round.
const EVENTS_PER_ROUND: u64 = 10_000;

/// Each round writes `EVENTS_PER_ROUND` events (in batches of `len`) to 10
/// actors of a fresh store; only the writes are timed, so both sides pay
/// the same allocations and neither measures an ever-growing history.
fn writes(c: &mut Criterion, name: &str, len: u64) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(EVENTS_PER_ROUND));
    let actors: Vec<ActorId> = (0..10)
        .map(|i| ActorId::new(format!("bench-{i}")).expect("id"))
        .collect();
    let per_actor = EVENTS_PER_ROUND / 10;
    // (actor, expected version, batch), interleaved across actors.
    let round: Vec<(ActorId, Version, Vec<Event>)> = (0..per_actor / len)
        .flat_map(|b| {
            actors.iter().map(move |a| {
                (
                    a.clone(),
                    Version::new(b * len),
                    added_events(a, b * len, len),
                )
            })
        })
        .collect();

    g.bench_function("aether", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let store = InMemoryEventStore::new();
                let input = round.clone();
                let start = Instant::now();
                for (actor, expected, batch) in input {
                    if len == 1 {
                        let e = batch.into_iter().next().expect("one event");
                        block_on(store.save_event(e)).expect("save");
                    } else {
                        block_on(store.append(&actor, expected, batch)).expect("append");
                    }
                }
                total += start.elapsed();
            }
            total
        })
    });

    g.bench_function("baseline_hashmap_vec_rwlock", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let log = VecLog::default();
                let input = round.clone();
                let start = Instant::now();
                for (actor, expected, batch) in input {
                    log.append(&actor, expected, batch).expect("append");
                }
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn save_event(c: &mut Criterion) {
    writes(c, "memory/save_event", 1);
}

fn append_10(c: &mut Criterion) {
    writes(c, "memory/append_10", 10);
}

/// Four threads write to their own actors at once: the store's per-actor
/// locks against the baseline's one lock for every actor.
fn parallel_writers(c: &mut Criterion) {
    const THREADS: u64 = 4;
    let mut g = c.benchmark_group("memory/parallel_writers_4");
    g.throughput(Throughput::Elements(EVENTS_PER_ROUND));
    let per_thread = EVENTS_PER_ROUND / THREADS;
    let inputs: Vec<Vec<Event>> = (0..THREADS)
        .map(|t| {
            let actor = ActorId::new(format!("writer-{t}")).expect("id");
            added_events(&actor, 0, per_thread)
        })
        .collect();

    fn timed_round<W: Fn(Event) + Sync>(inputs: &[Vec<Event>], write: W) -> Duration {
        let input: Vec<Vec<Event>> = inputs.to_vec();
        let barrier = std::sync::Barrier::new(input.len() + 1);
        std::thread::scope(|s| {
            for events in input {
                let (barrier, write) = (&barrier, &write);
                s.spawn(move || {
                    barrier.wait();
                    for e in events {
                        write(e);
                    }
                    barrier.wait();
                });
            }
            barrier.wait();
            let start = Instant::now();
            barrier.wait();
            start.elapsed()
        })
    }

    g.bench_function("aether", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let store = InMemoryEventStore::new();
                    timed_round(&inputs, |e| {
                        block_on(store.save_event(e)).expect("save");
                    })
                })
                .sum()
        })
    });
    g.bench_function("baseline_hashmap_vec_rwlock", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let log = VecLog::default();
                    timed_round(&inputs, |e| {
                        let actor = e.actor_id.clone();
                        let expected = Version::new(e.version.get() - 1);
                        log.append(&actor, expected, vec![e]).expect("append");
                    })
                })
                .sum()
        })
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
            let batch = added_events(&actor, chunk * 1000, 1000);
            block_on(store.append(&actor, Version::new(chunk * 1000), batch.clone()))
                .expect("append");
            log.append(&actor, Version::new(chunk * 1000), batch)
                .expect("append");
        }
        g.bench_with_input(BenchmarkId::new("aether", n), &n, |b, _| {
            b.iter(|| black_box(block_on(store.get_events(&actor, Version::ZERO)).expect("read")))
        });
        g.bench_with_input(
            BenchmarkId::new("baseline_hashmap_vec_rwlock", n),
            &n,
            |b, _| b.iter(|| black_box(log.read(&actor, Version::ZERO))),
        );
    }
    g.finish();
}

fn rehydration(c: &mut Criterion) {
    let mut g = c.benchmark_group("memory/rehydrate_1000");
    g.throughput(Throughput::Elements(1000));
    let actor = ActorId::new("bench").expect("id");
    let store = InMemoryEventStore::new();
    block_on(store.append(&actor, Version::ZERO, added_events(&actor, 0, 1000))).expect("append");
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
            let from = snap
                .as_ref()
                .and_then(|s| s.version.next())
                .unwrap_or(Version::ZERO);
            let events = block_on(store.get_events(&actor, from)).expect("read");
            black_box(rehydrate::<Counter>(&actor, snap.as_ref(), &events).expect("fold"))
        })
    });
    // Baseline: the same decode-and-fold written by hand over a Vec.
    let log = VecLog::default();
    log.append(&actor, Version::ZERO, all).expect("append");
    g.bench_function("baseline_vec_decode_fold", |b| {
        b.iter(|| {
            let mut state = Counter::default();
            for e in log.read(&actor, Version::ZERO) {
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
    targets = save_event, append_10, parallel_writers, get_events, rehydration
}
criterion_main!(benches);
