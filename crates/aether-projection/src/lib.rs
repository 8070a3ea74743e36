//! # aether-projection
//!
//! Read models for Aether. A [`Projection`](aether_core::Projection) reads a
//! namespace's events in commit order through the store's feed
//! ([`aether_core::EventFeed`]); a [`ProjectionRunner`] drives it from its
//! stored checkpoint, commits in batches and saves the checkpoint with
//! compare-and-set, so two runners of one projection cannot both advance
//! it. The contracts (`Projection`, `CheckpointStore`) are runtime-free in
//! `aether_core::projection`; this crate adds the runner (tokio timers)
//! and the checkpoint stores.
//!
//! * [`MemoryCheckpointStore`]: in memory.
//! * `KvCheckpointStore` (feature `nats`): a NATS JetStream KV bucket,
//!   saves with `create` / `update(revision)`.
//!
//! # One runner at a time
//! The checkpoint's compare-and-set stops a second runner of a projection
//! at its first save, after it handled a batch. To stop it before it handles
//! anything, give runners a lease ([`ProjectionRunner::lease`] with
//! [`MemoryLease`] or `KvCheckpointStore`): the runner takes it before
//! loading the checkpoint, renews it before handling once a renewal is due,
//! and gives it back when it stops; a runner that finds it held fails with
//! [`LeaseError::Held`] at once (see [`ProjectionLease`]).
//!
//! # Lag
//! `aether_projection_lag_events` and [`Progress::behind`] count positions
//! between the checkpoint and the head, except those the feed is known to
//! have passed without anything for the projection (foreign records the
//! trust policy skipped, events the filter leaves out): after a catch-up
//! reached its end, or when an idle live runner's probe read finds nothing
//! up to the head.
//!
//! # Delivery
//! At least once across crashes: events after the last saved checkpoint
//! are handled again, so handlers use the item's position to stay
//! idempotent. Exactly once when the read model stores its position in
//! the same transaction as its rows (`Projection::commit`) and is itself the
//! `CheckpointStore`. See `aether_core::projection`.
//!
//! ```
//! use aether_core::{
//!     ActorId, Event, EventStoreExt, FeedItem, Projection, ProjectionError, Version,
//! };
//! use aether_projection::{MemoryCheckpointStore, ProjectionRunner};
//! use aether_store_memory::InMemoryEventStore;
//!
//! #[derive(Default)]
//! struct Count(u64);
//!
//! impl Projection for Count {
//!     fn name(&self) -> &str {
//!         "count"
//!     }
//!     async fn handle(&mut self, _item: &FeedItem) -> Result<(), ProjectionError> {
//!         self.0 += 1;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = InMemoryEventStore::new();
//! let a = ActorId::new("a")?;
//! store.save_event(Event::new(a, Version::FIRST, "Pinged", &1)?).await?;
//! let mut runner = ProjectionRunner::new(store, MemoryCheckpointStore::new());
//! let mut count = Count::default();
//! let at = runner.catch_up(&mut count).await?;
//! assert_eq!((count.0, at.get()), (1, 1));
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//! * `nats` — `KvCheckpointStore`.

#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
mod kv;
mod lease;
mod memory;
mod runner;

/// The NATS client `KvCheckpointStore` takes, re-exported so a user never
/// pins a second, mismatching version.
#[cfg(feature = "nats")]
pub use async_nats;
#[cfg(feature = "nats")]
pub use kv::KvCheckpointStore;
pub use lease::{LeaseError, MemoryLease, ProjectionLease};
pub use memory::MemoryCheckpointStore;
pub use runner::{Progress, ProjectionRunner, RunnerError};
