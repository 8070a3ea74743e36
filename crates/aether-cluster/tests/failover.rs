//! Failures of a node: its leader killed, its leader frozen past the lease, its
//! connection cut. Real nats-server; every wait is a condition with a deadline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_cluster::{ClusterManager, LeaderAction, ShardMap};
use aether_testkit_nats::{NatsServer, TcpProxy, unique_name, wait_for, wait_until};
use common::*;
use futures::StreamExt;

/// Polls `condition` every 2 ms (fine enough to measure a fail-over) until the
/// deadline; panics with `what` when it passes.
async fn poll_until(deadline: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition() {
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_within_lease_ttl_plus_settle() {
    const RUNS: usize = 20;
    let lease = Duration::from_secs(1);
    let settle = Duration::from_millis(100);
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("failover");
    let start = async |id: String| {
        builder(client(&url).await, &cluster, &id)
            .lease_ttl(lease)
            .settle_delay(settle)
            .start()
            .await
            .expect("start")
    };
    let mut nodes: Vec<ClusterManager> = Vec::new();
    for i in 0..3 {
        nodes.push(start(format!("n{i}")).await);
    }
    // An independent reader of the lease, to kill a leader right after it renewed.
    let js = async_nats::jetstream::new(client(&url).await);
    let lease_bucket = js
        .get_key_value(format!(
            "AETHER_CLUSTER_{}_LEADER",
            aether_core::name::encode_token(&cluster)
        ))
        .await
        .expect("leader bucket");
    let mut samples = Vec::new();
    for run in 0..RUNS {
        poll_until(SOON, "exactly one leader", || {
            nodes.iter().filter(|node| node.is_leader()).count() == 1
        })
        .await;
        let index = nodes
            .iter()
            .position(ClusterManager::is_leader)
            .expect("a leader");
        let old_term = nodes[index].term();
        // Even runs: kill as soon as the leader acts (before its first renewal).
        // Odd runs: kill right after a renewal, the worst moment (a follower waits
        // a whole TTL from the last renewal it saw).
        if run % 2 == 1 {
            let mut renewals = lease_bucket.watch("leader").await.expect("watch");
            wait_for(SOON, "a renewal of the lease", async || {
                match renewals.next().await {
                    Some(Ok(entry)) if entry.revision > old_term => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
        }
        // No goodbye: every task of the leader is aborted.
        let killed = Instant::now();
        drop(nodes.remove(index));
        poll_until(
            lease + settle + Duration::from_secs(5),
            "a new leader",
            || nodes.iter().any(ClusterManager::is_leader),
        )
        .await;
        let took = killed.elapsed();
        let leader = nodes
            .iter()
            .find(|node| node.is_leader())
            .expect("a leader");
        assert!(
            leader.term() > old_term,
            "run {run}: the new term {} is not above the old {old_term}",
            leader.term()
        );
        samples.push(took);
        nodes.push(start(format!("n{}", run + 3)).await);
    }
    let p50 = percentile(&mut samples, 50);
    let p99 = percentile(&mut samples, 99);
    let (min, max) = (samples[0], samples[RUNS - 1]);
    println!(
        "leader fail-over over {RUNS} runs: min {min:?}, p50 {p50:?}, p99 {p99:?}, max {max:?} \
         (lease TTL {lease:?}, settle {settle:?})"
    );
    // A follower takes over when it has seen no renewal for a TTL (at most a TTL
    // after the kill), then settles. The bound holds at the median; a kill right
    // after a renewal adds the takeover's CAS round trip and this poll on top.
    let bound = lease + settle;
    assert!(p50 <= bound, "fail-over p50 {p50:?} above {bound:?}");
    let slack = Duration::from_millis(100);
    assert!(
        p99 <= bound + slack,
        "fail-over p99 {p99:?} above {:?}",
        bound + slack
    );
    for node in nodes {
        node.shutdown().await.expect("graceful leave");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_leader_steps_down_and_terms_never_overlap() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("pause");
    let actions: Arc<Mutex<Vec<LeaderAction>>> = Arc::default();
    let audit = |actions: &Arc<Mutex<Vec<LeaderAction>>>| {
        let actions = Arc::clone(actions);
        move |action: &LeaderAction| actions.lock().unwrap().push(action.clone())
    };

    // An independent reader of every map written.
    let raw = client(&url).await;
    // Node A first, alone, so it becomes the leader; its runtime can be frozen.
    let mut a = {
        let (cluster, hook) = (cluster.clone(), audit(&actions));
        PausableNode::start(
            move |client| builder(client, &cluster, "a").on_leader_action(hook),
            url.clone(),
        )
        .await
    };
    wait_until(SOON, "a leads", async || a.manager.is_leader()).await;
    let js = async_nats::jetstream::new(raw);
    let map_bucket = js
        .get_key_value(format!(
            "AETHER_CLUSTER_{}_MAP",
            aether_core::name::encode_token(&cluster)
        ))
        .await
        .expect("map bucket");
    let written: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let reader = {
        let written = Arc::clone(&written);
        let mut watch = map_bucket.watch_with_history("map").await.expect("watch");
        tokio::spawn(async move {
            while let Some(Ok(entry)) = watch.next().await {
                if let Ok(map) = ShardMap::decode(&entry.value) {
                    written.lock().unwrap().push((map.term, map.epoch));
                }
            }
        })
    };
    let b = builder(client(&url).await, &cluster, "b")
        .on_leader_action(audit(&actions))
        .start()
        .await
        .expect("b starts");
    let c = builder(client(&url).await, &cluster, "c")
        .on_leader_action(audit(&actions))
        .start()
        .await
        .expect("c starts");
    wait_converged(&[&a.manager, &b, &c], SOON, "three nodes agree on a map").await;
    let old_term = a.manager.term();
    assert!(a.manager.is_leader());

    a.pause();
    let paused = Instant::now();
    wait_until(SOON, "b or c leads", async || {
        b.is_leader() || c.is_leader()
    })
    .await;
    let new_leader = if b.is_leader() { &b } else { &c };
    let new_term = new_leader.term();
    assert!(
        new_term > old_term,
        "new term {new_term} not above {old_term}"
    );
    // The new leader fences the old one by writing the map under its own term.
    wait_until(SOON, "the new leader writes the map", async || {
        new_leader
            .shard_map()
            .is_some_and(|map| map.term == new_term)
    })
    .await;
    // Keep A frozen well past its lease.
    wait_until(SOON, "A frozen for two lease TTLs", async || {
        paused.elapsed() >= LEASE_TTL * 2
    })
    .await;
    a.resume();
    // On resuming, A's own deadline check answers before anything else.
    assert!(
        !a.manager.is_leader(),
        "A still believes it leads after its lease passed"
    );
    wait_until(SOON, "A follows the new term", async || {
        a.manager
            .shard_map()
            .is_some_and(|map| map.term == new_term)
            && a.manager.leader().as_ref() == Some(new_leader.node_id())
    })
    .await;
    wait_converged(&[&a.manager, &b, &c], SOON, "the cluster converges again").await;
    assert!(!a.manager.is_leader());

    // No two nodes acted as leader for overlapping terms.
    let actions = actions.lock().unwrap().clone();
    let by_a: Vec<&LeaderAction> = actions.iter().filter(|x| x.node.as_str() == "a").collect();
    let by_new: Vec<&LeaderAction> = actions
        .iter()
        .filter(|x| x.node == *new_leader.node_id())
        .collect();
    assert!(
        !by_a.is_empty() && !by_new.is_empty(),
        "both leaders wrote: {actions:?}"
    );
    assert!(by_a.iter().all(|x| x.term == old_term), "{by_a:?}");
    assert!(by_new.iter().all(|x| x.term == new_term), "{by_new:?}");
    let last_a = by_a.iter().map(|x| x.at).max().unwrap();
    let first_new = by_new.iter().map(|x| x.at).min().unwrap();
    assert!(last_a < first_new, "A acted after the new leader began");
    let mut sorted = actions.clone();
    sorted.sort_by_key(|x| x.at);
    assert!(
        sorted.windows(2).all(|w| w[0].term <= w[1].term),
        "leader actions go back in term: {sorted:?}"
    );
    // What the store accepted: (term, epoch) only grows, and nothing under the old
    // term after the first map of the new term.
    let written = written.lock().unwrap().clone();
    assert!(
        written.windows(2).all(|w| w[0] < w[1]),
        "maps went back: {written:?}"
    );
    let first_new = written
        .iter()
        .position(|(term, _)| *term == new_term)
        .expect("new term map");
    assert!(
        written[first_new..]
            .iter()
            .all(|(term, _)| *term >= new_term),
        "a map with the old term was accepted after the new leader wrote: {written:?}"
    );
    reader.abort();
    b.shutdown().await.expect("b leaves");
    c.shutdown().await.expect("c leaves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_node_leaves_loses_its_shards_and_rejoins_as_a_new_incarnation() {
    let server = NatsServer::start().await;
    let url = server.url();
    let proxy = TcpProxy::start(server.addr()).await;
    let cluster = unique_name("cut");
    let a = start(&url, &cluster, "a").await;
    let b = start(&url, &cluster, "b").await;
    let c = start(&proxy.url(), &cluster, "c").await;
    wait_converged(&[&a, &b, &c], SOON, "three nodes agree on a map").await;
    let before = c.incarnation().expect("c is a member");
    assert!(!c.owned_shards().is_empty());

    proxy.cut().await;
    let cut = Instant::now();
    // The cut node stops claiming membership by itself, before the others drop it
    // (so it never acts on shards they may already have given away).
    let mut stopped_claiming = None;
    poll_until(MEMBER_TTL * 2, "a and b drop c from their views", || {
        if stopped_claiming.is_none() && !c.is_member() {
            stopped_claiming = Some(cut.elapsed());
        }
        [&a, &b]
            .iter()
            .all(|node| node.members().iter().all(|m| m.node_id.as_str() != "c"))
    })
    .await;
    let left = cut.elapsed();
    let stopped_claiming =
        stopped_claiming.expect("c stopped claiming before the others dropped it");
    assert!(stopped_claiming <= left);
    println!("cut node stopped claiming membership after {stopped_claiming:?}");
    assert!(c.owned_shards().is_empty());
    wait_until(SOON, "c's shards are reassigned", async || {
        converged(&[&a, &b]).is_some_and(|map| map.shards_of(c.node_id()).is_empty())
    })
    .await;
    println!("cut node left the view after {left:?} (member TTL {MEMBER_TTL:?})");
    assert!(
        left <= MEMBER_TTL + Duration::from_millis(500),
        "left after {left:?}"
    );

    proxy.restore();
    wait_until(SOON, "c rejoins and gets shards again", async || {
        converged(&[&a, &b, &c]).is_some() && !c.owned_shards().is_empty()
    })
    .await;
    let after = c.incarnation().expect("c is a member again");
    assert_ne!(before, after, "c rejoined with the same incarnation");
    let seen_by_a = a
        .members()
        .into_iter()
        .find(|m| m.node_id.as_str() == "c")
        .expect("a sees c");
    assert_eq!(seen_by_a.incarnation, after);
    for node in [a, b, c] {
        node.shutdown().await.expect("graceful leave");
    }
}
