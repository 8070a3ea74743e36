//! # aether-core
//!
//! The vocabulary and contracts of [Aether](https://docs.rs/aether), a
//! distributed actor system with event sourcing on NATS. Backends, the bus and
//! the cluster depend on this crate alone; it knows nothing of NATS or of an
//! async runtime.
//!
//! * Names: [`Namespace`], [`ActorId`] (validated, see [`name`] for the rules
//!   and the collision-free subject encoding), [`Version`], [`EventId`].
//! * Records: the [`Event`] envelope (MessagePack payload, readable fields) and
//!   [`ActorSnapshot`].
//! * Contracts: [`EventStore`], [`SnapshotStore`], [`EventBus`], with
//!   conveniences in [`EventStoreExt`] and dyn-safe forms ([`DynEventStore`],
//!   [`DynSnapshotStore`], [`DynStore`], [`DynEventBus`]).
//! * Aggregates: the [`Aggregate`] trait, pure [`rehydrate`], and the
//!   [`Repository`] that runs [`Command`]s with optimistic concurrency,
//!   effectively once (see [`aggregate`] and [`repository`]).
//! * Feed: [`EventFeed`] reads a whole namespace in commit order from a
//!   [`Position`] (catch-up and live), see [`feed`]; read models are
//!   [`Projection`]s with a [`CheckpointStore`], see [`projection`].
//! * Trust: the [`trust`] rule every store applies to records it did not
//!   write ([`TrustPolicy`], [`HistoryGuard`]).
//! * Retries: [`backoff::Backoff`], the jittered exponential back-off
//!   backends wait with before retrying (durations only, no timer).
//! * Effectively-once commands: [`CommandId`], [`RecentCommand`],
//!   [`EventId::for_command`], [`command_events`], [`CommandWindow`].
//! * Errors: [`StoreError`], [`BusError`], [`NameError`], [`CodecError`],
//!   [`RehydrateError`], [`CommandError`].
//!
//! # Feature flags
//!
//! * `testkit` — the backend conformance suite ([`testkit::conformance`],
//!   [`conformance_suite!`]) and the given/when/then [`testkit::AggregateTest`].
//!
//! # Example
//!
//! ```
//! use aether_core::{ActorId, Event, Version};
//!
//! let actor = ActorId::new("account-42")?;
//! let event = Event::new(actor, Version::FIRST, "MoneyDeposited", &100u64)?;
//! assert_eq!(event.decode::<u64>()?, 100);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aggregate;
pub mod backoff;
pub mod bus;
pub mod command;
pub mod error;
pub mod event;
pub mod feed;
pub mod metrics;
pub mod msgpack;
pub mod name;
pub mod projection;
pub mod repository;
pub mod snapshot;
pub mod store;
#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;
pub mod trust;
pub mod version;

pub use aggregate::{Aggregate, Rehydrated, rehydrate, rehydrate_with_window};
pub use bus::{BusEvent, DynEventBus, EventBus, EventFilter, NamespacePattern};
pub use command::{
    Command, CommandId, CommandWindow, DEFAULT_COMMAND_WINDOW, RecentCommand, command_events,
};
pub use error::{
    BoxError, BusError, CodecError, CommandError, InvalidInput, NameError, RehydrateError,
    StoreError,
};
pub use event::{DomainEvent, Event, EventId, Metadata};
pub use feed::{EventFeed, FeedFilter, FeedItem, Position};
pub use name::{ActorId, NameKind, Namespace};
pub use projection::{Checkpoint, CheckpointError, CheckpointStore, Projection, ProjectionError};
pub use repository::{CommandOutcome, Repository};
pub use snapshot::ActorSnapshot;
pub use store::{
    BoxFuture, BoxStream, DynEventStore, DynSnapshotStore, DynStore, EventStore, EventStoreExt,
    Result, SnapshotStore,
};
pub use trust::{ForeignReason, HistoryGuard, TrustPolicy, report_foreign};
pub use version::Version;

/// Everything an application usually imports.
pub mod prelude {
    pub use crate::{
        ActorId, ActorSnapshot, Aggregate, Command, CommandId, DomainEvent, Event, EventBus,
        EventFilter, EventStore, EventStoreExt, Namespace, Position, Repository, SnapshotStore,
        StoreError, Version,
    };
}
