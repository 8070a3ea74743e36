//! [`ConsistentHashRing`]: key → node without a leader or a stored map.
//!
//! Each node is hashed onto a 64-bit ring at `vnodes` points
//! (`xxh64(node id, seed = i)` for `i in 0..vnodes`); a key belongs to the
//! node owning the first point at or after `stable_hash(key)`, wrapping around.
//! Every process holding the same set of nodes maps every key the same way.
//!
//! Use it where no leader is available (a client spreading load over a known
//! set of servers). For the cluster's own shards prefer [`crate::place`]: at the
//! same shard count it balances far better (a ring with 16 virtual nodes leaves
//! the busiest node with roughly 1.5–1.9× the average) and moves no more shards.

use crate::hash::{stable_hash, xxh64};
use crate::types::NodeId;

/// A consistent-hash ring with virtual nodes. Deterministic: the mapping depends
/// only on the set of nodes and the number of virtual nodes, not on the order
/// of insertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistentHashRing {
    vnodes: u32,
    /// Points sorted by (hash, node id); the node id breaks (rare) ties.
    points: Vec<(u64, NodeId)>,
}

impl ConsistentHashRing {
    /// An empty ring placing each node at `vnodes` points (0 is treated as 1).
    pub fn new(vnodes: u32) -> Self {
        Self {
            vnodes: vnodes.max(1),
            points: Vec::new(),
        }
    }

    /// The number of virtual nodes per node.
    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// Adds `node` (idempotent: adding a node already present changes nothing).
    pub fn add(&mut self, node: NodeId) {
        if self.contains(&node) {
            return;
        }
        let bytes = node.as_str().as_bytes();
        self.points
            .extend((0..self.vnodes).map(|i| (xxh64(bytes, u64::from(i)), node.clone())));
        self.points.sort_unstable();
    }

    /// Removes `node`; returns whether it was present.
    pub fn remove(&mut self, node: &NodeId) -> bool {
        let before = self.points.len();
        self.points.retain(|(_, n)| n != node);
        self.points.len() != before
    }

    /// Whether `node` is on the ring.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.points.iter().any(|(_, n)| n == node)
    }

    /// The number of nodes on the ring.
    pub fn len(&self) -> usize {
        self.points.len() / self.vnodes as usize
    }

    /// Whether the ring has no node.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The node owning `key` (`None` only when the ring is empty).
    pub fn node_for(&self, key: &[u8]) -> Option<&NodeId> {
        self.node_for_hash(stable_hash(key))
    }

    /// The node owning a key already hashed to `hash`.
    pub fn node_for_hash(&self, hash: u64) -> Option<&NodeId> {
        let i = self.points.partition_point(|(h, _)| *h < hash);
        self.points
            .get(i)
            .or_else(|| self.points.first())
            .map(|(_, n)| n)
    }
}
