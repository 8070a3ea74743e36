//! [`ActorSystem`], its builder, and [`ActorRef`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use aether_core::{
    ActorId, Aggregate, Command, CommandId, DynEventBus, DynStore, EventBus, EventStore, NameError,
    SnapshotStore,
};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::ask::{AskError, AskOutcome};
use crate::directory::{Placement, ShardDirectory, SingleNodeDirectory};
use crate::hash::shard_of;
use crate::host::{HostControl, KindHost};
use crate::ids::ShardId;
#[cfg(feature = "nats")]
use crate::node::{ClusterNode, Nats};
use crate::persistence_id;
#[cfg(feature = "nats")]
use crate::remote::{self, RemoteKind};
use crate::router::{self, Target};
use crate::shared::{Settings, Shared};
use crate::trace::TraceContext;

/// Why an [`ActorSystem`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// An aggregate's `KIND` cannot be part of a persistence id: it is
    /// empty, or contains `:` or a control character.
    #[error("invalid actor kind {kind:?}: {reason}")]
    InvalidKind {
        /// The kind.
        kind: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two registered aggregate types share one `KIND`: they would share
    /// histories.
    #[error("actor kind {0:?} is registered twice")]
    DuplicateKind(&'static str),
    /// The node's request subject could not be subscribed to.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[error("cannot serve remote asks: {0}")]
    Nats(String),
    /// A registered kind is not among the kinds the cluster node announced:
    /// other nodes would never route its commands here.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[error("actor kind {kind:?} is registered but the node announces only {announced:?}")]
    KindNotAnnounced {
        /// The registered kind.
        kind: &'static str,
        /// What the node announced.
        announced: Vec<String>,
    },
}

struct Registered {
    type_id: TypeId,
    host: Arc<dyn Any + Send + Sync>,
    control: Arc<dyn HostControl>,
    #[cfg(feature = "nats")]
    remote: Arc<dyn RemoteKind>,
}

type HostFactory = Box<dyn FnOnce(&Arc<Shared>) -> Registered + Send>;

/// The kinds a node serves to other nodes, by name.
#[cfg(feature = "nats")]
type RemoteKinds = HashMap<String, Arc<dyn RemoteKind>>;

/// Builds an [`ActorSystem`]: the store, optionally a bus, the aggregate
/// kinds it hosts, the settings, and where it runs — embedded
/// ([`Embedded`], finished with [`build`](ActorSystemBuilder::build)) or as
/// a node of a cluster on NATS ([`Clustered`], after
/// [`cluster`](ActorSystemBuilder::cluster), finished with
/// [`start`](ActorSystemBuilder::start)). Which one is a type, so a
/// clustered system cannot be built without subscribing to its subject.
pub struct ActorSystemBuilder<M = Embedded> {
    store: Arc<dyn DynStore>,
    bus: Option<Arc<dyn DynEventBus>>,
    settings: Settings,
    kinds: Vec<(&'static str, HostFactory)>,
    mode: M,
}

/// An embedded system: every shard is placed by a [`ShardDirectory`] of
/// this process (by default [`SingleNodeDirectory`]: all local), with no
/// NATS. Finished with [`ActorSystemBuilder::build`].
pub struct Embedded {
    directory: Option<Arc<dyn ShardDirectory>>,
}

/// A system that is a node of a cluster on NATS (feature `nats`): made by
/// [`ActorSystemBuilder::cluster`], finished with
/// [`ActorSystemBuilder::start`].
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub struct Clustered {
    node: Arc<dyn ClusterNode>,
}

/// Without the `nats` feature there is no clustered mode.
#[cfg(not(feature = "nats"))]
#[derive(Debug)]
pub enum Clustered {}

impl<M> fmt::Debug for ActorSystemBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorSystemBuilder")
            .field("namespace", self.store.namespace())
            .field("bus", &self.bus.is_some())
            .field("settings", &self.settings)
            .field(
                "kinds",
                &self.kinds.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<M> ActorSystemBuilder<M> {
    /// Publishes every appended event on `bus` (in the store's namespace),
    /// after the append and in order. A bus failure never fails a command.
    #[must_use]
    pub fn bus<B: EventBus + 'static>(mut self, bus: Arc<B>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Hosts aggregate kind `A`. Its `KIND` must be non-empty and free of `:`
    /// and control characters (checked when the system is built).
    #[must_use]
    pub fn register<A>(mut self) -> Self
    where
        A: Aggregate + Clone,
        A::Command: Clone,
    {
        self.kinds.push((
            A::KIND,
            Box::new(|shared: &Arc<Shared>| {
                let host = Arc::new(KindHost::<A>::new(shared.clone()));
                Registered {
                    type_id: TypeId::of::<A>(),
                    host: host.clone(),
                    control: host.clone(),
                    #[cfg(feature = "nats")]
                    remote: host.clone(),
                }
            }),
        ));
        self
    }

    /// Capacity of each actor's mailbox (default 64).
    #[must_use]
    pub fn mailbox_capacity(mut self, n: usize) -> Self {
        self.settings.mailbox_capacity = n.max(1);
        self
    }

    /// How long an actor stays active without a command (default 120 s).
    #[must_use]
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.settings.idle_timeout = d;
        self
    }

    /// How many actors of each kind may be active at once (default 100 000);
    /// activating one more passivates the least recently used.
    #[must_use]
    pub fn max_active_actors(mut self, n: usize) -> Self {
        self.settings.max_active_actors = n.max(1);
        self
    }

    /// Writes a snapshot whenever an append crosses a multiple of `n` events
    /// (default 100; 0 turns snapshots off). A snapshot failure never fails
    /// a command.
    #[must_use]
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.settings.snapshot_every = (n > 0).then_some(n);
        self
    }

    /// The deadline of an ask that gives none (default 5 s).
    #[must_use]
    pub fn ask_deadline(mut self, d: Duration) -> Self {
        self.settings.ask_deadline = d;
        self
    }

    /// How many recent command ids each actor remembers (default 128): a
    /// repeated command is recognised while it is among them.
    #[must_use]
    pub fn recent_commands(mut self, n: usize) -> Self {
        self.settings.recent_commands = n;
        self
    }

    /// How many other nodes' requests this node serves at once (default
    /// 1024): each is one task, holding its command until the actor answers
    /// or the request's deadline passes. Beyond it a request is answered
    /// `Busy` at once (the caller sees [`AskError::Busy`]: never queued,
    /// never run), counted in `aether_actor_remote_busy_total`.
    #[must_use]
    pub fn max_remote_requests(mut self, n: usize) -> Self {
        self.settings.max_remote_requests = n.max(1);
        self
    }

    /// How many commands (all kinds together) may wait on this node for a
    /// shard that is moving or unassigned to be placed again (default
    /// 1024). Beyond it an ask gets [`AskError::Busy`] at once (never sent,
    /// never run; a retry that may already have reached an owner gets
    /// [`AskError::Timeout`] instead), counted in `aether_actor_busy_total`
    /// with `reason = "moving"`.
    #[must_use]
    pub fn moving_buffer(mut self, n: usize) -> Self {
        self.settings.moving_buffer = n;
        self
    }

    /// How often a command is decided again after a version conflict before
    /// the conflict is returned and the actor passivates (default 3).
    #[must_use]
    pub fn max_conflict_retries(mut self, n: u32) -> Self {
        self.settings.max_conflict_retries = n;
        self
    }

    fn assemble(
        self,
        directory: Arc<dyn ShardDirectory>,
        #[cfg(feature = "nats")] nats: Option<Nats>,
    ) -> Result<Assembled, SystemError> {
        let mut seen: Vec<&'static str> = Vec::new();
        for (kind, _) in &self.kinds {
            validate_kind(kind)?;
            if seen.contains(kind) {
                return Err(SystemError::DuplicateKind(kind));
            }
            seen.push(kind);
        }
        let shared = Arc::new(Shared::new(
            self.store,
            self.bus,
            directory,
            self.settings,
            #[cfg(feature = "nats")]
            nats,
        ));
        let mut hosts = HashMap::new();
        let mut controls = Vec::new();
        #[cfg(feature = "nats")]
        let mut remote = HashMap::new();
        for (kind, factory) in self.kinds {
            let r = factory(&shared);
            hosts.insert(r.type_id, r.host);
            controls.push(r.control);
            #[cfg(feature = "nats")]
            remote.insert(kind.to_owned(), r.remote);
            #[cfg(not(feature = "nats"))]
            let _ = kind;
        }
        let watcher = tokio::runtime::Handle::try_current()
            .ok()
            .map(|rt| rt.spawn(follow_placements(shared.clone(), controls.clone())));
        let system = ActorSystem {
            inner: Arc::new(Inner {
                shared,
                hosts,
                controls,
                server: std::sync::Mutex::new(watcher.into_iter().collect()),
            }),
        };
        Ok(Assembled {
            system,
            #[cfg(feature = "nats")]
            remote,
        })
    }
}

struct Assembled {
    system: ActorSystem,
    #[cfg(feature = "nats")]
    remote: RemoteKinds,
}

impl ActorSystemBuilder<Embedded> {
    /// Where shards live (default: [`SingleNodeDirectory`], every shard
    /// local). A shard the directory places on another node is
    /// unreachable from an embedded system (asks get
    /// [`AskError::Unavailable`]); to reach other nodes, use
    /// [`cluster`](Self::cluster).
    #[must_use]
    pub fn directory<D: ShardDirectory>(mut self, directory: Arc<D>) -> Self {
        self.mode.directory = Some(directory);
        self
    }

    /// Makes the system a node of a cluster on NATS: shards are placed by
    /// the node's directory, commands for shards owned by other nodes cross
    /// NATS request/reply to them, this node's shards are served to the
    /// others on the subject the node announced, and before the node hands
    /// a shard over it releases the shard's actors
    /// ([`ActorSystem::release_shard`]) — all installed by
    /// [`start`](ActorSystemBuilder::start), before the system is returned.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[must_use]
    pub fn cluster<N: ClusterNode + Clone>(self, node: &N) -> ActorSystemBuilder<Clustered> {
        ActorSystemBuilder {
            store: self.store,
            bus: self.bus,
            settings: self.settings,
            kinds: self.kinds,
            mode: Clustered {
                node: Arc::new(node.clone()),
            },
        }
    }

    /// Builds the system. Actors are activated lazily, on their first
    /// command; inside a tokio runtime one task follows the directory.
    ///
    /// # Errors
    /// [`SystemError::InvalidKind`], [`SystemError::DuplicateKind`].
    pub fn build(self) -> Result<ActorSystem, SystemError> {
        let directory = self
            .mode
            .directory
            .clone()
            .unwrap_or_else(|| Arc::new(SingleNodeDirectory::default()));
        self.assemble(
            directory,
            #[cfg(feature = "nats")]
            None,
        )
        .map(|a| a.system)
    }
}

#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
impl ActorSystemBuilder<Clustered> {
    /// Builds the system and joins it to the node: subscribes to the node's
    /// request subject (and waits until the server has the subscription),
    /// starts serving other nodes' commands, and installs the release of a
    /// shard's actors into the node's handoff — so no handoff is
    /// acknowledged with actors still active. Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`SystemError::InvalidKind`], [`SystemError::DuplicateKind`];
    /// [`SystemError::KindNotAnnounced`] if the node announces kinds and a
    /// registered one is not among them; [`SystemError::Nats`] if the
    /// subscription fails.
    pub async fn start(self) -> Result<ActorSystem, SystemError> {
        let node = self.mode.node.clone();
        let announced = node.kinds();
        if !announced.is_empty()
            && let Some((kind, _)) = self
                .kinds
                .iter()
                .find(|(k, _)| !announced.iter().any(|a| a == k))
        {
            return Err(SystemError::KindNotAnnounced { kind, announced });
        }
        let directory = node.directory();
        let Some(nats) = Nats::new(node.clone()) else {
            // An embedded node: every shard is local, nothing to serve.
            return self.assemble(directory, None).map(|a| a.system);
        };
        let subject = nats.subject(directory.local_node());
        let client = nats.client.clone();
        let Assembled { system, remote } = self.assemble(directory, Some(nats))?;
        let subscriber = client
            .subscribe(subject)
            .await
            .map_err(|e| SystemError::Nats(e.to_string()))?;
        // Make sure the server has the subscription before anyone is told
        // this node is ready.
        client
            .flush()
            .await
            .map_err(|e| SystemError::Nats(e.to_string()))?;
        let task = tokio::spawn(remote::serve(
            client,
            subscriber,
            Arc::new(remote),
            system.inner.shared.serving.clone(),
        ));
        if let Ok(mut tasks) = system.inner.server.lock() {
            tasks.push(task);
        }
        // The node asks the system to release a shard's actors before it
        // acknowledges the shard's handoff. A weak handle: the node keeps no
        // dropped system alive.
        let weak = Arc::downgrade(&system.inner);
        node.on_release(Arc::new(move |shard| {
            let weak = weak.clone();
            Box::pin(async move {
                if let Some(inner) = weak.upgrade() {
                    ActorSystem { inner }.release_shard(shard).await;
                }
            })
        }));
        Ok(system)
    }
}

fn validate_kind(kind: &'static str) -> Result<(), SystemError> {
    let reason = if kind.is_empty() {
        "must not be empty"
    } else if kind.contains(':') {
        "must not contain ':' (it separates the kind from the id in the store)"
    } else if kind.chars().any(char::is_control) {
        "must not contain control characters"
    } else if kind.len() >= ActorId::MAX_LEN {
        "is too long to leave room for an actor id"
    } else {
        return Ok(());
    };
    Err(SystemError::InvalidKind { kind, reason })
}

struct Inner {
    shared: Arc<Shared>,
    hosts: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    controls: Vec<Arc<dyn HostControl>>,
    /// The system's own tasks: the placement follower and, with NATS, the
    /// server of other nodes' commands.
    server: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Inner {
    fn stop_tasks(&self) {
        if let Ok(mut tasks) = self.server.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

/// Passivates, on every change of the directory, the actors whose shard is
/// no longer local (reason `moved`): each finishes its command in flight,
/// and the commands still queued are answered "not here", so routers send
/// them to the new owner.
///
/// Each pass subscribes to the next change *before* it reads placements, so
/// a change made before this task first runs, or while a pass scans, is seen
/// by that pass or wakes the next one: none is missed.
async fn follow_placements(shared: Arc<Shared>, controls: Vec<Arc<dyn HostControl>>) {
    loop {
        let changed = shared.directory.changed();
        let directory = shared.directory.as_ref();
        for c in &controls {
            let _ = c.stop_shards(&|s| directory.placement(s) != Placement::Local, "moved");
        }
        changed.await;
    }
}

/// Hosts event-sourced actors on this node: see the
/// [module docs](crate) for what a command does, passivation,
/// deadlines and the persistence identity.
///
/// Cloning is cheap; clones share the actors. Must be used inside a tokio
/// runtime (actors are tokio tasks). Keep a handle for as long as its
/// [`ActorRef`]s are used: dropping the last one stops following the
/// directory and, with NATS, stops answering other nodes (active actors end
/// at their idle timeout); [`shutdown`](Self::shutdown) stops everything at
/// once.
#[derive(Clone)]
pub struct ActorSystem {
    inner: Arc<Inner>,
}

impl fmt::Debug for ActorSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorSystem")
            .field("namespace", self.inner.shared.store.namespace())
            .field("node", self.inner.shared.directory.local_node())
            .field("active", &self.active_actors())
            .finish_non_exhaustive()
    }
}

impl ActorSystem {
    /// Starts building a system on `store` (events and snapshots of one
    /// namespace). Every kind's actors are stored in it under
    /// `<kind>:<id>` (see [`persistence_id`]).
    ///
    /// The store is taken as [`aether_core::Repository::new`] takes it: by
    /// value, so an `Arc` of a store you keep a handle on works too.
    pub fn builder<S>(store: S) -> ActorSystemBuilder
    where
        S: EventStore + SnapshotStore + 'static,
    {
        ActorSystemBuilder {
            store: Arc::new(store),
            bus: None,
            settings: Settings::default(),
            kinds: Vec::new(),
            mode: Embedded { directory: None },
        }
    }

    /// A handle to actor `id` of kind `A`. Cheap; activates nothing. If `A`
    /// is not registered or the id is too long with its kind, every ask
    /// returns [`AskError::NotRegistered`] or [`AskError::InvalidId`].
    pub fn actor<A>(&self, id: ActorId) -> ActorRef<A>
    where
        A: Aggregate + Clone,
        A::Command: Clone,
    {
        let target = match self.inner.hosts.get(&TypeId::of::<A>()) {
            None => Err(RefError::NotRegistered),
            Some(host) => match host.clone().downcast::<KindHost<A>>() {
                Err(_) => Err(RefError::NotRegistered),
                Ok(host) => match persistence_id(A::KIND, &id) {
                    Err(e) => Err(RefError::InvalidId(e)),
                    Ok(store_id) => Ok(Target {
                        shard: shard_of(A::KIND, &id, host.shared.directory.shard_count()),
                        key: host.key(&id),
                        host,
                        store_id,
                    }),
                },
            },
        };
        ActorRef {
            id,
            target,
            _kind: PhantomData,
        }
    }

    /// Releases `shard` for a handoff: passivates its active actors (each
    /// finishes the command it runs; commands still queued are answered
    /// "not here" if the shard is no longer local, so routers retry them at
    /// the new owner) and waits until their tasks have ended. A system
    /// joined to a node with [`ActorSystemBuilder::cluster`] runs it before
    /// the node acknowledges a shard's handoff; call it yourself when your
    /// own directory moves a shard away.
    pub async fn release_shard(&self, shard: ShardId) {
        let mut tasks = Vec::new();
        for c in &self.inner.controls {
            tasks.extend(c.stop_shards(&|s| s == shard, "handoff"));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    /// How many asks made on this node wait for a moving or unassigned
    /// shard to be placed (at most [`ActorSystemBuilder::moving_buffer`]).
    /// A moment's reading, for diagnostics and tests.
    pub fn waiting_for_placement(&self) -> usize {
        self.inner.shared.waiting_for_placement()
    }

    /// How many other nodes' requests this node is serving (at most
    /// [`ActorSystemBuilder::max_remote_requests`]). A moment's reading.
    pub fn serving_remote(&self) -> usize {
        self.inner.shared.serving_remote()
    }

    /// How many actors are active on this node, all kinds together.
    pub fn active_actors(&self) -> usize {
        self.inner.controls.iter().map(|c| c.active()).sum()
    }

    /// Stops taking commands, passivates every actor (commands still queued
    /// are answered [`AskError::Unavailable`], never run) and waits for their
    /// tasks to end. A command being run when this is called finishes first.
    pub async fn shutdown(&self) {
        self.inner.stop_tasks();
        self.inner.shared.close();
        for c in &self.inner.controls {
            c.stop_all("shutdown");
        }
        self.inner.shared.all_tasks_ended().await;
    }
}

enum RefError {
    NotRegistered,
    InvalidId(NameError),
}

/// A handle to one actor, `(A::KIND, id)`, wherever it is active. Cheap to
/// clone; holding one keeps nothing active.
pub struct ActorRef<A: Aggregate> {
    id: ActorId,
    target: Result<Target<A>, RefError>,
    _kind: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        ActorRef {
            id: self.id.clone(),
            target: match &self.target {
                Ok(t) => Ok(Target {
                    host: t.host.clone(),
                    key: t.key.clone(),
                    store_id: t.store_id.clone(),
                    shard: t.shard,
                }),
                Err(RefError::NotRegistered) => Err(RefError::NotRegistered),
                Err(RefError::InvalidId(e)) => Err(RefError::InvalidId(e.clone())),
            },
            _kind: PhantomData,
        }
    }
}

impl<A: Aggregate> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorRef")
            .field("kind", &A::KIND)
            .field("id", &self.id)
            .finish()
    }
}

impl<A> ActorRef<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    /// The actor's id (without the kind).
    pub fn id(&self) -> &ActorId {
        &self.id
    }

    /// How many commands wait in the mailbox of the actor's active
    /// incarnation on this node (0 if it is not active here). A moment's
    /// reading, for diagnostics and tests.
    pub fn queued(&self) -> usize {
        self.target.as_ref().map_or(0, |t| t.host.queued(&t.key))
    }

    /// Whether the actor has an active incarnation on this node. A moment's
    /// reading, for diagnostics and tests.
    pub fn is_active(&self) -> bool {
        self.target.as_ref().is_ok_and(|t| t.host.is_active(&t.key))
    }

    /// The actor's shard, if the kind is registered and the id valid.
    pub fn shard(&self) -> Option<ShardId> {
        self.target.as_ref().ok().map(|t| t.shard)
    }

    /// An ask of `command`: await it as it is (a fresh
    /// [`CommandId`], the system's default deadline, waiting for room in a
    /// full mailbox), or set its id, correlation id, deadline or
    /// [`no_wait`](Ask::no_wait) first.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use aether_actor::{ActorRef, AskError, Aggregate};
    /// # use aether_core::CommandId;
    /// # async fn f<A: Aggregate + Clone>(account: ActorRef<A>, c: A::Command) -> Result<(), AskError<A::Error>>
    /// # where A::Command: Clone {
    /// let id = CommandId::new(); // keep it: a retry with it is applied at most once
    /// let outcome = account.ask(c).id(id).within(Duration::from_secs(1)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`AskError`]; after `Timeout` the command may have been applied
    /// (retry with the same [`Ask::id`] to apply it at most once).
    pub fn ask(&self, command: A::Command) -> Ask<'_, A> {
        Ask {
            actor: self,
            command: Command::new(command),
            timeout: None,
            wait: true,
        }
    }

    async fn send(
        &self,
        command: Command<A::Command>,
        timeout: Option<Duration>,
        wait: bool,
    ) -> Result<AskOutcome<A>, AskError<A::Error>> {
        let target = match &self.target {
            Ok(t) => t,
            Err(RefError::NotRegistered) => return Err(AskError::NotRegistered(A::KIND)),
            Err(RefError::InvalidId(e)) => return Err(AskError::InvalidId(e.clone())),
        };
        let span = tracing::debug_span!(
            "aether.ask",
            kind = A::KIND,
            actor = %self.id,
            command = %command.command_id(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
        );
        // Trace ids cost a little: drawn only when someone traces this ask or
        // it may cross NATS.
        let trace = (!span.is_disabled() || target.host.shared.has_transport()).then(|| {
            let parent = TraceContext::current();
            let ctx = parent.map_or_else(TraceContext::new_root, |p| p.child());
            span.record("trace_id", ctx.trace_id_hex());
            span.record("span_id", ctx.span_id_hex());
            if let Some(p) = parent {
                span.record("parent_span_id", p.span_id_hex());
            }
            ctx
        });
        if span.is_disabled() {
            // Nobody traces this ask: no span to enter on every poll.
            return router::route(&self.id, target, command, timeout, wait, trace, span).await;
        }
        router::route(
            &self.id,
            target,
            command,
            timeout,
            wait,
            trace,
            span.clone(),
        )
        .instrument(span)
        .await
    }
}

/// One ask, not yet sent: [`ActorRef::ask`] makes it, its methods set the
/// command id, correlation id, deadline and whether a full mailbox is waited
/// on; awaiting it sends it.
#[must_use = "an ask does nothing until it is awaited"]
pub struct Ask<'a, A: Aggregate> {
    actor: &'a ActorRef<A>,
    command: Command<A::Command>,
    timeout: Option<Duration>,
    wait: bool,
}

impl<A: Aggregate> fmt::Debug for Ask<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ask")
            .field("kind", &A::KIND)
            .field("id", &self.actor.id)
            .field("command_id", &self.command.command_id())
            .field("timeout", &self.timeout)
            .field("wait", &self.wait)
            .finish()
    }
}

impl<A: Aggregate> Ask<'_, A> {
    /// The command's id (default: a fresh one). Effectively once: an ask
    /// with an id the actor has applied gets the original outcome with
    /// `duplicate: true`, on any node, instead of running again.
    pub fn id(mut self, id: CommandId) -> Self {
        self.command = self.command.id(id);
        self
    }

    /// The correlation id the command's events carry.
    pub fn correlation_id(mut self, correlation: impl Into<String>) -> Self {
        self.command = self.command.correlation_id(correlation);
        self
    }

    /// The deadline: `timeout` from when the ask is awaited (default: the
    /// system's [`ask_deadline`](ActorSystemBuilder::ask_deadline)).
    pub fn within(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// A full mailbox is [`AskError::Busy`] at once instead of a wait for
    /// room (the command was never queued, never run).
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }
}

impl<'a, A> IntoFuture for Ask<'a, A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    type Output = Result<AskOutcome<A>, AskError<A::Error>>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.actor.send(self.command, self.timeout, self.wait))
    }
}
