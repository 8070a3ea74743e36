//! Joins and leaves, bad input in the buckets, incompatible nodes, the embedded
//! single node. Real nats-server; every wait is a condition with a deadline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_cluster::{
    ClusterError, ClusterEvent, ClusterManager, HandoffRequest, ShardId, ShardMap,
};
use aether_testkit_nats::{NatsServer, unique_name, wait_until};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_and_leave_one_to_five_nodes_converge_balanced_with_little_movement() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("joins");
    let mut nodes: Vec<ClusterManager> = Vec::new();
    let mut previous: Option<std::sync::Arc<ShardMap>> = None;
    let mut report = Vec::new();
    for n in 1..=5 {
        let began = Instant::now();
        nodes.push(start(&url, &cluster, &format!("n{n}")).await);
        let refs: Vec<&ClusterManager> = nodes.iter().collect();
        let map = wait_converged(&refs, SOON, &format!("{n} nodes converge")).await;
        let took = began.elapsed();
        let balance = imbalance(&map);
        assert!(balance <= 1.05, "{n} nodes: max/avg load {balance:.3}");
        if let Some(before) = &previous {
            let moved = moved_fraction(before, &map);
            // Ideal: 1/n of the shards move to the new node.
            let bound = 1.2 / n as f64;
            assert!(moved <= bound, "{n} nodes: moved {moved:.3} > {bound:.3}");
            // Only the new node gains shards.
            for (shard, (old, new)) in before.owners.iter().zip(&map.owners).enumerate() {
                if old != new {
                    assert_eq!(
                        new.as_ref().map(|id| id.as_str().to_owned()),
                        Some(format!("n{n}")),
                        "shard {shard} moved to an old node"
                    );
                }
            }
            report.push(format!("join to {n}: moved {moved:.3} (ideal {:.3}), max/avg {balance:.3}, converged in {took:?}", 1.0 / n as f64));
        }
        assert!(map.epoch > previous.as_ref().map_or(0, |m| m.epoch));
        previous = Some(map);
    }
    // Graceful leaves, newest first: only the leaver's shards move.
    while nodes.len() > 1 {
        let leaver = nodes.pop().expect("a node");
        let id = leaver.node_id().clone();
        let began = Instant::now();
        leaver.shutdown().await.expect("graceful leave");
        let refs: Vec<&ClusterManager> = nodes.iter().collect();
        let what = format!("{} nodes converge after {id} left", refs.len());
        let map = wait_converged(&refs, SOON, &what).await;
        let before = previous.as_ref().expect("a map");
        for (shard, (old, new)) in before.owners.iter().zip(&map.owners).enumerate() {
            if old.as_ref() != Some(&id) {
                assert_eq!(old, new, "shard {shard} of a staying node moved");
            }
        }
        let balance = imbalance(&map);
        assert!(
            balance <= 1.05,
            "{} nodes: max/avg load {balance:.3}",
            refs.len()
        );
        report.push(format!(
            "leave to {}: moved {:.3}, max/avg {balance:.3}, converged in {:?}",
            refs.len(),
            moved_fraction(before, &map),
            began.elapsed()
        ));
        previous = Some(map);
    }
    let last = &nodes[0];
    assert_eq!(last.owned_shards().len(), SHARDS as usize);
    for line in report {
        println!("{line}");
    }
    nodes
        .pop()
        .expect("a node")
        .shutdown()
        .await
        .expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_foreign_records_are_ignored_and_counted() {
    let counters = Counters::global();
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("bad");
    let a = start(&url, &cluster, "a").await;
    let b = start(&url, &cluster, "b").await;
    wait_converged(&[&a, &b], SOON, "two nodes converge").await;
    let map_before = a.shard_map().expect("a map");

    let js = async_nats::jetstream::new(client(&url).await);
    let token = aether_core::name::encode_token(&cluster);
    let members = js
        .get_key_value(format!("AETHER_CLUSTER_{token}_MEMBERS"))
        .await
        .unwrap();
    let leader = js
        .get_key_value(format!("AETHER_CLUSTER_{token}_LEADER"))
        .await
        .unwrap();
    let maps = js
        .get_key_value(format!("AETHER_CLUSTER_{token}_MAP"))
        .await
        .unwrap();
    let bad = |bucket: &str| {
        counters.get(
            "aether_cluster_bad_records_total",
            &[&format!("bucket={bucket}")],
        )
    };
    let (members0, leader0, map0) = (bad("members"), bad("leader"), bad("map"));

    // Members: garbage, and a record of one node under another's key.
    members.put("members.x", "garbage".into()).await.unwrap();
    let mut foreign = a.members().into_iter().next().expect("a member");
    foreign.node_id = node_id("somebody");
    members
        .put(
            "members.y",
            rmp_serde::to_vec_named(&foreign).unwrap().into(),
        )
        .await
        .unwrap();
    // Map bucket: a garbage handoff acknowledgement, a stray key, a garbage map.
    maps.put("handoff.1.1", "garbage".into()).await.unwrap();
    maps.put("stray", "garbage".into()).await.unwrap();
    maps.put("map", "garbage".into()).await.unwrap();

    wait_until(SOON, "the bad records are counted", async || {
        bad("members") >= members0 + 2 && bad("map") >= map0 + 3
    })
    .await;
    // Nothing changed: the same two members, the same map.
    for node in [&a, &b] {
        let ids: Vec<String> = node
            .members()
            .into_iter()
            .map(|m| m.node_id.as_str().to_owned())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        let map = node.shard_map().expect("a map");
        assert_eq!((map.term, map.epoch), (map_before.term, map_before.epoch));
        assert_eq!(map.owners, map_before.owners);
    }
    // The cluster still works: a third node joins over the garbage map (the
    // leader's CAS goes on from the garbage entry's revision).
    let c = start(&url, &cluster, "c").await;
    wait_converged(&[&a, &b, &c], SOON, "three nodes converge").await;

    // Garbage over the lease itself: the leader's next renewal fails its CAS, so it
    // steps down; nobody follows the garbage; once it expires (lease TTL) a real
    // leader is elected with a larger term.
    let old_term = [&a, &b, &c].iter().map(|n| n.term()).max().unwrap();
    leader.put("leader", "garbage".into()).await.unwrap();
    wait_until(SOON, "the garbage lease is counted", async || {
        bad("leader") > leader0
    })
    .await;
    wait_until(SOON, "a real leader with a larger term", async || {
        let leaders: Vec<&ClusterManager> =
            [&a, &b, &c].into_iter().filter(|n| n.is_leader()).collect();
        leaders.len() == 1 && leaders[0].term() > old_term
    })
    .await;
    wait_converged(&[&a, &b, &c], SOON, "the three converge again").await;
    for node in [a, b, c] {
        node.shutdown().await.expect("leave");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_shard_count_refuses_to_join() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("count");
    let a = start(&url, &cluster, "a").await;
    wait_until(SOON, "a writes the map", async || a.shard_map().is_some()).await;
    let refused = builder(client(&url).await, &cluster, "b")
        .shard_count(SHARDS * 2)
        .start()
        .await;
    match refused {
        Err(ClusterError::IncompatibleShardCount { ours, theirs }) => {
            assert_eq!((ours, theirs), (SHARDS * 2, SHARDS));
        }
        other => panic!("expected IncompatibleShardCount, got {other:?}"),
    }
    // It never joined.
    assert_eq!(a.members().len(), 1);
    a.shutdown().await.expect("leave");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_joins_leaves_leaders_and_maps() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("events");
    let a = start(&url, &cluster, "a").await;
    let mut events = a.events();
    let b = start(&url, &cluster, "b").await;
    let b_id = b.node_id().clone();
    wait_converged(&[&a, &b], SOON, "two nodes converge").await;
    b.shutdown().await.expect("b leaves");
    wait_converged(&[&a], SOON, "a alone").await;
    let mut joined = false;
    let mut left = false;
    let mut maps = 0;
    while let Ok(event) = events.try_recv() {
        match event {
            ClusterEvent::MemberJoined(info) if info.node_id == b_id => joined = true,
            ClusterEvent::MemberLeft { node, .. } if node == b_id => left = true,
            ClusterEvent::ShardMapChanged { .. } => maps += 1,
            _ => {}
        }
    }
    assert!(
        joined && left && maps >= 2,
        "joined {joined}, left {left}, maps {maps}"
    );
    a.shutdown().await.expect("leave");
}

#[tokio::test]
async fn embedded_single_node_owns_every_shard() {
    let node = ClusterManager::single_node(node_id("solo"));
    assert!(node.is_leader());
    assert!(node.is_member());
    assert_eq!(node.term(), 1);
    assert_eq!(node.members().len(), 1);
    assert_eq!(node.owned_shards().len(), 1024);
    assert_eq!(
        node.owner_of(ShardId::new(7)).as_ref(),
        Some(node.node_id())
    );
    assert!(node.moving_shards().is_empty());
    let map = node.shard_map().expect("a map");
    assert_eq!((map.term, map.epoch, map.shard_count), (1, 1, 1024));
    node.shutdown().await.expect("nothing to leave");
    let _ = Duration::ZERO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_map_format_is_refused_at_join() {
    #[derive(serde::Serialize)]
    struct Future {
        format: u32,
    }
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("format");
    let a = start(&url, &cluster, "a").await;
    wait_until(SOON, "a writes the map", async || a.shard_map().is_some()).await;
    a.shutdown().await.expect("leave");
    let js = async_nats::jetstream::new(client(&url).await);
    let token = aether_core::name::encode_token(&cluster);
    let maps = js
        .get_key_value(format!("AETHER_CLUSTER_{token}_MAP"))
        .await
        .unwrap();
    let newer = rmp_serde::to_vec_named(&Future {
        format: ShardMap::FORMAT + 1,
    })
    .unwrap();
    maps.put("map", newer.into()).await.unwrap();
    match builder(client(&url).await, &cluster, "b").start().await {
        Err(ClusterError::IncompatibleFormat { found, supported }) => {
            assert_eq!((found, supported), (ShardMap::FORMAT + 1, ShardMap::FORMAT));
        }
        other => panic!("expected IncompatibleFormat, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_waits_for_the_release_and_times_out_on_a_silent_owner() {
    let counters = Counters::global();
    let timeout = Duration::from_millis(1500);
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("handoff");
    let requests: Arc<Mutex<Vec<HandoffRequest>>> = Arc::default();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let a = {
        let (requests, gate) = (Arc::clone(&requests), Arc::clone(&gate));
        builder(client(&url).await, &cluster, "a")
            .handoff_timeout(timeout)
            .handoff_handler(move |request| {
                requests.lock().unwrap().push(request);
                let gate = Arc::clone(&gate);
                async move {
                    // Held until the test lets one release finish.
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                }
            })
            .start()
            .await
            .expect("a starts")
    };
    wait_converged(&[&a], SOON, "a alone").await;

    // b joins: half of a's shards are marked moving, and stay a's while a drains.
    let b = builder(client(&url).await, &cluster, "b")
        .handoff_timeout(timeout)
        .start()
        .await
        .expect("b starts");
    let marked = a
        .wait_for_map(|map| !map.moving.is_empty())
        .await
        .expect("a map with moves");
    let moving = marked.moving.len();
    wait_until(
        SOON,
        "a is asked to release every moving shard",
        async || requests.lock().unwrap().len() == moving,
    )
    .await;
    for request in requests.lock().unwrap().iter() {
        assert_eq!(&request.to, b.node_id());
        assert!(marked.moving.contains_key(&request.shard.get()));
        assert!(request.epoch >= marked.epoch);
    }
    assert!(
        b.owned_shards().is_empty(),
        "b owns shards before a released them"
    );
    assert_eq!(a.moving_shards().len(), moving);
    // a drains: every shard lands on b well before the timeout.
    let released = Instant::now();
    gate.add_permits(moving);
    wait_converged(&[&a, &b], SOON, "a and b after the release").await;
    assert!(
        released.elapsed() < timeout,
        "took {:?}",
        released.elapsed()
    );
    assert_eq!(b.owned_shards().len(), SHARDS as usize / 2);

    // c joins; a never finishes releasing now (no more permits): its shards go to c
    // after the handoff timeout, b's at once.
    let timed_out = counters.get("aether_cluster_handoffs_timed_out_total", &[]);
    let joined = Instant::now();
    let c = builder(client(&url).await, &cluster, "c")
        .handoff_timeout(timeout)
        .start()
        .await
        .expect("c starts");
    wait_converged(&[&a, &b, &c], SOON, "a, b and c after the timeout").await;
    assert!(joined.elapsed() >= timeout, "converged before the timeout");
    assert!(counters.get("aether_cluster_handoffs_timed_out_total", &[]) > timed_out);
    for node in [a, b, c] {
        node.shutdown().await.expect("leave");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_a_map_of_the_current_term_not_one_left_by_an_earlier_run() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("ready");
    let a = node_id("a");
    let b = node_id("b");
    let c = node_id("c");

    // An earlier run of the cluster leaves its map in the bucket.
    let first = start(&url, &cluster, "a").await;
    let old = tokio::time::timeout(SOON, first.ready())
        .await
        .expect("the first run is ready in time")
        .expect("ready");
    assert_eq!(
        old.term,
        first.term(),
        "the first run's map is of its own term"
    );
    assert!(old.owners.iter().all(|o| o.as_ref() == Some(&a)));
    first.shutdown().await.expect("first run leaves");

    // The next run finds that map, which places it nowhere, under a lower term.
    let second = start(&url, &cluster, "b").await;
    let map = tokio::time::timeout(SOON, second.ready())
        .await
        .expect("the second run is ready in time")
        .expect("ready");
    assert!(
        map.term > old.term,
        "ready returned a map of term {}, not newer than the earlier run's {}",
        map.term,
        old.term
    );
    assert_eq!(
        map.term,
        second.term(),
        "the map is of the current leader's term"
    );
    assert!(
        map.owners.iter().all(|o| o.as_ref() == Some(&b)),
        "the only live member owns every shard"
    );

    // A joining node is ready once a map of this term places it too.
    let third = start(&url, &cluster, "c").await;
    let joined = tokio::time::timeout(SOON, third.ready())
        .await
        .expect("the joining node is ready in time")
        .expect("ready");
    assert_eq!(joined.term, map.term, "the leader did not change");
    for node in [&b, &c] {
        assert!(
            joined.owners.iter().any(|o| o.as_ref() == Some(node)),
            "{node} owns no shard in the map ready returned"
        );
    }
    third.shutdown().await.expect("c leaves");
    second.shutdown().await.expect("b leaves");
}

#[tokio::test]
async fn an_embedded_node_is_ready_within_a_second() {
    let node = ClusterManager::single_node(node_id("solo"));
    let map = tokio::time::timeout(Duration::from_secs(1), node.ready())
        .await
        .expect("ready at once")
        .expect("ready");
    assert!(
        map.owners
            .iter()
            .all(|o| o.as_ref() == Some(&node_id("solo")))
    );
}
