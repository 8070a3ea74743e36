//! The NATS side fails: a single server killed and restarted, one node of a 3-node
//! NATS cluster (R3 buckets) killed. The cluster converges again by itself.

mod common;

use std::time::{Duration, Instant};

use aether_cluster::ClusterManager;
use aether_testkit_nats::{NatsCluster, NatsServer, unique_name, wait_for, wait_until};
use common::*;

const CONVERGE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_killed_and_restarted_cluster_converges_again() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("restart");
    let nodes = [
        start(&url, &cluster, "a").await,
        start(&url, &cluster, "b").await,
        start(&url, &cluster, "c").await,
    ];
    let refs: Vec<&ClusterManager> = nodes.iter().collect();
    let before = wait_converged(&refs, SOON, "three nodes converge").await;

    server.kill();
    // With the server gone, every node stops claiming membership within the TTL.
    wait_until(SOON, "nodes notice the server is gone", async || {
        nodes.iter().all(|node| !node.is_member())
    })
    .await;
    server.restart().await;
    let restarted = Instant::now();
    wait_converged(&refs, CONVERGE, "the cluster converges after the restart").await;
    let took = restarted.elapsed();
    let after = converged(&refs).expect("converged");
    println!("single server restart: converged {took:?} after the server was back");
    assert!(
        (after.term, after.epoch) > (before.term, before.epoch) || after.owners == before.owners
    );
    for node in nodes {
        node.shutdown().await.expect("graceful leave");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_of_a_three_node_nats_cluster_killed_r3_buckets_converge_again() {
    let nats = NatsCluster::start(3).await;
    let urls = nats.node_urls();
    let cluster = unique_name("r3");
    let mut nodes = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        // Each node has its own connection to a different server (and may fail over
        // to the others).
        let mut list = vec![url.clone()];
        list.extend(urls.iter().filter(|u| *u != url).cloned());
        let client = aether_testkit_nats::connect(&list.join(",")).await;
        nodes.push(
            builder(client, &cluster, &format!("n{i}"))
                .replicas(3)
                .start()
                .await
                .expect("start"),
        );
    }
    let refs: Vec<&ClusterManager> = nodes.iter().collect();
    wait_converged(&refs, CONVERGE, "three nodes converge on R3 buckets").await;

    nats.kill(0);
    let killed = Instant::now();
    // Writes must go on without operator action: a fourth node joins through the
    // two servers left, and all four converge (heartbeats, lease, map, handoffs).
    let rest = urls[1..].join(",");
    let client = aether_testkit_nats::connect(&rest).await;
    // Starting is retried by the caller while JetStream fails over (a transient error).
    nodes.push(
        wait_for(CONVERGE, "n3 starts with one NATS node down", async || {
            let started = builder(client.clone(), &cluster, "n3")
                .replicas(3)
                .start()
                .await;
            if let Err(err) = &started {
                assert!(err.is_transient(), "not a transient error: {err:?}");
            }
            started
        })
        .await,
    );
    // Opening a bucket waits for its stream to elect a new leader when the dead
    // server led it.
    println!("n3 started {:?} after the kill", killed.elapsed());
    let refs: Vec<&ClusterManager> = nodes.iter().collect();
    wait_converged(
        &refs,
        CONVERGE,
        "four nodes converge with one NATS node down",
    )
    .await;
    let took = killed.elapsed();
    println!("one of three NATS nodes killed: a join converged {took:?} after the kill");
    let map = converged(&refs).expect("converged");
    assert_eq!(map.load().len(), 4);

    nats.restart(0).await;
    let refs: Vec<&ClusterManager> = nodes.iter().collect();
    wait_converged(
        &refs,
        CONVERGE,
        "the cluster converges with every NATS node back",
    )
    .await;
    for node in nodes {
        node.shutdown().await.expect("graceful leave");
    }
}
