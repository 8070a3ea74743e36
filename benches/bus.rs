//! Event bus benchmarks, each beside a same-run baseline:
//!
//! * `bus_local_fanout/{aether,broadcast}/N` — 64 publishes, each taken by N
//!   subscribers (1, 10, 100), on `LocalEventBus` vs a raw
//!   `tokio::sync::broadcast` channel carrying the same `BusEvent`s. The ratio
//!   is the cost of namespaces, filters, per-subscriber queues and metrics.
//! * `bus_nats_throughput/{aether,raw}` — 1000 events published on one
//!   connection and received on another, `NatsEventBus` vs raw async-nats
//!   publish/subscribe with the same payload bytes on the same server.
//! * `bus_nats_latency/{aether,raw}` — one publish → receive round at a time;
//!   with `--bench`, p50/p99 over 2000 rounds are printed too.
//!
//! The NATS benches start a `nats-server` through `aether-testkit-nats`.
//!
//! At the end one line, `paired ratios bus: …`, gives every paired ratio from
//! rounds that alternate aether and its baseline (so both see the same machine
//! load): fan-out *time* aether/broadcast per N (goal ≤ 1.2) and NATS
//! throughput aether/raw (goal ≥ 0.8).
//!
//! `cargo bench -p aether-benches --bench bus`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_benches::bus_sample_event;
use aether_bus::{LocalEventBus, NatsEventBus, Subscription};
use aether_core::{BusEvent, Event, EventBus, EventFilter, Namespace, NamespacePattern};
use aether_testkit_nats::{NatsServer, connect, unique_name};
use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use tokio::runtime::Runtime;

const FANOUT_BATCH: usize = 64;
const NATS_BATCH: usize = 1000;
const LATENCY_ROUNDS: usize = 2000;

fn local_fanout(c: &mut Criterion) {
    let ns = Namespace::new("acme.orders").expect("valid namespace");
    let event = bus_sample_event();
    let mut group = c.benchmark_group("bus_local_fanout");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    for n in [1usize, 10, 100] {
        group.throughput(Throughput::Elements((FANOUT_BATCH * n) as u64));

        let bus = LocalEventBus::builder().capacity(FANOUT_BATCH).build();
        let mut subs: Vec<Subscription> = (0..n)
            .map(|_| {
                bus.subscribe_with_capacity(EventFilter::namespace(ns.clone()), FANOUT_BATCH)
                    .expect("open bus")
            })
            .collect();
        group.bench_function(BenchmarkId::new("aether", n), |b| {
            b.iter(|| {
                for _ in 0..FANOUT_BATCH {
                    bus.publish_now(&ns, event.clone()).expect("open bus");
                }
                for sub in &mut subs {
                    while let Some(item) = sub.try_recv() {
                        black_box(item.expect("no lag"));
                    }
                }
            });
        });

        let (tx, _) = tokio::sync::broadcast::channel::<BusEvent>(FANOUT_BATCH);
        let mut rxs: Vec<_> = (0..n).map(|_| tx.subscribe()).collect();
        group.bench_function(BenchmarkId::new("broadcast", n), |b| {
            b.iter(|| {
                for _ in 0..FANOUT_BATCH {
                    tx.send(BusEvent {
                        namespace: ns.clone(),
                        event: Arc::new(event.clone()),
                    })
                    .expect("receivers");
                }
                for rx in &mut rxs {
                    while let Ok(item) = rx.try_recv() {
                        black_box(item);
                    }
                }
            });
        });
    }
    group.finish();
}

/// Alternates `rounds` timed calls of `a` and `b`; returns time(a)/time(b).
fn paired_time(rounds: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> f64 {
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        a();
        ta += t.elapsed();
        let t = Instant::now();
        b();
        tb += t.elapsed();
    }
    ta.as_secs_f64() / tb.as_secs_f64()
}

/// Fan-out time ratios aether/broadcast for 1, 10 and 100 subscribers.
fn paired_fanout() -> Vec<(usize, f64)> {
    let ns = Namespace::new("acme.orders").expect("valid namespace");
    let event = bus_sample_event();
    [1usize, 10, 100]
        .into_iter()
        .map(|n| {
            let bus = LocalEventBus::builder().capacity(FANOUT_BATCH).build();
            let mut subs: Vec<Subscription> = (0..n)
                .map(|_| {
                    bus.subscribe_with_capacity(EventFilter::namespace(ns.clone()), FANOUT_BATCH)
                        .expect("open bus")
                })
                .collect();
            let (tx, _) = tokio::sync::broadcast::channel::<BusEvent>(FANOUT_BATCH);
            let mut rxs: Vec<_> = (0..n).map(|_| tx.subscribe()).collect();
            let rounds = (2_000_000 / (FANOUT_BATCH * n)).max(200) as u32;
            let ratio = paired_time(
                rounds,
                || {
                    for _ in 0..FANOUT_BATCH {
                        bus.publish_now(&ns, event.clone()).expect("open bus");
                    }
                    for sub in &mut subs {
                        while let Some(item) = sub.try_recv() {
                            black_box(item.expect("no lag"));
                        }
                    }
                },
                || {
                    for _ in 0..FANOUT_BATCH {
                        tx.send(BusEvent {
                            namespace: ns.clone(),
                            event: Arc::new(event.clone()),
                        })
                        .expect("receivers");
                    }
                    for rx in &mut rxs {
                        while let Ok(item) = rx.try_recv() {
                            black_box(item);
                        }
                    }
                },
            );
            (n, ratio)
        })
        .collect()
}

/// NATS throughput ratio aether/raw (1000 events a round, 30 rounds each).
fn paired_nats(rt: &Runtime, s: &mut NatsSetup) -> f64 {
    let event = bus_sample_event();
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..30 {
        ta += time_batches(
            rt,
            1,
            async || {
                s.node_a
                    .publish(&s.ns, event.clone())
                    .await
                    .expect("publish");
            },
            async || {
                black_box(s.sub_b.next().await.expect("open").expect("no lag"));
            },
        );
        tb += time_batches(
            rt,
            1,
            async || {
                s.raw_a
                    .publish(s.raw_subject.clone(), s.wire_payload.clone())
                    .await
                    .expect("publish");
            },
            async || {
                black_box(s.raw_sub_b.next().await.expect("open"));
            },
        );
    }
    tb.as_secs_f64() / ta.as_secs_f64()
}

/// Two bus nodes and two raw clients on one server, plus the exact bytes the
/// bus sends for `sample_event`, so the raw baseline carries the same payload.
struct NatsSetup {
    node_a: NatsEventBus,
    _node_b: NatsEventBus,
    sub_b: Subscription,
    raw_a: async_nats::Client,
    raw_sub_b: async_nats::Subscriber,
    raw_subject: String,
    wire_payload: bytes::Bytes,
    ns: Namespace,
}

async fn nats_setup(url: &str) -> NatsSetup {
    let prefix = unique_name("bench");
    let ns = Namespace::new("acme.orders").expect("valid namespace");
    let node = |client| {
        NatsEventBus::builder(client)
            .prefix(prefix.clone())
            .capacity(NATS_BATCH * 2)
            .build()
            .expect("valid prefix")
    };
    let node_a = node(connect(url).await);
    let node_b = node(connect(url).await);
    let sub_b = node_b
        .subscribe(EventFilter::namespace(ns.clone()))
        .await
        .expect("subscribe");

    // Capture the wire bytes of one bus event.
    let raw_a = connect(url).await;
    let raw_b = connect(url).await;
    let mut capture = raw_b
        .subscribe(
            node_a
                .subject_pattern(&NamespacePattern::Exact(ns.clone()))
                .expect("pattern"),
        )
        .await
        .expect("subscribe");
    let raw_subject = unique_name("bench-raw");
    let raw_sub_b = raw_b
        .subscribe(raw_subject.clone())
        .await
        .expect("subscribe");
    round_trip(&raw_b).await; // both subscriptions are in place
    node_a
        .publish(&ns, bus_sample_event())
        .await
        .expect("publish");
    let wire_payload = capture.next().await.expect("captured").payload;
    drop(capture);
    let mut setup = NatsSetup {
        node_a,
        _node_b: node_b,
        sub_b,
        raw_a,
        raw_sub_b,
        raw_subject,
        wire_payload,
        ns,
    };
    setup.sub_b.next().await.expect("open").expect("no lag");
    setup
}

/// Returns once the server has processed what `client` sent before.
async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await.expect("subscribe");
    client.publish(inbox, "".into()).await.expect("publish");
    probe.next().await.expect("probe");
}

/// Times `iters` rounds of `NATS_BATCH` calls of `publish` followed by
/// `NATS_BATCH` calls of `receive`.
fn time_batches(
    rt: &Runtime,
    iters: u64,
    mut publish: impl AsyncFnMut(),
    mut receive: impl AsyncFnMut(),
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            for _ in 0..NATS_BATCH {
                publish().await;
            }
            for _ in 0..NATS_BATCH {
                receive().await;
            }
        }
        start.elapsed()
    })
}

fn nats_benches(c: &mut Criterion, rt: &Runtime, setup: &mut NatsSetup) {
    let event = bus_sample_event();
    let mut group = c.benchmark_group("bus_nats_throughput");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(15)
        .throughput(Throughput::Elements(NATS_BATCH as u64));
    group.bench_function("aether", |b| {
        b.iter_custom(|iters| {
            time_batches(
                rt,
                iters,
                async || {
                    setup
                        .node_a
                        .publish(&setup.ns, event.clone())
                        .await
                        .expect("publish");
                },
                async || {
                    black_box(setup.sub_b.next().await.expect("open").expect("no lag"));
                },
            )
        });
    });
    group.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            time_batches(
                rt,
                iters,
                async || {
                    setup
                        .raw_a
                        .publish(setup.raw_subject.clone(), setup.wire_payload.clone())
                        .await
                        .expect("publish");
                },
                async || {
                    black_box(setup.raw_sub_b.next().await.expect("open"));
                },
            )
        });
    });
    group.finish();

    let mut group = c.benchmark_group("bus_nats_latency");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    group.bench_function("aether", |b| {
        b.iter(|| rt.block_on(bus_round(setup, &event)));
    });
    group.bench_function("raw", |b| {
        b.iter(|| rt.block_on(raw_round(setup)));
    });
    group.finish();
}

async fn bus_round(s: &mut NatsSetup, event: &Event) -> Duration {
    let start = Instant::now();
    s.node_a
        .publish(&s.ns, event.clone())
        .await
        .expect("publish");
    black_box(s.sub_b.next().await.expect("open").expect("no lag"));
    start.elapsed()
}

async fn raw_round(s: &mut NatsSetup) -> Duration {
    let start = Instant::now();
    s.raw_a
        .publish(s.raw_subject.clone(), s.wire_payload.clone())
        .await
        .expect("publish");
    black_box(s.raw_sub_b.next().await.expect("open"));
    start.elapsed()
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

fn latency_report(rt: &Runtime, setup: &mut NatsSetup) {
    let event = bus_sample_event();
    let (bus, raw) = rt.block_on(async {
        let (mut bus, mut raw) = (Vec::new(), Vec::new());
        for _ in 0..LATENCY_ROUNDS {
            bus.push(bus_round(setup, &event).await);
            raw.push(raw_round(setup).await);
        }
        (bus, raw)
    });
    let (bus50, bus99) = percentiles(bus);
    let (raw50, raw99) = percentiles(raw);
    println!(
        "bus_nats_latency_percentiles ({LATENCY_ROUNDS} rounds, {} B wire payload): \
         aether p50 {bus50:?} p99 {bus99:?} | raw p50 {raw50:?} p99 {raw99:?} | \
         ratio p50 {:.2} p99 {:.2}",
        setup.wire_payload.len(),
        bus50.as_secs_f64() / raw50.as_secs_f64(),
        bus99.as_secs_f64() / raw99.as_secs_f64(),
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    local_fanout(&mut c);

    let rt = Runtime::new().expect("tokio runtime");
    let server = rt.block_on(NatsServer::builder().jetstream(false).start());
    let mut setup = rt.block_on(nats_setup(&server.url()));
    nats_benches(&mut c, &rt, &mut setup);
    if std::env::args().any(|a| a == "--profile-time") {
        // Profiling one bench (`--bench NAME --profile-time SECS`): nothing else.
        return;
    }
    if std::env::args().any(|a| a == "--bench") {
        latency_report(&rt, &mut setup);
    }
    let nats = paired_nats(&rt, &mut setup);
    drop(setup);
    drop(server);
    c.final_summary();
    let fanout: Vec<String> = paired_fanout()
        .into_iter()
        .map(|(n, r)| format!("{n}: {r:.2}"))
        .collect();
    println!(
        "paired ratios bus: local fan-out time aether/broadcast {} (goal <= 1.2); \
         NATS publish->receive throughput aether/raw {nats:.2} (goal >= 0.8)",
        fanout.join(", ")
    );
}
