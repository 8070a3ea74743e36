//! Placement against a consistent-hash ring, measured in one run: balance
//! (max/avg shards per node) and the fraction of shards moved when a node joins,
//! for 2..=10 nodes at 1024 shards. The placement's bounds are asserted; so is
//! the ring being worse on balance at 16 virtual nodes, which keeps the
//! comparison honest.

use std::collections::BTreeMap;

use aether_cluster::{ConsistentHashRing, Member, NodeId, ShardMap, place};

const SHARDS: u32 = 1024;

fn node(i: usize) -> NodeId {
    NodeId::new(format!("node-{i}")).unwrap()
}

fn max_over_avg(owners: &[Option<NodeId>], nodes: usize) -> f64 {
    let mut load: BTreeMap<&NodeId, usize> = BTreeMap::new();
    for owner in owners {
        *load
            .entry(owner.as_ref().expect("every shard placed"))
            .or_insert(0) += 1;
    }
    let max = *load.values().max().expect("some node holds shards");
    max as f64 / (owners.len() as f64 / nodes as f64)
}

fn moved(before: &[Option<NodeId>], after: &[Option<NodeId>]) -> f64 {
    let count = before.iter().zip(after).filter(|(a, b)| a != b).count();
    count as f64 / before.len() as f64
}

fn ring_owners(vnodes: u32, nodes: usize) -> Vec<Option<NodeId>> {
    let mut ring = ConsistentHashRing::new(vnodes);
    for i in 0..nodes {
        ring.add(node(i));
    }
    (0..SHARDS)
        .map(|s| ring.node_for(&s.to_be_bytes()).cloned())
        .collect()
}

fn placed(previous: Option<&[Option<NodeId>]>, nodes: usize) -> Vec<Option<NodeId>> {
    let members: Vec<Member> = (0..nodes).map(|i| Member::new(node(i), 1)).collect();
    let previous = previous.map(|owners| ShardMap {
        owners: owners.to_vec(),
        ..ShardMap::empty(SHARDS)
    });
    place(previous.as_ref(), &members, SHARDS)
}

struct Row {
    nodes: usize,
    balance: [f64; 3],
    moved: [f64; 3],
}

#[test]
fn placement_beats_a_ring_on_balance_and_moves_no_more() {
    let mut rows = Vec::new();
    for n in 2..=10 {
        let (r16, r16_join) = (ring_owners(16, n), ring_owners(16, n + 1));
        let (r128, r128_join) = (ring_owners(128, n), ring_owners(128, n + 1));
        let p = placed(None, n);
        let p_join = placed(Some(&p), n + 1);
        rows.push(Row {
            nodes: n,
            balance: [
                max_over_avg(&r16, n),
                max_over_avg(&r128, n),
                max_over_avg(&p, n),
            ],
            moved: [
                moved(&r16, &r16_join),
                moved(&r128, &r128_join),
                moved(&p, &p_join),
            ],
        });
    }

    println!(
        "shards = {SHARDS}; balance = max/avg shards per node at N; moved = fraction moved on a join N -> N+1"
    );
    println!(
        "| N  | ring16 bal | ring128 bal | place bal | ring16 moved | ring128 moved | place moved | ideal 1/(N+1) |"
    );
    println!(
        "|----|-----------|-------------|-----------|--------------|---------------|-------------|---------------|"
    );
    for r in &rows {
        println!(
            "| {:>2} | {:>9.3} | {:>11.3} | {:>9.3} | {:>12.3} | {:>13.3} | {:>11.3} | {:>13.3} |",
            r.nodes,
            r.balance[0],
            r.balance[1],
            r.balance[2],
            r.moved[0],
            r.moved[1],
            r.moved[2],
            1.0 / (r.nodes + 1) as f64
        );
    }

    for r in &rows {
        let ideal = 1.0 / (r.nodes + 1) as f64;
        assert!(
            r.balance[2] <= 1.05,
            "placement at {} nodes: max/avg {}",
            r.nodes,
            r.balance[2]
        );
        assert!(
            r.moved[2] <= 1.2 * ideal,
            "placement join to {}: moved {}",
            r.nodes + 1,
            r.moved[2]
        );
        assert!(
            r.balance[0] > r.balance[2],
            "ring16 at {} nodes balances better than placement ({} vs {})",
            r.nodes,
            r.balance[0],
            r.balance[2]
        );
    }
    let mean = |i: usize| rows.iter().map(|r| r.balance[i]).sum::<f64>() / rows.len() as f64;
    assert!(
        mean(0) > 1.2 && mean(0) > mean(2) && mean(1) > mean(2),
        "expected both rings above placement on mean imbalance: {} {} {}",
        mean(0),
        mean(1),
        mean(2)
    );
}
