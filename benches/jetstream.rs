//! JetStream store benchmarks against a real `nats-server` started by the
//! test harness, each beside a raw async-nats baseline doing the same work on
//! the same server in the same run. The ratio aether/raw is the cost of the
//! store's contract (envelope headers, validation, version cache, idempotent
//! retries, metrics).
//!
//! `cargo bench -p aether-benches --bench jetstream` (about two minutes).
//!
//! | group | aether | raw baseline |
//! |---|---|---|
//! | `save_event_sync` | `save_event` on one actor, one at a time | `send_publish` with `Nats-Msg-Id` + expected last subject sequence, awaited |
//! | `pipelined_1000_actors` | 1000 concurrent `append`s of one event, one per actor | 1000 publishes with expected sequence, acks awaited together |
//! | (diagnostic) | the raw baseline with store-sized bodies and ids | the raw baseline: shows how much of the pipelined gap is the stored size |
//! | `append_batch/{10,100}` | `append` of an atomic batch | the same batch headers sent by hand, commit awaited |
//! | (diagnostic) | the raw batch with a `Nats-Msg-Id` per message, as the store sends | the raw batch: shows how much of the batch gap is the server's duplicate check |
//! | `rehydrate_10k` | `get_events` of a 10 000-event actor | an ordered consumer on the actor's subject |
//! | `load_modify_save_100` | `Repository::execute` (snapshot + events, append, snapshot every 10) on 100 actors at once; and appends from cached state | direct get of the last event + publish with expected sequence |

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aether_benches::{Added, Counter, NatsBench, added_event};
use aether_core::event::encode_payload;
use aether_core::{ActorId, Event, EventStore, EventStoreExt, Namespace, Repository, Version};
use aether_store_jetstream::JetStreamEventStore;
use async_nats::HeaderMap;
use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use futures::future::join_all;

/// One server, one client, a raw stream and a store namespace per group.
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

    /// A raw stream laid out like the store's (subject per actor, atomic
    /// publish, direct get), for the baselines.
    fn raw_stream(&self, name: &str) -> stream::Stream {
        self.rt.block_on(async {
            self.js
                .create_stream(stream::Config {
                    name: name.to_owned(),
                    subjects: vec![format!("{name}.*")],
                    allow_direct: true,
                    allow_atomic_publish: true,
                    ..Default::default()
                })
                .await
                .expect("raw stream")
        })
    }
}

/// The same MessagePack payload the store sends (without building a whole
/// event per raw message).
fn payload(v: u64) -> Bytes {
    encode_payload(&Added { amount: v }, "Added").expect("encode")
}

async fn raw_sync_publish(js: &jetstream::Context, subject: String, id: String, seq: u64) -> u64 {
    js.send_publish(
        subject,
        Publish::build()
            .payload(payload(seq))
            .message_id(id)
            .expected_last_subject_sequence(seq),
    )
    .await
    .expect("publish")
    .await
    .expect("ack")
    .sequence
}

/// Paired measurement: `rounds` times one call of `aether` then one of
/// `raw`, each timed, so both see the same server and machine load (this
/// box is shared; sequential criterion groups drift). Each call handles
/// `elems` elements. Prints and returns the aether/raw throughput ratio.
fn paired<A, FA, B, FB>(env: &Env, name: &str, rounds: u32, elems: u64, aether: A, raw: B) -> f64
where
    A: Fn() -> FA,
    FA: Future<Output = ()>,
    B: Fn() -> FB,
    FB: Future<Output = ()>,
{
    let (mut ta, mut tb) = (Duration::ZERO, Duration::ZERO);
    env.rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            aether().await;
            ta += t.elapsed();
            let t = Instant::now();
            raw().await;
            tb += t.elapsed();
        }
    });
    let n = f64::from(rounds) * elems as f64;
    let ratio = tb.as_secs_f64() / ta.as_secs_f64();
    eprintln!(
        "paired {name}: aether {:.0}/s, raw {:.0}/s, ratio {ratio:.2}",
        n / ta.as_secs_f64(),
        n / tb.as_secs_f64()
    );
    ratio
}

fn save_event_sync(c: &mut Criterion, env: &Env) -> f64 {
    const CHUNK: u64 = 20;
    let mut g = c.benchmark_group("jetstream/save_event_sync");
    g.throughput(Throughput::Elements(1));
    let store = env.store("bench-sync");
    let actor = ActorId::new("sync").expect("id");
    let next = AtomicU64::new(0);
    let aether = || {
        let v = next.fetch_add(1, Ordering::Relaxed) + 1;
        let store = &store;
        let e = added_event(&actor, v);
        async move {
            store.save_event(e).await.expect("save");
        }
    };
    env.raw_stream("RAWSYNC");
    let seq = AtomicU64::new(0);
    let raw = || {
        let last = seq.load(Ordering::Relaxed);
        let (js, seq) = (&env.js, &seq);
        async move {
            let s = raw_sync_publish(js, "RAWSYNC.a".into(), format!("id-{last}"), last).await;
            seq.store(s, Ordering::Relaxed);
        }
    };
    g.bench_function("aether", |b| b.to_async(&env.rt).iter(&aether));
    g.bench_function("raw_publish_expected_seq", |b| {
        b.to_async(&env.rt).iter(&raw)
    });
    g.finish();
    paired(
        env,
        "save_event_sync",
        60,
        CHUNK,
        || async {
            for _ in 0..CHUNK {
                aether().await;
            }
        },
        || async {
            for _ in 0..CHUNK {
                raw().await;
            }
        },
    )
}

fn pipelined(c: &mut Criterion, env: &Env) -> f64 {
    const ACTORS: usize = 1000;
    let mut g = c.benchmark_group("jetstream/pipelined_1000_actors");
    g.throughput(Throughput::Elements(ACTORS as u64));
    let store = env.store("bench-pipe");
    let actors: Vec<ActorId> = (0..ACTORS)
        .map(|i| ActorId::new(format!("actor-{i}")).expect("id"))
        .collect();
    let round = AtomicU64::new(0);
    let aether = || {
        let v = round.fetch_add(1, Ordering::Relaxed) + 1;
        let (store, actors) = (&store, &actors);
        async move {
            let appends = actors
                .iter()
                .map(|a| store.append(a, Version::new(v - 1), vec![added_event(a, v)]));
            for r in join_all(appends).await {
                r.expect("append");
            }
        }
    };
    env.raw_stream("RAWPIPE");
    let seqs: Vec<AtomicU64> = (0..ACTORS).map(|_| AtomicU64::new(0)).collect();
    let raw_round = AtomicU64::new(0);
    let raw = || {
        let r = raw_round.fetch_add(1, Ordering::Relaxed);
        let (js, seqs) = (&env.js, &seqs);
        async move {
            // 1000 acks in flight: below async-nats' max_ack_inflight (5000).
            let mut acks = Vec::with_capacity(ACTORS);
            for (i, s) in seqs.iter().enumerate() {
                let last = s.load(Ordering::Relaxed);
                let ack = js
                    .send_publish(
                        format!("RAWPIPE.a{i}"),
                        Publish::build()
                            .payload(payload(r))
                            .message_id(format!("{i}-{r}"))
                            .expected_last_subject_sequence(last),
                    )
                    .await
                    .expect("publish");
                acks.push(ack.into_future());
            }
            for (ack, s) in join_all(acks).await.into_iter().zip(seqs) {
                s.store(ack.expect("ack").sequence, Ordering::Relaxed);
            }
        }
    };
    // The raw baseline again with messages the size of the store's: the
    // same body length (envelope + payload) and a `Nats-Msg-Id` as long as
    // the store's (`<event id>.<actor scope>`). Not in the summary; it shows
    // how much of the gap is the stored size rather than client work.
    let body_len = {
        let e = added_event(&actors[0], 1);
        let msg_id_len = 36 + 1 + 32;
        // `stored_size` counts the worst case of the control headers too.
        let control = "Nats-Expected-Last-Subject-Sequence: 18446744073709551615\r\n".len()
            + "Nats-Batch-Id: 0123456789abcdef0123456789abcdef\r\n".len()
            + "Nats-Batch-Sequence: 1000\r\n".len()
            + "Nats-Batch-Commit: 1\r\n".len();
        JetStreamEventStore::stored_size(&e).expect("size")
            - b"NATS/1.0\r\n\r\nNats-Msg-Id: \r\n".len()
            - msg_id_len
            - control
    };
    env.raw_stream("RAWPIPESIZED");
    let sized_seqs: Vec<AtomicU64> = (0..ACTORS).map(|_| AtomicU64::new(0)).collect();
    let sized_round = AtomicU64::new(0);
    let sized = || {
        let r = sized_round.fetch_add(1, Ordering::Relaxed);
        let (js, seqs) = (&env.js, &sized_seqs);
        async move {
            let mut acks = Vec::with_capacity(ACTORS);
            for (i, s) in seqs.iter().enumerate() {
                let last = s.load(Ordering::Relaxed);
                let ack = js
                    .send_publish(
                        format!("RAWPIPESIZED.a{i}"),
                        Publish::build()
                            .payload(Bytes::from(vec![0x90u8; body_len]))
                            .message_id(format!(
                                "{}.{:032x}",
                                uuid_like(r, i as u64),
                                i as u128 * 0x9e37_79b9_7f4a_7c15
                            ))
                            .expected_last_subject_sequence(last),
                    )
                    .await
                    .expect("publish");
                acks.push(ack.into_future());
            }
            for (ack, s) in join_all(acks).await.into_iter().zip(seqs) {
                s.store(ack.expect("ack").sequence, Ordering::Relaxed);
            }
        }
    };
    g.bench_function("aether", |b| b.to_async(&env.rt).iter(&aether));
    g.bench_function("raw_publish_expected_seq", |b| {
        b.to_async(&env.rt).iter(&raw)
    });
    g.finish();
    paired(
        env,
        &format!("pipelined_1000_actors (raw, {body_len} B bodies and 69 B ids vs raw)"),
        20,
        ACTORS as u64,
        sized,
        raw,
    );
    paired(env, "pipelined_1000_actors", 20, ACTORS as u64, aether, raw)
}

/// A UUID-shaped, unique id of round `r` and actor `i`.
fn uuid_like(r: u64, i: u64) -> String {
    let x = (u128::from(r) << 64) | u128::from(i);
    let h = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A batch sent by hand: every message but the last without a reply, the
/// commit awaited through the JetStream context. With `ids`, every message
/// also carries a `Nats-Msg-Id` as long as the store's
/// (`<event id>.<actor scope>`), which the server checks for duplicates.
async fn raw_batch(
    js: &jetstream::Context,
    client: &async_nats::Client,
    subject: &str,
    (n, last, batch): (u64, u64, u64),
    ids: bool,
) -> u64 {
    let id = format!("raw-{batch}");
    for i in 1..=n {
        let mut h = HeaderMap::new();
        if ids {
            h.insert(
                "Nats-Msg-Id",
                format!("{}.{:032x}", uuid_like(batch, i), u128::from(i)).as_str(),
            );
        }
        h.insert(NATS_BATCH_ID, id.as_str());
        h.insert(NATS_BATCH_SEQUENCE, i.to_string());
        if i == 1 {
            h.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, last.to_string());
        }
        if i == n {
            h.insert(NATS_BATCH_COMMIT, "1");
            return js
                .send_publish(
                    subject.to_owned(),
                    Publish::build().payload(payload(i)).headers(h),
                )
                .await
                .expect("commit")
                .await
                .expect("batch ack")
                .sequence;
        }
        client
            .publish_with_headers(subject.to_owned(), h, payload(i))
            .await
            .expect("publish");
    }
    unreachable!()
}

fn append_batch(c: &mut Criterion, env: &Env) -> Vec<f64> {
    let mut ratios = Vec::new();
    for n in [10u64, 100] {
        let mut g = c.benchmark_group(format!("jetstream/append_batch/{n}"));
        g.throughput(Throughput::Elements(n));
        let store = env.store(&format!("bench-batch{n}"));
        let actor = ActorId::new("batch").expect("id");
        let next = AtomicU64::new(0);
        let aether = || {
            let v = next.fetch_add(n, Ordering::Relaxed);
            let events: Vec<Event> = (1..=n).map(|i| added_event(&actor, v + i)).collect();
            let (store, actor) = (&store, &actor);
            async move {
                store
                    .append(actor, Version::new(v), events)
                    .await
                    .expect("append");
            }
        };
        let name = format!("RAWBATCH{n}");
        env.raw_stream(&name);
        let seq = AtomicU64::new(0);
        let batches = AtomicU64::new(0);
        let subject = format!("{name}.a");
        let raw = || {
            let last = seq.load(Ordering::Relaxed);
            let batch = batches.fetch_add(1, Ordering::Relaxed);
            let (js, client, subject, seq) = (&env.js, &env.client, &subject, &seq);
            async move {
                let s = raw_batch(js, client, subject, (n, last, batch), false).await;
                seq.store(s, Ordering::Relaxed);
            }
        };
        // The raw batch again with a message id per message, as the store
        // sends (idempotent retries): not in the summary; it shows how much
        // of the gap is the server's duplicate check of every message.
        let ids_name = format!("RAWBATCHIDS{n}");
        env.raw_stream(&ids_name);
        let ids_seq = AtomicU64::new(0);
        let ids_subject = format!("{ids_name}.a");
        let raw_ids = || {
            let last = ids_seq.load(Ordering::Relaxed);
            let batch = batches.fetch_add(1, Ordering::Relaxed);
            let (js, client, subject, seq) = (&env.js, &env.client, &ids_subject, &ids_seq);
            async move {
                let s = raw_batch(js, client, subject, (n, last, batch), true).await;
                seq.store(s, Ordering::Relaxed);
            }
        };
        g.bench_function("aether", |b| b.to_async(&env.rt).iter(&aether));
        g.bench_function("raw_batch_publish", |b| b.to_async(&env.rt).iter(&raw));
        g.finish();
        paired(
            env,
            &format!("append_batch/{n} (raw with a Nats-Msg-Id per message vs raw)"),
            60,
            n,
            raw_ids,
            raw,
        );
        ratios.push(paired(
            env,
            &format!("append_batch/{n}"),
            60,
            n,
            aether,
            raw,
        ));
    }
    ratios
}

fn rehydrate(c: &mut Criterion, env: &Env) -> f64 {
    const LEN: u64 = 10_000;
    let mut g = c.benchmark_group("jetstream/rehydrate_10k");
    g.throughput(Throughput::Elements(LEN));
    let store = env.store("bench-read");
    let actor = ActorId::new("long").expect("id");
    env.rt.block_on(async {
        for start in (0..LEN).step_by(1000) {
            let events = (1..=1000).map(|i| added_event(&actor, start + i)).collect();
            store
                .append(&actor, Version::new(start), events)
                .await
                .expect("fill");
        }
    });
    let aether = || async {
        let events = store.get_events(&actor, Version::ZERO).await.expect("read");
        assert_eq!(events.len() as u64, LEN);
    };
    let raw_stream = env
        .rt
        .block_on(env.js.get_stream(store.events_stream_name()))
        .expect("stream");
    let subject = store.event_subject(&actor);
    let raw = || async {
        let consumer = raw_stream
            .create_consumer(OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let mut messages = consumer.messages().await.expect("messages");
        let mut n = 0;
        while n < LEN {
            messages.next().await.expect("message").expect("ok");
            n += 1;
        }
    };
    g.bench_function("aether_get_events", |b| b.to_async(&env.rt).iter(&aether));
    g.bench_function("aether_stream_events", |b| {
        b.to_async(&env.rt).iter(|| async {
            let n = store
                .stream_events(&actor, Version::ZERO)
                .fold(0u64, |n, e| async move {
                    e.expect("event");
                    n + 1
                })
                .await;
            assert_eq!(n, LEN);
        })
    });
    g.bench_function("raw_ordered_consumer", |b| b.to_async(&env.rt).iter(&raw));
    g.finish();
    paired(env, "rehydrate_10k", 15, LEN, aether, raw)
}

fn load_modify_save(c: &mut Criterion, env: &Env) {
    const ACTORS: usize = 100;
    let mut g = c.benchmark_group("jetstream/load_modify_save_100");
    g.throughput(Throughput::Elements(ACTORS as u64));
    let store = env.store("bench-lms");
    let repo = Repository::new(store.clone()).snapshot_every(10);
    let actors: Vec<ActorId> = (0..ACTORS)
        .map(|i| ActorId::new(format!("lms-{i}")).expect("id"))
        .collect();
    let aether = || async {
        let ops = actors.iter().map(|a| repo.execute::<Counter>(a, 1));
        for r in join_all(ops).await {
            r.expect("execute");
        }
    };
    // The state stays in memory (as in an actor host): only the append, with
    // the version cache supplying the expected sequence.
    let cached_store = env.store("bench-lms-cached");
    let versions: Vec<AtomicU64> = (0..ACTORS).map(|_| AtomicU64::new(0)).collect();
    let cached = || async {
        let ops = actors.iter().zip(&versions).map(|(a, v)| {
            let store = &cached_store;
            async move {
                let cur = v.load(Ordering::Relaxed);
                let new = store
                    .append(a, Version::new(cur), vec![added_event(a, cur + 1)])
                    .await
                    .expect("append");
                v.store(new.get(), Ordering::Relaxed);
            }
        });
        join_all(ops).await;
    };
    let raw_stream = Arc::new(env.raw_stream("RAWLMS"));
    let raw = || async {
        let ops = (0..ACTORS).map(|i| {
            let (raw, js) = (raw_stream.clone(), &env.js);
            async move {
                let subject = format!("RAWLMS.a{i}");
                let last = match raw.direct_get_last_for_subject(subject.clone()).await {
                    Ok(m) => m.sequence,
                    Err(_) => 0,
                };
                raw_sync_publish(js, subject, format!("{i}-{last}"), last).await;
            }
        });
        join_all(ops).await;
    };
    g.bench_function("aether_repository_snapshots", |b| {
        b.to_async(&env.rt).iter(&aether)
    });
    g.bench_function("aether_cached_state", |b| b.to_async(&env.rt).iter(&cached));
    g.bench_function("raw_get_last_then_publish", |b| {
        b.to_async(&env.rt).iter(&raw)
    });
    g.finish();
    paired(
        env,
        "load_modify_save_100 (repository vs raw get+publish)",
        10,
        ACTORS as u64,
        aether,
        raw,
    );
    paired(
        env,
        "load_modify_save_100 (cached state vs raw get+publish)",
        10,
        ACTORS as u64,
        cached,
        raw,
    );
}

fn benches(c: &mut Criterion) {
    let env = Env::new();
    let started = Instant::now();
    let sync = save_event_sync(c, &env);
    let pipe = pipelined(c, &env);
    let batch = append_batch(c, &env);
    let read = rehydrate(c, &env);
    load_modify_save(c, &env);
    eprintln!(
        "paired ratios aether/raw: sync {sync:.2} (goal 0.95), pipelined {pipe:.2} (goal 0.85), \
         batch10 {:.2}, batch100 {:.2} (goal 0.9), rehydrate {read:.2} (goal 0.9); took {:?}",
        batch[0],
        batch[1],
        started.elapsed()
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = jetstream_benches;
    config = config();
    targets = benches
}
criterion_main!(jetstream_benches);
