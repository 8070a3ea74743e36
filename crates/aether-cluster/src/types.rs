//! The cluster's vocabulary: [`NodeId`], [`Incarnation`], [`ShardId`], [`NodeInfo`]
//! and [`ClusterEvent`].

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::ClusterError;

/// The stable name of one node of a cluster.
///
/// 1–[`NodeId::MAX_LEN`] bytes of `A-Z a-z 0-9 _ - .`, so it can be carried in a
/// KV key or a NATS subject token after encoding. The same node keeps its id
/// across restarts; each start gets a fresh [`Incarnation`].
///
/// Serialized as a plain string; deserializing validates it, so a foreign value
/// cannot produce an invalid id. Cloning is cheap (reference counted).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Longest accepted node id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Validates and creates a node id.
    ///
    /// # Errors
    /// [`ClusterError::InvalidName`] if the id is empty, longer than
    /// [`Self::MAX_LEN`] bytes, or has a character outside `A-Z a-z 0-9 _ - .`.
    pub fn new(id: impl AsRef<str>) -> Result<Self, ClusterError> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(ClusterError::invalid_name(
                "node id",
                id,
                "must not be empty",
            ));
        }
        if id.len() > Self::MAX_LEN {
            return Err(ClusterError::invalid_name(
                "node id",
                id,
                format!("is {} bytes, the limit is {}", id.len(), Self::MAX_LEN),
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(ClusterError::invalid_name(
                "node id",
                id,
                format!("contains {bad:?}; allowed are A-Z a-z 0-9 _ - ."),
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as one NATS subject token / KV key segment, with `.` and `_`
    /// escaped by [`aether_core::name::encode_token`] (`node.1` → `node_2E1`).
    /// Injective; [`Self::from_encoded`] reverses it.
    pub fn encoded(&self) -> String {
        aether_core::name::encode_token(&self.0)
    }

    /// The node id from a token made by [`Self::encoded`] (e.g. the last
    /// segment of a member key).
    ///
    /// # Errors
    /// [`ClusterError::InvalidName`] if the token is not a valid encoding or does
    /// not decode to a valid node id.
    pub fn from_encoded(token: &str) -> Result<Self, ClusterError> {
        let decoded = aether_core::name::decode_token(token).ok_or_else(|| {
            ClusterError::invalid_name("node id", token, "is not a valid encoded token")
        })?;
        Self::new(decoded)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({:?})", &*self.0)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = ClusterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::new(&*s).map_err(serde::de::Error::custom)
    }
}

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

/// The number of one shard, `0..shard_count`. See [`crate::shard_of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardId(u32);

impl ShardId {
    /// The shard numbered `n`. Whether it exists depends on the cluster's shard count.
    pub const fn new(n: u32) -> Self {
        Self(n)
    }

    /// The shard's number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The shard's number as an index into a per-shard table.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u32> for ShardId {
    fn from(n: u32) -> Self {
        Self(n)
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
    fn node_id_rules() {
        assert_eq!(NodeId::new("node-1.a_b").unwrap().as_str(), "node-1.a_b");
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new("a*").is_err());
        assert!(NodeId::new("é").is_err());
        assert!(NodeId::new("x".repeat(64)).is_ok());
        assert!(matches!(
            NodeId::new("x".repeat(65)),
            Err(ClusterError::InvalidName {
                what: "node id",
                ..
            })
        ));
    }

    #[test]
    fn node_id_encoding_round_trips() {
        for id in ["n1", "node.1", "a_b", "A-z.0_9", "..."] {
            let node = NodeId::new(id).unwrap();
            let token = node.encoded();
            assert!(!token.contains('.'), "{token}");
            assert_eq!(NodeId::from_encoded(&token).unwrap(), node);
        }
        assert_ne!(
            NodeId::new("a.b").unwrap().encoded(),
            NodeId::new("a_b").unwrap().encoded()
        );
        assert!(NodeId::from_encoded("_zz").is_err());
        assert!(NodeId::from_encoded("a_20b").is_err(), "decodes to a space");
        assert!(NodeId::from_encoded("").is_err());
    }

    #[test]
    fn node_id_deserialize_validates() {
        let good = rmp_serde::to_vec(&"n1").unwrap();
        assert_eq!(
            rmp_serde::from_slice::<NodeId>(&good).unwrap(),
            NodeId::new("n1").unwrap()
        );
        let bad = rmp_serde::to_vec(&"n 1").unwrap();
        assert!(rmp_serde::from_slice::<NodeId>(&bad).is_err());
    }

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
