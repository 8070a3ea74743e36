//! Commands through actors on JetStream, beside the same work done raw, in
//! the same run, against a real `nats-server` the test harness starts.
//!
//! Workload: 128 counter actors; a round sends one command to every actor at
//! once and waits for all of them (so each actor has one command in flight,
//! and the server sees 128 concurrent publishes). One measured call is
//! `ROUNDS` rounds.
//!
//! | name | what |
//! |---|---|
//! | `actor_system` | `ActorRef::ask` on a `JetStreamEventStore` (state cached in the actors, activated before timing, snapshots off) |
//! | `raw_pipelined_expected_seq` | the baseline: per round, one JetStream publish per actor subject with `Nats-Msg-Id` and the expected last subject sequence, acks awaited together |
//! | `store_append` | what an actor's command costs in the store alone: per round, one `EventStore::append` per actor at once of the batch an actor writes (`command_events`: derived ids, causation id), the expected version kept in memory; the ratio actor_system / store_append is the runtime's own share |
//! | `repository_execute` | the same commands through `Repository::execute` (load of snapshot + events, append; a snapshot every 10 events, as in `jetstream`'s `load_modify_save_100`) |
//!
//! The goal is actor_system ≥ 0.7× the raw baseline's commands/s. The
//! paired ratios (one call of each, alternating, so both see the same load
//! on a shared machine) are printed at the end.
//!
//! `cargo bench -p aether-benches --bench actors_jetstream`

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aether_actor::{ActorRef, ActorSystem};
use aether_benches::{Added, Counter, NatsBench};
use aether_core::event::encode_payload;
use aether_core::{ActorId, CommandId, EventStore, Namespace, Repository, Version, command_events};
use aether_store_jetstream::JetStreamEventStore;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, stream};
use criterion::{Criterion, Throughput};
use futures::future::join_all;

const ACTORS: usize = 128;
const ROUNDS: u64 = 5;
const PER_CALL: u64 = ACTORS as u64 * ROUNDS;

struct Env(NatsBench);

impl std::ops::Deref for Env {
    type Target = NatsBench;
    fn deref(&self) -> &NatsBench {
        &self.0
    }
}

impl Env {
    fn new() -> Self {
        Env(NatsBench::start())
    }

    fn store(&self, ns: &str) -> Arc<JetStreamEventStore> {
        self.rt.block_on(async {
            Arc::new(
                JetStreamEventStore::builder(self.client.clone())
                    .namespace(Namespace::new(ns).expect("ns"))
                    .open()
                    .await
                    .expect("open store"),
            )
        })
    }
}

fn ids(prefix: &str) -> Vec<ActorId> {
    (0..ACTORS)
        .map(|i| ActorId::new(format!("{prefix}-{i}")).expect("id"))
        .collect()
}

/// `ROUNDS` rounds of one ask per actor, all actors at once.
async fn actor_rounds(refs: &[ActorRef<Counter>]) {
    for _ in 0..ROUNDS {
        for r in join_all(refs.iter().map(|r| r.ask(1).into_future())).await {
            r.expect("ask");
        }
    }
}

/// `ROUNDS` rounds of `Repository::execute` on every actor at once.
async fn repository_rounds(repo: &Repository<Arc<JetStreamEventStore>>, actors: &[ActorId]) {
    for _ in 0..ROUNDS {
        for r in join_all(actors.iter().map(|a| repo.execute::<Counter>(a, 1))).await {
            r.expect("execute");
        }
    }
}

/// The store alone: per round, the batch an actor writes for one command,
/// appended for every actor at once, versions kept in memory.
struct Direct {
    store: Arc<JetStreamEventStore>,
    actors: Vec<ActorId>,
    versions: Vec<AtomicU64>,
}

impl Direct {
    async fn rounds(&self) {
        for _ in 0..ROUNDS {
            let appends = self
                .actors
                .iter()
                .zip(&self.versions)
                .map(|(a, v)| async move {
                    let expected = Version::new(v.load(Ordering::Relaxed));
                    let batch =
                        command_events(a, expected, &[Added { amount: 1 }], CommandId::new(), None)
                            .expect("batch");
                    let next = self.store.append(a, expected, batch).await.expect("append");
                    v.store(next.get(), Ordering::Relaxed);
                });
            join_all(appends).await;
        }
    }
}

/// The raw baseline: a stream laid out like the store's (one subject per
/// actor), the expected last subject sequence of each actor kept in memory
/// as an actor keeps its version.
struct Raw {
    js: jetstream::Context,
    seqs: Vec<AtomicU64>,
    round: AtomicU64,
}

impl Raw {
    async fn rounds(&self) {
        for _ in 0..ROUNDS {
            let r = self.round.fetch_add(1, Ordering::Relaxed);
            let mut acks = Vec::with_capacity(ACTORS);
            for (i, s) in self.seqs.iter().enumerate() {
                let last = s.load(Ordering::Relaxed);
                let payload = encode_payload(&Added { amount: 1 }, "Added").expect("encode");
                let ack = self
                    .js
                    .send_publish(
                        format!("RAWACT.a{i}"),
                        Publish::build()
                            .payload(payload)
                            .message_id(format!("{i}-{r}"))
                            .expected_last_subject_sequence(last),
                    )
                    .await
                    .expect("publish");
                acks.push(ack.into_future());
            }
            for (ack, s) in join_all(acks).await.into_iter().zip(&self.seqs) {
                s.store(ack.expect("ack").sequence, Ordering::Relaxed);
            }
        }
    }
}

/// One call of each, alternating, `pairs` times; returns `(a/b, c/b, a/d)`
/// throughput ratios and prints the rates.
fn paired<A, FA, B, FB, C, FC, D, FD>(
    env: &Env,
    pairs: u32,
    a: A,
    b: B,
    c: C,
    d: D,
) -> (f64, f64, f64)
where
    A: Fn() -> FA,
    FA: Future<Output = ()>,
    B: Fn() -> FB,
    FB: Future<Output = ()>,
    C: Fn() -> FC,
    FC: Future<Output = ()>,
    D: Fn() -> FD,
    FD: Future<Output = ()>,
{
    let (mut ta, mut tb, mut tc, mut td) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    env.rt.block_on(async {
        for _ in 0..pairs {
            let t = Instant::now();
            a().await;
            ta += t.elapsed();
            let t = Instant::now();
            b().await;
            tb += t.elapsed();
            let t = Instant::now();
            c().await;
            tc += t.elapsed();
            let t = Instant::now();
            d().await;
            td += t.elapsed();
        }
    });
    let n = f64::from(pairs) * PER_CALL as f64;
    let rate = |t: Duration| n / t.as_secs_f64();
    eprintln!(
        "paired commands/s over {ACTORS} actors: actor_system {:.0}, raw pipelined {:.0}, \
         repository_execute {:.0}, store_append {:.0}",
        rate(ta),
        rate(tb),
        rate(tc),
        rate(td)
    );
    (
        rate(ta) / rate(tb),
        rate(tc) / rate(tb),
        rate(ta) / rate(td),
    )
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let env = Env::new();

    let system = ActorSystem::builder(env.store("bench-actors"))
        .register::<Counter>()
        .snapshot_every(0)
        .ask_deadline(Duration::from_secs(30))
        .build()
        .expect("system");
    let refs: Vec<ActorRef<Counter>> = ids("acct")
        .into_iter()
        .map(|id| system.actor::<Counter>(id))
        .collect();
    // Activate every actor before timing: the state is cached from here on.
    env.rt.block_on(actor_rounds(&refs));

    let direct = Direct {
        store: env.store("bench-actors-direct"),
        actors: ids("acct"),
        versions: (0..ACTORS).map(|_| AtomicU64::new(0)).collect(),
    };
    let repo = Repository::new(env.store("bench-actors-repo")).snapshot_every(10);
    let repo_ids = ids("acct");

    env.rt.block_on(async {
        env.js
            .create_stream(stream::Config {
                name: "RAWACT".to_owned(),
                subjects: vec!["RAWACT.*".to_owned()],
                allow_direct: true,
                allow_atomic_publish: true,
                ..Default::default()
            })
            .await
            .expect("raw stream")
    });
    let raw = Raw {
        js: env.js.clone(),
        seqs: (0..ACTORS).map(|_| AtomicU64::new(0)).collect(),
        round: AtomicU64::new(0),
    };

    let mut g = c.benchmark_group("actors_jetstream/128_actors");
    g.throughput(Throughput::Elements(PER_CALL));
    g.bench_function("actor_system", |b| {
        b.to_async(&env.rt).iter(|| actor_rounds(&refs))
    });
    g.bench_function("raw_pipelined_expected_seq", |b| {
        b.to_async(&env.rt).iter(|| raw.rounds())
    });
    g.bench_function("store_append", |b| {
        b.to_async(&env.rt).iter(|| direct.rounds())
    });
    g.bench_function("repository_execute", |b| {
        b.to_async(&env.rt)
            .iter(|| repository_rounds(&repo, &repo_ids))
    });
    g.finish();

    let (actors, repository, runtime) = paired(
        &env,
        20,
        || actor_rounds(&refs),
        || raw.rounds(),
        || repository_rounds(&repo, &repo_ids),
        || direct.rounds(),
    );
    eprintln!(
        "paired ratios vs raw pipelined publish: actor_system {actors:.2} (goal 0.7), \
         repository_execute {repository:.2}; actor_system vs store_append alone {runtime:.2}"
    );
    env.rt.block_on(system.shutdown());
    c.final_summary();
}
