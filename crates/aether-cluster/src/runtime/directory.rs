//! [`ShardDirectory`]: all the runtime knows of the cluster.

use tokio::sync::watch;

use crate::types::{NodeId, ShardId};

/// Where a shard lives, as this node currently sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This node owns the shard and hosts its actors.
    Local,
    /// Another node owns it.
    Remote(NodeId),
    /// The shard is being handed over between nodes: its commands wait for
    /// the next change of the directory (within their deadline).
    Moving,
    /// No node owns it right now (e.g. no map yet).
    Unassigned,
}

/// What the actor runtime needs from the cluster: who this node is, how many
/// shards there are, where a shard lives, and a signal when that changes.
///
/// The runtime sees the cluster only through this trait, so the embedded
/// single node ([`SingleNodeDirectory`]) and a NATS cluster run the same actor
/// code. Implementations must be cheap to query (the runtime asks
/// [`placement`](Self::placement) on every command) and must never report
/// two nodes as `Local` for one shard at one epoch.
pub trait ShardDirectory: Send + Sync + 'static {
    /// This node.
    fn local_node(&self) -> &NodeId;

    /// The fixed number of shards of the cluster (at least 1).
    fn shard_count(&self) -> u32;

    /// Where `shard` lives now.
    fn placement(&self, shard: ShardId) -> Placement;

    /// A receiver whose value (the map epoch) changes whenever placements
    /// may have changed. Hosts passivate actors whose shard stopped being
    /// local; callers waiting on a moving shard retry.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// The embedded directory: one node that owns every shard, in process, with
/// no NATS. The default of [`crate::runtime::ActorSystem`].
#[derive(Debug)]
pub struct SingleNodeDirectory {
    node: NodeId,
    shard_count: u32,
    epoch: watch::Sender<u64>,
}

impl SingleNodeDirectory {
    /// A single node named `node` owning all `shard_count` shards (0 is
    /// taken as 1).
    pub fn new(node: NodeId, shard_count: u32) -> Self {
        SingleNodeDirectory {
            node,
            shard_count: shard_count.max(1),
            epoch: watch::Sender::new(1),
        }
    }
}

impl Default for SingleNodeDirectory {
    /// Node `local`, 1024 shards.
    fn default() -> Self {
        Self::new(
            NodeId::new("local").expect("`local` is a valid node id"),
            1024,
        )
    }
}

impl ShardDirectory for SingleNodeDirectory {
    fn local_node(&self) -> &NodeId {
        &self.node
    }

    fn shard_count(&self) -> u32 {
        self.shard_count
    }

    fn placement(&self, _shard: ShardId) -> Placement {
        Placement::Local
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }
}
