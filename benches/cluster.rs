//! Cluster placement and routing benchmarks, each beside a same-run baseline.
//!
//! * `cluster_shard_of`: the stable shard hash (XXH64 of `kind ++ 0x00 ++ id`,
//!   mod 1024), which every command pays to find its shard, against std's
//!   `DefaultHasher` (SipHash-1-3) over the same bytes: the cost of a hash that
//!   is a wire contract.
//! * `cluster_placement`: the leader's map computation — `place` for 1024
//!   shards, from scratch and after a join — against building a consistent-hash
//!   ring of 128 virtual nodes and looking up the same 1024 shards.
//!
//! `cargo bench -p aether-benches --bench cluster`

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::hint::black_box;

use aether_cluster::{ConsistentHashRing, Member, NodeId, ShardMap, place, shard_of};
use aether_core::ActorId;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SHARDS: u32 = 1024;

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(NodeId::new(format!("node-{i}")).expect("valid node id"), 1))
        .collect()
}

fn shard_hash(c: &mut Criterion) {
    let actors: Vec<ActorId> = (0..1000)
        .map(|i| ActorId::new(format!("account-{i}")).expect("valid actor id"))
        .collect();
    let mut g = c.benchmark_group("cluster_shard_of");
    g.throughput(Throughput::Elements(actors.len() as u64));
    g.bench_function("shard_of", |b| {
        b.iter(|| {
            for a in &actors {
                black_box(shard_of(black_box("account"), a, SHARDS));
            }
        });
    });
    g.bench_function("baseline_siphash", |b| {
        b.iter(|| {
            for a in &actors {
                let mut h = DefaultHasher::new();
                h.write(black_box("account").as_bytes());
                h.write_u8(0);
                h.write(a.as_str().as_bytes());
                black_box(h.finish() % u64::from(SHARDS));
            }
        });
    });
    g.finish();
}

fn placement(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster_placement");
    g.throughput(Throughput::Elements(u64::from(SHARDS)));
    for n in [3usize, 10] {
        let nodes = members(n);
        let before = members(n - 1);
        let mut prev = ShardMap::empty(SHARDS);
        prev.owners = place(None, &before, SHARDS);
        g.bench_with_input(BenchmarkId::new("place_fresh", n), &nodes, |b, nodes| {
            b.iter(|| black_box(place(None, nodes, SHARDS)));
        });
        g.bench_with_input(
            BenchmarkId::new("place_after_join", n),
            &nodes,
            |b, nodes| {
                b.iter(|| black_box(place(Some(&prev), nodes, SHARDS)));
            },
        );
        g.bench_with_input(
            BenchmarkId::new("baseline_ring128", n),
            &nodes,
            |b, nodes| {
                b.iter(|| {
                    let mut ring = ConsistentHashRing::new(128);
                    for m in nodes {
                        ring.add(m.node.clone());
                    }
                    let owners: Vec<Option<NodeId>> = (0..SHARDS)
                        .map(|s| ring.node_for(&s.to_be_bytes()).cloned())
                        .collect();
                    black_box(owners)
                });
            },
        );
    }
    g.finish();
}

criterion_group!(benches, shard_hash, placement);
criterion_main!(benches);
