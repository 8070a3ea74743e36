//! A driver for profiling the store's client work per operation (under
//! `valgrind --tool=callgrind` or `--tool=dhat`): `N` appends, atomic
//! batches or reads of one mode against the server at `NATS_URL`, so the
//! difference between two runs with different `N` is the cost of `N`
//! operations without the start-up.
//!
//! `cargo run --release --example append_profile -- <mode> <n>` with mode
//! `aether-sync`, `raw-sync`, `aether-pipe`, `raw-pipe` (rounds of 1000 actors), `aether-batch100`, `raw-batch100`,
//! `aether-read` or `raw-read`. With `PRINT_FUTURE_SIZE` set it first
//! prints the size of an append's and a read's future.

use aether_core::{ActorId, Event, EventStore, EventStoreExt, Namespace, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_store_jetstream::async_nats;
use async_nats::HeaderMap;
use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
};
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use futures::StreamExt;

fn event(actor: &ActorId, v: u64) -> Event {
    Event::new(actor.clone(), Version::new(v), "Added", &v).expect("encode")
}

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "aether-sync".into());
    let n: u64 = args.next().map_or(Ok(1000), |s| s.parse())?;
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url).await?;
    let js = async_nats::jetstream::new(client.clone());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let ns = Namespace::new(format!("prof-{}", &run[..12]))?;
    let actor = ActorId::new("profiled")?;
    let raw_name = format!("RAWPROF{}", &run[..12]);
    let raw_subject = format!("{raw_name}.a");
    let store = JetStreamEventStore::builder(client.clone())
        .namespace(ns)
        .storage(aether_store_jetstream::Storage::Memory)
        .open()
        .await?;
    js.create_stream(stream::Config {
        name: raw_name.clone(),
        subjects: vec![format!("{raw_name}.*")],
        allow_direct: true,
        allow_atomic_publish: true,
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await?;
    let payload = |v: u64| aether_core::event::encode_payload(&v, "Added").expect("encode");
    if std::env::var_os("PRINT_FUTURE_SIZE").is_some() {
        let f = store.append(&actor, Version::ZERO, vec![event(&actor, 1)]);
        eprintln!("append future: {} bytes", std::mem::size_of_val(&f));
        let f = client.send_request("x", async_nats::Request::new());
        eprintln!("send_request future: {} bytes", std::mem::size_of_val(&f));
        let f = js.send_publish("x", PublishMessage::build());
        eprintln!("send_publish future: {} bytes", std::mem::size_of_val(&f));
        let f = store.get_events(&actor, Version::ZERO);
        eprintln!("get_events future: {} bytes", std::mem::size_of_val(&f));
    }
    match mode.as_str() {
        "aether-sync" => {
            for v in 1..=n {
                store.save_event(event(&actor, v)).await?;
            }
        }
        "raw-sync" => {
            let mut last = 0;
            for v in 1..=n {
                last = js
                    .send_publish(
                        raw_subject.clone(),
                        PublishMessage::build()
                            .payload(payload(v))
                            .message_id(uuid::Uuid::now_v7().to_string())
                            .expected_last_subject_sequence(last),
                    )
                    .await?
                    .await?
                    .sequence;
            }
        }
        "aether-pipe" => {
            let actors: Vec<ActorId> = (0..1000)
                .map(|i| ActorId::new(format!("actor-{i}")))
                .collect::<Result<_, _>>()?;
            for v in 1..=n {
                let appends = actors
                    .iter()
                    .map(|a| store.append(a, Version::new(v - 1), vec![event(a, v)]));
                for r in futures::future::join_all(appends).await {
                    r?;
                }
            }
        }
        "raw-pipe" => {
            let mut last = vec![0u64; 1000];
            for v in 1..=n {
                let mut acks = Vec::with_capacity(1000);
                for (i, l) in last.iter().enumerate() {
                    let ack = js
                        .send_publish(
                            format!("{raw_name}.a{i}"),
                            PublishMessage::build()
                                .payload(payload(v))
                                .message_id(uuid::Uuid::now_v7().to_string())
                                .expected_last_subject_sequence(*l),
                        )
                        .await?;
                    acks.push(std::future::IntoFuture::into_future(ack));
                }
                for (ack, l) in futures::future::join_all(acks)
                    .await
                    .into_iter()
                    .zip(&mut last)
                {
                    *l = ack?.sequence;
                }
            }
        }
        "aether-batch100" => {
            for b in 0..n {
                let events = (1..=100).map(|i| event(&actor, b * 100 + i)).collect();
                store.append(&actor, Version::new(b * 100), events).await?;
            }
        }
        "raw-batch100" => {
            let mut last = 0;
            for b in 0..n {
                let id = uuid::Uuid::new_v4().simple().to_string();
                for i in 1..=100u64 {
                    let mut h = HeaderMap::new();
                    h.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
                    h.insert(NATS_BATCH_ID, id.as_str());
                    h.insert(NATS_BATCH_SEQUENCE, i.to_string());
                    if i == 1 {
                        h.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, last.to_string());
                    }
                    if i == 100 {
                        h.insert(NATS_BATCH_COMMIT, "1");
                        last = js
                            .send_publish(
                                raw_subject.clone(),
                                PublishMessage::build()
                                    .payload(payload(b * 100 + i))
                                    .headers(h),
                            )
                            .await?
                            .await?
                            .sequence;
                    } else {
                        client
                            .publish_with_headers(raw_subject.clone(), h, payload(b * 100 + i))
                            .await?;
                    }
                }
            }
        }
        "aether-read" | "raw-read" => {
            // `n` events written once (not profiled apart: compare two `n`).
            for start in (0..n).step_by(1000) {
                let len = (n - start).min(1000);
                let events = (1..=len).map(|i| event(&actor, start + i)).collect();
                store.append(&actor, Version::new(start), events).await?;
            }
            if mode == "aether-read" {
                let events = store.get_events(&actor, Version::ZERO).await?;
                assert_eq!(events.len() as u64, n);
            } else {
                let stream = js.get_stream(store.events_stream_name()).await?;
                let consumer = stream
                    .create_consumer(OrderedConfig {
                        filter_subject: store.event_subject(&actor),
                        deliver_policy: DeliverPolicy::All,
                        ..Default::default()
                    })
                    .await?;
                let mut messages = consumer.messages().await?;
                for _ in 0..n {
                    messages.next().await.expect("message")?;
                }
            }
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    Ok(())
}
