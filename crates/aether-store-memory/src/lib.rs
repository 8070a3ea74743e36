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
//! * Constructors follow the stores' one convention:
//!   [`InMemoryEventStore::new`] is the `default` namespace,
//!   [`InMemoryEventStore::builder`] sets namespace, trust policy and size
//!   limit, and [`InMemoryEventStore::with_namespace`] returns a handle on
//!   another namespace over the same data; no view ever sees another's
//!   events or snapshots.
//! * Events larger than [`InMemoryEventStore::DEFAULT_MAX_EVENT_SIZE`]
//!   (1 MiB, the NATS default) are refused with
//!   [`StoreError::TooLarge`], so code that works here also fits JetStream.
//!
//! * The trust rule of [`aether_core::trust`]: records that are not a valid
//!   part of an actor's history (put there by the `inject_*` test hooks, as
//!   another program could on a shared NATS subject) are skipped by reads
//!   and appends (default), or refused with [`StoreError::Corrupt`] under
//!   [`TrustPolicy::Strict`] ([`InMemoryEventStore::trust_policy`]).
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
//! The same set as the JetStream store, labelled `namespace` and
//! `backend="memory"`: `aether_append_duration_seconds` (histogram),
//! `aether_appends_total`, `aether_events_appended_total`,
//! `aether_append_conflicts_total`, `aether_append_errors_total` (failures
//! other than conflicts), `aether_events_read_total`,
//! `aether_snapshots_saved_total`, and for the feed
//! `aether_feed_events_total` and the gauge `aether_feed_behind_events`;
//! `aether_foreign_messages_total{namespace, reason}` for foreign records
//! met. No metric handle is kept: every emission asks the current recorder
//! (metric keys are built once per view), so a recorder installed after the
//! store was built still sees everything.
//!
//! # Tracing
//! `debug` spans `aether.store.append`, `aether.store.get_events`,
//! `aether.store.save_snapshot` and `aether.store.get_latest_snapshot`
//! (fields `backend`, `namespace`, `actor`, …).

#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

mod feed;

use aether_core::metrics::{CounterKey, GaugeKey, HistogramKey, StoreLabels};
use aether_core::store::{BoxStream, validate_batch};
use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, ForeignReason, HistoryGuard, Namespace,
    SnapshotStore, StoreError, TrustPolicy, Version, report_foreign,
};
use dashmap::DashMap;
use futures::stream;

/// One record of an actor's log as stored, valid or not: an event written
/// through the store (or injected by a test hook), or raw bytes injected by a
/// test hook. [`InMemoryEventStore::raw_records`] returns them, as a raw
/// reader of a NATS subject would see its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawRecord {
    /// An event envelope (which may name another actor or any version).
    Event(Event),
    /// Bytes that are not an envelope.
    Garbage(Vec<u8>),
}

#[derive(Default)]
struct ActorLog {
    /// Every record, in the order it was stored (its index is its position);
    /// the namespace feed holds the same records (one copy of each).
    records: Vec<Arc<feed::Committed>>,
    /// The position in `records` of the valid event of version `v`, at `v - 1`.
    valid: Vec<usize>,
}

impl ActorLog {
    fn latest(&self) -> Version {
        Version::new(self.valid.len() as u64)
    }

    fn event_of(&self, version: Version) -> Option<&Event> {
        let i = usize::try_from(version.get().checked_sub(1)?).ok()?;
        match &self.records.get(*self.valid.get(i)?)?.record {
            RawRecord::Event(e) => Some(e),
            RawRecord::Garbage(_) => None,
        }
    }

    /// Whether `batch` is already stored exactly (same ids at the same versions).
    fn already_stored(&self, batch: &[Event]) -> bool {
        batch.iter().all(|e| {
            self.event_of(e.version)
                .is_some_and(|stored| stored.id == e.id)
        })
    }

    /// Appends a record, noting it as the next valid event if it is one (the
    /// trust rule: an event of this actor with version latest + 1), and
    /// returns it as stored (with why it is foreign, if it is), for the feed.
    fn push(&mut self, actor: &ActorId, record: RawRecord) -> Arc<feed::Committed> {
        let foreign = match &record {
            RawRecord::Garbage(bytes) => Some(ForeignReason::NotAnEnvelope(format!(
                "{} raw bytes",
                bytes.len()
            ))),
            RawRecord::Event(e) if e.actor_id != *actor => Some(ForeignReason::WrongActor {
                found: e.actor_id.as_str().to_owned(),
            }),
            RawRecord::Event(e) => match self.latest().next() {
                Some(next) if next == e.version => None,
                next => Some(ForeignReason::OutOfOrder {
                    expected: next.unwrap_or(self.latest()),
                    found: e.version,
                }),
            },
        };
        if foreign.is_none() {
            self.valid.push(self.records.len());
        }
        let committed = Arc::new(feed::Committed {
            actor: actor.clone(),
            record,
            foreign,
        });
        self.records.push(committed.clone());
        committed
    }

    /// Where a read of versions `>= from` starts scanning, and the last valid
    /// version before that position.
    fn start_of(&self, from: Version) -> (usize, Version) {
        let Some(before) = from.prev().filter(|b| !b.is_zero()) else {
            return (0, Version::ZERO);
        };
        let Some(pos) = usize::try_from(before.get() - 1)
            .ok()
            .and_then(|i| self.valid.get(i))
        else {
            return (self.records.len(), self.latest());
        };
        (pos + 1, before)
    }

    /// Scans at most `max` records from `pos`, pushing the events the guard
    /// admits into `out`; returns the position after the last record scanned.
    fn scan(
        &self,
        pos: usize,
        max: usize,
        guard: &mut HistoryGuard,
        out: &mut Vec<Event>,
    ) -> Result<usize, StoreError> {
        let end = pos.saturating_add(max).min(self.records.len());
        for (i, record) in self
            .records
            .get(pos..end)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let position = (pos + i) as u64;
            match &record.record {
                RawRecord::Event(e) => {
                    if guard.admit(position, e)? {
                        out.push(e.clone());
                    }
                }
                RawRecord::Garbage(bytes) => guard.reject(
                    position,
                    ForeignReason::NotAnEnvelope(format!("{} raw bytes", bytes.len())),
                )?,
            }
        }
        Ok(end.max(pos))
    }

    /// Under the strict policy, refuses to write after a foreign record.
    fn check_tip(&self, guard: &mut HistoryGuard) -> Result<(), StoreError> {
        let Some(last) = self.records.len().checked_sub(1) else {
            return Ok(());
        };
        if self.valid.last() == Some(&last) {
            return Ok(());
        }
        self.scan(last, 1, guard, &mut Vec::new()).map(|_| ())
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
    /// Every record of the namespace in commit order: the feed.
    feed: Mutex<feed::CommitLog>,
}

/// The metric keys of a view (labels `namespace`, `backend="memory"`),
/// built once when the view is made and looked up in the current recorder
/// at each emission (see [`aether_core::metrics`]).
#[derive(Clone)]
struct Metrics(Arc<Keys>);

struct Keys {
    append_seconds: HistogramKey,
    appends: CounterKey,
    events_appended: CounterKey,
    conflicts: CounterKey,
    append_errors: CounterKey,
    events_read: CounterKey,
    snapshots_saved: CounterKey,
    feed_events: CounterKey,
    feed_behind: GaugeKey,
}

impl Metrics {
    fn new(ns: &Namespace) -> Self {
        let labels = StoreLabels::new(ns, "memory");
        Metrics(Arc::new(Keys {
            append_seconds: labels.histogram("aether_append_duration_seconds"),
            appends: labels.counter("aether_appends_total"),
            events_appended: labels.counter("aether_events_appended_total"),
            conflicts: labels.counter("aether_append_conflicts_total"),
            append_errors: labels.counter("aether_append_errors_total"),
            events_read: labels.counter("aether_events_read_total"),
            snapshots_saved: labels.counter("aether_snapshots_saved_total"),
            feed_events: labels.counter("aether_feed_events_total"),
            feed_behind: labels.gauge("aether_feed_behind_events"),
        }))
    }
}

impl std::ops::Deref for Metrics {
    type Target = Keys;

    fn deref(&self) -> &Keys {
        &self.0
    }
}

/// An in-memory [`EventStore`] and [`SnapshotStore`] for one namespace, over a
/// backend that views of other namespaces can share.
///
/// Cloning is cheap and clones share the data.
///
/// # Trust
/// The store applies the [`aether_core::trust`] rule to records it did not
/// write itself (the `inject_*` test hooks put such records on an actor's
/// log, as another program could on a NATS subject): under
/// [`TrustPolicy::SkipForeign`] (the default) reads skip them and appends
/// continue after the last valid version; under [`TrustPolicy::Strict`] a
/// read that meets one, or an append after one, fails with
/// [`StoreError::Corrupt`]. A snapshot ahead of the valid events is ignored
/// (or `Corrupt`).
#[derive(Clone)]
pub struct InMemoryEventStore {
    backend: Arc<Backend>,
    /// This view's namespace data, looked up once when the view is made.
    data: Arc<NamespaceData>,
    namespace: Namespace,
    max_event_size: usize,
    policy: TrustPolicy,
    metrics: Metrics,
}

impl std::fmt::Debug for InMemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryEventStore")
            .field("namespace", &self.namespace)
            .field("actors", &self.data.logs.len())
            .field("max_event_size", &self.max_event_size)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Default for InMemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Records per chunk of [`EventStore::stream_events`] (the actor's lock is
/// held only while a chunk is copied).
const STREAM_CHUNK: usize = 1024;

impl InMemoryEventStore {
    /// The default event size limit: 1 MiB, like NATS's default `max_payload`.
    pub const DEFAULT_MAX_EVENT_SIZE: usize = 1024 * 1024;

    /// A new, empty store in the `default` namespace, with the default size
    /// limit and trust policy. [`builder`](Self::builder) sets those.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a new, empty store: namespace, trust policy, event size
    /// limit, then [`build`](InMemoryEventStoreBuilder::build).
    ///
    /// ```
    /// use aether_core::{ActorId, Event, EventStore, EventStoreExt, Namespace, TrustPolicy, Version};
    /// use aether_store_memory::InMemoryEventStore;
    ///
    /// # futures::executor::block_on(async {
    /// let store = InMemoryEventStore::builder()
    ///     .namespace(Namespace::new("bank")?)
    ///     .trust_policy(TrustPolicy::Strict)
    ///     .build();
    /// let actor = ActorId::new("account-1")?;
    /// store.save_event(Event::new(actor.clone(), Version::FIRST, "Opened", &"alice")?).await?;
    /// // A handle on another namespace over the same data sees none of it:
    /// let audit = store.with_namespace(Namespace::new("bank.audit")?);
    /// assert_eq!(audit.get_latest_version(&actor).await?, Version::ZERO);
    /// assert_eq!(audit.policy(), TrustPolicy::Strict);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn builder() -> InMemoryEventStoreBuilder {
        InMemoryEventStoreBuilder {
            namespace: Namespace::default(),
            max_event_size: Self::DEFAULT_MAX_EVENT_SIZE,
            policy: TrustPolicy::default(),
        }
    }

    fn with_backend(
        backend: Arc<Backend>,
        namespace: Namespace,
        max_event_size: usize,
        policy: TrustPolicy,
    ) -> Self {
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
            policy,
            metrics,
        }
    }

    /// A handle on `namespace` over the same backend (same data, other
    /// namespace), with this view's size limit and trust policy. Views of
    /// distinct namespaces never see each other's events or snapshots.
    #[must_use]
    pub fn with_namespace(&self, namespace: Namespace) -> Self {
        Self::with_backend(
            self.backend.clone(),
            namespace,
            self.max_event_size,
            self.policy,
        )
    }

    /// This view with another event size limit (same data); see
    /// [`InMemoryEventStoreBuilder::max_event_size`].
    #[must_use]
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// This view with another trust policy (same data); see
    /// [`InMemoryEventStoreBuilder::trust_policy`].
    #[must_use]
    pub fn trust_policy(mut self, policy: TrustPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The trust policy in force.
    pub fn policy(&self) -> TrustPolicy {
        self.policy
    }

    /// The event size limit in force.
    pub fn event_size_limit(&self) -> usize {
        self.max_event_size
    }

    /// How many actors of this namespace have events.
    pub fn actor_count(&self) -> usize {
        self.data.logs.len()
    }

    /// Test hook: stores `event` as the newest record of `actor`'s log
    /// exactly as given, bypassing every check (the event may name another
    /// actor or carry any version), as a foreign writer could on a shared
    /// transport. If it happens to be a valid next event of `actor`, it
    /// becomes part of the history; otherwise it is foreign.
    pub fn inject_event(&self, actor: &ActorId, event: Event) {
        self.inject(actor, RawRecord::Event(event));
    }

    /// Test hook: stores raw bytes (not an envelope) as the newest record of
    /// `actor`'s log. Such a record is always foreign.
    pub fn inject_garbage(&self, actor: &ActorId, bytes: impl Into<Vec<u8>>) {
        self.inject(actor, RawRecord::Garbage(bytes.into()));
    }

    /// Test hook: stores `snapshot` as its actor's latest snapshot, bypassing
    /// the "not ahead of the events" check.
    pub fn inject_snapshot(&self, snapshot: ActorSnapshot) {
        self.data
            .snapshots
            .insert(snapshot.actor_id.clone(), snapshot);
    }

    /// Test hook: every record stored under `actor`, in order, foreign ones
    /// included (what an independent raw reader of the log would see).
    pub fn raw_records(&self, actor: &ActorId) -> Vec<RawRecord> {
        self.log(actor).map_or_else(Vec::new, |log| {
            log.read()
                .unwrap_or_else(PoisonError::into_inner)
                .records
                .iter()
                .map(|c| c.record.clone())
                .collect()
        })
    }

    fn inject(&self, actor: &ActorId, record: RawRecord) {
        let log = self.log_or_create(actor);
        let mut log = log.write().unwrap_or_else(PoisonError::into_inner);
        // The actor's lock is held while the record joins the feed, so
        // the feed's order is the actor log's order.
        let committed = log.push(actor, record);
        self.commit(std::iter::once(committed));
    }

    fn guard(&self, actor: &ActorId, last_valid: Version) -> HistoryGuard {
        HistoryGuard::new(&self.namespace, actor, last_valid, self.policy)
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
            return Err(StoreError::VersionConflict {
                actor: actor.clone(),
                expected,
                actual: latest,
            });
        }
        if self.policy == TrustPolicy::Strict {
            log.check_tip(&mut self.guard(actor, latest))?;
        }
        // Still under the actor's lock: the batch joins the feed whole and
        // in version order (each record enters the actor's log, then the
        // feed, all under the feed's lock); both share one copy of it.
        self.commit(
            events
                .into_iter()
                .map(|e| log.push(actor, RawRecord::Event(e))),
        );
        Ok(last)
    }

    fn read_now(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        let Some(log) = self.log(actor) else {
            return Ok(Vec::new());
        };
        let log = log.read().unwrap_or_else(PoisonError::into_inner);
        let (pos, last_valid) = log.start_of(from);
        let mut events = Vec::new();
        log.scan(
            pos,
            usize::MAX,
            &mut self.guard(actor, last_valid),
            &mut events,
        )?;
        self.metrics.events_read.increment(events.len() as u64);
        Ok(events)
    }

    fn latest_now(&self, actor: &ActorId) -> Version {
        self.log(actor).map_or(Version::ZERO, |log| {
            log.read().unwrap_or_else(PoisonError::into_inner).latest()
        })
    }
}

/// Builds an [`InMemoryEventStore`] over a new, empty backend
/// ([`InMemoryEventStore::builder`]). Every setting has a default: the
/// `default` namespace, [`TrustPolicy::SkipForeign`] and
/// [`InMemoryEventStore::DEFAULT_MAX_EVENT_SIZE`].
#[derive(Debug, Clone)]
#[must_use]
pub struct InMemoryEventStoreBuilder {
    namespace: Namespace,
    max_event_size: usize,
    policy: TrustPolicy,
}

impl InMemoryEventStoreBuilder {
    /// The namespace the store reads and writes.
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// What the store does with records it did not write (see
    /// [`aether_core::trust`]).
    pub fn trust_policy(mut self, policy: TrustPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The largest accepted event, as measured by [`Event::approx_size`];
    /// larger ones are refused with [`StoreError::TooLarge`].
    pub fn max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }

    /// The store, over a new backend of its own.
    pub fn build(self) -> InMemoryEventStore {
        InMemoryEventStore::with_backend(
            Arc::default(),
            self.namespace,
            self.max_event_size,
            self.policy,
        )
    }
}

/// Where a stream stands between chunks.
enum StreamState {
    /// Next record position to scan, and the guard following the history.
    At(usize, HistoryGuard),
    /// The stream has ended (after its last item).
    Done,
}

impl EventStore for InMemoryEventStore {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    #[tracing::instrument(
        name = "aether.store.append",
        level = "debug",
        skip_all,
        fields(backend = "memory", namespace = %self.namespace, actor = %actor, %expected, events = events.len()),
    )]
    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        let started = Instant::now();
        let n = events.len() as u64;
        let result = self.append_now(actor, expected, events);
        self.metrics
            .append_seconds
            .record(started.elapsed().as_secs_f64());
        self.metrics.appends.increment(1);
        match &result {
            Ok(_) => self.metrics.events_appended.increment(n),
            Err(StoreError::VersionConflict { .. }) => self.metrics.conflicts.increment(1),
            Err(e) => {
                self.metrics.append_errors.increment(1);
                tracing::debug!(error = %e, "append failed");
            }
        }
        result
    }

    #[tracing::instrument(
        name = "aether.store.get_events",
        level = "debug",
        skip_all,
        fields(backend = "memory", namespace = %self.namespace, actor = %actor, %from),
    )]
    async fn get_events(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        self.read_now(actor, from)
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        let Some(log) = self.log(actor) else {
            return Box::pin(stream::empty());
        };
        let start = {
            let (pos, last_valid) = log
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .start_of(from);
            StreamState::At(pos, self.guard(actor, last_valid))
        };
        let metrics = self.metrics.clone();
        let chunks = stream::unfold(start, move |state| {
            let log = log.clone();
            let metrics = metrics.clone();
            async move {
                let StreamState::At(pos, mut guard) = state else {
                    return None;
                };
                let mut chunk = Vec::new();
                let scanned = log.read().unwrap_or_else(PoisonError::into_inner).scan(
                    pos,
                    STREAM_CHUNK,
                    &mut guard,
                    &mut chunk,
                );
                metrics.events_read.increment(chunk.len() as u64);
                let mut items: Vec<Result<Event, StoreError>> = chunk.into_iter().map(Ok).collect();
                let next = match scanned {
                    Ok(end) if end == pos => return None,
                    Ok(end) => StreamState::At(end, guard),
                    Err(e) => {
                        // An error is the stream's last item.
                        items.push(Err(e));
                        StreamState::Done
                    }
                };
                Some((stream::iter(items), next))
            }
        });
        Box::pin(futures::StreamExt::flatten(chunks))
    }

    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        Ok(self.latest_now(actor))
    }
}

impl SnapshotStore for InMemoryEventStore {
    #[tracing::instrument(
        name = "aether.store.save_snapshot",
        level = "debug",
        skip_all,
        fields(backend = "memory", namespace = %self.namespace, actor = %snapshot.actor_id, version = %snapshot.version),
    )]
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
                // A stored snapshot ahead of the events (injected) is not
                // valid, so any valid snapshot replaces it.
                if snapshot.version > s.version || s.version > latest {
                    *s = snapshot.clone();
                }
            })
            .or_insert_with(|| snapshot.clone());
        self.metrics.snapshots_saved.increment(1);
        Ok(())
    }

    #[tracing::instrument(
        name = "aether.store.get_latest_snapshot",
        level = "debug",
        skip_all,
        fields(backend = "memory", namespace = %self.namespace, actor = %actor),
    )]
    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        let Some(snapshot) = self.data.snapshots.get(actor.as_str()).map(|s| s.clone()) else {
            return Ok(None);
        };
        let latest = self.latest_now(actor);
        if snapshot.version > latest {
            report_foreign(
                &self.namespace,
                actor,
                0,
                ForeignReason::SnapshotAhead {
                    snapshot: snapshot.version,
                    latest,
                },
                self.policy,
            )?;
            return Ok(None);
        }
        Ok(Some(snapshot))
    }
}
