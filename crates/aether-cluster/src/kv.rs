//! The cluster's three KV buckets: their names, their configurations, and typed
//! helpers that map every async-nats error onto [`ClusterError`] with the source kept.
//!
//! | bucket | keys | history | `max_age` |
//! |---|---|---|---|
//! | `<PREFIX>_CLUSTER_<cluster>_MEMBERS` | `members.<node>` | 1 | member TTL |
//! | `<PREFIX>_CLUSTER_<cluster>_LEADER` | `leader` | 1 | lease TTL |
//! | `<PREFIX>_CLUSTER_<cluster>_MAP` | `map`, `handoff.<shard>.<epoch>` | 1 | none |
//!
//! `<cluster>` and `<node>` are encoded with [`aether_core::name::encode_token`], an
//! injective encoding, so two cluster names never share a bucket and a node id never
//! injects a wildcard into a key. Every bucket has limit markers: an entry removed by
//! `max_age` (or a handoff acknowledgement's per-message TTL) leaves a marker that
//! watchers receive, so expiry is seen as it happens.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;

use crate::error::ClusterError;

/// Default prefix of the bucket names.
pub const DEFAULT_PREFIX: &str = "AETHER";

/// The key under which the leader lease lives in the leader bucket.
pub(crate) const LEADER_KEY: &str = "leader";
/// The key under which the shard map lives in the map bucket.
pub(crate) const MAP_KEY: &str = "map";
/// Prefix of member keys in the members bucket.
pub(crate) const MEMBER_PREFIX: &str = "members.";
/// Prefix of handoff acknowledgement keys in the map bucket.
pub(crate) const HANDOFF_PREFIX: &str = "handoff.";
/// How long a handoff acknowledgement stays in the map bucket (whole seconds: it is
/// a per-message TTL).
pub(crate) const HANDOFF_ACK_TTL: Duration = Duration::from_secs(60);
/// How long limit markers (the delete markers left by expiry) are kept.
const MARKER_TTL: Duration = Duration::from_secs(60);

/// Names of one cluster's buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketNames {
    /// Bucket of member heartbeats.
    pub members: String,
    /// Bucket of the leader lease.
    pub leader: String,
    /// Bucket of the shard map and handoff acknowledgements.
    pub map: String,
}

impl BucketNames {
    /// Names for `cluster` under `prefix`. `prefix` must be a valid bucket-name
    /// fragment (`[A-Za-z0-9_-]+`); `cluster` may be any non-empty text of at most
    /// 64 bytes (it is encoded).
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidName`] for an empty or oversized cluster name, or a
    /// prefix with other characters.
    pub fn new(prefix: &str, cluster: &str) -> Result<Self, ClusterError> {
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ClusterError::invalid_name(
                "bucket prefix",
                prefix,
                "must be 1 or more of A-Z a-z 0-9 _ -",
            ));
        }
        if cluster.is_empty() || cluster.len() > 64 {
            return Err(ClusterError::invalid_name(
                "cluster name",
                cluster,
                "must be 1 to 64 bytes",
            ));
        }
        let base = format!(
            "{prefix}_CLUSTER_{}",
            aether_core::name::encode_token(cluster)
        );
        Ok(Self {
            members: format!("{base}_MEMBERS"),
            leader: format!("{base}_LEADER"),
            map: format!("{base}_MAP"),
        })
    }
}

/// The member key of `node`: `members.<encoded node id>`.
pub(crate) fn member_key(node: &crate::NodeId) -> String {
    format!(
        "{MEMBER_PREFIX}{}",
        aether_core::name::encode_token(node.as_str())
    )
}

/// The handoff acknowledgement key of `shard` at `epoch`.
pub(crate) fn handoff_key(shard: u32, epoch: u64) -> String {
    format!("{HANDOFF_PREFIX}{shard}.{epoch}")
}

/// Parses a handoff key back into `(shard, epoch)`.
pub(crate) fn parse_handoff_key(key: &str) -> Option<(u32, u64)> {
    let rest = key.strip_prefix(HANDOFF_PREFIX)?;
    let (shard, epoch) = rest.split_once('.')?;
    Some((shard.parse().ok()?, epoch.parse().ok()?))
}

/// Settings the buckets are created with.
#[derive(Debug, Clone)]
pub(crate) struct BucketSettings {
    pub(crate) names: BucketNames,
    pub(crate) replicas: usize,
    pub(crate) member_ttl: Duration,
    pub(crate) lease_ttl: Duration,
}

/// The opened buckets.
#[derive(Debug, Clone)]
pub(crate) struct Buckets {
    pub(crate) members: Bucket,
    pub(crate) leader: Bucket,
    pub(crate) map: Bucket,
}

impl Buckets {
    /// Creates the buckets, or opens them when they exist (a bucket created by
    /// another node keeps that node's settings: the first node's TTLs win, and
    /// [`Bucket::max_age`] tells which are in force).
    pub(crate) async fn open(
        js: &jetstream::Context,
        settings: &BucketSettings,
    ) -> Result<Self, ClusterError> {
        let members = open_bucket(
            js,
            kv::Config {
                bucket: settings.names.members.clone(),
                description: "Aether cluster members (heartbeats)".to_owned(),
                history: 1,
                max_age: settings.member_ttl,
                num_replicas: settings.replicas,
                limit_markers: Some(MARKER_TTL),
                ..Default::default()
            },
        )
        .await?;
        let leader = open_bucket(
            js,
            kv::Config {
                bucket: settings.names.leader.clone(),
                description: "Aether cluster leader lease".to_owned(),
                history: 1,
                max_age: settings.lease_ttl,
                num_replicas: settings.replicas,
                limit_markers: Some(MARKER_TTL),
                ..Default::default()
            },
        )
        .await?;
        let map = open_bucket(
            js,
            kv::Config {
                bucket: settings.names.map.clone(),
                description: "Aether cluster shard map and handoff acknowledgements".to_owned(),
                history: 1,
                num_replicas: settings.replicas,
                limit_markers: Some(MARKER_TTL),
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            members,
            leader,
            map,
        })
    }
}

async fn open_bucket(js: &jetstream::Context, config: kv::Config) -> Result<Bucket, ClusterError> {
    use jetstream::context::CreateKeyValueErrorKind as Create;
    let name = config.bucket.clone();
    // Opening an existing bucket needs only its stream (its leader answers), not
    // the JetStream meta leader: it works while a NATS node is down.
    let store = match js.get_key_value(name.as_str()).await {
        Ok(store) => store,
        Err(_) => match js.create_key_value(config).await {
            Ok(store) => store,
            Err(create) => match create.kind() {
                // Made meanwhile by another node, maybe with other settings: use it.
                Create::BucketCreate => js
                    .get_key_value(name.as_str())
                    .await
                    .map_err(|err| backend("open bucket", err))?,
                Create::TimedOut => return Err(timeout("create bucket", create)),
                Create::JetStream => {
                    return Err(ClusterError::Unavailable {
                        reason: format!("JetStream cannot make bucket {name}: {create}"),
                    });
                }
                _ => return Err(backend("create bucket", create)),
            },
        },
    };
    let max_age = store
        .status()
        .await
        .map(|status| status.info.config.max_age)
        .unwrap_or_default();
    Ok(Bucket { store, max_age })
}

/// One bucket with typed helpers. Every method maps async-nats errors onto
/// [`ClusterError`], keeping the source.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    pub(crate) store: kv::Store,
    /// The bucket's `max_age` as the server holds it (zero: none).
    pub(crate) max_age: Duration,
}

/// What a compare-and-set write ended with.
#[derive(Debug)]
pub(crate) enum Cas {
    /// Written; the new revision.
    Written(u64),
    /// The key's last revision was not the expected one.
    Conflict,
}

impl Bucket {
    /// `put`: unconditional write; returns the revision.
    pub(crate) async fn put(&self, key: &str, value: Bytes) -> Result<u64, ClusterError> {
        self.store
            .put(key, value)
            .await
            .map_err(|err| match err.kind() {
                kv::PutErrorKind::InvalidKey => invalid_key(key),
                _ => backend("put", err),
            })
    }

    /// `create`: writes only when the key is absent or deleted.
    pub(crate) async fn create(&self, key: &str, value: Bytes) -> Result<Cas, ClusterError> {
        match self.store.create(key, value).await {
            Ok(revision) => Ok(Cas::Written(revision)),
            Err(err) => match err.kind() {
                kv::CreateErrorKind::AlreadyExists => Ok(Cas::Conflict),
                kv::CreateErrorKind::InvalidKey => Err(invalid_key(key)),
                _ => Err(backend("create", err)),
            },
        }
    }

    /// `create` with a per-message TTL (whole seconds). Only for keys that never
    /// existed: over a delete marker async-nats drops the TTL.
    pub(crate) async fn create_with_ttl(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Cas, ClusterError> {
        match self.store.create_with_ttl(key, value, ttl).await {
            Ok(revision) => Ok(Cas::Written(revision)),
            Err(err) => match err.kind() {
                kv::CreateErrorKind::AlreadyExists => Ok(Cas::Conflict),
                kv::CreateErrorKind::InvalidKey => Err(invalid_key(key)),
                _ => Err(backend("create", err)),
            },
        }
    }

    /// `update(key, value, revision)`: compare-and-set on the key's last revision.
    pub(crate) async fn update(
        &self,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> Result<Cas, ClusterError> {
        match self.store.update(key, value, revision).await {
            Ok(revision) => Ok(Cas::Written(revision)),
            Err(err) => match err.kind() {
                kv::UpdateErrorKind::WrongLastRevision => Ok(Cas::Conflict),
                kv::UpdateErrorKind::TimedOut => Err(timeout("update", err)),
                kv::UpdateErrorKind::InvalidKey => Err(invalid_key(key)),
                kv::UpdateErrorKind::Other => Err(backend("update", err)),
            },
        }
    }

    /// Deletes `key`; with `revision`, only if it is still the key's last revision.
    pub(crate) async fn delete(
        &self,
        key: &str,
        revision: Option<u64>,
    ) -> Result<Cas, ClusterError> {
        match self.store.delete_expect_revision(key, revision).await {
            Ok(()) => Ok(Cas::Written(0)),
            Err(err) => match err.kind() {
                kv::UpdateErrorKind::WrongLastRevision => Ok(Cas::Conflict),
                kv::UpdateErrorKind::TimedOut => Err(timeout("delete", err)),
                _ => Err(backend("delete", err)),
            },
        }
    }

    /// The key's last entry (put, delete or purge), or `None`. A read: it may be
    /// served by a replica that lags, so it never decides leadership.
    pub(crate) async fn entry(&self, key: &str) -> Result<Option<kv::Entry>, ClusterError> {
        self.store.entry(key).await.map_err(|err| match err.kind() {
            kv::EntryErrorKind::TimedOut => timeout("get", err),
            _ => backend("get", err),
        })
    }

    /// Keys that currently hold a value (deleted and expired keys are left out).
    pub(crate) async fn keys(&self) -> Result<Vec<String>, ClusterError> {
        let mut keys = self
            .store
            .keys()
            .await
            .map_err(|err| backend("list keys", err))?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            out.push(key.map_err(|err| backend("list keys", err))?);
        }
        Ok(out)
    }

    /// A watch of `filter` that first delivers the last entry of every matching key.
    pub(crate) async fn watch_with_history(&self, filter: &str) -> Result<kv::Watch, ClusterError> {
        self.store
            .watch_with_history(filter)
            .await
            .map_err(|err| match err.kind() {
                kv::WatchErrorKind::TimedOut => timeout("watch", err),
                _ => backend("watch", err),
            })
    }
}

/// Counts a value in `bucket` that could not be decoded, or belongs to someone else.
pub(crate) fn count_bad_record(bucket: &'static str, key: &str, why: &dyn std::fmt::Display) {
    metrics::counter!("aether_cluster_bad_records_total", "bucket" => bucket).increment(1);
    tracing::warn!(bucket, key, %why, "ignored a bad record in a cluster bucket");
}

/// A failed bucket operation: which one, and the NATS client's error. Carried as
/// the source of [`ClusterError::Backend`].
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {source}")]
pub struct KvError {
    /// The operation ("put", "update", "watch", ...).
    pub operation: &'static str,
    /// The NATS client's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

pub(crate) fn backend(
    operation: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ClusterError {
    ClusterError::backend(KvError {
        operation,
        source: Box::new(source),
    })
}

pub(crate) fn timeout(
    operation: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> ClusterError {
    tracing::debug!(operation, %source, "bucket operation timed out");
    ClusterError::Timeout {
        operation: operation.to_owned(),
    }
}

fn invalid_key(key: &str) -> ClusterError {
    ClusterError::invalid_name("key", key, "not a valid KV key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_encoded_and_distinct() {
        let a = BucketNames::new("AETHER", "a.b").unwrap();
        let b = BucketNames::new("AETHER", "a_b").unwrap();
        assert_ne!(a.members, b.members);
        assert_eq!(a.members, "AETHER_CLUSTER_a_2Eb_MEMBERS");
        assert_eq!(a.leader, "AETHER_CLUSTER_a_2Eb_LEADER");
        assert_eq!(a.map, "AETHER_CLUSTER_a_2Eb_MAP");
        assert!(BucketNames::new("", "x").is_err());
        assert!(BucketNames::new("A.B", "x").is_err());
        assert!(BucketNames::new("A", "").is_err());
    }

    #[test]
    fn handoff_keys_round_trip() {
        assert_eq!(handoff_key(17, 9), "handoff.17.9");
        assert_eq!(parse_handoff_key("handoff.17.9"), Some((17, 9)));
        assert_eq!(parse_handoff_key("handoff.x.9"), None);
        assert_eq!(parse_handoff_key("handoff.1"), None);
        assert_eq!(parse_handoff_key("map"), None);
    }
}
