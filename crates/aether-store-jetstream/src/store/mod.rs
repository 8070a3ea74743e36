//! [`JetStreamEventStore`]: the store's handle and shared state; appends
//! ([`append`]), reads ([`read`], [`tip`], [`get`]), snapshots
//! ([`snapshot`]), metrics and the connection watch live in submodules.

mod append;
mod get;
mod metrics;
mod read;
mod snapshot;
mod tip;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_core::backoff::Backoff;
use aether_core::store::{BoxStream, validate_batch};
use aether_core::{
    ActorId, Event, EventStore, InvalidInput, Namespace, StoreError, TrustPolicy, Version,
};
use async_nats::Client;
use async_nats::jetstream::stream::Stream as NatsStream;
use tracing::Instrument;

use crate::cache::{ActorKeys, VersionCache};
use crate::config::{JetStreamStoreBuilder, Opened};
use crate::envelope::{EnvelopeFormat, actor_scope, encode_event};

pub(crate) use self::get::RawMsg;
pub(crate) use self::metrics::Metrics;
use self::read::Reader;
pub(crate) use self::watch::ConnectionWatch;

/// Most events one [`EventStore::append`] may carry: the server's atomic
/// batch limit.
pub const MAX_BATCH: usize = 1000;

/// Attempts of one append when the server refuses transiently.
pub(crate) const MAX_ATTEMPTS: u32 = 8;

/// The pause before a read or the feed reopens after a transient failure:
/// 100–200 ms, so readers cut off together do not come back together.
pub(crate) const RESUME_BACKOFF: Backoff = Backoff::constant(Duration::from_millis(200));

/// The back-off before attempt `attempt` (from 1) of an append the server
/// refused transiently: 4 ms at the first, doubling to at most 256 ms,
/// jittered over the upper half, so writers refused together do not retry
/// together.
pub(crate) const APPEND_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(2), Duration::from_millis(256));

/// Worst-case bytes the store adds to an event's headers for concurrency
/// control and batching (expected sequence, batch id, batch sequence, commit).
pub(crate) const CONTROL_HEADERS: usize =
    "Nats-Expected-Last-Subject-Sequence: 18446744073709551615\r\n".len()
        + "Nats-Batch-Id: 0123456789abcdef0123456789abcdef\r\n".len()
        + "Nats-Batch-Sequence: 1000\r\n".len()
        + "Nats-Batch-Commit: 1\r\n".len();

/// An [`EventStore`] and [`SnapshotStore`](aether_core::SnapshotStore) on NATS JetStream for one namespace.
///
/// See the [crate docs](crate) for the layout, the envelope and the
/// guarantees. Cloning is cheap; clones share the connection and the
/// version cache.
#[derive(Clone)]
pub struct JetStreamEventStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for JetStreamEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamEventStore")
            .field("namespace", &self.inner.namespace)
            .field("events_stream", &self.inner.events.name)
            .field("snapshots_stream", &self.inner.snapshots.name)
            .field("replicas", &self.inner.events.replicas)
            .field("cached_actors", &self.inner.cache.len())
            .finish()
    }
}

pub(crate) struct StreamHandle {
    pub(crate) name: String,
    /// `<prefix>.<ns>.events` (or `.snapshots`); an actor's subject appends
    /// `.<encoded actor id>`.
    pub(crate) subject_base: String,
    pub(crate) stream: NatsStream,
    replicas: usize,
}

impl StreamHandle {
    pub(crate) fn new(stream: NatsStream, subject_base: String) -> Self {
        let info = stream.cached_info();
        StreamHandle {
            name: info.config.name.clone(),
            replicas: info.config.num_replicas,
            subject_base,
            stream,
        }
    }

    pub(crate) fn subject(&self, actor: &ActorId) -> String {
        let enc = actor.encoded();
        let mut s = String::with_capacity(self.subject_base.len() + 1 + enc.len());
        s.push_str(&self.subject_base);
        s.push('.');
        s.push_str(&enc);
        s
    }

    /// Whether a direct get (answered by any replica) sees every
    /// acknowledged write: only with one replica. With more, reads that must
    /// see the latest write go to the stream leader.
    fn direct_is_coherent(&self) -> bool {
        self.replicas <= 1
    }
}

pub(crate) struct Inner {
    /// The builder this store was opened with, for [`JetStreamEventStore::with_namespace`].
    pub(crate) settings: JetStreamStoreBuilder,
    /// The envelope format appends and snapshots are written in.
    pub(crate) format: EnvelopeFormat,
    pub(crate) namespace: Namespace,
    pub(crate) client: Client,
    pub(crate) events: StreamHandle,
    pub(crate) snapshots: StreamHandle,
    /// `<api prefix>.DIRECT.GET.<events stream>`: where batched reads go.
    pub(crate) direct_get_subject: String,
    pub(crate) max_payload: usize,
    pub(crate) timeout: Duration,
    pub(crate) read_batch: usize,
    pub(crate) cache: VersionCache,
    /// Where the event of each actor's latest snapshot is (from the snapshot
    /// envelope): the start of a read after the snapshot, verified by the read.
    pub(crate) hints: VersionCache,
    /// Each actor's message-id scope and events subject.
    pub(crate) keys: ActorKeys,
    pub(crate) metrics: Metrics,
    /// What to do with a message on an actor's subject that is not a valid
    /// part of its history.
    pub(crate) policy: TrustPolicy,
    /// Counts the client's connection losses, so a request in flight when
    /// the connection drops fails at once instead of waiting out its timeout.
    pub(crate) connection: ConnectionWatch,
}

impl JetStreamEventStore {
    /// The store over streams the builder opened and validated.
    pub(crate) fn from_opened(o: Opened) -> Self {
        let events = StreamHandle::new(o.events, o.events_subject);
        let inner = Inner {
            format: o.format,
            settings: o.settings,
            metrics: Metrics::new(&o.namespace),
            namespace: o.namespace,
            direct_get_subject: format!("{}.DIRECT.GET.{}", o.api_prefix, events.name),
            events,
            snapshots: StreamHandle::new(o.snapshots, o.snapshots_subject),
            max_payload: o.max_payload,
            timeout: o.timeout,
            read_batch: o.read_batch,
            cache: VersionCache::new(o.cache_capacity),
            hints: VersionCache::new(o.cache_capacity),
            keys: ActorKeys::new(o.cache_capacity),
            policy: o.policy,
            connection: ConnectionWatch::spawn(o.client.clone()),
            client: o.client,
        };
        JetStreamEventStore {
            inner: Arc::new(inner),
        }
    }

    /// A builder with every setting at its default; see [`JetStreamStoreBuilder`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// use aether_core::Namespace;
    /// use aether_store_jetstream::{JetStreamEventStore, Storage};
    ///
    /// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
    /// let store = JetStreamEventStore::builder(client)
    ///     .namespace(Namespace::new("orders")?)
    ///     .replicas(3)
    ///     .storage(Storage::File)
    ///     .open()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(client: Client) -> JetStreamStoreBuilder {
        JetStreamStoreBuilder::new(client)
    }

    /// Opens the store of the `default` namespace with every setting at its
    /// default (streams `AETHER_EVENTS_default` and
    /// `AETHER_SNAPSHOTS_default`, created if missing): the same as
    /// `JetStreamEventStore::builder(client).open().await`.
    ///
    /// # Errors
    /// See [`JetStreamStoreBuilder::open`].
    pub async fn new(client: Client) -> Result<Self, StoreError> {
        Self::builder(client).open().await
    }

    /// The store of another namespace with the same client and settings
    /// (prefix, storage, replicas, timeouts, trust policy, …), its streams
    /// named by the default rule for `namespace` (explicit stream names given
    /// to the builder name this store's streams only) and created if missing
    /// unless `create_streams(false)` was set. The new store has its own
    /// version cache.
    ///
    /// # Errors
    /// See [`JetStreamStoreBuilder::open`].
    pub async fn with_namespace(&self, namespace: Namespace) -> Result<Self, StoreError> {
        self.inner
            .settings
            .clone()
            .default_stream_names()
            .namespace(namespace)
            .open()
            .await
    }

    /// The events stream's name.
    pub fn events_stream_name(&self) -> &str {
        &self.inner.events.name
    }

    /// The snapshots stream's name.
    pub fn snapshots_stream_name(&self) -> &str {
        &self.inner.snapshots.name
    }

    /// The subject an actor's events are stored on.
    pub fn event_subject(&self, actor: &ActorId) -> String {
        self.inner.events.subject(actor)
    }

    /// The subject an actor's snapshot is stored on.
    pub fn snapshot_subject(&self, actor: &ActorId) -> String {
        self.inner.snapshots.subject(actor)
    }

    /// The server's `max_payload` seen at open: the limit for one event or
    /// snapshot *including* its envelope and headers (about 130 bytes plus
    /// the type, actor id and metadata; the check also reserves about 160
    /// bytes for the concurrency and batch headers).
    pub fn max_payload(&self) -> usize {
        self.inner.max_payload
    }

    /// The bytes `event` takes against the server's `max_payload` when
    /// appended in the default envelope format ([`EnvelopeFormat::V2`]): its envelope, its `Nats-Msg-Id` header and the worst case of
    /// the concurrency and batch headers the store adds. An append refuses an
    /// event whose size exceeds [`max_payload`](Self::max_payload) with
    /// [`StoreError::TooLarge`]. The size does not depend on the event's
    /// timestamp or id (both are stored with a fixed width).
    ///
    /// # Errors
    /// [`StoreError::Codec`] if the event cannot be encoded (a timestamp
    /// outside the years 0000-9999).
    pub fn stored_size(event: &Event) -> Result<usize, StoreError> {
        let enc = encode_event(
            event,
            &actor_scope(&event.actor_id),
            EnvelopeFormat::default(),
        )?;
        Ok(enc.wire_len(CONTROL_HEADERS))
    }

    /// The replicas of the events stream.
    pub fn replicas(&self) -> usize {
        self.inner.events.replicas
    }

    /// The NATS client the store uses.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Forgets every cached actor version and read hint (the next append of
    /// each actor reads its tip from the server first). Never needed for
    /// correctness.
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
        self.inner.hints.clear();
    }
}

impl EventStore for JetStreamEventStore {
    fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        let inner = &*self.inner;
        validate_batch(actor, expected, &events)?;
        if events.is_empty() {
            return Ok(expected);
        }
        if events.len() > MAX_BATCH {
            return Err(InvalidInput::BatchTooLarge {
                len: events.len(),
                max: MAX_BATCH,
            }
            .into());
        }
        let keys = inner.keys.get(actor, || inner.events.subject(actor));
        let msgs = inner.encode_batch(actor, &keys.scope, &events)?;
        let started = Instant::now();
        let span = tracing::debug_span!(
            "aether.store.append",
            backend = "jetstream",
            namespace = %inner.namespace,
            %actor,
            %expected,
            events = events.len(),
        );
        let result = self
            .inner
            .append_checked(actor, &keys, expected, &events, msgs)
            .instrument(span)
            .await;
        inner
            .metrics
            .append_seconds
            .record(started.elapsed().as_secs_f64());
        inner.metrics.appends.increment(1);
        match &result {
            Ok(_) => inner.metrics.events_appended.increment(events.len() as u64),
            Err(StoreError::VersionConflict { .. }) => {}
            Err(e) => {
                inner.metrics.append_errors.increment(1);
                tracing::debug!(namespace = %inner.namespace, %actor, error = %e, "append failed");
            }
        }
        result
    }

    async fn get_events(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        let span = read_span(&self.inner, actor, from);
        async {
            let mut reader = Reader::new(self.inner.clone(), actor.clone(), from);
            let mut out = Vec::new();
            while let Some(item) = reader.next().await {
                out.push(item?);
            }
            Ok(out)
        }
        .instrument(span)
        .await
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        let span = read_span(&self.inner, actor, from);
        let reader = Reader::new(self.inner.clone(), actor.clone(), from);
        Box::pin(futures::stream::unfold(reader, move |mut r| {
            let span = span.clone();
            async move { r.next().await.map(|item| (item, r)) }.instrument(span)
        }))
    }

    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        let span = tracing::debug_span!(
            "aether.store.latest_version",
            backend = "jetstream",
            namespace = %self.inner.namespace,
            %actor,
        );
        let subject = self.inner.events.subject(actor);
        let tip = self.inner.tip(actor, &subject).instrument(span).await?;
        Ok(Version::new(tip.version))
    }
}

/// The span of one read of an actor's history (entered while the read
/// works, not per event).
fn read_span(inner: &Inner, actor: &ActorId, from: Version) -> tracing::Span {
    tracing::debug_span!(
        "aether.store.read",
        backend = "jetstream",
        namespace = %inner.namespace,
        %actor,
        %from,
    )
}
