//! [`NatsEventBus`]: the event bus over core NATS.
//!
//! # Subjects
//!
//! An event of type `T` published in namespace `s1.s2.….sn` goes to
//!
//! ```text
//! <prefix>._bus.<enc(s1)>.<enc(s2)>.….<enc(sn)>.<enc(T)>
//! ```
//!
//! where `enc` is [`aether_core::name::encode_token`] (letters, digits and `-`
//! kept; every other byte, `_` included, written `_XX`). Each namespace segment
//! is its own subject token, so a pattern subscribes with one NATS
//! subscription:
//!
//! * `Exact(acme.orders)` → `<prefix>._bus.acme.orders.*`
//! * `Within(acme)` → `<prefix>._bus.acme.>`
//!
//! **Why a pattern cannot leak.** NATS compares whole tokens. Encoded segments
//! never contain `.`, and `encode_token` is injective, so the subject's token
//! `k` after `_bus` equals the pattern's token `k` exactly when segment `k` of
//! the namespace equals segment `k` of the pattern: `acme` is never equal to
//! `acme-corp` or `acme_5Fx` (`acme_x`). Every subject has exactly one token
//! after the namespace (the event type), so `*` after `n` segments matches only
//! namespaces of exactly those `n` segments, and `>` only namespaces that start
//! with all of them. On receipt the namespace in the envelope must match the
//! subject and the subscriber's filter is checked again, so a forged message
//! cannot cross namespaces either.
//!
//! **Why `_bus` comes before the namespace** (and not `<prefix>.<ns>.bus` as a
//! single encoded token): per-segment tokens are what make `Within` a single
//! wildcard subscription, and the second token `_bus` is something
//! `encode_token` never produces (`_` is always followed by two upper-case hex
//! digits). JetStream streams of the store use `<prefix>.<encoded
//! namespace>.…`, so with a shared prefix no store stream can ever capture
//! bus traffic, whatever the namespaces are called.
//!
//! Event types are carried in the last token for tools (`nats sub
//! 'aether._bus.acme.>'`); an empty type, or one whose encoding exceeds 128
//! bytes, is written `_` (which no encoding produces). Receivers take the type
//! from the envelope.
//!
//! # Receiving
//!
//! Each NATS subscription (one per namespace pattern in use) is drained by a
//! shared *pump*: whichever of the pattern's local subscribers polls with an
//! empty queue takes the pump (without waiting; if another thread holds it,
//! that thread is delivering), decodes every message already received and
//! queues it for all the pattern's subscribers, waking each once per burst.
//! The NATS subscription is polled with a waker that wakes the waiting
//! subscribers, so a message costs no hop through a task of its own: it goes
//! from the client's connection task straight to the subscriber that takes it.
//!
//! The bounded queues and [`BusError::Lagged`] work as before: a background
//! task also runs the pump every 5 ms, so while nobody polls, messages still
//! move into the subscribers' bounded queues (oldest dropped and counted)
//! instead of piling up in the client's per-subscription buffer (64 Ki
//! messages by default), which would drop them without a count once full.
//! Subjects are built and checked with `aether-core`'s one token encoding,
//! [`encode_token`] (the store's stream subjects use it too): the subject's
//! namespace part must equal the subject form of the envelope's namespace.
//! While messages keep carrying the same namespace the validated
//! [`Namespace`] of the previous one and its subject form are reused, so the
//! check is one string comparison; likewise the previous event type and actor
//! id are reused while they repeat.
//!
//! # Publishing
//!
//! The envelope is written into a buffer shared by consecutive publishes
//! (one allocation of up to 64 KiB for many envelopes; directly when the
//! event has no metadata, else through a scratch vector) and handed to the
//! client from there without a copy.
//! The subject of each namespace and event type is built once and kept (a
//! `Subject` shares its bytes, so a publish clones a pointer), up to 4096
//! namespaces of 64 types each; past that, subjects are built per publish.
//! The namespace's `aether_bus_published_total` handle is kept beside its
//! subjects: while the node has no local subscriber group (one atomic load),
//! a publish counts itself there and does not touch the hub otherwise.
//!
//! # Wire format
//!
//! ```text
//! "AEB1" (4 bytes) | origin node id (16 bytes, UUID) | MessagePack body
//! ```
//!
//! No NATS headers: the origin is read from a fixed offset, so a node
//! recognises and drops its own echo without decoding anything. The body is a
//! positional MessagePack array that starts with its format version (2);
//! bodies of earlier releases, a MessagePack map `{namespace, event}` with
//! named fields, are still decoded. See `wire.rs` for the layout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use aether_core::name::encode_token;
use aether_core::{BusError, Event, EventBus, EventFilter, Namespace, NamespacePattern};
use async_nats::Subject;
use foldhash::fast::RandomState;
use futures::StreamExt;
use metrics::Counter;
use tokio::task::AbortHandle;

use crate::hub::{
    BusStats, DEFAULT_CAPACITY, Detach, Hub, Pump, Slot, Subscription, lock, published_counter,
    read, write,
};
use crate::wire::{self, HEADER_LEN, MAGIC, WireFormat};

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "aether";

/// The token between the prefix and the namespace segments.
const BUS_TOKEN: &str = "_bus";
/// Written in place of an event type that is empty or too long.
const NO_TYPE_TOKEN: &str = "_";
/// Longest encoded event type carried in a subject.
const MAX_TYPE_TOKEN: usize = 128;

/// Most messages one run of the pump queues before waking subscribers (it
/// then wakes them and lets them pump again, so one poll stays short).
const MAX_BATCH: usize = 256;

/// How often the background task runs the pump of a NATS subscription.
const PUMP_INTERVAL: Duration = Duration::from_millis(5);

/// Namespaces whose subjects are kept, and event types per namespace.
const SUBJECT_CACHE_NAMESPACES: usize = 4096;
const SUBJECT_CACHE_TYPES: usize = 64;

/// A subject prefix that NATS subjects cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid bus subject prefix {prefix:?}: {reason}")]
pub struct InvalidPrefix {
    /// The prefix given.
    pub prefix: String,
    /// Why it was refused.
    pub reason: &'static str,
}

/// The subject-prefix rule of `aether-core`, in the bus's own error.
fn validate_prefix(prefix: &str) -> Result<(), InvalidPrefix> {
    match aether_core::name::subject_prefix_problem(prefix) {
        Some(reason) => Err(InvalidPrefix {
            prefix: prefix.chars().take(80).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Configures a [`NatsEventBus`].
#[derive(Debug, Clone)]
pub struct NatsEventBusBuilder {
    client: async_nats::Client,
    prefix: String,
    capacity: usize,
    subscribe_timeout: Duration,
    wire_format: WireFormat,
}

impl NatsEventBusBuilder {
    /// The first subject tokens (default `aether`): `A-Z a-z 0-9 - _` in one
    /// or more `.`-separated tokens, at most 64 bytes. Buses only see each
    /// other when they use the same prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The queue capacity of each local subscriber, in events (at least 1;
    /// default 1024); see [`crate::LocalEventBus`] for the overflow policy.
    #[must_use]
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// How long [`subscribe`](EventBus::subscribe) waits for the server to
    /// confirm a new NATS subscription (default 5 s). While disconnected it
    /// returns after this time anyway: the subscription is registered and
    /// becomes active when the client reconnects.
    #[must_use]
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// The body format this node publishes in (default [`WireFormat::V2`]);
    /// both formats are always received. Set [`WireFormat::V1`] while nodes
    /// of an earlier release, which read only `V1`, still subscribe.
    #[must_use]
    pub fn wire_format(mut self, format: WireFormat) -> Self {
        self.wire_format = format;
        self
    }

    /// Builds the bus. Nothing is sent until the first publish or subscribe.
    ///
    /// # Errors
    /// [`InvalidPrefix`] if the prefix cannot be a subject prefix.
    pub fn build(self) -> Result<NatsEventBus, InvalidPrefix> {
        validate_prefix(&self.prefix)?;
        Ok(self.assemble())
    }

    fn assemble(self) -> NatsEventBus {
        NatsEventBus {
            inner: Arc::new(NatsInner {
                core: Arc::new(Core {
                    hub: Hub::new(self.capacity),
                    node_id: uuid::Uuid::new_v4(),
                    subject_root: format!("{}.{BUS_TOKEN}", self.prefix),
                    prefix: self.prefix,
                    decode_errors: metrics::counter!("aether_bus_decode_errors_total"),
                    subjects: RwLock::new(HashMap::default()),
                    encoder: Mutex::new(wire::Encoder::new(self.wire_format)),
                }),
                client: self.client,
                groups: Mutex::new(HashMap::new()),
                create: tokio::sync::Mutex::new(()),
                subscribe_timeout: self.subscribe_timeout,
            }),
        }
    }
}

/// An [`EventBus`] that broadcasts events between processes over core NATS
/// (feature `nats`).
///
/// Every instance is a *node* with its own random id. Local subscribers get
/// the node's own publishes directly (as with [`crate::LocalEventBus`]) and
/// every other node's publishes through NATS; the node drops the echo of its
/// own publishes, so a subscriber never sees a publish twice. Delivery is
/// **at most once**: events published while a node is disconnected, or
/// before it subscribed, are lost for it (the client buffers its own
/// publishes while reconnecting); a subscriber that must not miss events
/// reads the store's namespace feed instead (see the crate docs).
///
/// * **Subscriptions.** Local subscribers with the same namespace pattern share
///   one NATS subscription, created by the first and removed when the last is
///   dropped. [`subscribe`](EventBus::subscribe) returns once the server
///   confirmed it, so remote events published after it returns are received
///   (while disconnected it returns after the subscribe timeout, 5 s by
///   default, and the subscription becomes active on reconnect).
/// * **Reconnects** are the client's business: async-nats reconnects and
///   resubscribes, and subscription streams simply continue.
/// * **Overflow** is per subscriber, exactly as in [`crate::LocalEventBus`].
/// * **Bad messages.** Anything on a bus subject that is not a valid envelope,
///   or whose namespace disagrees with its subject, is dropped with a
///   `tracing::warn!` and counted (`aether_bus_decode_errors_total`,
///   [`BusStats::decode_errors`]); it never reaches a subscriber.
/// * **Size.** An event whose encoding exceeds the server's `max_payload` is
///   refused with [`BusError::TooLarge`] before anything is sent.
///
/// Dropping the last clone of the bus (or [`close`](Self::close)) ends the
/// subscriptions and removes the NATS subscriptions; the client stays usable.
/// A client connected with `no_echo` must not be shared by two buses that
/// should see each other.
///
/// ```no_run
/// use aether_bus::NatsEventBus;
/// use aether_core::{ActorId, Event, EventBus, EventFilter, Namespace, Version};
/// use futures::StreamExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let node_a = NatsEventBus::new(async_nats::connect("nats://127.0.0.1:4222").await?);
/// let node_b = NatsEventBus::new(async_nats::connect("nats://127.0.0.1:4222").await?);
///
/// let mut on_b = node_b.subscribe(EventFilter::within(Namespace::new("acme")?)).await?;
/// let event = Event::new(ActorId::new("order-1")?, Version::FIRST, "OrderPlaced", &42u32)?;
/// node_a.publish(&Namespace::new("acme.orders")?, event).await?;
///
/// let got = on_b.next().await.expect("open")?;
/// assert_eq!(got.namespace.as_str(), "acme.orders");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct NatsEventBus {
    inner: Arc<NatsInner>,
}

struct NatsInner {
    core: Arc<Core>,
    client: async_nats::Client,
    groups: Mutex<HashMap<NamespacePattern, Group>>,
    /// Serialises the creation of NATS subscriptions.
    create: tokio::sync::Mutex<()>,
    subscribe_timeout: Duration,
}

/// What the receiving tasks share with the bus (no handle back to the bus,
/// so dropping the bus stops them).
struct Core {
    hub: Hub,
    node_id: uuid::Uuid,
    prefix: String,
    /// `<prefix>._bus`
    subject_root: String,
    decode_errors: Counter,
    /// Subjects by namespace and event type (see the module docs).
    subjects: RwLock<HashMap<Namespace, NsSubjects, RandomState>>,
    /// Writes envelopes into a buffer consecutive publishes share.
    encoder: Mutex<wire::Encoder>,
}

/// The subjects of one namespace, by event type, and its published counter
/// (for publishes that no local subscriber receives: see [`Hub::has_groups`]).
struct NsSubjects {
    published: Counter,
    types: Vec<(Arc<str>, Subject)>,
}

type Slots = Arc<RwLock<Arc<Vec<Arc<Slot>>>>>;

/// The local subscribers of one namespace pattern, the pump that feeds them
/// from their NATS subscription, and the task that runs it while nobody polls.
struct Group {
    slots: Slots,
    pump: Arc<NatsPump>,
    task: AbortHandle,
}

impl std::fmt::Debug for NatsEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsEventBus")
            .field("node_id", &self.inner.core.node_id)
            .field("prefix", &self.inner.core.prefix)
            .field("capacity", &self.inner.core.hub.capacity())
            .field("closed", &self.inner.core.hub.is_closed())
            .finish_non_exhaustive()
    }
}

impl NatsEventBus {
    /// A bus on `client` with the default prefix `aether` and capacity 1024.
    pub fn new(client: async_nats::Client) -> Self {
        // The default prefix is valid, so no validation is needed.
        Self::builder(client).assemble()
    }

    /// Connects to the NATS server(s) at `url` (comma-separated for several)
    /// with async-nats' default options (reconnecting forever) and makes a
    /// bus with the default settings on that connection.
    ///
    /// # Errors
    /// [`BusError::Unavailable`] if no server can be reached.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| BusError::Unavailable {
                message: format!("cannot connect to NATS at {url}"),
                source: Some(Box::new(e)),
            })?;
        Ok(Self::new(client))
    }

    /// A builder for the prefix, capacity and subscribe timeout.
    pub fn builder(client: async_nats::Client) -> NatsEventBusBuilder {
        NatsEventBusBuilder {
            client,
            prefix: DEFAULT_PREFIX.to_owned(),
            capacity: DEFAULT_CAPACITY,
            subscribe_timeout: Duration::from_secs(5),
            wire_format: WireFormat::default(),
        }
    }

    /// This node's id, carried in every message it publishes.
    pub fn node_id(&self) -> uuid::Uuid {
        self.inner.core.node_id
    }

    /// The subject prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.core.prefix
    }

    /// The NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }

    /// The subject an event of type `event_type` in `namespace` is published on.
    pub fn subject_for(&self, namespace: &Namespace, event_type: &str) -> String {
        self.inner.core.event_subject(namespace, event_type)
    }

    /// The NATS subject a subscription with `pattern` listens on.
    pub fn subject_pattern(&self, pattern: &NamespacePattern) -> Option<String> {
        self.inner.core.pattern_subject(pattern)
    }

    /// Writes every publish buffered by the client to the server and waits
    /// until the socket has taken it (`async_nats::Client::flush`). It does
    /// not wait for other nodes to receive anything: it bounds what a crash
    /// of this process can lose, not what a slow or disconnected subscriber
    /// misses.
    ///
    /// # Errors
    /// [`BusError::Unavailable`] if the client cannot flush (disconnected, or
    /// closed).
    pub async fn flush(&self) -> Result<(), BusError> {
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| BusError::Unavailable {
                message: "cannot flush the NATS connection".to_owned(),
                source: Some(Box::new(e)),
            })
    }

    /// Counters of this node since it was created.
    pub fn stats(&self) -> BusStats {
        self.inner.core.hub.stats()
    }

    /// Like [`EventBus::subscribe`], with a queue capacity for this
    /// subscription only (at least 1).
    ///
    /// # Errors
    /// As [`EventBus::subscribe`].
    pub async fn subscribe_with_capacity(
        &self,
        filter: EventFilter,
        capacity: usize,
    ) -> Result<Subscription, BusError> {
        self.subscribe_inner(filter, Some(capacity)).await
    }

    /// Closes this node for every clone: subscriptions end after their
    /// queued events, NATS subscriptions are removed, later publishes and
    /// subscribes return [`BusError::Closed`]. The client is not closed.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.core.hub.is_closed()
    }

    async fn subscribe_inner(
        &self,
        filter: EventFilter,
        capacity: Option<usize>,
    ) -> Result<Subscription, BusError> {
        let inner = &self.inner;
        let hub = &inner.core.hub;
        if hub.is_closed() {
            return Err(BusError::Closed);
        }
        // The receiving task needs a tokio runtime; refuse politely instead
        // of panicking when polled by another executor.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(BusError::Unavailable {
                message: "NatsEventBus::subscribe must run inside a tokio runtime".to_owned(),
                source: None,
            });
        };
        let pattern = filter.namespaces.clone();
        let Some(subject) = inner.core.pattern_subject(&pattern) else {
            return Err(BusError::Unavailable {
                message: "unsupported namespace pattern".to_owned(),
                source: None,
            });
        };
        let slot = hub.new_slot(filter, capacity);
        let owner = Arc::downgrade(&self.inner) as Weak<dyn Detach>;

        // A group in the map is live: it is inserted only once its NATS
        // subscription was confirmed.
        if let Some(pump) = inner.join_group(&pattern, &slot)? {
            return Ok(Subscription::with_pump(slot, owner, pump));
        }
        let _creating = inner.create.lock().await;
        if let Some(pump) = inner.join_group(&pattern, &slot)? {
            return Ok(Subscription::with_pump(slot, owner, pump));
        }
        let subscriber =
            inner
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|e| BusError::Unavailable {
                    message: format!("cannot subscribe to {subject}"),
                    source: Some(Box::new(e)),
                })?;
        match tokio::time::timeout(inner.subscribe_timeout, confirm(&inner.client)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%subject, %error, "could not confirm the bus subscription; it becomes active when the client reconnects");
            }
            Err(_) => {
                tracing::warn!(%subject, "the server did not confirm the bus subscription in time; it becomes active when the client reconnects");
            }
        }
        let slots: Slots = Arc::new(RwLock::new(Arc::new(vec![Arc::clone(&slot)])));
        let pump = NatsPump::new(Arc::clone(&inner.core), Arc::clone(&slots), subscriber);
        let task = runtime.spawn(keep_pumping(Arc::downgrade(&pump), subject));
        {
            let mut groups = lock(&inner.groups);
            if let Err(error) = hub.insert(&slot) {
                task.abort();
                return Err(error);
            }
            groups.insert(
                pattern,
                Group {
                    slots,
                    pump: Arc::clone(&pump),
                    task: task.abort_handle(),
                },
            );
        }
        Ok(Subscription::with_pump(slot, owner, pump))
    }
}

impl NatsInner {
    /// Adds `slot` to the live group of `pattern`, if there is one.
    fn join_group(
        &self,
        pattern: &NamespacePattern,
        slot: &Arc<Slot>,
    ) -> Result<Option<Arc<NatsPump>>, BusError> {
        let mut groups = lock(&self.groups);
        let Some(group) = groups.get(pattern) else {
            return Ok(None);
        };
        if group.task.is_finished() || group.pump.ended.load(Ordering::Acquire) {
            // Its NATS subscription ended (the client was closed): start over.
            if let Some(g) = groups.remove(pattern) {
                g.task.abort();
            }
            return Ok(None);
        }
        self.core.hub.insert(slot)?;
        let mut slots = write(&group.slots);
        Arc::make_mut(&mut slots).push(Arc::clone(slot));
        Ok(Some(Arc::clone(&group.pump)))
    }

    fn close(&self) {
        // Closing the hub closes every group's slots: each was inserted in the
        // hub (under the `groups` lock) before it joined its group.
        self.core.hub.close();
        let groups = std::mem::take(&mut *lock(&self.groups));
        for group in groups.into_values() {
            group.task.abort();
        }
    }
}

impl Detach for NatsInner {
    fn detach(&self, slot: &Arc<Slot>) {
        self.core.hub.remove(slot);
        let mut groups = lock(&self.groups);
        let pattern = &slot.filter().namespaces;
        let empty = match groups.get(pattern) {
            Some(group) => {
                let mut slots = write(&group.slots);
                Arc::make_mut(&mut slots).retain(|s| !Arc::ptr_eq(s, slot));
                slots.is_empty()
            }
            None => false,
        };
        if empty && let Some(group) = groups.remove(pattern) {
            // The pump (and its NATS subscriber, which unsubscribes when
            // dropped) goes with the last subscription holding it.
            group.task.abort();
        }
    }
}

impl Drop for NatsInner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Core {
    fn push_namespace(&self, out: &mut String, namespace: &Namespace) {
        out.push('.');
        out.push_str(&subject_form(namespace.as_str()));
    }

    fn event_subject(&self, namespace: &Namespace, event_type: &str) -> String {
        let mut subject = String::with_capacity(
            self.subject_root.len() + namespace.as_str().len() + event_type.len() + 8,
        );
        subject.push_str(&self.subject_root);
        self.push_namespace(&mut subject, namespace);
        subject.push('.');
        let start = subject.len();
        subject.push_str(&encode_token(event_type));
        if subject.len() == start || subject.len() - start > MAX_TYPE_TOKEN {
            subject.truncate(start);
            subject.push_str(NO_TYPE_TOKEN);
        }
        subject
    }

    /// [`event_subject`](Self::event_subject), built once per namespace and
    /// type and kept, with the namespace's published counter (`None` past the
    /// cache's bounds).
    fn cached_subject(
        &self,
        namespace: &Namespace,
        event_type: &Arc<str>,
    ) -> (Subject, Option<Counter>) {
        let find = |ns: &NsSubjects| {
            ns.types
                .iter()
                .find(|(t, _)| Arc::ptr_eq(t, event_type) || **t == **event_type)
                .map(|(_, s)| (s.clone(), Some(ns.published.clone())))
        };
        if let Some(found) = read(&self.subjects).get(namespace.as_str()).and_then(find) {
            return found;
        }
        let subject = Subject::from(self.event_subject(namespace, event_type));
        let mut subjects = write(&self.subjects);
        if subjects.len() < SUBJECT_CACHE_NAMESPACES || subjects.contains_key(namespace.as_str()) {
            let ns = subjects
                .entry(namespace.clone())
                .or_insert_with(|| NsSubjects {
                    published: published_counter(namespace),
                    types: Vec::new(),
                });
            if let Some(found) = find(ns) {
                return found;
            }
            if ns.types.len() < SUBJECT_CACHE_TYPES {
                ns.types.push((Arc::clone(event_type), subject.clone()));
                return (subject, Some(ns.published.clone()));
            }
        }
        (subject, None)
    }

    fn pattern_subject(&self, pattern: &NamespacePattern) -> Option<String> {
        let (namespace, tail) = match pattern {
            NamespacePattern::Exact(ns) => (ns, ".*"),
            NamespacePattern::Within(ns) => (ns, ".>"),
            _ => return None,
        };
        let mut subject = self.subject_root.clone();
        self.push_namespace(&mut subject, namespace);
        subject.push_str(tail);
        Some(subject)
    }

    /// The encoded namespace part of a bus subject, if it is one.
    fn namespace_part<'s>(&self, subject: &'s str) -> Option<&'s str> {
        let rest = subject
            .strip_prefix(self.subject_root.as_str())?
            .strip_prefix('.')?;
        rest.rsplit_once('.').map(|(ns, _type)| ns)
    }

    /// Whether [`namespace_part`](Self::namespace_part) of `subject` is
    /// `form`, without searching the whole subject for its last `.`.
    fn namespace_part_is(&self, subject: &str, form: &str) -> bool {
        subject
            .strip_prefix(self.subject_root.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(form))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|event_type| !event_type.as_bytes().contains(&b'.'))
    }

    /// Decodes `message` and queues it for the subscribers in `slots`; the
    /// wakers of subscribers to wake are pushed to `batch.wakers`.
    fn handle(&self, slots: &[Arc<Slot>], message: &async_nats::Message, batch: &mut Batch) {
        match self.decode(&message.subject, &message.payload, batch) {
            Ok(Some((namespace, event))) => {
                self.hub
                    .deliver_to(slots, &namespace, &Arc::new(event), &mut batch.wakers);
            }
            Ok(None) => {}
            Err(reason) => {
                self.hub
                    .stats
                    .decode_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.decode_errors.increment(1);
                tracing::warn!(
                    subject = %message.subject,
                    bytes = message.payload.len(),
                    %reason,
                    "dropped a message on a bus subject that is not a valid bus event"
                );
            }
        }
    }

    /// The namespace and event of a bus message; `None` for this node's own
    /// echo. The namespace, event type and actor id of the previous valid
    /// message (in `batch`) are reused, without validating or allocating
    /// again, while messages repeat them (the namespace only on the same
    /// subject namespace part).
    fn decode(
        &self,
        subject: &str,
        payload: &bytes::Bytes,
        batch: &mut Batch,
    ) -> Result<Option<(Namespace, Event)>, String> {
        let Some(header) = payload.get(..HEADER_LEN).filter(|h| h.starts_with(MAGIC)) else {
            return Err("not a bus envelope (bad magic or too short)".to_owned());
        };
        if header[MAGIC.len()..] == *self.node_id.as_bytes() {
            self.hub
                .stats
                .echoes_suppressed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(None);
        }
        let wire = wire::decode_body_with(&payload[HEADER_LEN..], &mut batch.time)?;
        let mismatch = || {
            format!(
                "envelope namespace {:?} does not match the subject",
                String::from_utf8_lossy(&wire.namespace)
            )
        };
        // The subject's namespace part is compared on every message: the
        // cached namespace and its subject form only save their validation
        // and encoding.
        let namespace = match &batch.last {
            Some((ns, form))
                if ns.as_str().as_bytes() == &*wire.namespace
                    && self.namespace_part_is(subject, form) =>
            {
                ns.clone()
            }
            _ => {
                let part = self.namespace_part(subject).ok_or_else(mismatch)?;
                let namespace = Namespace::new(utf8(&wire.namespace)?)
                    .map_err(|e| format!("bad envelope: {e}"))?;
                let form = subject_form(namespace.as_str());
                if form != part {
                    return Err(mismatch());
                }
                batch.last = Some((namespace.clone(), form));
                namespace
            }
        };
        let actor_id = match &batch.last_actor {
            Some(actor) if actor.as_str().as_bytes() == &*wire.actor_id => actor.clone(),
            _ => {
                let actor = aether_core::ActorId::new(utf8(&wire.actor_id)?)
                    .map_err(|e| format!("bad envelope: {e}"))?;
                batch.last_actor = Some(actor.clone());
                actor
            }
        };
        let event_type = match &batch.last_type {
            Some(t) if t.as_bytes() == &*wire.event_type => Arc::clone(t),
            _ => {
                let t: Arc<str> = Arc::from(utf8(&wire.event_type)?);
                batch.last_type = Some(Arc::clone(&t));
                t
            }
        };
        let event = Event {
            id: wire.id,
            event_type,
            actor_id,
            version: wire.version,
            schema_version: wire.schema_version,
            timestamp: wire.timestamp,
            metadata: wire.metadata,
            data: payload.slice_ref(wire.data),
        };
        Ok(Some((namespace, event)))
    }
}

/// A string of an envelope, checked to be UTF-8 (only when no string held
/// already equals it: see [`Core::decode`]).
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "bad envelope: a string is not UTF-8".to_owned())
}

/// The subject form of a namespace: its `.`-separated segments, each through
/// [`encode_token`] (the one token encoding of `aether-core`), joined with
/// `.`. (`encode_token` never produces `.`, so the dots of the namespace are
/// the dots of its subject form.)
fn subject_form(namespace: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + 8);
    for (i, segment) in namespace.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(&encode_token(segment));
    }
    out
}

/// State of the pump across one batch of messages.
#[derive(Default)]
struct Batch {
    /// The namespace of the last valid message and its subject form, its
    /// actor id and its event type (see [`Core::decode`]).
    last: Option<(Namespace, String)>,
    last_actor: Option<aether_core::ActorId>,
    last_type: Option<Arc<str>>,
    /// The date of the last timestamp decoded.
    time: wire::LastTime,
    /// Subscribers to wake once the batch is queued.
    wakers: Vec<Waker>,
}

/// Returns once the server has processed every operation this client sent
/// before (in particular a new subscription): the server handles one
/// connection's operations in order, so when a message published to a fresh
/// inbox comes back, the subscriptions sent before it are in place.
/// (`Client::flush` only empties the socket buffer.)
async fn confirm(client: &async_nats::Client) -> Result<(), async_nats::Error> {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, Default::default()).await?;
    match probe.next().await {
        Some(_) => Ok(()),
        None => Err("the client closed".into()),
    }
}

/// The shared pump of one NATS subscription (see the module docs).
struct NatsPump {
    core: Arc<Core>,
    slots: Slots,
    state: Mutex<PumpState>,
    /// Wakes the waiting subscribers of the group: the NATS subscription is
    /// polled with it, whichever thread pumps.
    waker: Waker,
    /// The NATS subscription ended (the client was closed).
    ended: AtomicBool,
}

struct PumpState {
    subscriber: async_nats::Subscriber,
    batch: Batch,
}

/// Wakes every waiting subscriber of a group.
struct WakeGroup {
    slots: Slots,
}

impl Wake for WakeGroup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let group = Arc::clone(&read(&self.slots));
        for slot in group.iter() {
            slot.wake_waiting();
        }
    }
}

impl NatsPump {
    fn new(core: Arc<Core>, slots: Slots, subscriber: async_nats::Subscriber) -> Arc<Self> {
        let waker = Waker::from(Arc::new(WakeGroup {
            slots: Arc::clone(&slots),
        }));
        Arc::new(NatsPump {
            core,
            slots,
            state: Mutex::new(PumpState {
                subscriber,
                batch: Batch::default(),
            }),
            waker,
            ended: AtomicBool::new(false),
        })
    }
}

impl Pump for NatsPump {
    fn pump(&self) {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            // Another thread is pumping: it delivers, and its poll of the
            // subscription leaves the group's waker registered.
            Err(TryLockError::WouldBlock) => return,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
        };
        if self.ended.load(Ordering::Relaxed) {
            return;
        }
        let PumpState { subscriber, batch } = &mut *state;
        let mut cx = Context::from_waker(&self.waker);
        let group = Arc::clone(&read(&self.slots));
        for taken in 1..=MAX_BATCH {
            match subscriber.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(message)) => {
                    self.core.handle(&group, &message, batch);
                    if taken == MAX_BATCH {
                        // More may be waiting: let the subscribers pump again.
                        self.waker.wake_by_ref();
                    }
                }
                Poll::Ready(None) => {
                    self.ended.store(true, Ordering::Release);
                    tracing::debug!("bus subscription ended (client closed)");
                    break;
                }
                Poll::Pending => break,
            }
        }
        let wakers = std::mem::take(&mut batch.wakers);
        drop(group);
        drop(state);
        // Woken after the pump is free, so a woken subscriber can pump at once.
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Runs the pump of a NATS subscription every [`PUMP_INTERVAL`] while it
/// exists, so messages reach the bounded subscriber queues (and overflow is
/// counted) even while no subscriber polls.
async fn keep_pumping(pump: Weak<NatsPump>, subject: String) {
    let mut tick = tokio::time::interval(PUMP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let Some(pump) = pump.upgrade() else { break };
        pump.pump();
        if pump.ended.load(Ordering::Acquire) {
            break;
        }
    }
    tracing::debug!(%subject, "bus pump stopped");
}

fn map_publish_error(error: async_nats::PublishError, size: usize, max: usize) -> BusError {
    match error.kind() {
        async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
            BusError::TooLarge { size, max }
        }
        _ => BusError::Unavailable {
            message: "cannot publish to NATS".to_owned(),
            source: Some(Box::new(error)),
        },
    }
}

impl EventBus for NatsEventBus {
    type Subscription = Subscription;

    /// Sends `event` to the other nodes, then delivers it to this node's
    /// subscribers. At most once: returns once the client *accepted* the
    /// message into its write buffer — not when the server or other nodes
    /// received it, and without flushing. What a caller can rely on: local
    /// subscribers have it when this returns; other nodes receive publishes
    /// of this node in publish order, each at most once; after
    /// [`NatsEventBus::flush`] returns, everything published before it has
    /// been written to the server. A publish still buffered when the process
    /// dies or the connection is lost for good is lost. Nothing is delivered
    /// anywhere when an error is returned.
    async fn publish(&self, namespace: &Namespace, event: Event) -> Result<(), BusError> {
        let core = &self.inner.core;
        if core.hub.is_closed() {
            return Err(BusError::Closed);
        }
        let payload = lock(&core.encoder).encode(&core.node_id, namespace, &event)?;
        let max = self.inner.client.max_payload();
        if max > 0 && payload.len() > max {
            return Err(BusError::TooLarge {
                size: payload.len(),
                max,
            });
        }
        let size = payload.len();
        let (subject, published) = core.cached_subject(namespace, &event.event_type);
        self.inner
            .client
            .publish(subject, payload)
            .await
            .map_err(|e| map_publish_error(e, size, max))?;
        match published {
            // No local subscriber: count it, without the index or an `Arc`.
            Some(counter) if !core.hub.has_groups() => core.hub.count_unreceived(&counter),
            _ => {
                core.hub.publish_local(namespace, Arc::new(event));
            }
        }
        Ok(())
    }

    async fn subscribe(&self, filter: EventFilter) -> Result<Subscription, BusError> {
        self.subscribe_inner(filter, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core() -> Core {
        Core {
            hub: Hub::new(8),
            node_id: uuid::Uuid::new_v4(),
            prefix: "t".to_owned(),
            subject_root: "t._bus".to_owned(),
            decode_errors: metrics::counter!("aether_bus_decode_errors_total"),
            subjects: RwLock::new(HashMap::default()),
            encoder: Mutex::default(),
        }
    }

    #[test]
    fn strings_that_are_not_utf8_are_refused_whatever_is_cached() {
        let core = core();
        let ns = Namespace::new("acme.orders").unwrap();
        let event = Event::from_raw(
            aether_core::ActorId::new("order-1").unwrap(),
            aether_core::Version::FIRST,
            "Placed",
            vec![0x90],
        );
        let good = wire::Encoder::default()
            .encode(&uuid::Uuid::new_v4(), &ns, &event)
            .unwrap();
        let subject = core.event_subject(&ns, "Placed");
        let mut batch = Batch::default();
        let (got_ns, got) = core.decode(&subject, &good, &mut batch).unwrap().unwrap();
        assert_eq!((got_ns, &*got.event_type), (ns.clone(), "Placed"));

        // The same envelope with one string's first bytes made invalid
        // UTF-8, decoded with the cache of the good one and with none.
        for text in [&b"acme.orders"[..], b"order-1", b"Placed"] {
            let at = good.windows(text.len()).position(|w| w == text).unwrap();
            let mut bad = good.to_vec();
            bad[at] = 0xff;
            bad[at + 1] = 0xfe;
            let bad = bytes::Bytes::from(bad);
            for batch in [&mut batch, &mut Batch::default()] {
                let err = core.decode(&subject, &bad, batch).err().unwrap();
                assert!(err.contains("UTF-8") || err.contains("match"), "{err}");
            }
        }
        // Still decodes the good one afterwards.
        assert!(core.decode(&subject, &good, &mut batch).unwrap().is_some());
    }

    #[test]
    fn the_quick_namespace_part_check_agrees_with_the_full_one() {
        let core = core();
        let forms = [
            "acme",
            "acme.orders",
            "acme.orders.eu",
            "acme-corp",
            "acme_5Fx",
            "",
        ];
        let subjects = [
            "t._bus.acme.orders.T",
            "t._bus.acme.orders.eu.T",
            "t._bus.acme.T",
            "t._bus.acme.orders",
            "t._bus.acme-corp.T",
            "t._bus.acme_5Fx.T",
            "t._bus.acme.ordersX.T",
            "t._bus..T",
            "t._bus.acme.",
            "t._busacme.orders.T",
            "u._bus.acme.orders.T",
            "t._bus",
            "",
        ];
        for subject in subjects {
            for form in forms {
                assert_eq!(
                    core.namespace_part_is(subject, form),
                    core.namespace_part(subject) == Some(form),
                    "{subject} {form}"
                );
            }
        }
    }

    #[test]
    fn subject_form_is_encode_token_per_segment_and_injective() {
        let names = [
            "acme",
            "acme.orders",
            "acme-corp",
            "acme_x",
            "a.b",
            "a_b",
            "a-b",
            "A1.b2.C3",
        ];
        for ns in names {
            let by_hand: Vec<String> = ns.split('.').map(encode_token).collect();
            assert_eq!(subject_form(ns), by_hand.join("."));
            for other in names {
                assert_eq!(subject_form(ns) == subject_form(other), ns == other);
            }
        }
    }
}
