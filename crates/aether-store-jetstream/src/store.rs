//! [`JetStreamEventStore`]: appends, reads and snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_core::store::{BoxStream, validate_batch};
use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, ForeignReason, HistoryGuard, InvalidInput,
    Namespace, SnapshotStore, StoreError, TrustPolicy, Version, report_foreign,
};
use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
};
use async_nats::jetstream::stream::Stream as NatsStream;
use async_nats::{Client, HeaderMap, Request, StatusCode, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use metrics::{Counter, Histogram};
use serde::{Deserialize, Serialize};

use crate::cache::{Tip, VersionCache};
use crate::config::JetStreamStoreBuilder;
use crate::envelope::{
    Encoded, Origin, actor_scope, decode_event, decode_snapshot, encode_event, encode_snapshot,
    names, read_version,
};
use crate::error::{
    ApiError, Refusal, api_error, codes, direct_get_error, publish_error, raw_get_error,
    request_error, subscribe_error,
};

/// Most events one [`EventStore::append`] may carry: the server's atomic
/// batch limit.
pub const MAX_BATCH: usize = 1000;

/// Attempts of one append when the server refuses transiently.
const MAX_ATTEMPTS: u32 = 8;

/// Messages a tip read steps back over (foreign messages after the latest
/// valid event) before it reads the whole history instead.
const WALK_BACK: usize = 16;

/// A random duration in `[max / 2, max]` ("equal jitter"), so writers that
/// were refused together do not retry together.
pub(crate) fn jittered(max: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    let half = max / 2;
    let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_micros(r % span)
}

/// The back-off before attempt `attempt` (from 1) after a transient refusal:
/// 2 ms doubling to at most 256 ms, jittered.
pub(crate) fn backoff(attempt: u32) -> Duration {
    jittered(Duration::from_millis(2u64 << attempt.clamp(1, 7)))
}

/// Worst-case bytes the store adds to an event's headers for concurrency
/// control and batching (expected sequence, batch id, batch sequence, commit).
const CONTROL_HEADERS: usize = "Nats-Expected-Last-Subject-Sequence: 18446744073709551615\r\n"
    .len()
    + "Nats-Batch-Id: 0123456789abcdef0123456789abcdef\r\n".len()
    + "Nats-Batch-Sequence: 1000\r\n".len()
    + "Nats-Batch-Commit: 1\r\n".len();

/// An [`EventStore`] and [`SnapshotStore`] on NATS JetStream for one namespace.
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

pub(crate) struct Metrics {
    append_seconds: Histogram,
    appends: Counter,
    events_appended: Counter,
    conflicts: Counter,
    append_errors: Counter,
    retries: Counter,
    events_read: Counter,
    snapshots_saved: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    read_resumes: Counter,
}

impl Metrics {
    pub(crate) fn new(ns: &Namespace) -> Self {
        let ns = ns.as_str().to_owned();
        macro_rules! c {
            ($name:literal) => {
                metrics::counter!($name, "namespace" => ns.clone(), "backend" => "jetstream")
            };
        }
        Metrics {
            append_seconds: metrics::histogram!("aether_append_duration_seconds", "namespace" => ns.clone(), "backend" => "jetstream"),
            appends: c!("aether_appends_total"),
            events_appended: c!("aether_events_appended_total"),
            conflicts: c!("aether_append_conflicts_total"),
            append_errors: c!("aether_append_errors_total"),
            retries: c!("aether_append_retries_total"),
            events_read: c!("aether_events_read_total"),
            snapshots_saved: c!("aether_snapshots_saved_total"),
            cache_hits: c!("aether_version_cache_hits_total"),
            cache_misses: c!("aether_version_cache_misses_total"),
            read_resumes: c!("aether_read_resumes_total"),
        }
    }
}

pub(crate) struct Inner {
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
    pub(crate) metrics: Metrics,
    /// What to do with a message on an actor's subject that is not a valid
    /// part of its history.
    pub(crate) policy: TrustPolicy,
    /// Counts the client's connection losses, so a request in flight when
    /// the connection drops fails at once instead of waiting out its timeout.
    pub(crate) connection: ConnectionWatch,
}

/// Watches the client's connection state (async-nats offers no
/// notification to a library that did not build the client) and counts the
/// transitions from connected to anything else.
pub(crate) struct ConnectionWatch {
    losses: tokio::sync::watch::Receiver<u64>,
}

/// How often the connection state is sampled: the delay before an append
/// in flight on a lost connection fails.
const CONNECTION_POLL: Duration = Duration::from_millis(20);

impl ConnectionWatch {
    /// Starts the watcher task; it ends when the store (every receiver) is gone.
    pub(crate) fn spawn(client: Client) -> Self {
        use async_nats::connection::State;
        let (tx, losses) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            let mut was_connected = client.connection_state() == State::Connected;
            let mut tick = tokio::time::interval(CONNECTION_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if tx.is_closed() {
                    break;
                }
                let connected = client.connection_state() == State::Connected;
                if was_connected && !connected {
                    tx.send_modify(|n| *n += 1);
                }
                was_connected = connected;
            }
        });
        ConnectionWatch { losses }
    }

    /// Resolves when the connection is lost after this call (never, if it
    /// was not connected at the call: a request sent then waits in the
    /// client's buffer for the reconnect).
    pub(crate) fn lost(&self, client: &Client) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.losses.clone();
        rx.mark_unchanged();
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        async move {
            if connected && rx.changed().await.is_ok() {
                return;
            }
            std::future::pending::<()>().await;
        }
    }
}

/// One stored message as read back.
pub(crate) struct RawMsg {
    seq: u64,
    headers: Option<HeaderMap>,
    payload: Bytes,
}

impl From<async_nats::jetstream::message::StreamMessage> for RawMsg {
    fn from(m: async_nats::jetstream::message::StreamMessage) -> Self {
        RawMsg {
            seq: m.sequence,
            headers: Some(m.headers),
            payload: m.payload,
        }
    }
}

/// A get's answer as an optional message: `map` turns its error into the
/// store's, or into `None` for "no such message".
fn found<M: Into<RawMsg>, E>(
    got: Result<M, E>,
    map: impl FnOnce(E) -> Option<StoreError>,
) -> Result<Option<RawMsg>, StoreError> {
    match got {
        Ok(m) => Ok(Some(m.into())),
        Err(e) => map(e).map_or(Ok(None), Err),
    }
}

/// A batched direct get (server 2.11+): up to `batch` messages of
/// `next_by_subj` from stream sequence `seq`.
#[derive(Serialize)]
struct DirectBatchRequest<'a> {
    seq: u64,
    batch: usize,
    next_by_subj: &'a str,
}

/// A publish acknowledgement (or error answer) as JSON.
#[derive(Debug, Deserialize)]
struct AckResponse {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Debug)]
struct Ack {
    seq: u64,
    duplicate: bool,
}

/// What a read-back says about an append that could not simply be published.
enum Resolution {
    /// The batch is already stored (a retry): report success.
    Stored(Version),
    /// Another write got there first.
    Conflict(Version),
    /// The actor is still at the expected version, with this tip.
    Unchanged(Tip),
}

impl JetStreamEventStore {
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

    /// Opens the store of the `default` namespace with its events in the
    /// stream `stream_name` (and snapshots in `<stream_name>_SNAPSHOTS`),
    /// creating them if needed.
    ///
    /// # Errors
    /// See [`JetStreamStoreBuilder::open`].
    pub async fn new(client: Client, stream_name: impl Into<String>) -> Result<Self, StoreError> {
        Self::builder(client)
            .events_stream(stream_name)
            .open()
            .await
    }

    /// Opens the store of `namespace` with its events in `stream_name`.
    ///
    /// # Errors
    /// See [`JetStreamStoreBuilder::open`].
    pub async fn with_namespace(
        client: Client,
        stream_name: impl Into<String>,
        namespace: Namespace,
    ) -> Result<Self, StoreError> {
        Self::builder(client)
            .events_stream(stream_name)
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
    /// appended: its envelope, its `Nats-Msg-Id` header and the worst case of
    /// the concurrency and batch headers the store adds. An append refuses an
    /// event whose size exceeds [`max_payload`](Self::max_payload) with
    /// [`StoreError::TooLarge`]. The size does not depend on the event's
    /// timestamp or id (both are stored with a fixed width).
    ///
    /// # Errors
    /// [`StoreError::Codec`] if the event cannot be encoded (a timestamp
    /// outside the years 0000-9999).
    pub fn stored_size(event: &Event) -> Result<usize, StoreError> {
        let enc = encode_event(event, &actor_scope(&event.actor_id))?;
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

impl Inner {
    fn conflict(&self, actor: &ActorId, expected: Version, actual: Version) -> StoreError {
        self.metrics.conflicts.increment(1);
        tracing::debug!(namespace = %self.namespace, %actor, %expected, %actual, "append conflict");
        StoreError::VersionConflict {
            actor: actor.clone(),
            expected,
            actual,
        }
    }

    /// The last message of `subject`, read so that it reflects every
    /// acknowledged write (leader read with more than one replica).
    async fn last_msg(
        &self,
        h: &StreamHandle,
        subject: &str,
    ) -> Result<Option<RawMsg>, StoreError> {
        let what = || format!("reading the last message of {subject}");
        if h.direct_is_coherent() {
            found(h.stream.direct_get_last_for_subject(subject).await, |e| {
                direct_get_error(&what(), self.timeout, e)
            })
        } else {
            found(
                h.stream.get_last_raw_message_by_subject(subject).await,
                |e| raw_get_error(&what(), self.timeout, e),
            )
        }
    }

    /// The first message of `subject` at or after stream sequence `seq`.
    async fn next_msg(
        &self,
        h: &StreamHandle,
        subject: &str,
        seq: u64,
    ) -> Result<Option<RawMsg>, StoreError> {
        let what = || format!("reading {subject} from sequence {seq}");
        if h.direct_is_coherent() {
            found(
                h.stream
                    .direct_get_next_for_subject(subject, Some(seq))
                    .await,
                |e| direct_get_error(&what(), self.timeout, e),
            )
        } else {
            found(
                h.stream
                    .raw_message_builder()
                    .sequence(seq)
                    .next_by_subject(subject)
                    .send()
                    .await,
                |e| raw_get_error(&what(), self.timeout, e),
            )
        }
    }

    /// The version in the envelope of `m`, a message of the events stream.
    fn event_version(&self, m: &RawMsg) -> Result<Version, aether_core::CodecError> {
        read_version(
            &m.payload,
            Origin {
                stream: &self.events.name,
                sequence: m.seq,
            },
        )
    }

    /// Decodes `m`, a message on `actor`'s subject, or says why it is foreign.
    pub(crate) fn judge(&self, actor: &ActorId, m: &RawMsg) -> Result<Event, ForeignReason> {
        decode_event(
            m.headers.as_ref(),
            &m.payload,
            actor,
            Origin {
                stream: &self.events.name,
                sequence: m.seq,
            },
        )
    }

    /// Reports a foreign message of `actor` at `seq` under the store's policy.
    fn foreign(&self, actor: &ActorId, seq: u64, reason: ForeignReason) -> Result<(), StoreError> {
        report_foreign(&self.namespace, actor, seq, reason, self.policy)
    }

    /// The last message of `subject` before stream sequence `before` (a
    /// batched direct get of the last message per subject up to a sequence,
    /// server 2.11+).
    pub(crate) async fn prev_msg(
        &self,
        subject: &str,
        before: u64,
    ) -> Result<Option<RawMsg>, StoreError> {
        if before <= 1 {
            return Ok(None);
        }
        #[derive(Serialize)]
        struct LastUpTo<'a> {
            multi_last: [&'a str; 1],
            up_to_seq: u64,
        }
        let what = || format!("reading {subject} before sequence {before}");
        let payload = serde_json::to_vec(&LastUpTo {
            multi_last: [subject],
            up_to_seq: before - 1,
        })
        .map_err(|e| crate::error::backend(what(), e))?;
        let request = Request::new()
            .payload(Bytes::from(payload))
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(self.direct_get_subject.clone(), request)
            .await
            .map_err(|e| request_error(&what(), self.timeout, e))?;
        if reply.status.is_some() {
            // 204 end of batch or 404: nothing before it.
            return Ok(None);
        }
        let seq = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(names::NATS_SEQUENCE))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        match seq {
            Some(seq) if seq < before => Ok(Some(RawMsg {
                seq,
                headers: reply.headers,
                payload: reply.payload,
            })),
            _ => Err(StoreError::Backend {
                message: format!("{}: a reply without a valid Nats-Sequence", what()),
                source: None,
            }),
        }
    }

    /// The actor's latest *valid* event and the last message on its subject
    /// (the expected sequence of the next append), from the server; refreshes
    /// the cache.
    ///
    /// One direct get when the subject has not changed since the cache was
    /// filled; otherwise the last message and the one before it, which agree
    /// for an intact tip. Foreign messages at the tip are stepped over (and
    /// reported); when the messages before the tip do not settle which one is
    /// valid, the whole history is read under the trust rule.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] under the strict policy when the tip is
    /// foreign; transport errors.
    async fn tip(self: &Arc<Self>, actor: &ActorId, subject: &str) -> Result<Tip, StoreError> {
        let Some(last) = self.last_msg(&self.events, subject).await? else {
            return Ok(Tip::EMPTY);
        };
        if let Some(t) = self.cache.get(actor)
            && t.last == last.seq
        {
            return Ok(t);
        }
        let tip = match self.walk_back(actor, subject, last).await? {
            Some(tip) => tip,
            None => self.scan(actor).await?,
        };
        self.cache.observe(actor, tip);
        Ok(tip)
    }

    /// Steps back from the subject's last message to the latest valid event;
    /// `None` when the messages do not settle it within [`WALK_BACK`] steps.
    async fn walk_back(
        &self,
        actor: &ActorId,
        subject: &str,
        last: RawMsg,
    ) -> Result<Option<Tip>, StoreError> {
        let last_seq = last.seq;
        let mut cur = last;
        let mut judged = self.judge(actor, &cur);
        let mut steps = 0;
        loop {
            let event = match judged {
                Ok(e) => e,
                Err(reason) => {
                    self.foreign(actor, cur.seq, reason)?;
                    steps += 1;
                    let Some(p) = self.prev_msg(subject, cur.seq).await? else {
                        // Nothing valid at all.
                        return Ok(Some(Tip {
                            last: last_seq,
                            ..Tip::EMPTY
                        }));
                    };
                    if steps > WALK_BACK {
                        return Ok(None);
                    }
                    judged = self.judge(actor, &p);
                    cur = p;
                    continue;
                }
            };
            // The nearest earlier envelope of this actor (messages that are
            // not one cannot decide the version).
            let mut before = cur.seq;
            let prev = loop {
                steps += 1;
                if steps > WALK_BACK {
                    return Ok(None);
                }
                match self.prev_msg(subject, before).await? {
                    None => break None,
                    Some(p) => match self.judge(actor, &p) {
                        Ok(pe) => break Some((p, pe)),
                        Err(_) => before = p.seq,
                    },
                }
            };
            let valid = Tip {
                version: event.version.get(),
                seq: cur.seq,
                last: last_seq,
            };
            match prev {
                None if event.version == Version::FIRST => return Ok(Some(valid)),
                None => return Ok(None),
                Some((_, pe)) if pe.version.next() == Some(event.version) => {
                    return Ok(Some(valid));
                }
                Some((p, pe)) if event.version <= pe.version => {
                    // A repeated or backward version after `pe`.
                    self.foreign(
                        actor,
                        cur.seq,
                        ForeignReason::OutOfOrder {
                            expected: pe.version.next().unwrap_or(pe.version),
                            found: event.version,
                        },
                    )?;
                    cur = p;
                    judged = Ok(pe);
                }
                // A gap: which side is foreign takes the whole history.
                Some(_) => return Ok(None),
            }
        }
    }

    /// The latest valid version of `actor` among its messages before stream
    /// sequence `before`, by reading its history under the trust rule (the
    /// feed's exact start for an actor it first meets past position 0).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] under the strict policy; transport errors.
    pub(crate) async fn valid_version_before(
        self: &Arc<Self>,
        actor: &ActorId,
        before: u64,
    ) -> Result<Version, StoreError> {
        let mut reader = Reader::new(self.clone(), actor.clone(), Version::ZERO);
        let mut last = Version::ZERO;
        while let Some(item) = Box::pin(reader.next()).await {
            item?;
            match reader.admitted {
                Some(t) if t.seq < before => last = Version::new(t.version),
                _ => break,
            }
        }
        Ok(last)
    }

    /// The latest valid event by reading the whole history under the trust rule.
    async fn scan(self: &Arc<Self>, actor: &ActorId) -> Result<Tip, StoreError> {
        let mut reader = Reader::new(self.clone(), actor.clone(), Version::ZERO);
        while let Some(item) = Box::pin(reader.next()).await {
            item?;
        }
        Ok(reader.tip().unwrap_or(Tip::EMPTY))
    }

    /// A stream sequence at or before the one of version `from` of the actor
    /// (exactly it when the history is intact), given its valid tip.
    async fn seek(&self, subject: &str, from: u64, tip: Tip) -> Result<u64, StoreError> {
        if from >= tip.version {
            return Ok(tip.seq);
        }
        // Version `from` lies at least `tip.version - from` messages before
        // the tip's event (more if foreign messages lie between).
        let guess = tip.seq.saturating_sub(tip.version - from).max(1);
        let version_at = |m: &RawMsg| self.event_version(m).ok().map(Version::get);
        let Some(m) = self.next_msg(&self.events, subject, guess).await? else {
            return Ok(1);
        };
        if m.seq == guess && version_at(&m) == Some(from) {
            return Ok(guess);
        }
        // Binary search over [lo, hi] for the message with version `from`;
        // `lo` only passes messages older than `from`, so it stays a safe start.
        let (mut lo, mut hi) = (1u64, guess);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let Some(m) = self.next_msg(&self.events, subject, mid).await? else {
                break;
            };
            let Some(v) = version_at(&m) else { break };
            if v == from {
                return Ok(m.seq);
            }
            if v < from {
                lo = m.seq + 1;
            } else if mid == 0 {
                break;
            } else {
                hi = mid - 1;
            }
        }
        Ok(lo)
    }

    /// Decides what a refused or pre-empted append means, from the actor's
    /// valid tip on the server.
    async fn resolve(
        self: &Arc<Self>,
        actor: &ActorId,
        subject: &str,
        expected: Version,
        events: &[Event],
    ) -> Result<Resolution, StoreError> {
        let mut tip = self.tip(actor, subject).await?;
        if tip.version < expected.get() {
            // Behind what the caller read: only consecutive forged
            // envelopes at the tip can fool the tip read; read it all.
            tip = self.scan(actor).await?;
            self.cache.observe(actor, tip);
        }
        let latest = tip.version;
        if let Some(last) = events.last() {
            let want = last.version.get();
            if latest >= want {
                let stored_id = if latest == want {
                    self.next_msg(&self.events, subject, tip.seq)
                        .await?
                        .filter(|m| m.seq == tip.seq)
                        .and_then(|m| self.judge(actor, &m).ok())
                        .map(|e| e.id)
                } else {
                    // The valid event at `want`, read under the trust rule.
                    let mut reader = Reader::new(self.clone(), actor.clone(), last.version);
                    match Box::pin(reader.next()).await {
                        Some(Ok(e)) if e.version == last.version => Some(e.id),
                        Some(Err(e)) => return Err(e),
                        _ => None,
                    }
                };
                if stored_id == Some(last.id) {
                    tracing::debug!(namespace = %self.namespace, %actor, version = want, "append was already stored (retry)");
                    return Ok(Resolution::Stored(last.version));
                }
            }
        }
        if latest == expected.get() {
            return Ok(Resolution::Unchanged(tip));
        }
        Ok(Resolution::Conflict(Version::new(latest)))
    }

    /// Sends a request whose answer is a publish acknowledgement.
    async fn request_ack(
        &self,
        subject: &str,
        headers: HeaderMap,
        payload: Bytes,
        what: impl Fn() -> String,
    ) -> Result<Result<Ack, Refusal>, StoreError> {
        let request = Request::new()
            .headers(headers)
            .payload(payload)
            .timeout(Some(self.timeout));
        if self.client.connection_state() != async_nats::connection::State::Connected {
            // Known lost: fail now, before anything is sent.
            return Err(StoreError::Unavailable {
                message: format!("{}: not connected to NATS (nothing was sent)", what()),
                source: None,
            });
        }
        let lost = self.connection.lost(&self.client);
        let reply = tokio::select! {
            reply = self.client.send_request(subject.to_owned(), request) => {
                reply.map_err(|e| request_error(&what(), self.timeout, e))?
            }
            () = lost => {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "{}: the connection was lost while waiting for the acknowledgement (the write may have been stored; retrying the same events is safe)",
                        what()
                    ),
                    source: None,
                });
            }
        };
        if reply.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(StoreError::Unavailable {
                message: format!("{}: no responders", what()),
                source: None,
            });
        }
        let ack: AckResponse = serde_json::from_slice(&reply.payload).map_err(|e| {
            crate::error::backend(format!("{}: unreadable acknowledgement", what()), e)
        })?;
        if let Some(e) = ack.error {
            return Ok(Err(Refusal::classify(e, &what())));
        }
        if ack.seq == 0 {
            return Err(StoreError::Backend {
                message: format!("{}: acknowledgement without a sequence", what()),
                source: None,
            });
        }
        Ok(Ok(Ack {
            seq: ack.seq,
            duplicate: ack.duplicate,
        }))
    }

    /// Publishes one event or an atomic batch with the expected last
    /// sequence of the actor's subject.
    async fn publish(
        &self,
        subject: &str,
        msgs: &[Encoded],
        expected_seq: u64,
    ) -> Result<Result<Ack, Refusal>, StoreError> {
        let expected = expected_seq.to_string();
        if let [one] = msgs {
            let mut h = one.headers();
            h.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.as_str());
            return self
                .request_ack(subject, h, one.body.clone(), || {
                    format!("appending to {subject}")
                })
                .await;
        }
        let Some((last, rest)) = msgs.split_last() else {
            return Err(StoreError::Backend {
                message: format!("appending to {subject}: empty batch"),
                source: None,
            });
        };
        let batch_id = uuid::Uuid::new_v4().simple().to_string();
        let what = || format!("appending a batch of {} to {subject}", msgs.len());
        let batch_headers = |msg: &Encoded, i: usize| {
            let mut h = msg.headers();
            h.insert(NATS_BATCH_ID, batch_id.as_str());
            h.insert(NATS_BATCH_SEQUENCE, (i + 1).to_string());
            if i == 0 {
                h.insert(NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, expected.as_str());
            }
            h
        };
        // Every message but the last without a reply (the server stages
        // them); the commit's reply is the batch's acknowledgement.
        for (i, msg) in rest.iter().enumerate() {
            self.client
                .publish_with_headers(subject.to_owned(), batch_headers(msg, i), msg.body.clone())
                .await
                .map_err(|e| publish_error(&what(), e))?;
        }
        let mut h = batch_headers(last, rest.len());
        h.insert(NATS_BATCH_COMMIT, "1");
        self.request_ack(subject, h, last.body.clone(), what).await
    }

    async fn append_checked(
        self: &Arc<Self>,
        actor: &ActorId,
        expected: Version,
        events: &[Event],
        msgs: &[Encoded],
    ) -> Result<Version, StoreError> {
        let subject = self.events.subject(actor);
        // The batch was validated: its versions run expected + 1, expected + 2, ….
        let last_version = events.last().map_or(expected, |e| e.version);
        let mut known = match self.cache.get(actor) {
            Some(t) => {
                self.metrics.cache_hits.increment(1);
                Some(t)
            }
            None if expected.is_zero() => Some(Tip::EMPTY),
            None => {
                self.metrics.cache_misses.increment(1);
                None
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tip = match known {
                Some(t) if t.version == expected.get() => t,
                _ => match self.resolve(actor, &subject, expected, events).await? {
                    Resolution::Stored(v) => return Ok(v),
                    Resolution::Conflict(actual) => {
                        return Err(self.conflict(actor, expected, actual));
                    }
                    Resolution::Unchanged(t) => t,
                },
            };
            match self.publish(&subject, msgs, tip.last).await {
                Ok(Ok(ack)) if !ack.duplicate => {
                    self.cache
                        .observe(actor, Tip::at(last_version.get(), ack.seq));
                    return Ok(last_version);
                }
                Ok(Ok(_duplicate)) => {
                    self.cache.invalidate(actor);
                    known = None;
                }
                Ok(Err(Refusal::Conflict(e))) => {
                    tracing::trace!(%actor, error = %e, "append refused; reading back");
                    self.cache.invalidate(actor);
                    known = None;
                    if e.err_code == codes::WRONG_LAST_SEQUENCE_IN_FLIGHT {
                        // Another write to the subject is being replicated:
                        // let it land before reading back, and do not retry in
                        // step with the other refused writers.
                        self.metrics.retries.increment(1);
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                }
                Ok(Err(Refusal::Retry(e))) => {
                    self.cache.invalidate(actor);
                    known = None;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(api_error(&format!("appending to {subject}"), e));
                    }
                    self.metrics.retries.increment(1);
                    tracing::debug!(%actor, error = %e, attempt, "transient refusal; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Ok(Err(Refusal::Fatal(e))) => return Err(e),
                Err(e) => {
                    self.cache.invalidate(actor);
                    return Err(e);
                }
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "appending to {subject}: still refused after {MAX_ATTEMPTS} attempts while the actor stayed at version {expected}"
                    ),
                    source: None,
                });
            }
        }
    }

    fn encode_batch(&self, actor: &ActorId, events: &[Event]) -> Result<Vec<Encoded>, StoreError> {
        let scope = actor_scope(actor);
        events
            .iter()
            .map(|e| {
                let enc = encode_event(e, &scope)?;
                let size = enc.wire_len(CONTROL_HEADERS);
                if size > self.max_payload {
                    return Err(StoreError::TooLarge {
                        what: format!("event {} (version {}) of {actor}", e.id, e.version),
                        size,
                        max: self.max_payload,
                    });
                }
                Ok(enc)
            })
            .collect()
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
        let msgs = inner.encode_batch(actor, &events)?;
        let started = Instant::now();
        let result = self
            .inner
            .append_checked(actor, expected, &events, &msgs)
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
        let mut reader = Reader::new(self.inner.clone(), actor.clone(), from);
        let mut out = Vec::new();
        while let Some(item) = reader.next().await {
            out.push(item?);
        }
        Ok(out)
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        let reader = Reader::new(self.inner.clone(), actor.clone(), from);
        Box::pin(futures::stream::unfold(reader, |mut r| async move {
            r.next().await.map(|item| (item, r))
        }))
    }

    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        let subject = self.inner.events.subject(actor);
        Ok(Version::new(self.inner.tip(actor, &subject).await?.version))
    }
}

impl SnapshotStore for JetStreamEventStore {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let actor = snapshot.actor_id.clone();
        // Checked before any round trip with the largest possible envelope.
        let size = b"NATS/1.0\r\n\r\n".len()
            + CONTROL_HEADERS
            + encode_snapshot(&snapshot, Some(u64::MAX))?.len();
        if size > inner.max_payload {
            return Err(StoreError::TooLarge {
                what: format!("snapshot of {actor} at version {}", snapshot.version),
                size,
                max: inner.max_payload,
            });
        }
        // A snapshot never claims a version that was not stored. The cache
        // never runs ahead of the server, so a cached version is proof enough.
        let mut tip = inner.cache.get(&actor);
        let events_subject = inner.events.subject(&actor);
        if snapshot.version.get() > tip.map_or(0, |t| t.version) {
            tip = Some(self.inner.tip(&actor, &events_subject).await?);
            let latest = Version::new(tip.map_or(0, |t| t.version));
            if snapshot.version > latest {
                return Err(StoreError::SnapshotAhead {
                    actor,
                    snapshot: snapshot.version,
                    latest,
                });
            }
        }
        // Where the snapshot's event is, when that is the tip we know.
        let seq = tip
            .filter(|t| t.version == snapshot.version.get())
            .map(|t| t.seq);
        let body = encode_snapshot(&snapshot, seq)?;
        let subject = inner.snapshots.subject(&actor);
        let what = format!("saving the snapshot of {actor}");
        for attempt in 1..=MAX_ATTEMPTS {
            let current = inner.last_msg(&inner.snapshots, &subject).await?;
            let expected_seq = match &current {
                None => 0,
                Some(m) => {
                    let origin = Origin {
                        stream: &inner.snapshots.name,
                        sequence: m.seq,
                    };
                    // An undecodable stored snapshot is replaced, and so is
                    // one ahead of the events (foreign).
                    if let Ok(v) = read_version(&m.payload, origin)
                        && v > snapshot.version
                    {
                        let latest = match inner.cache.get(&actor) {
                            Some(t) if t.version >= v.get() => t.version,
                            _ => self.inner.tip(&actor, &events_subject).await?.version,
                        };
                        if v.get() <= latest {
                            tracing::debug!(%actor, stored = %v, offered = %snapshot.version, "older snapshot ignored");
                            return Ok(());
                        }
                    }
                    m.seq
                }
            };
            let mut h = HeaderMap::new();
            h.insert(
                NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                expected_seq.to_string(),
            );
            match inner
                .request_ack(&subject, h, body.clone(), || what.clone())
                .await?
            {
                Ok(_) => {
                    inner.metrics.snapshots_saved.increment(1);
                    return Ok(());
                }
                Err(Refusal::Conflict(_)) | Err(Refusal::Retry(_)) if attempt < MAX_ATTEMPTS => {
                    tracing::trace!(%actor, attempt, "snapshot write raced; retrying");
                }
                Err(Refusal::Conflict(e)) | Err(Refusal::Retry(e)) => {
                    return Err(api_error(&what, e));
                }
                Err(Refusal::Fatal(e)) => return Err(e),
            }
        }
        Err(StoreError::Unavailable {
            message: format!("{what}: still racing after {MAX_ATTEMPTS} attempts"),
            source: None,
        })
    }

    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        let inner = &*self.inner;
        let subject = inner.snapshots.subject(actor);
        let Some(m) = inner.last_msg(&inner.snapshots, &subject).await? else {
            return Ok(None);
        };
        let origin = Origin {
            stream: &inner.snapshots.name,
            sequence: m.seq,
        };
        let (snapshot, seq) = match decode_snapshot(&m.payload, actor, origin) {
            Ok(decoded) => decoded,
            Err(e) => {
                inner.foreign(
                    actor,
                    m.seq,
                    ForeignReason::SnapshotUndecodable(e.to_string()),
                )?;
                return Ok(None);
            }
        };
        // A snapshot never claims a version that was not stored: one ahead
        // of the latest valid event is foreign and ignored.
        let latest = match inner.cache.get(actor) {
            Some(t) if t.version >= snapshot.version.get() => t.version,
            _ => {
                let events_subject = inner.events.subject(actor);
                self.inner.tip(actor, &events_subject).await?.version
            }
        };
        if snapshot.version.get() > latest {
            inner.foreign(
                actor,
                m.seq,
                ForeignReason::SnapshotAhead {
                    snapshot: snapshot.version,
                    latest: Version::new(latest),
                },
            )?;
            return Ok(None);
        }
        if let Some(seq) = seq {
            inner
                .hints
                .observe(actor, Tip::at(snapshot.version.get(), seq));
        }
        Ok(Some(snapshot))
    }
}

/// Reads an actor's events up to its tip when the read began: short reads
/// with batched direct gets (`{"seq", "batch", "next_by_subj"}`, server
/// 2.11+), long ones through an ordered consumer, decoding each message as it
/// arrives and admitting it through the trust rule ([`HistoryGuard`]).
///
/// A transient failure mid-read (time-out, lost connection, consumer gone)
/// resumes from the message after the last one processed, for up to the
/// request timeout; after that, or on any other error, the error is the
/// read's last item.
struct Reader {
    inner: Arc<Inner>,
    actor: ActorId,
    subject: String,
    from: Version,
    phase: Phase,
    guard: HistoryGuard,
    /// The last event admitted (version and sequence).
    admitted: Option<Tip>,
    /// The stream sequence of the last message processed (0: none).
    seen: u64,
    /// The stream sequence the read continues from.
    next_seq: u64,
    /// The sequence the read ends at (the subject's last message when it began).
    target: Option<u64>,
    read: u64,
    /// Set after a wrong start hint: search instead.
    no_hint: bool,
    /// Since when the read has been failing transiently.
    failing_since: Option<Instant>,
}

impl Drop for Reader {
    /// A stream dropped before its end still counts what it read and feeds
    /// the cache with the newest version it saw.
    fn drop(&mut self) {
        self.finish();
    }
}

enum Started {
    Empty,
    Direct(Open),
    Consumer { start: u64 },
}

enum Phase {
    Start,
    Open(Open),
    Tail(Box<Tail>),
    /// Waiting to resume after a transient failure.
    Resume,
    Done,
}

/// The rest of a long history, through an ordered consumer.
struct Tail {
    /// In a mutex only to make the reader `Sync` (the consumer's stream is
    /// not); it is reached through `get_mut`, never locked.
    messages: std::sync::Mutex<async_nats::jetstream::consumer::pull::Ordered>,
    finished: bool,
}

struct Open {
    sub: Subscriber,
    inbox: String,
    in_batch: usize,
    /// Since when a replica has answered short of the target.
    stale_since: Option<Instant>,
    /// The message the read must start with when it starts at a hint.
    verify: Option<Tip>,
}

enum Step {
    Item(Event),
    Continue,
    /// Many events remain: read them through an ordered consumer.
    SwitchToConsumer,
    /// The start hint was wrong: start again with a search.
    Reseek,
    Finished,
}

/// Past how many events (in read batches) a read uses an ordered consumer
/// instead of batched direct gets: the consumer streams with flow control
/// (measured here 2-3x the per-message rate of direct gets) but costs a
/// consumer on the server, so short reads (after a snapshot) stay direct.
const CONSUMER_AFTER_BATCHES: u64 = 1;

impl Reader {
    fn new(inner: Arc<Inner>, actor: ActorId, from: Version) -> Self {
        let subject = inner.events.subject(&actor);
        let last_valid = Version::new(from.get().max(1) - 1);
        let guard = HistoryGuard::new(&inner.namespace, &actor, last_valid, inner.policy);
        Reader {
            inner,
            actor,
            subject,
            from,
            phase: Phase::Start,
            guard,
            admitted: None,
            seen: 0,
            next_seq: 1,
            target: None,
            read: 0,
            no_hint: false,
            failing_since: None,
        }
    }

    async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            let step = match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => {
                    self.finish();
                    return None;
                }
                Phase::Start => match self.start().await {
                    Ok(Started::Empty) => Ok(Step::Finished),
                    Ok(Started::Direct(open)) => {
                        self.phase = Phase::Open(open);
                        Ok(Step::Continue)
                    }
                    Ok(Started::Consumer { start }) => self.switch_to_consumer(start).await,
                    Err(e) => Err(e),
                },
                Phase::Open(mut open) => {
                    let step = self.step(&mut open).await;
                    self.phase = Phase::Open(open);
                    step
                }
                Phase::Tail(mut tail) => {
                    let step = self.tail_step(&mut tail).await;
                    self.phase = Phase::Tail(tail);
                    step
                }
                Phase::Resume => self.resume().await,
            };
            match step {
                Ok(Step::Item(e)) => {
                    self.failing_since = None;
                    return Some(Ok(e));
                }
                Ok(Step::Continue) => {}
                Ok(Step::SwitchToConsumer) => {
                    if let Err(e) = self.switch_to_consumer(self.next_seq).await
                        && let Some(e) = self.failed(e)
                    {
                        return Some(Err(e));
                    }
                }
                Ok(Step::Reseek) => {
                    self.inner.hints.invalidate(&self.actor);
                    self.no_hint = true;
                    self.phase = Phase::Start;
                }
                Ok(Step::Finished) => {
                    self.phase = Phase::Done;
                    self.finish();
                    return None;
                }
                Err(e) => {
                    if let Some(e) = self.failed(e) {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// After an error: resume (`None`) while it is transient, the read has
    /// begun and the failure is younger than the request timeout; otherwise
    /// end the read with the error.
    fn failed(&mut self, e: StoreError) -> Option<StoreError> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if e.is_transient() && self.target.is_some() && since.elapsed() < self.inner.timeout {
            tracing::debug!(actor = %self.actor, error = %e, next_seq = self.next_seq, "read interrupted; resuming");
            self.phase = Phase::Resume;
            return None;
        }
        self.phase = Phase::Done;
        self.finish();
        Some(e)
    }

    /// Opens the read again at the message after the last one processed.
    async fn resume(&mut self) -> Result<Step, StoreError> {
        tokio::time::sleep(jittered(Duration::from_millis(200))).await;
        self.inner.metrics.read_resumes.increment(1);
        let Some(target) = self.target else {
            self.phase = Phase::Start;
            return Ok(Step::Continue);
        };
        if self.admitted.is_none() && (self.seen == 0 || self.from.get() > 1) {
            // Nothing of the requested range read yet (the start position
            // may be unsettled, e.g. after a wrong hint): start over.
            self.phase = Phase::Start;
            return Ok(Step::Continue);
        }
        if self.next_seq > target {
            return Ok(Step::Finished);
        }
        let remaining = target - self.next_seq + 1;
        if remaining > CONSUMER_AFTER_BATCHES * self.inner.read_batch as u64 {
            return self.switch_to_consumer(self.next_seq).await;
        }
        let open = self.open_direct(self.next_seq, None).await?;
        self.phase = Phase::Open(open);
        Ok(Step::Continue)
    }

    async fn switch_to_consumer(&mut self, start: u64) -> Result<Step, StoreError> {
        let tail = Self::tail(self.inner.clone(), self.subject.clone(), start).await?;
        self.phase = Phase::Tail(Box::new(tail));
        Ok(Step::Continue)
    }

    /// The tip this read saw: the last admitted event and the last message
    /// processed (`None` when that says nothing).
    fn tip(&self) -> Option<Tip> {
        match self.admitted {
            Some(t) => Some(Tip {
                last: self.seen.max(t.seq),
                ..t
            }),
            None if self.from.get() <= 1 && self.seen > 0 => Some(Tip {
                last: self.seen,
                ..Tip::EMPTY
            }),
            None => None,
        }
    }

    fn finish(&mut self) {
        if let Some(t) = self.tip() {
            self.inner.cache.observe(&self.actor, t);
        }
        if self.read > 0 {
            self.inner.metrics.events_read.increment(self.read);
            self.read = 0;
        }
    }

    /// Reads the actor's tip and decides where and how the read starts.
    async fn start(&mut self) -> Result<Started, StoreError> {
        let inner = self.inner.clone();
        let from = self.from.get().max(1);
        let Some(last) = inner.last_msg(&inner.events, &self.subject).await? else {
            return Ok(Started::Empty);
        };
        self.target = Some(last.seq);
        let threshold = CONSUMER_AFTER_BATCHES * inner.read_batch as u64;
        let (start, remaining, verify) = if from == 1 {
            // The whole history; the last message's version (if it has one)
            // only chooses how to read it.
            let estimate = inner.event_version(&last).map_or(0, Version::get);
            (1, estimate, None)
        } else {
            let tip = match inner.cache.get(&self.actor) {
                Some(t) if t.last == last.seq => t,
                _ => Box::pin(inner.tip(&self.actor, &self.subject)).await?,
            };
            self.target = Some(tip.last.max(last.seq));
            if from > tip.version {
                return Ok(Started::Empty);
            }
            let remaining = tip.version - from + 1;
            // A short read right after a snapshot that recorded where its
            // event is: start there, and check that the first message is
            // that event (else search after all).
            let hint = inner
                .hints
                .get(&self.actor)
                .filter(|h| !self.no_hint && h.version + 1 == from && h.seq < tip.seq);
            match hint {
                Some(h) if remaining <= threshold => (h.seq, remaining, Some(h)),
                _ => (inner.seek(&self.subject, from, tip).await?, remaining, None),
            }
        };
        self.next_seq = start;
        if remaining > threshold {
            return Ok(Started::Consumer { start });
        }
        Ok(Started::Direct(self.open_direct(start, verify).await?))
    }

    /// Subscribes to a fresh inbox and asks for the first batch from `start`.
    async fn open_direct(&mut self, start: u64, verify: Option<Tip>) -> Result<Open, StoreError> {
        let inner = &*self.inner;
        let inbox = inner.client.new_inbox();
        let sub = inner
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| subscribe_error("reading events", e))?;
        let mut open = Open {
            sub,
            inbox,
            in_batch: 0,
            stale_since: None,
            verify,
        };
        self.next_seq = start;
        self.request(&mut open).await?;
        Ok(open)
    }

    async fn request(&self, open: &mut Open) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let payload = Bytes::from(
            serde_json::to_vec(&DirectBatchRequest {
                seq: self.next_seq,
                batch: inner.read_batch,
                next_by_subj: &self.subject,
            })
            .map_err(|e| crate::error::backend("encoding a read request", e))?,
        );
        open.in_batch = 0;
        inner
            .client
            .publish_with_reply(
                inner.direct_get_subject.clone(),
                open.inbox.clone(),
                payload,
            )
            .await
            .map_err(|e| publish_error(&format!("reading {}", self.subject), e))
    }

    /// Opens an ordered consumer on the actor's subject from `start` (a free
    /// function of the inner store, so the reader need not be `Sync`).
    async fn tail(inner: Arc<Inner>, subject: String, start: u64) -> Result<Tail, StoreError> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        let what = format!("reading {subject} through an ordered consumer");
        let consumer = inner
            .events
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::unavailable(what.clone(), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| StoreError::unavailable(what, e))?;
        Ok(Tail {
            messages: std::sync::Mutex::new(messages),
            finished: false,
        })
    }

    async fn tail_step(&mut self, tail: &mut Tail) -> Result<Step, StoreError> {
        if tail.finished {
            return Ok(Step::Finished);
        }
        let timeout = self.inner.timeout;
        let msg = match tokio::time::timeout(
            timeout,
            tail.messages
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .next(),
        )
        .await
        {
            Err(_) => {
                return Err(StoreError::Timeout(format!(
                    "reading {}: no message within {timeout:?}",
                    self.subject
                )));
            }
            Ok(None) => {
                return Err(StoreError::Unavailable {
                    message: format!("reading {}: the consumer ended", self.subject),
                    source: None,
                });
            }
            Ok(Some(Err(e))) => {
                return Err(StoreError::unavailable(
                    format!("reading {} through an ordered consumer", self.subject),
                    e,
                ));
            }
            Ok(Some(Ok(m))) => m,
        };
        let seq = match msg.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                return Err(StoreError::Backend {
                    message: format!(
                        "reading {}: a consumer message without metadata: {e}",
                        self.subject
                    ),
                    source: None,
                });
            }
        };
        if seq < self.next_seq {
            // Redelivered after the consumer was recreated.
            return Ok(Step::Continue);
        }
        let target = self.target.unwrap_or(seq);
        tail.finished = seq >= target;
        let origin = Origin {
            stream: &self.inner.events.name,
            sequence: seq,
        };
        let msg = msg.message;
        let event = decode_event(msg.headers.as_ref(), &msg.payload, &self.actor, origin);
        self.decoded(event, seq, tail.finished)
    }

    /// Judges a decoded message through the trust rule; versions before
    /// `from` (of a read that starts past the first event) are passed over.
    fn decoded(
        &mut self,
        event: Result<Event, ForeignReason>,
        seq: u64,
        last: bool,
    ) -> Result<Step, StoreError> {
        self.next_seq = seq + 1;
        let skip = if last { Step::Finished } else { Step::Continue };
        let step = match event {
            Ok(e) if self.admitted.is_none() && self.from.get() > 1 && e.version < self.from => {
                skip
            }
            Ok(e) => {
                if self.guard.admit(seq, &e)? {
                    self.admitted = Some(Tip::at(e.version.get(), seq));
                    self.read += 1;
                    Step::Item(e)
                } else {
                    skip
                }
            }
            Err(reason) => {
                self.guard.reject(seq, reason)?;
                skip
            }
        };
        self.seen = seq;
        Ok(step)
    }

    async fn step(&mut self, open: &mut Open) -> Result<Step, StoreError> {
        let timeout = self.inner.timeout;
        let target = self.target.unwrap_or(0);
        let msg = match tokio::time::timeout(timeout, open.sub.next()).await {
            Err(_) => {
                return Err(StoreError::Timeout(format!(
                    "reading {}: no reply within {timeout:?}",
                    self.subject
                )));
            }
            Ok(None) => {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "reading {}: the connection closed the reply subscription",
                        self.subject
                    ),
                    source: None,
                });
            }
            Ok(Some(m)) => m,
        };
        match msg.status {
            None => {
                let headers = msg.headers.as_ref();
                let seq = headers
                    .and_then(|h| h.get(names::NATS_SEQUENCE))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                let Some(seq) = seq else {
                    return Err(StoreError::Backend {
                        message: format!(
                            "reading {}: a direct-get reply without Nats-Sequence",
                            self.subject
                        ),
                        source: None,
                    });
                };
                open.in_batch += 1;
                if seq < self.next_seq {
                    // A reply to a request made before a resume.
                    return Ok(Step::Continue);
                }
                let origin = Origin {
                    stream: &self.inner.events.name,
                    sequence: seq,
                };
                if let Some(hint) = open.verify.take() {
                    self.next_seq = seq + 1;
                    let found = read_version(&msg.payload, origin).ok().map(Version::get);
                    return Ok(if seq == hint.seq && found == Some(hint.version) {
                        Step::Continue
                    } else {
                        tracing::debug!(actor = %self.actor, ?hint, seq, ?found, "stale read hint");
                        Step::Reseek
                    });
                }
                let event = decode_event(msg.headers.as_ref(), &msg.payload, &self.actor, origin);
                self.decoded(event, seq, false)
            }
            Some(status) if status.as_u16() == 204 || status == StatusCode::NOT_FOUND => {
                let pending = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Num-Pending"))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                if self.next_seq > target {
                    return Ok(Step::Finished);
                }
                // More than the estimate remains (the history has holes the
                // estimate did not see): stream the rest.
                let remaining = pending.unwrap_or_else(|| target.saturating_sub(self.next_seq) + 1);
                if remaining > CONSUMER_AFTER_BATCHES * self.inner.read_batch as u64 {
                    return Ok(Step::SwitchToConsumer);
                }
                if pending.unwrap_or(0) == 0 && open.in_batch == 0 {
                    // A replica that has not applied the latest writes yet.
                    let since = *open.stale_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > timeout {
                        return Err(StoreError::Timeout(format!(
                            "reading {}: replicas did not reach sequence {target} within {timeout:?}",
                            self.subject
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    open.stale_since = None;
                }
                self.request(open).await?;
                Ok(Step::Continue)
            }
            Some(status) => Err(StoreError::Backend {
                message: format!(
                    "reading {}: the server answered {status} {}",
                    self.subject,
                    msg.description.as_deref().unwrap_or("")
                ),
                source: None,
            }),
        }
    }
}
