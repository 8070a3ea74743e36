//! The cluster's vocabulary: [`NodeId`], [`Incarnation`], [`ShardId`], [`NodeInfo`]
//! and [`ClusterEvent`].

use std::fmt;

pub use aether_actor::{NodeId, ShardId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// One run of a node: a fresh UUIDv7 per start.
///
/// Two records with the same [`NodeId`] and different incarnations are two
/// different lives of the node; a restarted node is a new member. UUIDv7 ids
/// order by creation time (millisecond precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Incarnation(Uuid);

impl Incarnation {
    /// A fresh incarnation (UUIDv7, time-ordered).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// An incarnation from a known UUID (for decoding and tests).
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for Incarnation {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What a node publishes about itself in the members bucket (MessagePack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's stable id.
    pub node_id: NodeId,
    /// This run of the node.
    pub incarnation: Incarnation,
    /// The NATS subject the node answers requests on.
    pub subject: String,
    /// The actor kinds the node hosts.
    pub kinds: Vec<String>,
    /// The node's capacity weight (at least 1): its share of the shards is
    /// proportional to it.
    pub capacity: u32,
    /// The Aether version the node runs.
    pub version: String,
    /// When this incarnation started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// A change in the cluster as seen by one node, in the order that node saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent {
    /// A node (or a new incarnation of it) joined the live view.
    MemberJoined(NodeInfo),
    /// A node left the live view (graceful leave, expiry, or replaced by a newer
    /// incarnation).
    MemberLeft {
        /// The node.
        node: NodeId,
        /// The incarnation that left.
        incarnation: Incarnation,
    },
    /// The leader changed; `leader` is `None` while no lease is held.
    LeaderChanged {
        /// The new leader, if any.
        leader: Option<NodeId>,
        /// The term of the lease (0 when none is held).
        term: u64,
    },
    /// A newer shard map was adopted.
    ShardMapChanged {
        /// The map's term.
        term: u64,
        /// The map's epoch.
        epoch: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_info_round_trips_in_msgpack() {
        let info = NodeInfo {
            node_id: NodeId::new("n1").unwrap(),
            incarnation: Incarnation::new(),
            subject: "aether.cluster.c.node.n1".into(),
            kinds: vec!["account".into()],
            capacity: 2,
            version: "0.1.0".into(),
            started_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        };
        let bytes = rmp_serde::to_vec_named(&info).unwrap();
        assert_eq!(rmp_serde::from_slice::<NodeInfo>(&bytes).unwrap(), info);
    }

    #[test]
    fn incarnations_are_fresh_and_ordered() {
        let a = Incarnation::new();
        let b = Incarnation::new();
        assert_ne!(a, b);
        assert!(a < b);
        assert_eq!(a.as_uuid().get_version_num(), 7);
    }
}
