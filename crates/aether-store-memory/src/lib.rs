//! # aether-store-memory
//!
//! [`InMemoryEventStore`]: Aether's embedded default event and snapshot store.
//! It keeps every rule of the storage contract (it runs the whole conformance
//! suite of `aether-core`), so it is a real backend for single-process
//! applications and an honest stand-in for JetStream in tests.
//!
//! * Per-actor locking: writers of distinct actors never wait for each other;
//!   the actor map is sharded ([`dashmap`]), and each actor's log has its own
//!   lock held only for the in-memory copy.
//! * Namespaces share one backend: [`InMemoryEventStore::with_namespace`]
//!   returns a view of another namespace over the same data, and no view ever
//!   sees another's events or snapshots.
//! * Events larger than [`InMemoryEventStore::DEFAULT_MAX_EVENT_SIZE`]
//!   (1 MiB, the NATS default) are refused with
//!   [`StoreError::TooLarge`], so code that works here also fits JetStream.
//!
//! Nothing is persisted: data lives as long as the last clone of the store.
//!
//! ```
//! use aether_core::{ActorId, Event, EventStore, EventStoreExt, Version};
//! use aether_store_memory::InMemoryEventStore;
//!
//! # futures::executor::block_on(async {
//! let store = InMemoryEventStore::new();
//! let actor = ActorId::new("account-1")?;
//! store.save_event(Event::new(actor.clone(), Version::FIRST, "Opened", &"alice")?).await?;
//! assert_eq!(store.get_latest_version(&actor).await?, Version::FIRST);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Metrics
//! `aether_events_appended_total`, `aether_append_conflicts_total`,
//! `aether_events_read_total`, `aether_snapshots_saved_total`, labelled
//! `namespace` and `backend="memory"`. Handles are taken when a store view is
//! created, so install a recorder before creating stores.

#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
use std::sync::{Arc, PoisonError, RwLock};

use aether_core::store::{BoxStream, validate_batch};
use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, Namespace, SnapshotStore, StoreError, Version,
};
use dashmap::DashMap;
use futures::stream;
use metrics::Counter;

#[derive(Default)]
struct ActorLog {
    /// Event of version `v` at index `v - 1`.
    events: Vec<Event>,
}

impl ActorLog {
    fn latest(&self) -> Version {
        Version::new(self.events.len() as u64)
    }

    /// Whether `batch` is already stored exactly (same ids at the same versions).
    fn already_stored(&self, batch: &[Event]) -> bool {
        batch.iter().all(|e| {
            usize::try_from(e.version.get() - 1)
                .ok()
                .and_then(|i| self.events.get(i))
                .is_some_and(|stored| stored.id == e.id)
        })
    }

    fn range(&self, from: Version, max: usize) -> Vec<Event> {
        let start = usize::try_from(from.get().saturating_sub(1)).unwrap_or(usize::MAX);
        self.events
            .get(start..)
            .map(|s| s.iter().take(max).cloned().collect())
            .unwrap_or_default()
    }
}

/// Every namespace's data; views share it.
#[derive(Default)]
struct Backend {
    namespaces: DashMap<Namespace, Arc<NamespaceData>>,
}

/// One namespace: the actors' logs and latest snapshots.
#[derive(Default)]
struct NamespaceData {
    logs: DashMap<ActorId, Arc<RwLock<ActorLog>>>,
    snapshots: DashMap<ActorId, ActorSnapshot>,
}

#[derive(Clone)]
struct Metrics {
    appended: Counter,
    conflicts: Counter,
    read: Counter,
    snapshots: Counter,
}

impl Metrics {
    fn new(ns: &Namespace) -> Self {
        let ns = ns.as_str().to_owned();
        Metrics {
            appended: metrics::counter!("aether_events_appended_total", "namespace" => ns.clone(), "backend" => "memory"),
            conflicts: metrics::counter!("aether_append_conflicts_total", "namespace" => ns.clone(), "backend" => "memory"),
            read: metrics::counter!("aether_events_read_total", "namespace" => ns.clone(), "backend" => "memory"),
            snapshots: metrics::counter!("aether_snapshots_saved_total", "namespace" => ns, "backend" => "memory"),
        }
    }
}

/// An in-memory [`EventStore`] and [`SnapshotStore`] for one namespace, over a
/// backend that views of other namespaces can share.
///
/// Cloning is cheap and clones share the data.
#[derive(Clone)]
pub struct InMemoryEventStore {
    backend: Arc<Backend>,
    /// This view's namespace data, looked up once when the view is made.
    data: Arc<NamespaceData>,
    namespace: Namespace,
    max_event_size: usize,
    metrics: Metrics,
}

impl std::fmt::Debug for InMemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryEventStore")
            .field("namespace", &self.namespace)
            .field("actors", &self.data.logs.len())
            .field("max_event_size", &self.max_event_size)
            .finish()
    }
}

impl Default for InMemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Events per chunk of [`EventStore::stream_events`] (the actor's lock is
/// held only while a chunk is copied).
const STREAM_CHUNK: usize = 1024;

impl InMemoryEventStore {
    /// The default event size limit: 1 MiB, like NATS's default `max_payload`.
    pub const DEFAULT_MAX_EVENT_SIZE: usize = 1024 * 1024;

    /// A new, empty store in the `default` namespace.
    pub fn new() -> Self {
        Self::with_backend(
            Arc::default(),
            Namespace::default(),
            Self::DEFAULT_MAX_EVENT_SIZE,
        )
    }

    /// A new, empty store in `namespace`.
    pub fn in_namespace(namespace: Namespace) -> Self {
        Self::with_backend(Arc::default(), namespace, Self::DEFAULT_MAX_EVENT_SIZE)
    }

    fn with_backend(backend: Arc<Backend>, namespace: Namespace, max_event_size: usize) -> Self {
        let metrics = Metrics::new(&namespace);
        let data = backend
            .namespaces
            .entry(namespace.clone())
            .or_default()
            .clone();
        InMemoryEventStore {
            backend,
            data,
            namespace,
            max_event_size,
            metrics,
        }
    }

    /// A view of `namespace` over the same backend (same data, other namespace).
    #[must_use]
    pub fn with_namespace(&self, namespace: Namespace) -> Self {
        Self::with_backend(self.backend.clone(), namespace, self.max_event_size)
    }

    /// Sets the largest accepted event, as measured by [`Event::approx_size`].
    #[must_use]
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// The event size limit in force.
    pub fn event_size_limit(&self) -> usize {
        self.max_event_size
    }

    /// How many actors of this namespace have events.
    pub fn actor_count(&self) -> usize {
        self.data.logs.len()
    }

    fn log(&self, actor: &ActorId) -> Option<Arc<RwLock<ActorLog>>> {
        self.data.logs.get(actor.as_str()).map(|l| l.clone())
    }

    fn log_or_create(&self, actor: &ActorId) -> Arc<RwLock<ActorLog>> {
        if let Some(log) = self.log(actor) {
            return log;
        }
        self.data.logs.entry(actor.clone()).or_default().clone()
    }

    fn append_now(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        validate_batch(actor, expected, &events)?;
        if let Some(e) = events
            .iter()
            .find(|e| e.approx_size() > self.max_event_size)
        {
            return Err(StoreError::TooLarge {
                what: format!("event {} of {}", e.id, e.actor_id),
                size: e.approx_size(),
                max: self.max_event_size,
            });
        }
        let Some(last) = events.last().map(|e| e.version) else {
            return Ok(expected);
        };
        let log = self.log_or_create(actor);
        let mut log = log.write().unwrap_or_else(PoisonError::into_inner);
        let latest = log.latest();
        if latest != expected {
            if latest >= last && log.already_stored(&events) {
                return Ok(last);
            }
            self.metrics.conflicts.increment(1);
            return Err(StoreError::VersionConflict {
                actor: actor.clone(),
                expected,
                actual: latest,
            });
        }
        let n = events.len();
        log.events.extend(events);
        self.metrics.appended.increment(n as u64);
        Ok(last)
    }

    fn read_now(&self, actor: &ActorId, from: Version) -> Vec<Event> {
        let events = self.log(actor).map_or_else(Vec::new, |log| {
            log.read()
                .unwrap_or_else(PoisonError::into_inner)
                .range(from, usize::MAX)
        });
        self.metrics.read.increment(events.len() as u64);
        events
    }

    fn latest_now(&self, actor: &ActorId) -> Version {
        self.log(actor).map_or(Version::ZERO, |log| {
            log.read().unwrap_or_else(PoisonError::into_inner).latest()
        })
    }
}

impl EventStore for InMemoryEventStore {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        self.append_now(actor, expected, events)
    }

    async fn get_events(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        Ok(self.read_now(actor, from))
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        let Some(log) = self.log(actor) else {
            return Box::pin(stream::empty());
        };
        let read = self.metrics.read.clone();
        let chunks = stream::unfold(Some(from.max(Version::FIRST)), move |next| {
            let log = log.clone();
            let read = read.clone();
            async move {
                let next = next?;
                let chunk = log
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .range(next, STREAM_CHUNK);
                let last = chunk.last()?.version;
                read.increment(chunk.len() as u64);
                Some((stream::iter(chunk.into_iter().map(Ok)), last.next()))
            }
        });
        Box::pin(futures::StreamExt::flatten(chunks))
    }

    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        Ok(self.latest_now(actor))
    }
}

impl SnapshotStore for InMemoryEventStore {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<(), StoreError> {
        let latest = self.latest_now(&snapshot.actor_id);
        if snapshot.version > latest {
            return Err(StoreError::SnapshotAhead {
                actor: snapshot.actor_id,
                snapshot: snapshot.version,
                latest,
            });
        }
        let size = snapshot.state.len();
        if size > self.max_event_size {
            return Err(StoreError::TooLarge {
                what: format!("snapshot of {}", snapshot.actor_id),
                size,
                max: self.max_event_size,
            });
        }
        self.data
            .snapshots
            .entry(snapshot.actor_id.clone())
            .and_modify(|s| {
                if snapshot.version > s.version {
                    *s = snapshot.clone();
                }
            })
            .or_insert_with(|| snapshot.clone());
        self.metrics.snapshots.increment(1);
        Ok(())
    }

    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        Ok(self
            .data
            .snapshots
            .get(actor.as_str())
            .map(|s| s.value().clone()))
    }
}
