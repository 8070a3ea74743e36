//! [`ConsistentHashRing`]: key → node without a leader or a stored map.
//!
//! Each node is hashed onto a 64-bit ring at `vnodes` points
//! (`xxh64(node id, seed = i)` for `i in 0..vnodes`); a key belongs to the
//! node owning the first point at or after `stable_hash(key)`, wrapping around.
//! Every process holding the same set of nodes maps every key the same way.
//!
//! Use it where no leader is available (a client spreading load over a known
//! set of servers). For the cluster's own shards prefer [`crate::place`]: at the
//! same shard count it balances far better (over 1024 shards and 2–10 nodes, a
//! ring with 16 virtual nodes leaves the busiest node with 1.2–1.5× the
//! average, with 128 virtual nodes 1.04–1.4×; placement ≤ 1.01×) and moves no
//! more shards on a join (see `tests/placement_vs_ring.rs`).

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

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: usize) -> NodeId {
        NodeId::new(format!("node-{i}")).unwrap()
    }

    fn keys() -> impl Iterator<Item = Vec<u8>> {
        (0..2000u32).map(|k| format!("key-{k}").into_bytes())
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let ring = ConsistentHashRing::new(16);
        assert!(ring.is_empty());
        assert_eq!(ring.node_for(b"x"), None);
        assert_eq!(ConsistentHashRing::new(0).vnodes(), 1);
    }

    #[test]
    fn one_node_owns_everything_and_add_is_idempotent() {
        let mut ring = ConsistentHashRing::new(8);
        ring.add(node(1));
        ring.add(node(1));
        assert_eq!(ring.len(), 1);
        assert!(keys().all(|k| ring.node_for(&k) == Some(&node(1))));
        assert!(ring.remove(&node(1)));
        assert!(!ring.remove(&node(1)));
        assert!(ring.is_empty());
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let mut a = ConsistentHashRing::new(32);
        let mut b = ConsistentHashRing::new(32);
        for i in 0..6 {
            a.add(node(i));
            b.add(node(5 - i));
        }
        assert_eq!(a, b);
        assert!(keys().all(|k| a.node_for(&k) == b.node_for(&k)));
    }

    #[test]
    fn removing_a_node_moves_only_its_keys_and_adding_moves_only_to_it() {
        let mut ring = ConsistentHashRing::new(64);
        for i in 0..5 {
            ring.add(node(i));
        }
        let before: Vec<NodeId> = keys().map(|k| ring.node_for(&k).unwrap().clone()).collect();
        let mut smaller = ring.clone();
        assert!(smaller.remove(&node(2)));
        let mut bigger = ring.clone();
        bigger.add(node(9));
        let mut lost = 0;
        for (k, owner) in keys().zip(&before) {
            let after = smaller.node_for(&k).unwrap();
            if *owner == node(2) {
                lost += 1;
                assert_ne!(after, &node(2));
            } else {
                assert_eq!(after, owner);
            }
            let joined = bigger.node_for(&k).unwrap();
            assert!(joined == owner || *joined == node(9));
        }
        assert!(lost > 0);
        assert_eq!(smaller.len(), 4);
        assert!(smaller.contains(&node(1)) && !smaller.contains(&node(2)));
    }
}
