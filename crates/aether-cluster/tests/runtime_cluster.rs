//! Actor systems on `ClusterManager`s: two nodes of one cluster on a real
//! nats-server agree on a shard map, and every command reaches the node that
//! owns its actor's shard, whichever node it was sent to.

#[path = "../../aether-actor/tests/common/mod.rs"]
mod runtime_common;

use std::sync::Arc;
use std::time::Duration;

use aether_actor::ActorSystem;
use aether_cluster::{ClusterManager, NodeId};
use aether_core::{EventStore, Version};
use aether_store_memory::InMemoryEventStore;
use aether_testkit_nats::{NatsServer, connect, unique_name, wait_until};
use runtime_common::{Cmd, Counter, id};

const SHARDS: u32 = 16;
const SOON: Duration = Duration::from_secs(20);

async fn manager(url: &str, cluster: &str, node: &str) -> ClusterManager {
    ClusterManager::builder(
        connect(url).await,
        cluster,
        NodeId::new(node).expect("node"),
    )
    .shard_count(SHARDS)
    .settle_delay(Duration::from_millis(100))
    .debounce(Duration::from_millis(50))
    .kinds(["counter"])
    .start()
    .await
    .expect("manager")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_reach_the_owner_of_their_shard_from_any_node() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("rtc");
    let m1 = manager(&url, &cluster, "n1").await;
    let m2 = manager(&url, &cluster, "n2").await;
    wait_until(
        SOON,
        "both nodes share one map with shards on each",
        async || match (m1.shard_map(), m2.shard_map()) {
            (Some(a), Some(b)) => {
                a == b
                    && a.moving.is_empty()
                    && a.load().len() == 2
                    && a.owners.iter().all(Option::is_some)
                    && m1.is_member()
                    && m2.is_member()
            }
            _ => false,
        },
    )
    .await;
    let store = Arc::new(InMemoryEventStore::new());
    let start = async |m: &ClusterManager| {
        ActorSystem::builder(store.clone())
            .register::<Counter>()
            .cluster(m)
            .start()
            .await
            .expect("system")
    };
    let s1 = start(&m1).await;
    let s2 = start(&m2).await;
    const ACTORS: usize = 24;
    for round in 1..=2u64 {
        for a in 0..ACTORS {
            // Alternate the node the command is sent to.
            let via = if (a + round as usize).is_multiple_of(2) {
                &s1
            } else {
                &s2
            };
            let out = via
                .actor::<Counter>(id(format!("acct-{a}")))
                .ask(Cmd::Add(round))
                .await
                .unwrap_or_else(|e| panic!("acct-{a} round {round}: {e}"));
            assert_eq!(out.version, Version::new(round));
        }
    }
    let (on1, on2) = (s1.active_actors(), s2.active_actors());
    assert_eq!(
        on1 + on2,
        ACTORS,
        "each actor is active on exactly one node"
    );
    assert!(on1 > 0 && on2 > 0, "both nodes host actors ({on1} / {on2})");
    for a in 0..ACTORS {
        let log = store
            .get_events(&id(format!("counter:acct-{a}")), Version::ZERO)
            .await
            .expect("read");
        assert_eq!(log.len(), 2);
    }
    s1.shutdown().await;
    s2.shutdown().await;
    m1.shutdown().await.expect("leave");
    m2.shutdown().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_moves_shards_by_handoff_without_failing_a_command() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("rth");
    let store = Arc::new(InMemoryEventStore::new());
    let start = async |m: &ClusterManager| {
        ActorSystem::builder(store.clone())
            .register::<Counter>()
            .cluster(m)
            .ask_deadline(Duration::from_secs(15))
            .start()
            .await
            .expect("system")
    };
    let m1 = manager(&url, &cluster, "n1").await;
    wait_until(SOON, "n1 owns every shard", async || {
        m1.shard_map()
            .is_some_and(|m| m.owners.iter().all(|o| o.as_ref() == Some(m1.node_id())))
    })
    .await;
    let s1 = start(&m1).await;
    const ACTORS: usize = 16;
    // A client keeps sending through n1 while n2 joins.
    let client = {
        let s1 = s1.clone();
        tokio::spawn(async move {
            let mut acked = vec![0u64; ACTORS];
            let mut failed = Vec::new();
            for round in 0.. {
                for (a, n) in acked.iter_mut().enumerate() {
                    match s1
                        .actor::<Counter>(id(format!("acct-{a}")))
                        .ask(Cmd::Add(1))
                        .await
                    {
                        Ok(_) => *n += 1,
                        Err(e) => failed.push(format!("acct-{a}: {e}")),
                    }
                }
                if round >= 10 && STOP.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
            (acked, failed)
        })
    };
    let m2 = manager(&url, &cluster, "n2").await;
    let s2 = start(&m2).await;
    wait_until(
        SOON,
        "both nodes own shards after the handoffs",
        async || match (m1.shard_map(), m2.shard_map()) {
            (Some(a), Some(b)) => a == b && a.moving.is_empty() && a.load().len() == 2,
            _ => false,
        },
    )
    .await;
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, failed) = client.await.expect("client");
    assert!(
        failed.is_empty(),
        "commands failed during the handoff: {failed:?}"
    );
    assert!(s2.active_actors() > 0, "n2 hosts actors after the join");
    for (a, n) in acked.iter().enumerate() {
        let log = store
            .get_events(&id(format!("counter:acct-{a}")), Version::ZERO)
            .await
            .expect("read");
        assert_eq!(
            log.len() as u64,
            *n,
            "acct-{a}: every acknowledged command once"
        );
    }
    s1.shutdown().await;
    s2.shutdown().await;
    m1.shutdown().await.expect("leave");
    m2.shutdown().await.expect("leave");
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
