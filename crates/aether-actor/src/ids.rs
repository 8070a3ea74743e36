//! The names the runtime routes by: [`NodeId`] (a node of a cluster) and
//! [`ShardId`] (a shard of the actors).

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aether_core::NameError;
use aether_core::name::{NameKind, decode_token, invalid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stable name of one node of a cluster.
///
/// 1–[`NodeId::MAX_LEN`] bytes of `A-Z a-z 0-9 _ - .`, so it can be carried in a
/// KV key or a NATS subject token after encoding. The same node keeps its id
/// across restarts; each start gets a fresh incarnation.
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
    /// [`NameError`] (kind [`NameKind::NodeId`]) if the id is empty, longer than
    /// [`Self::MAX_LEN`] bytes, or has a character outside `A-Z a-z 0-9 _ - .`.
    pub fn new(id: impl AsRef<str>) -> Result<Self, NameError> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(invalid(NameKind::NodeId, id, "must not be empty"));
        }
        if id.len() > Self::MAX_LEN {
            return Err(invalid(
                NameKind::NodeId,
                id,
                format!("is {} bytes, the limit is {}", id.len(), Self::MAX_LEN),
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        {
            return Err(invalid(
                NameKind::NodeId,
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
    /// [`NameError`] (kind [`NameKind::NodeId`]) if the token is not a valid encoding or does
    /// not decode to a valid node id.
    pub fn from_encoded(token: &str) -> Result<Self, NameError> {
        let decoded = decode_token(token)
            .ok_or_else(|| invalid(NameKind::NodeId, token, "is not a valid encoded token"))?;
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
    type Err = NameError;

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
            Err(NameError {
                kind: NameKind::NodeId,
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
}
