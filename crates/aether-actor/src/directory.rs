//! [`ShardDirectory`]: all the runtime knows of the cluster, with the
//! embedded [`SingleNodeDirectory`] and the hand-set [`StaticDirectory`].
//! (`aether-cluster`'s `ClusterManager` implements it for a NATS cluster.)

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::ids::{NodeId, ShardId};

/// Where a shard lives, as this node currently sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// This node owns the shard and hosts its actors.
    Local,
    /// Another node owns it: commands go there over NATS.
    Remote(NodeId),
    /// The shard is being handed over between nodes: its commands wait for
    /// the next change of the directory (within their deadline).
    Moving,
    /// No node owns it right now (no map yet, or this node does not claim
    /// membership): commands wait for a change, as for `Moving`.
    Unassigned,
}

/// What the actor runtime needs from the cluster: who this node is, how many
/// shards there are, where a shard lives, and a signal when that changes.
///
/// The runtime sees the cluster only through this trait, so the embedded
/// single node ([`SingleNodeDirectory`]) and a NATS cluster (`aether-cluster`'s
/// `ClusterManager`) run the same actor code. Implementations must be cheap
/// to query (the runtime asks [`placement`](Self::placement) on every
/// command).
pub trait ShardDirectory: Send + Sync + 'static {
    /// This node.
    fn local_node(&self) -> &NodeId;

    /// The fixed number of shards of the cluster (at least 1).
    fn shard_count(&self) -> u32;

    /// Where `shard` lives now.
    fn placement(&self, shard: ShardId) -> Placement;

    /// The epoch of the placement this node acts on (a "not here" answer
    /// carries it).
    fn epoch(&self) -> u64;

    /// A future that completes once placements may have changed after this
    /// call (it may also complete spuriously). Callers waiting on a moving or
    /// unassigned shard re-read [`placement`](Self::placement) then.
    fn changed(&self) -> BoxFuture<'static, ()>;
}

/// The embedded directory: one node that owns every shard, in process, with
/// no NATS. The default of [`crate::ActorSystem`].
#[derive(Debug)]
pub struct SingleNodeDirectory {
    node: NodeId,
    shard_count: u32,
}

impl SingleNodeDirectory {
    /// A single node named `node` owning all `shard_count` shards (0 is
    /// taken as 1).
    pub fn new(node: NodeId, shard_count: u32) -> Self {
        SingleNodeDirectory {
            node,
            shard_count: shard_count.max(1),
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

    fn epoch(&self) -> u64 {
        1
    }

    fn changed(&self) -> BoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

/// A directory whose placements are set by hand: a fixed owner per shard
/// that the caller changes with [`assign`](Self::assign). For tests, tools
/// and static deployments where shards never move on their own.
#[derive(Debug)]
pub struct StaticDirectory {
    node: NodeId,
    owners: std::sync::RwLock<Vec<Placement>>,
    epoch: watch::Sender<u64>,
}

impl StaticDirectory {
    /// `shard_count` shards (0 is taken as 1), each placed by `place`.
    pub fn new(node: NodeId, shard_count: u32, place: impl Fn(ShardId) -> Placement) -> Self {
        let owners = (0..shard_count.max(1))
            .map(|s| place(ShardId::new(s)))
            .collect();
        StaticDirectory {
            node,
            owners: std::sync::RwLock::new(owners),
            epoch: watch::Sender::new(1),
        }
    }

    /// Places `shard` and bumps the epoch (waking waiters). A shard out of
    /// range is ignored.
    pub fn assign(&self, shard: ShardId, placement: Placement) {
        if let Ok(mut owners) = self.owners.write()
            && let Some(slot) = owners.get_mut(shard.index())
        {
            *slot = placement;
        }
        self.epoch.send_modify(|e| *e += 1);
    }
}

impl ShardDirectory for StaticDirectory {
    fn local_node(&self) -> &NodeId {
        &self.node
    }

    fn shard_count(&self) -> u32 {
        self.owners
            .read()
            .map_or(1, |o| u32::try_from(o.len()).unwrap_or(u32::MAX))
    }

    fn placement(&self, shard: ShardId) -> Placement {
        self.owners
            .read()
            .ok()
            .and_then(|o| o.get(shard.index()).cloned())
            .unwrap_or(Placement::Unassigned)
    }

    fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    fn changed(&self) -> BoxFuture<'static, ()> {
        let mut rx = self.epoch.subscribe();
        Box::pin(async move {
            let _ = rx.changed().await;
        })
    }
}
