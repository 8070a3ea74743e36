//! The shard map on NATS: every node follows it, the leader writes it.
//!
//! - **Following** (every node): a watch on the map bucket keeps the newest map by
//!   `(term, epoch)` and ignores any older one, and collects handoff
//!   acknowledgements (`handoff.<shard>.<epoch>`).
//! - **Releasing** (every node): when the newest map marks a shard *moving* from this
//!   node, the node's handoff handler is told to release it; when it returns, the
//!   node acknowledges under `handoff.<shard>.<epoch>` (with no handler it
//!   acknowledges at once).
//! - **Leading** (the node acting under the lease): on a membership change
//!   (debounced), a new term, an acknowledgement or a handoff timeout, the leader
//!   recomputes the map with [`place`](crate::place) (through the pure step of
//!   the crate's `next_map` module) and CAS-writes it
//!   (`update(map, .., last_revision)`). A move is two epochs: first the shard is
//!   marked moving from A to B; once A acknowledges (or A is dead, or silent past the
//!   handoff timeout) B is published as owner. A new leader first rewrites the map
//!   under its own term, which fences a deposed leader's later CAS.
//!
//! One submodule per role: `follow`, `release` and `lead`.

mod follow;
mod lead;
mod release;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::{broadcast, watch};

pub(crate) use self::follow::follow;
pub(crate) use self::lead::Leading;
pub(crate) use self::release::release;
use crate::next_map::HandoffAck;
use crate::{ClusterEvent, NodeId, ShardId, ShardMap};

/// A request to release a shard: the node must stop taking new commands for it,
/// finish the one in flight, passivate its actors, and then return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffRequest {
    /// The shard to release.
    pub shard: ShardId,
    /// The map epoch in which the move was seen.
    pub epoch: u64,
    /// The node that takes the shard over.
    pub to: NodeId,
}

/// What a node runs to release a shard (see [`HandoffRequest`]).
pub(crate) type Handler = Arc<dyn Fn(HandoffRequest) -> BoxFuture<'static, ()> + Send + Sync>;

/// One write the leader is about to make, reported to the audit hook
/// ([`ClusterManagerBuilder::on_leader_action`](crate::ClusterManagerBuilder::on_leader_action)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAction {
    /// The node acting as leader.
    pub node: NodeId,
    /// The term it acts under.
    pub term: u64,
    /// The epoch of the map it writes.
    pub epoch: u64,
    /// When the node decided to write (local monotonic clock).
    pub at: std::time::Instant,
}

/// The audit hook.
pub(crate) type AuditHook = Arc<dyn Fn(&LeaderAction) + Send + Sync>;

/// What this node knows about the shard map.
#[derive(Debug, Clone, Default)]
pub(crate) struct MapState {
    /// The newest map seen, by `(term, epoch)`.
    pub(crate) newest: Option<Arc<ShardMap>>,
    /// Revision of the last entry of the map key (0: none): the leader's CAS base.
    pub(crate) revision: u64,
    /// Handoff acknowledgements by `(shard, epoch)`.
    pub(crate) acks: BTreeMap<(u32, u64), HandoffAck>,
}

/// Accepts `map` if it is newer than the newest one; returns whether it was.
fn accept(
    state: &watch::Sender<MapState>,
    map: ShardMap,
    revision: u64,
    local: &NodeId,
    events: &broadcast::Sender<ClusterEvent>,
) -> bool {
    let mut accepted = false;
    let (term, epoch) = (map.term, map.epoch);
    let owned = map.shards_of(local).len();
    state.send_modify(|state| {
        state.revision = state.revision.max(revision);
        if state
            .newest
            .as_ref()
            .is_none_or(|newest| map.is_newer_than(newest))
        {
            // Acknowledgements of shards no longer moving are of no use.
            state
                .acks
                .retain(|(shard, _), _| map.moving.contains_key(shard));
            state.newest = Some(Arc::new(map));
            accepted = true;
        }
    });
    if accepted {
        let span = tracing::info_span!("shard_map", node = %local, term, epoch);
        tracing::info!(parent: &span, owned, "shard map changed");
        metrics::gauge!("aether_cluster_map_epoch", "node" => local.as_str().to_owned())
            .set(epoch as f64);
        metrics::gauge!("aether_cluster_shards_owned", "node" => local.as_str().to_owned())
            .set(owned as f64);
        let _ = events.send(ClusterEvent::ShardMapChanged { term, epoch });
    }
    accepted
}
