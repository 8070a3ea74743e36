//! The storage contracts: [`EventStore`] and [`SnapshotStore`], their
//! conveniences ([`EventStoreExt`]) and dyn-safe forms ([`DynEventStore`],
//! [`DynSnapshotStore`]) for stores chosen at run time.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use futures_core::stream::BoxStream;

use crate::error::{InvalidInput, StoreError};
use crate::event::{DomainEvent, Event};
use crate::name::{ActorId, Namespace};
use crate::snapshot::ActorSnapshot;
use crate::version::Version;

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A boxed, `Send` future (the dyn-safe traits return these).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An append-only, per-actor event log scoped to one [`Namespace`].
///
/// Every implementation keeps these rules (the `testkit` conformance suite
/// checks each of them):
///
/// * Versions are per actor, start at 1 and have no gaps.
/// * [`append`](Self::append) is atomic: every event is stored with consecutive
///   versions, or none is.
/// * Writing the same event id again at the same version is idempotent: it
///   reports success and stores no second copy.
/// * Reads return versions in ascending order.
/// * No read in one namespace ever yields another namespace's events.
/// * Event ids are unique per actor: the same id in two actors is two events.
/// * Records the store did not write (on a shared transport) are judged by
///   the [`crate::trust`] rule: under the default policy they are skipped in
///   reads and appends continue after the last valid version.
pub trait EventStore: Send + Sync {
    /// The namespace this store reads and writes.
    fn namespace(&self) -> &Namespace;

    /// Appends `events` to `actor`'s history if its latest version is
    /// `expected`, all or nothing, and returns the new latest version.
    ///
    /// The events must name `actor` and carry the versions `expected + 1`,
    /// `expected + 2`, … ([`Event::sequence`] builds such a batch). An empty
    /// batch checks nothing and returns `expected`.
    ///
    /// If the batch was already stored (same event ids at the same versions,
    /// e.g. a retry after a lost acknowledgement) the call succeeds and returns
    /// the batch's last version without writing anything.
    ///
    /// # Errors
    /// * [`StoreError::VersionConflict`] if the latest version is not `expected`;
    /// * [`StoreError::InvalidInput`] for a malformed batch;
    /// * [`StoreError::TooLarge`] if an event exceeds the backend's limit;
    /// * [`StoreError::Unavailable`] / [`StoreError::Timeout`] when the backend
    ///   cannot be reached (a retry with the same events is safe).
    ///
    /// Nothing is written when an error is returned, except that after
    /// `Unavailable` or `Timeout` the batch may have been stored whole.
    fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Version>> + Send;

    /// The events of `actor` with version `>= from`, ascending. `from` of
    /// [`Version::ZERO`] or [`Version::FIRST`] means the whole history; an
    /// unknown actor has none.
    ///
    /// The history returned never has a gap, a repeat or a backward version:
    /// records that are not a valid part of it are handled by the store's
    /// [`crate::TrustPolicy`] (see [`crate::trust`]).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a foreign record under
    /// [`crate::TrustPolicy::Strict`]; transport errors.
    fn get_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;

    /// Like [`get_events`](Self::get_events) but streamed, for histories too
    /// long to hold at once, with the same trust rule (foreign records are
    /// skipped, or end the stream with [`StoreError::Corrupt`] under
    /// [`crate::TrustPolicy::Strict`]). The stream ends after the latest event
    /// that existed when it was opened (or later).
    ///
    /// After an `Err` item the stream ends (that error is its last item); it
    /// never ends early without one. So a caller that reads to the end
    /// without an error has seen the whole history, without a gap, a repeat
    /// or a backward version.
    fn stream_events(&self, actor: &ActorId, from: Version) -> BoxStream<'static, Result<Event>>;

    /// The latest *valid* version of `actor` (foreign records do not count);
    /// [`Version::ZERO`] if it has no events.
    ///
    /// # Errors
    /// Transport errors.
    fn get_latest_version(&self, actor: &ActorId) -> impl Future<Output = Result<Version>> + Send;
}

/// Latest-state snapshots per actor, scoped to one namespace.
pub trait SnapshotStore: Send + Sync {
    /// Stores a snapshot. A snapshot older than the stored one is accepted and
    /// ignored: the highest version wins.
    ///
    /// # Errors
    /// * [`StoreError::SnapshotAhead`] if the snapshot claims a version beyond
    ///   the actor's latest stored event (for stores that also hold the events);
    /// * [`StoreError::TooLarge`]; transport errors.
    fn save_snapshot(&self, snapshot: ActorSnapshot) -> impl Future<Output = Result<()>> + Send;

    /// The snapshot with the highest version for `actor`, if any. Stores that
    /// also hold the events ignore (count, log) a stored snapshot ahead of the
    /// latest valid event ([`crate::ForeignReason::SnapshotAhead`]) and do
    /// not return it (an older valid one or `None` instead), or return
    /// [`StoreError::Corrupt`] under
    /// [`crate::TrustPolicy::Strict`].
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] under the strict policy; transport errors.
    fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorSnapshot>>> + Send;
}

/// Conveniences for every [`EventStore`]. Implemented for all stores, so a
/// wrapper cannot forget to forward one.
pub trait EventStoreExt: EventStore {
    /// Stores one event, which must carry the version after the latest one.
    ///
    /// # Errors
    /// [`StoreError::VersionConflict`] if `event.version != latest + 1`, and
    /// everything [`EventStore::append`] returns.
    fn save_event(&self, event: Event) -> impl Future<Output = Result<Version>> + Send {
        async move {
            let Some(expected) = event.version.prev() else {
                return Err(InvalidInput::ZeroVersion.into());
            };
            let actor = event.actor_id.clone();
            self.append(&actor, expected, vec![event]).await
        }
    }

    /// Encodes typed domain events with consecutive versions after `expected`
    /// and appends them.
    ///
    /// # Errors
    /// [`StoreError::Codec`] if an event cannot be encoded; everything
    /// [`EventStore::append`] returns.
    fn append_domain<'a, E: DomainEvent>(
        &'a self,
        actor: &'a ActorId,
        expected: Version,
        events: &'a [E],
    ) -> impl Future<Output = Result<Version>> + Send + 'a {
        async move {
            let batch = Event::sequence(actor, expected, events)?;
            self.append(actor, expected, batch).await
        }
    }
}

impl<S: EventStore + ?Sized> EventStoreExt for S {}

/// `EventStore` for a dyn-safe store trait object, through its `*_dyn` methods.
macro_rules! event_store_for_dyn {
    (impl$(<$lt:lifetime>)? for $ty:ty) => {
        impl$(<$lt>)? EventStore for $ty {
            fn namespace(&self) -> &Namespace {
                DynEventStore::namespace(self)
            }
            fn append(
                &self,
                actor: &ActorId,
                expected: Version,
                events: Vec<Event>,
            ) -> impl Future<Output = Result<Version>> + Send {
                let actor = actor.clone();
                async move { self.append_dyn(&actor, expected, events).await }
            }
            fn get_events(
                &self,
                actor: &ActorId,
                from: Version,
            ) -> impl Future<Output = Result<Vec<Event>>> + Send {
                let actor = actor.clone();
                async move { self.get_events_dyn(&actor, from).await }
            }
            fn stream_events(&self, actor: &ActorId, from: Version) -> BoxStream<'static, Result<Event>> {
                self.stream_events_dyn(actor, from)
            }
            fn get_latest_version(&self, actor: &ActorId) -> impl Future<Output = Result<Version>> + Send {
                let actor = actor.clone();
                async move { self.get_latest_version_dyn(&actor).await }
            }
        }
    };
}

/// `SnapshotStore` for a dyn-safe store trait object, through its `*_dyn` methods.
macro_rules! snapshot_store_for_dyn {
    (impl$(<$lt:lifetime>)? for $ty:ty) => {
        impl$(<$lt>)? SnapshotStore for $ty {
            fn save_snapshot(&self, snapshot: ActorSnapshot) -> impl Future<Output = Result<()>> + Send {
                self.save_snapshot_dyn(snapshot)
            }
            fn get_latest_snapshot(
                &self,
                actor: &ActorId,
            ) -> impl Future<Output = Result<Option<ActorSnapshot>>> + Send {
                let actor = actor.clone();
                async move { self.get_latest_snapshot_dyn(&actor).await }
            }
        }
    };
}

/// The dyn-safe form of [`EventStore`], implemented for every store, so a
/// store chosen at run time can be held as `Arc<dyn DynEventStore>` (which is
/// itself an [`EventStore`]).
pub trait DynEventStore: Send + Sync {
    /// See [`EventStore::namespace`].
    fn namespace(&self) -> &Namespace;
    /// See [`EventStore::append`].
    fn append_dyn<'a>(
        &'a self,
        actor: &'a ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> BoxFuture<'a, Result<Version>>;
    /// See [`EventStore::get_events`].
    fn get_events_dyn<'a>(
        &'a self,
        actor: &'a ActorId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<Event>>>;
    /// See [`EventStore::stream_events`].
    fn stream_events_dyn(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event>>;
    /// See [`EventStore::get_latest_version`].
    fn get_latest_version_dyn<'a>(&'a self, actor: &'a ActorId) -> BoxFuture<'a, Result<Version>>;
}

impl<T: EventStore> DynEventStore for T {
    fn namespace(&self) -> &Namespace {
        EventStore::namespace(self)
    }
    fn append_dyn<'a>(
        &'a self,
        actor: &'a ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> BoxFuture<'a, Result<Version>> {
        Box::pin(self.append(actor, expected, events))
    }
    fn get_events_dyn<'a>(
        &'a self,
        actor: &'a ActorId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<Event>>> {
        Box::pin(self.get_events(actor, from))
    }
    fn stream_events_dyn(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event>> {
        self.stream_events(actor, from)
    }
    fn get_latest_version_dyn<'a>(&'a self, actor: &'a ActorId) -> BoxFuture<'a, Result<Version>> {
        Box::pin(self.get_latest_version(actor))
    }
}

event_store_for_dyn!(impl for dyn DynEventStore);

/// The dyn-safe form of [`SnapshotStore`]; see [`DynEventStore`].
pub trait DynSnapshotStore: Send + Sync {
    /// See [`SnapshotStore::save_snapshot`].
    fn save_snapshot_dyn(&self, snapshot: ActorSnapshot) -> BoxFuture<'_, Result<()>>;
    /// See [`SnapshotStore::get_latest_snapshot`].
    fn get_latest_snapshot_dyn<'a>(
        &'a self,
        actor: &'a ActorId,
    ) -> BoxFuture<'a, Result<Option<ActorSnapshot>>>;
}

impl<T: SnapshotStore> DynSnapshotStore for T {
    fn save_snapshot_dyn(&self, snapshot: ActorSnapshot) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.save_snapshot(snapshot))
    }
    fn get_latest_snapshot_dyn<'a>(
        &'a self,
        actor: &'a ActorId,
    ) -> BoxFuture<'a, Result<Option<ActorSnapshot>>> {
        Box::pin(self.get_latest_snapshot(actor))
    }
}

snapshot_store_for_dyn!(impl for dyn DynSnapshotStore);

/// A store that keeps both events and snapshots, held as one trait object:
/// `Arc<dyn DynStore>` (which is itself an [`EventStore`] and a
/// [`SnapshotStore`], so a [`crate::Repository`] can run on it).
pub trait DynStore: DynEventStore + DynSnapshotStore {}

impl<T: DynEventStore + DynSnapshotStore> DynStore for T {}

event_store_for_dyn!(impl<'d> for dyn DynStore + 'd);

snapshot_store_for_dyn!(impl<'d> for dyn DynStore + 'd);

macro_rules! forward_store {
    ($($wrapper:ident),*) => {$(
        impl<S: EventStore + ?Sized> EventStore for $wrapper<S> {
            fn namespace(&self) -> &Namespace {
                (**self).namespace()
            }
            fn append(
                &self,
                actor: &ActorId,
                expected: Version,
                events: Vec<Event>,
            ) -> impl Future<Output = Result<Version>> + Send {
                (**self).append(actor, expected, events)
            }
            fn get_events(
                &self,
                actor: &ActorId,
                from: Version,
            ) -> impl Future<Output = Result<Vec<Event>>> + Send {
                (**self).get_events(actor, from)
            }
            fn stream_events(&self, actor: &ActorId, from: Version) -> BoxStream<'static, Result<Event>> {
                (**self).stream_events(actor, from)
            }
            fn get_latest_version(&self, actor: &ActorId) -> impl Future<Output = Result<Version>> + Send {
                (**self).get_latest_version(actor)
            }
        }

        impl<S: SnapshotStore + ?Sized> SnapshotStore for $wrapper<S> {
            fn save_snapshot(&self, snapshot: ActorSnapshot) -> impl Future<Output = Result<()>> + Send {
                (**self).save_snapshot(snapshot)
            }
            fn get_latest_snapshot(
                &self,
                actor: &ActorId,
            ) -> impl Future<Output = Result<Option<ActorSnapshot>>> + Send {
                (**self).get_latest_snapshot(actor)
            }
        }
    )*};
}

forward_store!(Arc, Box);

/// Checks that `events` is a well-formed batch for `append(actor, expected, events)`:
/// every event names `actor`, versions run `expected + 1, expected + 2, …`, and
/// no id repeats. Backends call this before writing anything.
///
/// # Errors
/// [`InvalidInput`] describing the first problem found;
/// [`InvalidInput::VersionOverflow`] if the versions would run past `u64::MAX`.
pub fn validate_batch(
    actor: &ActorId,
    expected: Version,
    events: &[Event],
) -> Result<(), InvalidInput> {
    let mut want = expected;
    for (index, e) in events.iter().enumerate() {
        want = want
            .next()
            .ok_or(InvalidInput::VersionOverflow { after: want })?;
        if e.actor_id != *actor {
            return Err(InvalidInput::WrongActor {
                expected: actor.clone(),
                found: e.actor_id.clone(),
            });
        }
        if e.version.is_zero() {
            return Err(InvalidInput::ZeroVersion);
        }
        if e.version != want {
            return Err(InvalidInput::NonConsecutive {
                index,
                expected: want,
                found: e.version,
            });
        }
    }
    if events.len() > 1 {
        let mut ids: Vec<_> = events.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(InvalidInput::DuplicateId(w[0].to_string()));
        }
    }
    Ok(())
}
