//! Two actor systems that both believe they own every shard (a split brain)
//! write the same actors through the JetStream store on a real nats-server.
//! The store's expected-version check is the fence: conflicts are reloaded
//! and decided again, and an independent raw reader finds every
//! acknowledged command's events exactly once and nothing else.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aether_actor::{ActorSystem, AskError};
use aether_core::{ActorId, Namespace, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, connect, unique_name};
use common::{Cmd, Counter, id};

async fn open(url: &str, ns: &Namespace) -> Arc<JetStreamEventStore> {
    Arc::new(
        JetStreamEventStore::builder(connect(url).await)
            .namespace(ns.clone())
            .open()
            .await
            .expect("open store"),
    )
}

fn system(store: Arc<JetStreamEventStore>) -> ActorSystem {
    ActorSystem::builder(store)
        .register::<Counter>()
        .max_conflict_retries(50)
        .ask_deadline(Duration::from_secs(30))
        .build()
        .expect("system")
}

/// Event ids on `subject`, read with plain async-nats direct gets (the
/// store's message id is `<event id>.<actor scope>`).
async fn raw_ids(client: &async_nats::Client, stream: &str, subject: &str) -> Vec<String> {
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(stream).await.expect("stream");
    let mut out = Vec::new();
    let mut seq = 1;
    loop {
        match stream.direct_get_next_for_subject(subject, Some(seq)).await {
            Ok(m) => {
                seq = m.sequence + 1;
                out.push(
                    m.headers
                        .get("Nats-Msg-Id")
                        .and_then(|v| v.as_str().split('.').next().map(str::to_owned))
                        .expect("every event has a message id"),
                );
            }
            Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                return out;
            }
            Err(e) => panic!("raw read of {subject}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_of_one_actor_never_both_write_one_version() {
    let server = NatsServer::start().await;
    let url = server.url();
    let ns = Namespace::new(unique_name("fence")).expect("namespace");
    let store_a = open(&url, &ns).await;
    let store_b = open(&url, &ns).await;
    let a = system(store_a.clone());
    let b = system(store_b.clone());

    // A deterministic conflict: a's cached version is stale after b writes.
    let x = id("x");
    assert_eq!(
        a.actor::<Counter>(x.clone())
            .ask(Cmd::Add(1))
            .await
            .expect("a")
            .version,
        Version::new(1)
    );
    assert_eq!(
        b.actor::<Counter>(x.clone())
            .ask(Cmd::Add(2))
            .await
            .expect("b")
            .version,
        Version::new(2)
    );
    let stale = a
        .actor::<Counter>(x.clone())
        .ask(Cmd::Add(4))
        .await
        .expect("a again");
    assert_eq!(
        stale.retries, 1,
        "the stale owner was fenced and decided again"
    );
    assert_eq!((stale.version, stale.state.total), (Version::new(3), 7));

    // Then both hammer the same actors at once.
    const ACTORS: usize = 4;
    const PER_TASK: u64 = 12;
    let mut tasks = Vec::new();
    for (side, system) in [(0u64, &a), (1, &b)] {
        for actor in 0..ACTORS {
            for lane in 0..2u64 {
                let r = system.actor::<Counter>(id(format!("hot-{actor}")));
                tasks.push(tokio::spawn(async move {
                    let mut done = Vec::new();
                    for k in 0..PER_TASK {
                        let amount = 1 + side * 1000 + lane * 100 + k;
                        match r.ask(Cmd::Add(amount)).await {
                            Ok(o) => done.push((actor, amount, o)),
                            Err(AskError::Store(e)) if e.is_conflict() => {}
                            Err(e) => panic!("unexpected failure: {e}"),
                        }
                    }
                    done
                }));
            }
        }
    }
    let mut acked: BTreeMap<usize, Vec<(u64, aether_actor::AskOutcome<Counter>)>> = BTreeMap::new();
    for t in tasks {
        for (actor, amount, o) in t.await.expect("task") {
            acked.entry(actor).or_default().push((amount, o));
        }
    }
    let retried: u32 = acked.values().flatten().map(|(_, o)| o.retries).sum();
    assert!(retried > 0, "concurrent owners met the fence");

    let raw = connect(&url).await;
    let fresh = system(open(&url, &ns).await);
    for actor in 0..ACTORS {
        let outcomes = acked.get(&actor).map(Vec::as_slice).unwrap_or_default();
        let acked_ids: BTreeSet<String> = outcomes
            .iter()
            .flat_map(|(_, o)| o.events.iter().map(|e| e.id.to_string()))
            .collect();
        let store_id = ActorId::new(format!("counter:hot-{actor}")).expect("id");
        let stored = raw_ids(
            &raw,
            store_a.events_stream_name(),
            &store_a.event_subject(&store_id),
        )
        .await;
        let stored_set: BTreeSet<String> = stored.iter().cloned().collect();
        assert_eq!(
            stored.len(),
            stored_set.len(),
            "hot-{actor}: no event stored twice"
        );
        assert_eq!(stored_set, acked_ids, "hot-{actor}: stored = acknowledged");
        let versions: BTreeSet<u64> = outcomes.iter().map(|(_, o)| o.version.get()).collect();
        assert_eq!(
            versions.len(),
            outcomes.len(),
            "hot-{actor}: no version acknowledged twice"
        );
        let replay = fresh
            .actor::<Counter>(id(format!("hot-{actor}")))
            .ask(Cmd::Nothing)
            .await
            .expect("replay");
        let sum: u64 = outcomes.iter().map(|(amount, _)| amount).sum();
        assert_eq!(
            replay.state.total, sum,
            "hot-{actor}: state equals a replay of the acknowledged"
        );
        assert_eq!(replay.version.get(), outcomes.len() as u64);
    }
    a.shutdown().await;
    b.shutdown().await;
    fresh.shutdown().await;
}
