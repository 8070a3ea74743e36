//! A cluster's state as its KV buckets hold it right now, read from outside
//! the cluster: for tools (`aether cluster status`) and dashboards.
//!
//! [`ClusterStatus::read`] is **read-only**: it never creates a bucket nor
//! writes a key, so pointing it at a server where a cluster does not exist
//! leaves nothing behind ([`None`] is the answer). It is a snapshot of reads
//! that may be served by a lagging replica and are not taken atomically
//! across the three buckets: it describes the cluster, it never decides
//! anything (leadership is decided only by the lease's compare-and-set, see
//! [`crate::leader`]).
//!
//! Records that cannot be decoded (garbage, a foreign value, a map written
//! by a newer release) do not fail the read: they are listed in
//! [`ClusterStatus::bad_records`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind, kv};
use futures::StreamExt as _;
use time::OffsetDateTime;

use crate::error::ClusterError;
use crate::kv::{BucketNames, LEADER_KEY, MAP_KEY, MEMBER_PREFIX, backend, timeout};
use crate::leader::LeaderRecord;
use crate::{Incarnation, NodeId, NodeInfo, ShardMap};

/// One live member: its record and when its last heartbeat was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberStatus {
    /// What the node announces about itself.
    pub info: NodeInfo,
    /// When the server stored the node's last heartbeat (the server's clock).
    pub heartbeat_at: OffsetDateTime,
}

/// The leader lease as stored: who holds it, under which term, and when it
/// was last written (won or renewed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderStatus {
    /// The node holding the lease.
    pub node: NodeId,
    /// The run of that node that holds it.
    pub incarnation: Incarnation,
    /// The lease's term (the revision of the winning create).
    pub term: u64,
    /// When the server stored the lease's last write (the server's clock).
    pub renewed_at: OffsetDateTime,
}

/// A record in one of the cluster's buckets that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadRecord {
    /// The bucket's name.
    pub bucket: String,
    /// The key.
    pub key: String,
    /// Why it was not understood.
    pub reason: String,
}

/// What one cluster's buckets hold (see the [module docs](self)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The cluster's name, as given.
    pub cluster: String,
    /// The names of its buckets.
    pub buckets: BucketNames,
    /// The member TTL in force (the members bucket's `max_age`; zero when
    /// that bucket is missing).
    pub member_ttl: Duration,
    /// The lease TTL in force (the leader bucket's `max_age`; zero when that
    /// bucket is missing).
    pub lease_ttl: Duration,
    /// The live members (records not yet expired), by node id.
    pub members: Vec<MemberStatus>,
    /// The lease, if one is held (`None`: vacant, expired or unreadable).
    pub leader: Option<LeaderStatus>,
    /// The shard map, if the leader has written one (`None`: none yet, or
    /// unreadable).
    pub shard_map: Option<ShardMap>,
    /// Records that could not be decoded.
    pub bad_records: Vec<BadRecord>,
}

impl ClusterStatus {
    /// Reads cluster `cluster`'s buckets (named under `prefix`, default
    /// [`crate::kv::DEFAULT_PREFIX`]). Read-only.
    ///
    /// Returns `Ok(None)` when none of the cluster's buckets exists on the
    /// server (no such cluster); a missing bucket among existing ones reads
    /// as empty.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidName`] for a bad prefix or cluster name;
    /// [`ClusterError::Timeout`] or [`ClusterError::Backend`] when a read
    /// fails.
    pub async fn read(
        js: &jetstream::Context,
        prefix: &str,
        cluster: &str,
    ) -> Result<Option<ClusterStatus>, ClusterError> {
        let buckets = BucketNames::new(prefix, cluster)?;
        let members = open(js, &buckets.members).await?;
        let leader = open(js, &buckets.leader).await?;
        let map = open(js, &buckets.map).await?;
        if members.is_none() && leader.is_none() && map.is_none() {
            return Ok(None);
        }
        let mut status = ClusterStatus {
            cluster: cluster.to_owned(),
            buckets,
            member_ttl: Duration::ZERO,
            lease_ttl: Duration::ZERO,
            members: Vec::new(),
            leader: None,
            shard_map: None,
            bad_records: Vec::new(),
        };
        if let Some(store) = &members {
            status.member_ttl = max_age(store).await?;
            status.read_members(store).await?;
        }
        if let Some(store) = &leader {
            status.lease_ttl = max_age(store).await?;
            status.read_leader(store).await?;
        }
        if let Some(store) = &map {
            status.read_map(store).await?;
        }
        Ok(Some(status))
    }

    /// Shards owned per node in the shard map, including owners that are no
    /// longer members; empty without a map.
    pub fn shards_per_node(&self) -> BTreeMap<NodeId, usize> {
        self.shard_map
            .as_ref()
            .map(ShardMap::load)
            .unwrap_or_default()
    }

    fn bad(&mut self, bucket: &str, key: &str, reason: impl Into<String>) {
        self.bad_records.push(BadRecord {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            reason: reason.into(),
        });
    }

    async fn read_members(&mut self, store: &kv::Store) -> Result<(), ClusterError> {
        let mut keys = store
            .keys()
            .await
            .map_err(|err| backend("list keys", err))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|err| backend("list keys", err))?);
        }
        let bucket = self.buckets.members.clone();
        for key in names {
            let Some(entry) = entry(store, &key).await? else {
                continue; // expired between the listing and the read
            };
            let Some(token) = key.strip_prefix(MEMBER_PREFIX) else {
                self.bad(&bucket, &key, "unexpected key in the members bucket");
                continue;
            };
            match crate::membership::decode_member(token, &entry.value) {
                Ok(info) => self.members.push(MemberStatus {
                    info,
                    heartbeat_at: entry.created,
                }),
                Err(reason) => self.bad(&bucket, &key, reason),
            }
        }
        self.members
            .sort_by(|a, b| a.info.node_id.cmp(&b.info.node_id));
        Ok(())
    }

    async fn read_leader(&mut self, store: &kv::Store) -> Result<(), ClusterError> {
        let Some(entry) = entry(store, LEADER_KEY).await? else {
            return Ok(());
        };
        match rmp_serde::from_slice::<LeaderRecord>(&entry.value) {
            Ok(record) => {
                self.leader = Some(LeaderStatus {
                    node: record.node,
                    incarnation: record.incarnation,
                    // As the nodes read it: a renewal carries the term, the
                    // winning create's revision is the term.
                    term: record.term.unwrap_or(entry.revision),
                    renewed_at: entry.created,
                });
            }
            Err(err) => {
                let bucket = self.buckets.leader.clone();
                self.bad(&bucket, LEADER_KEY, format!("not a lease record: {err}"));
            }
        }
        Ok(())
    }

    async fn read_map(&mut self, store: &kv::Store) -> Result<(), ClusterError> {
        let Some(entry) = entry(store, MAP_KEY).await? else {
            return Ok(());
        };
        match ShardMap::decode(&entry.value) {
            Ok(map) => self.shard_map = Some(map),
            Err(err) => {
                let bucket = self.buckets.map.clone();
                self.bad(&bucket, MAP_KEY, err.to_string());
            }
        }
        Ok(())
    }
}

/// The names of the clusters whose members bucket exists on the server
/// under `prefix`, sorted. Read-only.
///
/// # Errors
///
/// [`ClusterError::InvalidName`] for a bad prefix; [`ClusterError::Backend`]
/// when the stream listing fails.
pub async fn list_clusters(
    js: &jetstream::Context,
    prefix: &str,
) -> Result<Vec<String>, ClusterError> {
    // Validates the prefix the same way bucket names do.
    BucketNames::new(prefix, "x")?;
    let head = format!("KV_{prefix}_CLUSTER_");
    let mut names = js.stream_names();
    let mut clusters = Vec::new();
    while let Some(name) = names.next().await {
        let name = name.map_err(|err| backend("list streams", err))?;
        let token = name
            .strip_prefix(&head)
            .and_then(|rest| rest.strip_suffix("_MEMBERS"));
        if let Some(cluster) = token.and_then(aether_core::name::decode_token) {
            clusters.push(cluster);
        }
    }
    clusters.sort();
    Ok(clusters)
}

/// The bucket `name`, or `None` when its stream does not exist.
async fn open(js: &jetstream::Context, name: &str) -> Result<Option<kv::Store>, ClusterError> {
    match js.get_stream(format!("KV_{name}")).await {
        Ok(_) => {}
        Err(err) => {
            return match err.kind() {
                GetStreamErrorKind::JetStream(js_err)
                    if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(None)
                }
                _ => Err(backend("open bucket", err)),
            };
        }
    }
    js.get_key_value(name)
        .await
        .map(Some)
        .map_err(|err| backend("open bucket", err))
}

async fn max_age(store: &kv::Store) -> Result<Duration, ClusterError> {
    store
        .status()
        .await
        .map(|status| status.info.config.max_age)
        .map_err(|err| backend("bucket status", err))
}

/// The key's value, or `None` when it is absent, deleted or expired.
async fn entry(store: &kv::Store, key: &str) -> Result<Option<kv::Entry>, ClusterError> {
    let entry = store.entry(key).await.map_err(|err| match err.kind() {
        kv::EntryErrorKind::TimedOut => timeout("get", err),
        _ => backend("get", err),
    })?;
    Ok(entry.filter(|entry| entry.operation == kv::Operation::Put))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> ClusterStatus {
        ClusterStatus {
            cluster: "c".to_owned(),
            buckets: BucketNames::new("AETHER", "c").unwrap(),
            member_ttl: Duration::ZERO,
            lease_ttl: Duration::ZERO,
            members: Vec::new(),
            leader: None,
            shard_map: None,
            bad_records: Vec::new(),
        }
    }

    #[test]
    fn shards_per_node_counts_the_map() {
        let mut s = status();
        assert!(s.shards_per_node().is_empty());
        let n1 = NodeId::new("n1").unwrap();
        let n2 = NodeId::new("n2").unwrap();
        let mut map = ShardMap::empty(3);
        map.owners = vec![Some(n1.clone()), Some(n2.clone()), Some(n1.clone())];
        s.shard_map = Some(map);
        let load = s.shards_per_node();
        assert_eq!(load.get(&n1), Some(&2));
        assert_eq!(load.get(&n2), Some(&1));
    }
}
