//! A profiling driver, not a bench: the appends of `benches/jetstream.rs`
//! against a nats-server started by the test harness, for `perf` or
//! callgrind. `MODE` is `pipe` (rounds of 1000 concurrent one-event appends,
//! one per actor), `sync` (one actor, one append at a time), or either with
//! a `raw-` prefix for the bench's raw async-nats baseline. It prints the
//! client's CPU time per append (this process only: the server is a child
//! process), the number to compare between modes and before/after a change:
//!
//! ```text
//! cargo build --release -p aether-benches --example jetstream_driver
//! NATS_SERVER_BIN=… target/release/examples/jetstream_driver pipe 100
//! NATS_SERVER_BIN=… target/release/examples/jetstream_driver raw-pipe 100
//! ```

use std::future::IntoFuture;
use std::time::Instant;

use aether_benches::{Added, NatsBench, added_event};
use aether_core::event::encode_payload;
use aether_core::{ActorId, EventStore, EventStoreExt, Namespace, Version};
use aether_store_jetstream::JetStreamEventStore;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream;
use bytes::Bytes;
use futures::future::join_all;

const ACTORS: usize = 1000;

fn payload(v: u64) -> Bytes {
    encode_payload(&Added { amount: v }, "Added").expect("encode")
}

/// User plus system CPU seconds of this process so far (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "pipe".into());
    let rounds: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let env = NatsBench::start();
    let store = env.rt.block_on(async {
        JetStreamEventStore::builder(env.client.clone())
            .namespace(Namespace::new("drv").expect("ns"))
            .open()
            .await
            .expect("open store")
    });
    env.rt.block_on(async {
        env.js
            .create_stream(stream::Config {
                name: "RAW".into(),
                subjects: vec!["RAW.*".into()],
                allow_direct: true,
                allow_atomic_publish: true,
                ..Default::default()
            })
            .await
            .expect("raw stream");
    });
    let actors: Vec<ActorId> = (0..ACTORS)
        .map(|i| ActorId::new(format!("actor-{i}")).expect("id"))
        .collect();
    let mut seqs = vec![0u64; ACTORS];
    {
        let a = &actors[0];
        let fut = store.append(a, Version::ZERO, Vec::new());
        println!("append future: {} bytes", std::mem::size_of_val(&fut));
    }
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    let mut appends = 0u64;
    env.rt.block_on(async {
        for r in 1..=rounds {
            match mode.as_str() {
                "pipe" => {
                    let ops = actors
                        .iter()
                        .map(|a| store.append(a, Version::new(r - 1), vec![added_event(a, r)]));
                    for res in join_all(ops).await {
                        res.expect("append");
                    }
                    appends += ACTORS as u64;
                }
                "raw-pipe" => {
                    let mut acks = Vec::with_capacity(ACTORS);
                    for (i, last) in seqs.iter().enumerate() {
                        let ack = env
                            .js
                            .send_publish(
                                format!("RAW.a{i}"),
                                Publish::build()
                                    .payload(payload(r))
                                    .message_id(format!("{i}-{r}"))
                                    .expected_last_subject_sequence(*last),
                            )
                            .await
                            .expect("publish");
                        acks.push(ack.into_future());
                    }
                    for (ack, s) in join_all(acks).await.into_iter().zip(&mut seqs) {
                        *s = ack.expect("ack").sequence;
                    }
                    appends += ACTORS as u64;
                }
                "sync" => {
                    for i in 0..20 {
                        let v = (r - 1) * 20 + i + 1;
                        store
                            .save_event(added_event(&actors[0], v))
                            .await
                            .expect("save");
                    }
                    appends += 20;
                }
                "raw-sync" => {
                    for _ in 0..20 {
                        let last = seqs[0];
                        seqs[0] = env
                            .js
                            .send_publish(
                                "RAW.a".to_owned(),
                                Publish::build()
                                    .payload(payload(last))
                                    .message_id(format!("id-{last}"))
                                    .expected_last_subject_sequence(last),
                            )
                            .await
                            .expect("publish")
                            .await
                            .expect("ack")
                            .sequence;
                    }
                    appends += 20;
                }
                other => panic!("unknown mode {other}"),
            }
        }
    });
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    println!(
        "{mode}: {appends} appends, {:.0}/s, client CPU {:.2} us/append",
        appends as f64 / wall,
        cpu * 1e6 / appends as f64
    );
}
