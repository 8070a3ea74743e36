//! # aether-actor
//!
//! Event-sourced actors for [Aether](https://docs.rs/aether): an [`ActorSystem`] hosts event-sourced actors
//! ([`Aggregate`]s), one task and one bounded mailbox per active actor, with
//! its state kept in memory between commands.
//!
//! ```
//! use aether_actor::ActorSystem;
//! use aether_core::{ActorId, Aggregate, DomainEvent};
//! use aether_store_memory::InMemoryEventStore;
//! use serde::{Deserialize, Serialize};
//! use std::sync::Arc;
//!
//! #[derive(Debug, Default, Clone, Serialize, Deserialize)]
//! struct Counter { value: u64 }
//! #[derive(Serialize, Deserialize)]
//! struct Added(u64);
//! impl DomainEvent for Added { fn event_type(&self) -> &'static str { "Added" } }
//! #[derive(Debug, thiserror::Error, Serialize, Deserialize)]
//! #[error("never")]
//! struct Never;
//! impl Aggregate for Counter {
//!     type Command = u64;
//!     type Event = Added;
//!     type Error = Never;
//!     const KIND: &'static str = "counter";
//!     fn handle(&self, n: u64) -> Result<Vec<Added>, Never> { Ok(vec![Added(n)]) }
//!     fn apply(&mut self, e: &Added) { self.value += e.0 }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let system = ActorSystem::builder(Arc::new(InMemoryEventStore::new()))
//!     .register::<Counter>()
//!     .build()?;
//! let counter = system.actor::<Counter>(ActorId::new("c-1")?);
//! counter.ask(5).await?;
//! let outcome = counter.ask(2).await?;
//! assert_eq!((outcome.version.get(), outcome.state.value), (2, 7));
//! system.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What a command does
//!
//! `ask` routes the command to the actor (activating the actor if it is not
//! active: the latest usable snapshot plus the later events, rebuilt by
//! [`aether_core::Repository::load`]). When the actor is idle (its mailbox
//! empty, no command running) and the caller runs on the actor's tokio
//! runtime, the caller's task runs the command itself under the actor's
//! lock, with no mailbox, reply channel or timer; if the caller stops
//! waiting (its deadline passes or its future is dropped) before the
//! command completes, the rest goes on in a task of its own, so it finishes
//! anyway. Otherwise the command is queued in the mailbox and the actor's
//! task runs it. Either way the actor runs commands one at a time, in the
//! order they were taken: the command-id window check (a repeated
//! [`CommandId`](aether_core::CommandId) gets its original outcome, `duplicate: true`),
//! [`Aggregate::handle`], one
//! `append(expected = cached version)` of [`aether_core::command_events`],
//! then [`Aggregate::apply`] on the cached state. There is no read on this
//! path. A `VersionConflict` means another writer exists: the actor reloads
//! and decides again (at most [`ActorSystemBuilder::max_conflict_retries`]
//! times, counted), then gives up with the conflict and passivates.
//!
//! # Persistence identity
//!
//! An actor is addressed by `(A::KIND, ActorId)`. In the store it is the
//! actor id **`<kind>:<id>`** (see [`persistence_id`]). Kinds are validated
//! at registration to be non-empty and free of `:` and control characters,
//! so the mapping is injective: the store id splits at its first `:` into the
//! kind and the id, and two kinds with one id never share a history. The
//! whole store id obeys [`ActorId::MAX_LEN`], so an id may be at most
//! `MAX_LEN - kind.len() - 1` bytes long.
//!
//! # Deadlines, `Busy` and `Timeout`
//!
//! [`ActorRef::ask`] builds one request: [`Ask::id`] sets its command id,
//! [`Ask::within`] its deadline, [`Ask::correlation_id`] its correlation and
//! [`Ask::no_wait`] makes it refuse to wait for room in a full mailbox;
//! awaiting it sends it.
//! Every ask has a deadline (its own or [`ActorSystemBuilder::ask_deadline`]).
//! An ask waits for room in a full mailbox until the deadline and
//! then returns [`AskError::Busy`]; with [`Ask::no_wait`] it returns `Busy` at
//! once. `Busy` always means the command was **never queued and never run**.
//! [`AskError::Timeout`] means it was queued but no reply came in time: it
//! may or may not have been applied. An actor skips a command whose deadline
//! passed while it waited in the mailbox. Retrying with the same
//! [`CommandId`](aether_core::CommandId) ([`Ask::id`]) is always safe: it is applied
//! at most once while it stays in the actor's window of recent commands.
//!
//! # Passivation
//!
//! An actor passivates after [`ActorSystemBuilder::idle_timeout`] without a
//! command, and the least recently used actor of a kind is passivated when
//! activating one more would pass [`ActorSystemBuilder::max_active_actors`]
//! (found in amortised O(1): the host keeps its actors in order of last
//! use, not a scan of the table).
//! A passivating actor first leaves the host's table, lets a command still
//! running in place finish, then closes its mailbox and sends every command
//! still queued in it to the next incarnation: no command is lost.
//!
//! # Shards, routing and handoff
//!
//! An actor lives in shard [`crate::shard_of`]`(A::KIND, id, shard_count)`,
//! and the [`ShardDirectory`] says where that shard is: the embedded
//! [`SingleNodeDirectory`] (the default: every shard local), a cluster
//! node's (`aether-cluster`'s `ClusterManager`: the NATS cluster's shard map;
//! a node that does not claim membership hosts nothing), or a hand-set
//! [`StaticDirectory`].
//! Joined to a node with `ActorSystemBuilder::cluster` (feature `nats`), a command for a shard owned by another
//! node crosses NATS request/reply to it (envelope in [`wire`]) and the
//! system answers other nodes' commands for its own shards. A "not here"
//! answer (the owner's view differs), no responders and transport time-outs
//! (an attempt waits at most 1 s for its reply), and a transient store
//! failure at the owner, are retried with jittered exponential backoff
//! (5 ms to 200 ms) after reading the directory again, inside the caller's
//! deadline; commands for a moving or unassigned shard wait for the
//! directory to change, in a bounded buffer
//! ([`ActorSystemBuilder::moving_buffer`] commands per node): beyond it an
//! ask gets [`AskError::Busy`] at once. A node serves at most
//! [`ActorSystemBuilder::max_remote_requests`] requests of other nodes at
//! once (one task each); beyond it a request is answered `Busy` at once, so
//! a flood costs a bounded number of tasks and no caller hangs. The same command id travels with every retry, so a
//! retry after a lost reply is answered from the owner's window, not
//! applied twice.
//!
//! When a shard stops being local, its actors passivate (each finishes its
//! command in flight); commands still queued are answered "not here" and
//! routed again. [`ActorSystem::release_shard`] does the same for one shard
//! and waits for its actors to stop; a system joined to a cluster node runs
//! it before the node acknowledges the shard's handoff. A stale owner that still appends is fenced by
//! the store's expected-version check (see above); if its shard is no longer
//! local when the conflict comes back, it does not decide again: the actor
//! passivates (reason `conflict`) and the command, unrun, goes back to its
//! caller's router, which sends it to the new owner.
//!
//! # Panics in user code
//!
//! A panic in `handle`, `apply` or a serde impl of the aggregate stops that
//! actor's incarnation (never the node, nor the task of a caller that ran
//! the command in place); the caller gets
//! [`AskError::ActorPanicked`]. Commands queued behind it go to the next
//! incarnation, which rehydrates from the store. A panic in `apply` happens
//! after the append, so the command's events are stored.
//!
//! # Metrics
//!
//! `aether_actors_active{kind}` (gauge), `aether_actor_activations_total{kind}`,
//! `aether_actor_passivations_total{kind, reason}` (`idle`, `lru`, `panic`,
//! `conflict`, `moved`, `handoff`, `shutdown`),
//! `aether_actor_mailbox_depth{kind}` (histogram, sampled when a command is
//! taken; 0 for one run in place), `aether_actor_ask_duration_seconds{kind, route}` (histogram,
//! `route` = `local` or `remote`), `aether_actor_retries_total{kind, reason}`
//! (`conflict`, `passivated`, `not_here`, `no_responders`, `timeout`,
//! `transport`, `unavailable`), `aether_actor_busy_total{kind, reason}` (`mailbox`, `moving`),
//! `aether_actor_commands_total{kind, outcome}` (`applied`, `duplicate`,
//! `rejected`, `error`, `expired`, `panicked`),
//! `aether_actor_bus_failures_total{kind}`,
//! `aether_actor_wire_rejected_total{reason}` (`malformed`,
//! `no_reply_subject`), `aether_actor_remote_busy_total` (requests of other
//! nodes answered `Busy`). The per-command metrics (commands, mailbox depth,
//! ask durations, busy) are registered once per kind when the system is
//! built, so install the `metrics` recorder before building the system.
//!
//! # Tracing
//!
//! Every ask runs in a `tracing` span `aether.ask` (kind, actor, command
//! id, and the W3C ids `trace_id`, `span_id`, `parent_span_id`); a remote
//! ask carries `traceparent` over NATS, and the owner serves it in a span
//! `aether.handle` with the caller's `trace_id` and the caller's span id as
//! `parent_span_id`: one command is one trace over two nodes. The actor
//! runs the command in a span `aether.actor.command` (kind, actor id,
//! command id), a child of the `aether.ask` or `aether.handle` span. An ask
//! continues [`TraceContext::current`] (set it with
//! [`TraceContext::scope`], e.g. from an incoming HTTP `traceparent`) or
//! starts a new trace. All three spans are at `DEBUG` level. No
//! OpenTelemetry dependency: a subscriber that exports spans reads the ids
//! from the fields.

mod actor;
mod ask;
mod directory;
pub mod hash;
mod host;
mod ids;
mod in_place;
#[cfg(feature = "nats")]
mod node;
#[cfg(feature = "nats")]
mod remote;
mod router;
mod shared;
mod system;
mod table;
mod trace;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod wire;

use aether_core::{ActorId, NameError};

pub use ask::{AskError, AskOutcome};
pub use directory::{Placement, ShardDirectory, SingleNodeDirectory, StaticDirectory};
pub use hash::{shard_of, stable_hash};
pub use ids::{NodeId, ShardId};
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use node::{ClusterNode, NatsNode, Release, node_subject};
pub use system::{
    ActorRef, ActorSystem, ActorSystemBuilder, Ask, Clustered, Embedded, SystemError,
};
pub use trace::TraceContext;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use wire::{WIRE_FORMAT, WireError};

#[doc(no_inline)]
pub use aether_core::Aggregate;

/// The NATS client this crate's API takes (feature `nats`), re-exported so a
/// user never pins a second, mismatching version.
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use async_nats;

/// The store id of actor `id` of kind `kind`: `<kind>:<id>` (see the
/// [crate docs](crate#persistence-identity)).
///
/// # Errors
/// [`NameError`] if the result is longer than [`ActorId::MAX_LEN`] bytes.
pub fn persistence_id(kind: &str, id: &ActorId) -> Result<ActorId, NameError> {
    let mut s = String::with_capacity(kind.len() + 1 + id.as_str().len());
    s.push_str(kind);
    s.push(':');
    s.push_str(id.as_str());
    ActorId::new(s)
}
