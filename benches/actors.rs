//! Actor runtime benchmarks, each beside a same-run baseline:
//!
//! * `actors/local_ask/{actor_system,hand_written_tokio_actor,repository_execute}`
//!   — 16 actors, one caller each, 100 sequential asks per caller per round
//!   (1600 asks), on a 2-worker tokio runtime. `actor_system` is
//!   `ActorRef::ask` on the in-memory store with the state cached (actors
//!   activated before timing, snapshots off); the baseline is what one writes
//!   by hand: a tokio task per actor with an `mpsc` mailbox, a `oneshot`
//!   reply and a `Vec` push of the event. `repository_execute` runs the same
//!   commands through `Repository::execute` (a load per command) for
//!   comparison. The ratio actor_system / hand_written is the cost of the
//!   runtime's contract (event envelopes with derived ids, the store's
//!   version check, the command window, deadlines, metrics).
//!
//! `cargo bench -p aether-benches --bench actors`

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_benches::{Added, Counter};
use aether_cluster::runtime::ActorSystem;
use aether_core::{ActorId, Repository};
use aether_store_memory::InMemoryEventStore;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};

const ACTORS: usize = 16;
const ASKS_PER_ACTOR: u64 = 100;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn ids() -> Vec<ActorId> {
    (0..ACTORS)
        .map(|i| ActorId::new(format!("acct-{i}")).expect("id"))
        .collect()
}

/// Runs `per_actor` on every actor at once and returns the elapsed time.
async fn timed<T, F, Fut>(actors: &[T], per_actor: F) -> Duration
where
    T: Clone + Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = actors
        .iter()
        .map(|a| tokio::spawn(per_actor(a.clone())))
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

type Mailbox = mpsc::Sender<(u64, oneshot::Sender<u64>)>;

/// The baseline: one tokio task per actor, an mpsc mailbox, a oneshot reply
/// and the event pushed onto a `Vec`.
fn hand_written_actor() -> Mailbox {
    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(64);
    tokio::spawn(async move {
        let mut events: Vec<Added> = Vec::new();
        while let Some((amount, reply)) = rx.recv().await {
            events.push(Added { amount });
            let _ = reply.send(events.len() as u64);
        }
    });
    tx
}

fn local_ask(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("actors/local_ask");
    g.throughput(Throughput::Elements(ACTORS as u64 * ASKS_PER_ACTOR))
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    g.bench_function("actor_system", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let system = ActorSystem::builder(Arc::new(InMemoryEventStore::new()))
                        .register::<Counter>()
                        .snapshot_every(0)
                        .build()
                        .expect("system");
                    let refs: Vec<_> = ids()
                        .into_iter()
                        .map(|id| system.actor::<Counter>(id))
                        .collect();
                    for r in &refs {
                        r.ask(0).await.expect("activate");
                    }
                    total += timed(&refs, |r| async move {
                        for n in 0..ASKS_PER_ACTOR {
                            r.ask(n).await.expect("ask");
                        }
                    })
                    .await;
                    system.shutdown().await;
                }
                total
            })
        })
    });

    g.bench_function("hand_written_tokio_actor", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mailboxes: Vec<Mailbox> =
                        (0..ACTORS).map(|_| hand_written_actor()).collect();
                    total += timed(&mailboxes, |tx| async move {
                        for n in 0..ASKS_PER_ACTOR {
                            let (reply, rx) = oneshot::channel();
                            tx.send((n, reply)).await.expect("send");
                            rx.await.expect("reply");
                        }
                    })
                    .await;
                }
                total
            })
        })
    });

    g.bench_function("repository_execute", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let repo = Arc::new(Repository::new(Arc::new(InMemoryEventStore::new())));
                    let work: Vec<_> = ids().into_iter().map(|id| (repo.clone(), id)).collect();
                    for (r, id) in &work {
                        r.execute::<Counter>(id, 0).await.expect("first");
                    }
                    total += timed(&work, |(r, id)| async move {
                        for n in 0..ASKS_PER_ACTOR {
                            r.execute::<Counter>(&id, n).await.expect("execute");
                        }
                    })
                    .await;
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, local_ask);
criterion_main!(benches);
