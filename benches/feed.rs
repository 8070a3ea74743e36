//! Feed and projection benchmarks against a real `nats-server` started by
//! the test harness, each beside a raw async-nats baseline on the same
//! server in the same run, reported as ratios.
//!
//! `cargo bench -p aether-benches --bench feed` (about a minute).
//!
//! | group | aether | raw baseline | goal |
//! |---|---|---|---|
//! | `feed/read_all_100k` | `read_all` from 0 of a 100 000-event namespace (decoded, trust rule applied) | an ordered consumer over the same stream, messages counted | ≥ 0.8× throughput |
//! | `feed/live_latency` | `append` of one event → a `ProjectionRunner`'s handler sees it | core NATS publish → a core subscription receives it; and (same durability) an acknowledged JetStream publish → a raw ordered consumer | p50 / p99 ≤ 1.5× |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aether_benches::{Added, NatsBench, added_event};
use aether_core::{
    ActorId, EventFeed, EventStore, FeedFilter, FeedItem, Namespace, Position, Projection,
    ProjectionError, Version,
};
use aether_projection::{MemoryCheckpointStore, ProjectionRunner};
use aether_store_jetstream::JetStreamEventStore;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;

const LEN: u64 = 100_000;
const LATENCY_SAMPLES: usize = 2_000;

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

    fn store(&self, ns: &str) -> JetStreamEventStore {
        self.rt.block_on(async {
            JetStreamEventStore::builder(self.client.clone())
                .namespace(Namespace::new(ns).expect("ns"))
                .open()
                .await
                .expect("open store")
        })
    }
}

fn read_all(c: &mut Criterion, env: &Env) -> f64 {
    let mut g = c.benchmark_group("feed/read_all_100k");
    g.throughput(Throughput::Elements(LEN));
    let store = env.store("bench-feed");
    env.rt.block_on(async {
        // 100 actors × 1000 events, in atomic batches of 1000.
        for a in 0..LEN / 1000 {
            let actor = ActorId::new(format!("a-{a}")).expect("id");
            let events = (1..=1000).map(|v| added_event(&actor, v)).collect();
            store
                .append(&actor, Version::ZERO, events)
                .await
                .expect("fill");
        }
    });
    let aether = || async {
        let n = store
            .read_all(Position::ZERO, FeedFilter::all())
            .fold(0u64, |n, item| async move {
                item.expect("item");
                n + 1
            })
            .await;
        assert_eq!(n, LEN);
    };
    // The context spawns its acknowledgement task: inside the runtime.
    let js = {
        let _rt = env.rt.enter();
        async_nats::jetstream::new(env.client.clone())
    };
    let stream = env
        .rt
        .block_on(js.get_stream(store.events_stream_name()))
        .expect("stream");
    let raw = || async {
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        for _ in 0..LEN {
            messages.next().await.expect("message").expect("ok");
        }
    };
    g.bench_function("aether_read_all", |b| b.to_async(&env.rt).iter(&aether));
    g.bench_function("raw_ordered_consumer", |b| b.to_async(&env.rt).iter(&raw));
    g.finish();
    // Paired rounds, alternating, so both see the same machine load.
    let (mut ta, mut tr) = (Duration::ZERO, Duration::ZERO);
    env.rt.block_on(async {
        for _ in 0..5 {
            let t = Instant::now();
            aether().await;
            ta += t.elapsed();
            let t = Instant::now();
            raw().await;
            tr += t.elapsed();
        }
    });
    let n = 5.0 * LEN as f64;
    let ratio = tr.as_secs_f64() / ta.as_secs_f64();
    eprintln!(
        "paired read_all_100k: aether {:.0}/s, raw {:.0}/s, ratio {ratio:.2} (goal >= 0.8)",
        n / ta.as_secs_f64(),
        n / tr.as_secs_f64()
    );
    ratio
}

/// Sends each handled event's version, and when the handler saw it, to the
/// bench: the latency ends in the handler, not after a hop back to the
/// bench's task (the raw baselines have no such hop either).
struct Probe(tokio::sync::mpsc::UnboundedSender<(u64, Instant)>);

impl Projection for Probe {
    fn name(&self) -> &str {
        "probe"
    }
    async fn handle(&mut self, item: &FeedItem) -> Result<(), ProjectionError> {
        let _ = self.0.send((item.event.version.get(), Instant::now()));
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn live_latency(c: &mut Criterion, env: &Env) -> (f64, f64) {
    let mut g = c.benchmark_group("feed/live_latency");
    g.throughput(Throughput::Elements(1));
    let store = env.store("bench-live");
    let actor = ActorId::new("live").expect("id");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let rx = tokio::sync::Mutex::new(rx);
    let runner = {
        let store = store.clone();
        env.rt.spawn(async move {
            let mut runner = ProjectionRunner::new(store, MemoryCheckpointStore::new());
            runner.run(&mut Probe(tx)).await
        })
    };
    let version = AtomicU64::new(0);
    let aether = || async {
        let v = version.fetch_add(1, Ordering::SeqCst) + 1;
        let t = Instant::now();
        store
            .append(&actor, Version::new(v - 1), vec![added_event(&actor, v)])
            .await
            .expect("append");
        let (got, at) = rx.lock().await.recv().await.expect("handled");
        assert_eq!(got, v);
        at - t
    };
    let subject = "bench.raw.live";
    let sub = env
        .rt
        .block_on(env.client.subscribe(subject))
        .expect("subscribe");
    let sub = tokio::sync::Mutex::new(sub);
    let payload =
        aether_core::event::encode_payload(&Added { amount: 1 }, "Added").expect("encode");
    let raw = || async {
        let t = Instant::now();
        env.client
            .publish(subject, payload.clone())
            .await
            .expect("publish");
        sub.lock().await.next().await.expect("message");
        t.elapsed()
    };
    // A second baseline with the same durability as an append: a JetStream
    // publish (acknowledged) read back by a raw ordered consumer.
    let js = {
        let _rt = env.rt.enter();
        async_nats::jetstream::new(env.client.clone())
    };
    let js_messages = env.rt.block_on(async {
        let stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: "RAWLIVE".into(),
                subjects: vec!["RAWLIVE.*".into()],
                ..Default::default()
            })
            .await
            .expect("raw stream");
        stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .expect("consumer")
            .messages()
            .await
            .expect("messages")
    });
    let js_messages = tokio::sync::Mutex::new(js_messages);
    let raw_js = || async {
        let t = Instant::now();
        js.publish("RAWLIVE.a", payload.clone())
            .await
            .expect("publish")
            .await
            .expect("ack");
        js_messages
            .lock()
            .await
            .next()
            .await
            .expect("message")
            .expect("ok");
        t.elapsed()
    };
    g.bench_function("aether_append_to_handler", |b| {
        b.to_async(&env.rt).iter(&aether)
    });
    g.bench_function("raw_publish_to_subscriber", |b| {
        b.to_async(&env.rt).iter(&raw)
    });
    g.finish();
    let (mut la, mut lr, mut lj) = (Vec::new(), Vec::new(), Vec::new());
    env.rt.block_on(async {
        for _ in 0..LATENCY_SAMPLES {
            la.push(aether().await);
            lr.push(raw().await);
            lj.push(raw_js().await);
        }
    });
    la.sort();
    lr.sort();
    lj.sort();
    let (j50, j99) = (percentile(&lj, 0.5), percentile(&lj, 0.99));
    eprintln!(
        "live latency, JetStream baseline: raw acked publish -> raw ordered consumer p50 {j50:?} p99 {j99:?}; aether/raw-js p50 {:.2} p99 {:.2}",
        percentile(&la, 0.5).as_secs_f64() / j50.as_secs_f64(),
        percentile(&la, 0.99).as_secs_f64() / j99.as_secs_f64()
    );
    let (a50, a99) = (percentile(&la, 0.5), percentile(&la, 0.99));
    let (r50, r99) = (percentile(&lr, 0.5), percentile(&lr, 0.99));
    let (q50, q99) = (
        a50.as_secs_f64() / r50.as_secs_f64(),
        a99.as_secs_f64() / r99.as_secs_f64(),
    );
    eprintln!(
        "live latency ({LATENCY_SAMPLES} paired samples): aether p50 {a50:?} p99 {a99:?}; raw p50 {r50:?} p99 {r99:?}; ratio p50 {q50:.2} p99 {q99:.2} (goal <= 1.5)"
    );
    runner.abort();
    (q50, q99)
}

fn benches(c: &mut Criterion) {
    let env = Env::new();
    let read = read_all(c, &env);
    let (p50, p99) = live_latency(c, &env);
    eprintln!(
        "feed ratios: read_all {read:.2} (goal >= 0.8), live latency p50 {p50:.2} p99 {p99:.2} (goal <= 1.5)"
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = feed_benches;
    config = config();
    targets = benches
}
criterion_main!(feed_benches);
