//! Three cluster nodes in one process: membership, the shard table, a leader change.
//!
//! Three NATS connections stand for three nodes. They join one by one and the
//! leader spreads the 1024 shards over them (sticky, capped, weighted placement;
//! a moving shard is handed off in two steps). Then one node leaves gracefully,
//! and finally the leader is stopped without a goodbye: its lease expires and
//! another node takes over with a larger term.
//!
//! Start a server (`cargo xtask nats-server` for the pinned one, or
//! `nats-server -js -p 4222`) and run:
//!
//! ```text
//! cargo run --example cluster_membership
//! NATS_URL=nats://127.0.0.1:4333 cargo run --example cluster_membership
//! ```

use std::time::{Duration, Instant};

use aether::async_nats;
use aether::cluster::{ClusterManager, NodeId, ShardMap};

const WAIT: Duration = Duration::from_secs(30);

/// Polls `condition` until it holds, or fails after `WAIT`.
async fn wait(what: &str, mut condition: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        if Instant::now() >= deadline {
            return Err(format!("gave up after {WAIT:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether every node holds the same map with nothing moving, and each owns shards.
fn settled(nodes: &[&ClusterManager]) -> bool {
    let Some(first) = nodes.first().and_then(|node| node.shard_map()) else {
        return false;
    };
    nodes.iter().all(|node| {
        node.shard_map().is_some_and(|map| {
            (map.term, map.epoch) == (first.term, first.epoch)
                && map.moving.is_empty()
                && !map.shards_of(node.node_id()).is_empty()
        })
    }) && first.load().len() == nodes.len()
}

fn print_table(title: &str, map: &ShardMap, leader: Option<NodeId>) {
    println!("\n{title}");
    println!(
        "  map term {} epoch {}, leader {}",
        map.term,
        map.epoch,
        leader.map_or_else(|| "-".to_owned(), |id| id.to_string())
    );
    for (node, count) in map.load() {
        let shards = map.shards_of(&node);
        let sample: Vec<String> = shards.iter().take(6).map(ToString::to_string).collect();
        println!("  {node:<8} {count:>5} shards  [{} ...]", sample.join(", "));
    }
}

async fn node(
    url: &str,
    cluster: &str,
    id: &str,
) -> Result<ClusterManager, Box<dyn std::error::Error>> {
    let client = async_nats::connect(url).await?;
    let node = ClusterManager::builder(client, cluster, NodeId::new(id)?)
        .member_ttl(Duration::from_secs(2))
        .lease_ttl(Duration::from_secs(2))
        .kinds(["order", "invoice"])
        .start()
        .await?;
    let incarnation = node
        .incarnation()
        .map(|i| i.to_string())
        .unwrap_or_default();
    println!("{id} joined (incarnation {incarnation})");
    Ok(node)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    if let Err(err) = async_nats::connect(&url).await {
        eprintln!(
            "cannot reach NATS at {url}: {err}\nstart one with `cargo xtask nats-server` or set NATS_URL"
        );
        std::process::exit(2);
    }
    let cluster = format!("example-{}", std::process::id());
    println!("cluster {cluster} on {url}");

    let mut nodes: Vec<ClusterManager> = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        nodes.push(node(&url, &cluster, id).await?);
        let refs: Vec<&ClusterManager> = nodes.iter().collect();
        wait("the map to settle", || settled(&refs)).await?;
        let map = nodes[0].shard_map().ok_or("no map")?;
        print_table(&format!("after {id} joined:"), &map, nodes[0].leader());
    }

    // A graceful leave: the member key is deleted at once, its shards move.
    let leaving = nodes.pop().ok_or("no node")?;
    println!("\n{} leaves gracefully", leaving.node_id());
    leaving.shutdown().await?;
    let refs: Vec<&ClusterManager> = nodes.iter().collect();
    wait("the map to settle", || settled(&refs)).await?;
    let map = nodes[0].shard_map().ok_or("no map")?;
    print_table("after the leave:", &map, nodes[0].leader());

    // The leader stops with no goodbye: its lease expires, another node takes over.
    let index = nodes
        .iter()
        .position(ClusterManager::is_leader)
        .ok_or("no leader")?;
    let old = nodes.remove(index);
    let old_term = old.term();
    println!(
        "\nstopping the leader {} (term {old_term}) without a goodbye",
        old.node_id()
    );
    let stopped = Instant::now();
    drop(old);
    wait("a new leader", || {
        nodes.iter().any(ClusterManager::is_leader)
    })
    .await?;
    let leader = nodes
        .iter()
        .find(|node| node.is_leader())
        .ok_or("no leader")?;
    println!(
        "{} leads with term {} after {:?} (lease TTL 2 s)",
        leader.node_id(),
        leader.term(),
        stopped.elapsed()
    );
    let refs: Vec<&ClusterManager> = nodes.iter().collect();
    wait("the map to settle", || settled(&refs)).await?;
    let map = nodes[0].shard_map().ok_or("no map")?;
    print_table("after the leader stopped:", &map, nodes[0].leader());

    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}
