//! # aether-cluster
//!
//! The control plane of [Aether](https://docs.rs/aether)'s distributed actors:
//! membership, a leader lease with fencing terms, and shard placement — on NATS
//! KV, with no consensus of its own. The actor runtime (`aether-actor`) stands
//! on it: a [`ClusterManager`] is the `ShardDirectory` and `ClusterNode` an
//! actor system joins with `ActorSystem::builder(store).cluster(&node)`.
//!
//! * **Vocabulary**: [`NodeId`], [`Incarnation`], [`NodeInfo`], [`ShardId`],
//!   [`ClusterEvent`]; errors in [`ClusterError`].
//! * **Shards** (pure, no runtime needed): the stable shard hash [`shard_of`]
//!   (a wire contract, see [`hash`]; it lives in `aether-actor`, which routes by it); the sticky, capacity-capped placement
//!   [`place`]; the [`ShardMap`] with its `(term, epoch)` ordering, versioned
//!   encoding and two-step handoff helpers; a [`ConsistentHashRing`] for key →
//!   node without a leader.
//! * **On NATS**: the KV buckets ([`kv`]), membership ([`membership`]), the
//!   leader lease ([`leader`]), the leader's map maintenance ([`coordinator`]),
//!   and the [`ClusterManager`] that starts them from a NATS client, a cluster
//!   name and a node id — or runs an embedded single node owning every shard,
//!   behind the same API ([`manager`]).
//!
//! The crate has no feature flags.
//!
//! ```
//! use aether_cluster::{place, shard_of, Member, NodeId, ShardMap};
//! use aether_core::ActorId;
//!
//! let members = [
//!     Member::new(NodeId::new("n1")?, 1),
//!     Member::new(NodeId::new("n2")?, 1),
//! ];
//! let mut map = ShardMap::empty(1024);
//! map.owners = place(Some(&map), &members, 1024);
//! let shard = shard_of("account", &ActorId::new("account-1")?, map.shard_count);
//! assert!(map.owner(shard).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod coordinator;
pub mod error;
pub mod kv;
pub mod leader;
pub mod manager;
pub mod membership;
mod next_map;
pub mod placement;
pub mod ring;
pub mod shard_map;
pub mod status;
pub mod types;

pub use aether_actor::hash::{self, shard_of, stable_hash};
/// The NATS client this crate's API takes, re-exported so a user never pins a
/// second, mismatching version.
pub use async_nats;
pub use coordinator::{HandoffRequest, LeaderAction};
pub use error::{ClusterError, Result};
pub use manager::{ClusterManager, ClusterManagerBuilder};
pub use placement::{Member, place, rendezvous_score};
pub use ring::ConsistentHashRing;
pub use shard_map::{Move, ShardChange, ShardMap};
pub use status::ClusterStatus;
pub use types::{ClusterEvent, Incarnation, NodeId, NodeInfo, ShardId};
