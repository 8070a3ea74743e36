//! # Aether
//!
//! Distributed actors with event sourcing for Rust, powered by NATS.
//!
//! Events are the source of truth; an actor's state is a fold over its events,
//! bounded by snapshots. This crate is the thin facade over Aether's crates:
//! it re-exports the core vocabulary and, behind feature flags, the stores, the
//! event bus and the modelling tools, so an application depends on `aether`
//! alone. Libraries that only need the contracts depend on [`aether_core`].
//!
//! ```
//! use aether::prelude::*;
//! use aether::memory::InMemoryEventStore;
//!
//! # futures::executor::block_on(async {
//! let store = InMemoryEventStore::new();
//! let account = ActorId::new("account-1")?;
//! let opened = Event::new(account.clone(), Version::FIRST, "AccountOpened", &"alice")?;
//! store.save_event(opened).await?;
//! assert_eq!(store.get_latest_version(&account).await?, Version::FIRST);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Feature flags
//!
//! Default features are small: only `memory`.
//!
//! | feature | what it adds |
//! |---|---|
//! | `memory` (default) | [`memory::InMemoryEventStore`], the embedded default store |
//! | `jetstream` | `jetstream::JetStreamEventStore`, the NATS JetStream store, and `async_nats` |
//! | `bus` | `bus::LocalEventBus`, the in-process event bus |
//! | `nats-bus` | `bus::NatsEventBus`, the event bus across nodes over NATS (implies `bus`) |
//! | `actors` | `actor`: the actor system — event-sourced actors hosted in memory, passivated when idle, effectively-once commands; embedded, no NATS |
//! | `cluster` | `actors` across nodes (remote asks over NATS) and `cluster`: membership, leader lease and shard placement on NATS KV (implies `actors`) |
//! | `projection` | `projection`: read models — `ProjectionRunner`, checkpoint stores (`KvCheckpointStore` with `jetstream`) |
//! | `model` | `model`: EventStorming models, validation and rendering |
//! | `model-toml` | TOML files for models, besides JSON (implies `model`) |
//! | `prometheus` | `metrics_prometheus::install_recorder` / `install_http`, a Prometheus exporter for the `aether_*` metrics |
//! | `testkit` | [`testkit`]: the store conformance suite and the given/when/then aggregate test kit |
//! | `full` | all of the above |
//!
//! # Picking crates
//!
//! Each part is also its own crate: `aether-core` (contracts), `aether-store-memory`,
//! `aether-store-jetstream`, `aether-bus`, `aether-actor`, `aether-cluster`, `aether-projection`,
//! `aether-model`. Depend on those
//! directly to keep a dependency tree minimal, or on this facade for one
//! version to manage.
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use aether_core::{self as core, aggregate, bus as bus_contract, feed, name, store, trust};
#[doc(inline)]
pub use aether_core::{
    ActorId, ActorSnapshot, Aggregate, BusError, BusEvent, Checkpoint, CheckpointError,
    CheckpointStore, CodecError, Command, CommandError, CommandId, CommandOutcome, DomainEvent,
    DynEventBus, DynEventStore, DynSnapshotStore, DynStore, Event, EventBus, EventFeed,
    EventFilter, EventId, EventStore, EventStoreExt, FeedFilter, FeedItem, ForeignReason,
    InvalidInput, Metadata, NameError, Namespace, NamespacePattern, Position, Projection,
    ProjectionError, RecentCommand, RehydrateError, Rehydrated, Repository, SnapshotStore,
    StoreError, TrustPolicy, Version, rehydrate,
};

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
#[doc(inline)]
pub use aether_core::testkit;

/// The in-memory store: the embedded default.
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory {
    #[doc(inline)]
    pub use aether_store_memory::*;
}

#[cfg(feature = "jetstream")]
#[cfg_attr(docsrs, doc(cfg(feature = "jetstream")))]
#[doc(inline)]
pub use aether_store_jetstream as jetstream;

#[cfg(feature = "bus")]
#[cfg_attr(docsrs, doc(cfg(feature = "bus")))]
#[doc(inline)]
pub use aether_bus as bus;

#[cfg(feature = "actors")]
#[cfg_attr(docsrs, doc(cfg(feature = "actors")))]
#[doc(inline)]
pub use aether_actor as actor;

#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
#[doc(inline)]
pub use aether_cluster as cluster;

#[cfg(feature = "model")]
#[cfg_attr(docsrs, doc(cfg(feature = "model")))]
#[doc(inline)]
pub use aether_model as model;

#[cfg(feature = "projection")]
#[cfg_attr(docsrs, doc(cfg(feature = "projection")))]
#[doc(inline)]
pub use aether_projection as projection;

#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod metrics_prometheus;

/// The NATS client Aether's NATS crates are built on (features `jetstream`,
/// `nats-bus`, `cluster`): connect with `aether::async_nats` so the
/// `Client` you pass is the very type the stores, the bus and the cluster
/// take, with no second `async-nats` version to keep in step.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = aether::async_nats::connect("nats://127.0.0.1:4222").await?;
/// # Ok(())
/// # }
/// ```
#[cfg(any(feature = "jetstream", feature = "nats-bus", feature = "cluster"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "jetstream", feature = "nats-bus", feature = "cluster")))
)]
pub use async_nats;

// The README's code blocks are compiled (and the quick start run) as doc tests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// Everything an application usually imports: `use aether::prelude::*;`.
pub mod prelude {
    pub use aether_core::prelude::*;

    #[cfg(feature = "memory")]
    pub use aether_store_memory::InMemoryEventStore;
}
