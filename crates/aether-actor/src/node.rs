//! [`ClusterNode`]: what an actor system needs to take part in a cluster on
//! NATS (feature `nats`), and [`NatsNode`], a node whose placements come
//! from a directory of the caller's own.

use std::fmt;
use std::sync::Arc;

use aether_core::NameError;
use aether_core::name::{encode_token, validate_subject_prefix};
use futures::future::BoxFuture;

use crate::directory::ShardDirectory;
use crate::ids::{NodeId, ShardId};

/// What a node runs to release a shard that moves away from it: passivate
/// the shard's actors (each finishes the command it runs) and complete once
/// they have stopped.
pub type Release = Arc<dyn Fn(ShardId) -> BoxFuture<'static, ()> + Send + Sync>;

/// The subject node `node` of cluster `cluster` answers actor requests on:
/// `<prefix>.rt.<encoded cluster>.<encoded node id>`. A node announces it in
/// its member record and serves exactly it, so what `aether cluster status`
/// prints is where the node listens.
pub fn node_subject(prefix: &str, cluster: &str, node: &NodeId) -> String {
    format!(
        "{prefix}.rt.{}.{}",
        encode_token(cluster),
        encode_token(node.as_str())
    )
}

/// A node of a cluster on NATS, as an actor system sees it: where shards
/// live, the NATS connection, the subject of each node, and the hook through
/// which the node asks the system to release a shard before it hands it
/// over.
///
/// `aether-cluster`'s `ClusterManager` implements it (placements from the
/// cluster's shard map on NATS KV); [`NatsNode`] implements it for
/// placements set by hand. Give one to
/// [`ActorSystemBuilder::cluster`](crate::ActorSystemBuilder::cluster).
pub trait ClusterNode: Send + Sync + 'static {
    /// Where shards live, as this node sees it.
    fn directory(&self) -> Arc<dyn ShardDirectory>;

    /// The connection requests to other nodes go over, and this node's own
    /// requests are served on. `None` for an embedded node with no NATS (it
    /// places every shard on itself): the system then serves nothing.
    fn client(&self) -> Option<async_nats::Client>;

    /// The subject `node` answers actor requests on (for this node: the
    /// subject it announced, which the system subscribes to).
    fn subject_of(&self, node: &NodeId) -> String;

    /// The aggregate kinds this node announced it hosts. Empty: the node
    /// announced none, and hosts what the system registers.
    fn kinds(&self) -> Vec<String>;

    /// Installs `release`: before the node acknowledges that a shard moved
    /// away from it, it runs `release(shard)` and waits for it. Installing a
    /// second one (a second actor system on the node) runs both.
    fn on_release(&self, release: Release);
}

/// A [`ClusterNode`] whose placements come from a [`ShardDirectory`] of the
/// caller's own (a `StaticDirectory`, a directory fed by another control
/// plane): requests go to `<prefix>.rt.<encoded cluster>.<encoded node>`
/// ([`node_subject`]). Nothing moves shards on its own, so no release is
/// ever asked for; release a shard yourself with
/// [`ActorSystem::release_shard`](crate::ActorSystem::release_shard).
#[derive(Clone)]
pub struct NatsNode {
    client: async_nats::Client,
    prefix: String,
    cluster: String,
    directory: Arc<dyn ShardDirectory>,
}

impl fmt::Debug for NatsNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsNode")
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .field("node", self.directory.local_node())
            .finish_non_exhaustive()
    }
}

impl NatsNode {
    /// Node `directory.local_node()` of cluster `cluster`, reached over
    /// `client`, with the subject prefix `aether`.
    pub fn new<D: ShardDirectory>(
        client: async_nats::Client,
        cluster: impl Into<String>,
        directory: Arc<D>,
    ) -> Self {
        NatsNode {
            client,
            prefix: "aether".to_owned(),
            cluster: cluster.into(),
            directory,
        }
    }

    /// The first tokens of the request subjects (default `aether`).
    ///
    /// # Errors
    /// [`NameError`] if it is not a valid subject prefix
    /// ([`validate_subject_prefix`]).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Result<Self, NameError> {
        let prefix = prefix.into();
        validate_subject_prefix(&prefix)?;
        self.prefix = prefix;
        Ok(self)
    }
}

impl ClusterNode for NatsNode {
    fn directory(&self) -> Arc<dyn ShardDirectory> {
        self.directory.clone()
    }

    fn client(&self) -> Option<async_nats::Client> {
        Some(self.client.clone())
    }

    fn subject_of(&self, node: &NodeId) -> String {
        node_subject(&self.prefix, &self.cluster, node)
    }

    fn kinds(&self) -> Vec<String> {
        Vec::new()
    }

    fn on_release(&self, _release: Release) {}
}

/// The NATS side of a system: the client and the node it takes part as,
/// which names each node's subject.
pub(crate) struct Nats {
    pub(crate) client: async_nats::Client,
    pub(crate) node: Arc<dyn ClusterNode>,
}

impl Nats {
    /// The transport of `node`, if it has a NATS connection.
    pub(crate) fn new(node: Arc<dyn ClusterNode>) -> Option<Self> {
        Some(Nats {
            client: node.client()?,
            node,
        })
    }

    pub(crate) fn subject(&self, node: &NodeId) -> String {
        self.node.subject_of(node)
    }
}
