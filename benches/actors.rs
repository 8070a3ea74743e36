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
//!   version check, the command window, deadlines, metrics). With
//!   `--bench`, a paired ratio is printed too: rounds of the two alternate,
//!   so both see the same load on a shared machine.
//! * `actors/remote_ask/{actor_system,raw_request_reply}` — one ask at a
//!   time from node A to an actor whose shard node B owns (two systems in
//!   this process, each with its own connection to one nats-server, memory
//!   store), beside raw async-nats request/reply with payloads of the same
//!   sizes (measured from the actor system's own request and reply). With
//!   `--bench`, p50/p99 over 2000 rounds of each are printed with their ratio.
//!
//! `cargo bench -p aether-benches --bench actors`

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_actor::{ActorRef, ActorSystem, NatsNode, NodeId, Placement, StaticDirectory, shard_of};
use aether_benches::{Added, Counter};
use aether_core::name::encode_token;
use aether_core::{ActorId, Repository};
use aether_store_memory::InMemoryEventStore;
use aether_testkit_nats::{NatsServer, connect, unique_name};
use criterion::{Criterion, Throughput};
use futures::StreamExt;
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

/// One round of the actor system: a fresh system, every actor activated,
/// then the timed asks.
async fn system_round() -> Duration {
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
    let elapsed = timed(&refs, |r| async move {
        for n in 0..ASKS_PER_ACTOR {
            r.ask(n).await.expect("ask");
        }
    })
    .await;
    system.shutdown().await;
    elapsed
}

/// One round of the hand-written actors.
async fn hand_written_round() -> Duration {
    let mailboxes: Vec<Mailbox> = (0..ACTORS).map(|_| hand_written_actor()).collect();
    timed(&mailboxes, |tx| async move {
        for n in 0..ASKS_PER_ACTOR {
            let (reply, rx) = oneshot::channel();
            tx.send((n, reply)).await.expect("send");
            rx.await.expect("reply");
        }
    })
    .await
}

/// Rounds of each, alternating, for the paired ratio.
const PAIRED_ROUNDS: u32 = 200;

/// One round of each, alternating, `PAIRED_ROUNDS` times, so both see the
/// same load on a shared machine; returns the throughput ratio
/// actor_system / hand_written.
fn paired_local_ask(rt: &Runtime) -> f64 {
    let (system, hand) = rt.block_on(async {
        let (mut system, mut hand) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..PAIRED_ROUNDS {
            system += system_round().await;
            hand += hand_written_round().await;
        }
        (system, hand)
    });
    hand.as_secs_f64() / system.as_secs_f64()
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
                    total += system_round().await;
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
                    total += hand_written_round().await;
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
    if std::env::args().any(|a| a == "--bench") {
        println!(
            "paired ratios vs hand-written tokio actor (local_ask, {PAIRED_ROUNDS} alternating rounds): \
             actor_system {:.2} (goal 0.5)",
            paired_local_ask(&rt)
        );
    }
}

const REMOTE_SHARDS: u32 = 2;
const LATENCY_ROUNDS: usize = 2000;

struct Remote {
    _a: ActorSystem,
    _b: ActorSystem,
    actor: ActorRef<Counter>,
    raw: async_nats::Client,
    raw_subject: String,
    request: bytes::Bytes,
}

fn node(n: &str) -> NodeId {
    NodeId::new(n).expect("node id")
}

/// Two systems on one server; shard 0 on node-a, shard 1 on node-b; a raw
/// responder answering with the size of the actor system's reply.
async fn remote_setup(url: &str) -> Remote {
    let cluster = unique_name("bench");
    let store = Arc::new(InMemoryEventStore::new());
    let dir = |me: &'static str| {
        Arc::new(StaticDirectory::new(node(me), REMOTE_SHARDS, move |s| {
            let owner = if s.get() == 0 { "node-a" } else { "node-b" };
            if owner == me {
                Placement::Local
            } else {
                Placement::Remote(node(owner))
            }
        }))
    };
    let start = async |me: &'static str| {
        ActorSystem::builder(store.clone())
            .register::<Counter>()
            .snapshot_every(0)
            .cluster(&NatsNode::new(connect(url).await, cluster.clone(), dir(me)))
            .start()
            .await
            .expect("system")
    };
    let a = start("node-a").await;
    let b = start("node-b").await;
    let id = (0..)
        .map(|i| ActorId::new(format!("remote-{i}")).expect("id"))
        .find(|id| shard_of("counter", id, REMOTE_SHARDS).get() == 1)
        .expect("an id on node-b");
    let actor = a.actor::<Counter>(id);
    // Measure one request and one reply of the actor system on the wire.
    let spy = connect(url).await;
    let b_subject = format!(
        "aether.rt.{}.{}",
        encode_token(&cluster),
        encode_token("node-b")
    );
    let mut requests = spy.subscribe(b_subject).await.expect("spy");
    let mut replies = spy.subscribe("_INBOX.>").await.expect("spy");
    spy.flush().await.expect("flush");
    actor.ask(1).await.expect("remote ask");
    let request_len = requests.next().await.expect("request").payload.len();
    let reply_len = replies.next().await.expect("reply").payload.len();
    // The baseline: a raw responder with the same sizes.
    let raw = connect(url).await;
    let raw_subject = format!("bench.raw.{cluster}");
    let responder = connect(url).await;
    let mut sub = responder.subscribe(raw_subject.clone()).await.expect("sub");
    responder.flush().await.expect("flush");
    let reply = bytes::Bytes::from(vec![7u8; reply_len]);
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(to) = msg.reply {
                let _ = responder.publish(to, reply.clone()).await;
            }
        }
    });
    println!("remote ask wire sizes: request {request_len} B, reply {reply_len} B");
    Remote {
        _a: a,
        _b: b,
        actor,
        raw,
        raw_subject,
        request: bytes::Bytes::from(vec![7u8; request_len]),
    }
}

async fn actor_round(r: &Remote) -> Duration {
    let start = Instant::now();
    std::hint::black_box(r.actor.ask(1).await.expect("remote ask"));
    start.elapsed()
}

async fn raw_round(r: &Remote) -> Duration {
    let start = Instant::now();
    std::hint::black_box(
        r.raw
            .request(r.raw_subject.clone(), r.request.clone())
            .await
            .expect("raw request"),
    );
    start.elapsed()
}

fn remote_ask(c: &mut Criterion, rt: &Runtime, r: &Remote) {
    let mut g = c.benchmark_group("actors/remote_ask");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    g.bench_function("actor_system", |b| b.iter(|| rt.block_on(actor_round(r))));
    g.bench_function("raw_request_reply", |b| {
        b.iter(|| rt.block_on(raw_round(r)))
    });
    g.finish();
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

fn latency_report(rt: &Runtime, r: &Remote) {
    let (ours, raw) = rt.block_on(async {
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..LATENCY_ROUNDS {
            ours.push(actor_round(r).await);
            raw.push(raw_round(r).await);
        }
        (ours, raw)
    });
    let (o50, o99) = percentiles(ours);
    let (r50, r99) = percentiles(raw);
    println!(
        "remote_ask_latency_percentiles ({LATENCY_ROUNDS} rounds): actor system p50 {o50:?} p99 {o99:?} | \
         raw request/reply p50 {r50:?} p99 {r99:?} | ratio p50 {:.2} p99 {:.2}",
        o50.as_secs_f64() / r50.as_secs_f64(),
        o99.as_secs_f64() / r99.as_secs_f64(),
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    local_ask(&mut c);

    let rt = runtime();
    let server = rt.block_on(NatsServer::builder().jetstream(false).start());
    let remote = rt.block_on(remote_setup(&server.url()));
    remote_ask(&mut c, &rt, &remote);
    if std::env::args().any(|a| a == "--bench") {
        latency_report(&rt, &remote);
    }
    drop(remote);
    drop(server);
    c.final_summary();
}
