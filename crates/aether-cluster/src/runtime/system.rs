//! [`ActorSystem`], its builder, and [`ActorRef`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use aether_core::{
    ActorId, Aggregate, Command, DynEventBus, DynStore, EventBus, EventStore, NameError,
    SnapshotStore,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::directory::{Placement, ShardDirectory, SingleNodeDirectory};
use super::host::{HostControl, Key, KindHost, Local, Settings, Shared, count_retry};
use super::router::{self, Attempt, Nats, RemoteKind};
use super::trace::TraceContext;
use super::{AskError, AskOutcome, persistence_id};
use crate::hash::shard_of;
use crate::types::ShardId;

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
    /// A system on NATS must be started with
    /// [`ActorSystemBuilder::start`] (it subscribes to its request subject).
    #[error("an actor system on NATS is started with `start().await`, not `build()`")]
    NeedsStart,
    /// The node's request subject could not be subscribed to.
    #[error("cannot serve remote asks: {0}")]
    Nats(String),
}

struct Registered {
    type_id: TypeId,
    host: Arc<dyn Any + Send + Sync>,
    control: Arc<dyn HostControl>,
    remote: Arc<dyn RemoteKind>,
}

type HostFactory = Box<dyn FnOnce(&Arc<Shared>) -> Registered + Send>;

/// The kinds a node serves to other nodes, by name.
type RemoteKinds = HashMap<String, Arc<dyn RemoteKind>>;

/// Builds an [`ActorSystem`]: the store, optionally a bus and a directory,
/// the aggregate kinds it hosts, and the settings.
pub struct ActorSystemBuilder {
    store: Arc<dyn DynStore>,
    bus: Option<Arc<dyn DynEventBus>>,
    directory: Option<Arc<dyn ShardDirectory>>,
    settings: Settings,
    kinds: Vec<(&'static str, HostFactory)>,
    nats: Option<(async_nats::Client, String)>,
    subject_prefix: String,
}

impl fmt::Debug for ActorSystemBuilder {
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

impl ActorSystemBuilder {
    /// Publishes every appended event on `bus` (in the store's namespace),
    /// after the append and in order. A bus failure never fails a command.
    #[must_use]
    pub fn bus<B: EventBus + 'static>(mut self, bus: Arc<B>) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Where shards live (default: [`SingleNodeDirectory`], every shard local).
    #[must_use]
    pub fn directory<D: ShardDirectory>(mut self, directory: Arc<D>) -> Self {
        self.directory = Some(directory);
        self
    }

    /// Routes commands for shards owned by other nodes over NATS
    /// request/reply and answers other nodes' commands for this node's
    /// shards (on `<prefix>.rt.<encoded cluster>.<encoded node id>`). A
    /// system with NATS is started with [`start`](Self::start).
    #[must_use]
    pub fn nats(mut self, client: async_nats::Client, cluster: impl Into<String>) -> Self {
        self.nats = Some((client, cluster.into()));
        self
    }

    /// The first token of the request subjects (default `aether`).
    #[must_use]
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Hosts aggregate kind `A`. Its `KIND` must be non-empty and free of `:`
    /// and control characters (checked by [`build`](Self::build)).
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
                    remote: host,
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

    /// Builds the system. Actors are activated lazily, on their first
    /// command, so this starts no task.
    ///
    /// # Errors
    /// [`SystemError::InvalidKind`], [`SystemError::DuplicateKind`];
    /// [`SystemError::NeedsStart`] if NATS is set.
    pub fn build(self) -> Result<ActorSystem, SystemError> {
        if self.nats.is_some() {
            return Err(SystemError::NeedsStart);
        }
        self.assemble().map(|(system, _)| system)
    }

    /// Builds the system and, with NATS, subscribes to this node's request
    /// subject and starts serving other nodes' commands (must run inside a
    /// tokio runtime). Without NATS it is [`build`](Self::build).
    ///
    /// # Errors
    /// As [`build`](Self::build); [`SystemError::Nats`] if the subscription
    /// fails.
    pub async fn start(self) -> Result<ActorSystem, SystemError> {
        let (system, remote) = self.assemble()?;
        let Some(nats) = &system.inner.shared.nats else {
            return Ok(system);
        };
        let subject = nats.subject(system.inner.shared.directory.local_node());
        let subscriber = nats
            .client
            .subscribe(subject)
            .await
            .map_err(|e| SystemError::Nats(e.to_string()))?;
        // Make sure the server has the subscription before anyone is told
        // this node is ready.
        nats.client
            .flush()
            .await
            .map_err(|e| SystemError::Nats(e.to_string()))?;
        let task = tokio::spawn(router::serve(
            nats.client.clone(),
            subscriber,
            Arc::new(remote),
            system.inner.shared.serving.clone(),
        ));
        if let Ok(mut tasks) = system.inner.server.lock() {
            tasks.push(task);
        }
        Ok(system)
    }

    fn assemble(self) -> Result<(ActorSystem, RemoteKinds), SystemError> {
        let mut seen: Vec<&'static str> = Vec::new();
        for (kind, _) in &self.kinds {
            validate_kind(kind)?;
            if seen.contains(kind) {
                return Err(SystemError::DuplicateKind(kind));
            }
            seen.push(kind);
        }
        let directory = self
            .directory
            .unwrap_or_else(|| Arc::new(SingleNodeDirectory::default()));
        let nats = self
            .nats
            .map(|(client, cluster)| Nats::new(client, &self.subject_prefix, &cluster));
        let shared = Arc::new(Shared::new(
            self.store,
            self.bus,
            directory,
            self.settings,
            nats,
        ));
        let mut hosts = HashMap::new();
        let mut controls = Vec::new();
        let mut remote = HashMap::new();
        for (kind, factory) in self.kinds {
            let r = factory(&shared);
            hosts.insert(r.type_id, r.host);
            controls.push(r.control);
            remote.insert(kind.to_owned(), r.remote);
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
        Ok((system, remote))
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
/// [module docs](crate::runtime) for what a command does, passivation,
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
    pub fn builder<S>(store: Arc<S>) -> ActorSystemBuilder
    where
        S: EventStore + SnapshotStore + 'static,
    {
        ActorSystemBuilder {
            store,
            bus: None,
            directory: None,
            settings: Settings::default(),
            kinds: Vec::new(),
            nats: None,
            subject_prefix: "aether".to_owned(),
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
    /// the new owner) and waits until their tasks have ended. Use it as the
    /// cluster's handoff handler:
    ///
    /// ```no_run
    /// # async fn wire(system: aether_cluster::ActorSystem, manager: aether_cluster::ClusterManager) {
    /// manager.set_handoff_handler(move |req| {
    ///     let system = system.clone();
    ///     async move { system.release_shard(req.shard).await }
    /// });
    /// # }
    /// ```
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
        self.inner.shared.waiting.held()
    }

    /// How many other nodes' requests this node is serving (at most
    /// [`ActorSystemBuilder::max_remote_requests`]). A moment's reading.
    pub fn serving_remote(&self) -> usize {
        self.inner.shared.serving.held()
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

struct Target<A: Aggregate> {
    host: Arc<KindHost<A>>,
    /// The actor's key in the host's table (its id, hashed once).
    key: Key,
    store_id: ActorId,
    shard: ShardId,
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

    /// Runs `command` with a fresh [`aether_core::CommandId`] and the
    /// system's default deadline, waiting for room if the mailbox is full.
    ///
    /// # Errors
    /// See [`AskError`]; after `Timeout` the command may have been applied
    /// (use [`ask_command`](Self::ask_command) with an id of your own to
    /// retry safely).
    pub async fn ask(&self, command: A::Command) -> Result<AskOutcome<A>, AskError<A::Error>> {
        self.send(Command::new(command), None, true).await
    }

    /// Runs `command` with its own id (effectively once: a repeated id gets
    /// the original outcome with `duplicate: true`) and the default deadline.
    ///
    /// # Errors
    /// See [`AskError`].
    pub async fn ask_command(
        &self,
        command: Command<A::Command>,
    ) -> Result<AskOutcome<A>, AskError<A::Error>> {
        self.send(command, None, true).await
    }

    /// Like [`ask_command`](Self::ask_command) with a deadline of `timeout`
    /// from now.
    ///
    /// # Errors
    /// See [`AskError`].
    pub async fn ask_within(
        &self,
        command: Command<A::Command>,
        timeout: Duration,
    ) -> Result<AskOutcome<A>, AskError<A::Error>> {
        self.send(command, Some(timeout), true).await
    }

    /// Like [`ask_command`](Self::ask_command), but a full mailbox is
    /// [`AskError::Busy`] at once instead of a wait.
    ///
    /// # Errors
    /// See [`AskError`].
    pub async fn try_ask(
        &self,
        command: Command<A::Command>,
    ) -> Result<AskOutcome<A>, AskError<A::Error>> {
        self.send(command, None, false).await
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
        let trace = (!span.is_disabled() || target.host.shared.nats.is_some()).then(|| {
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
            return self
                .route(target, command, timeout, wait, trace, span)
                .await;
        }
        self.route(target, command, timeout, wait, trace, span.clone())
            .instrument(span)
            .await
    }

    async fn route(
        &self,
        target: &Target<A>,
        mut command: Command<A::Command>,
        timeout: Option<Duration>,
        wait: bool,
        trace: Option<TraceContext>,
        span: tracing::Span,
    ) -> Result<AskOutcome<A>, AskError<A::Error>> {
        let shared = &target.host.shared;
        let directory = shared.directory.as_ref();
        let started = Instant::now();
        let deadline = started + timeout.unwrap_or(shared.settings.ask_deadline);
        // Whether a request may have reached an owner: then running out of
        // time is a `Timeout` (maybe applied), else `Unavailable` (not run).
        let mut maybe_sent = false;
        let mut attempt = 0;
        // The first attempt starts when the ask did: one clock read less.
        let mut fresh = Some(started);
        loop {
            match directory.placement(target.shard) {
                Placement::Local => {
                    let now = fresh.take().unwrap_or_else(Instant::now);
                    match target
                        .host
                        .ask_local(
                            &target.key,
                            &target.store_id,
                            command,
                            now,
                            deadline,
                            wait,
                            span.clone(),
                        )
                        .await
                    {
                        Local::NotHere(back) => {
                            // The shard left between the look and the send.
                            command = back;
                            count_retry::<A>("not_here");
                            if !router::backoff(attempt, deadline).await {
                                return Err(out_of_time(maybe_sent, target.shard));
                            }
                            attempt += 1;
                        }
                        Local::Answer(result) => {
                            target
                                .host
                                .metrics
                                .ask_local
                                .record(started.elapsed().as_secs_f64());
                            return busy_after_send(result, maybe_sent);
                        }
                    }
                }
                Placement::Remote(node) => {
                    let Some(nats) = &shared.nats else {
                        return Err(AskError::Unavailable(format!(
                            "shard {} is owned by node {node}; this system has no NATS to reach it",
                            target.shard
                        )));
                    };
                    let epoch = directory.epoch();
                    match router::ask_remote::<A>(
                        nats, &node, &self.id, &command, deadline, epoch, trace,
                    )
                    .await
                    {
                        Attempt::Done(result) => {
                            target
                                .host
                                .metrics
                                .ask_remote
                                .record(started.elapsed().as_secs_f64());
                            return busy_after_send(result, maybe_sent);
                        }
                        Attempt::Retry(reason) => {
                            maybe_sent |= reason != "no_responders";
                            count_retry::<A>(reason);
                            tracing::debug!(kind = A::KIND, actor = %self.id, %node, reason, "retrying a remote ask");
                            if !router::backoff(attempt, deadline).await {
                                return Err(out_of_time(maybe_sent, target.shard));
                            }
                            attempt += 1;
                        }
                    }
                }
                Placement::Moving | Placement::Unassigned => {
                    // Subscribe before looking again, so a change in between
                    // is not missed.
                    let changed = directory.changed();
                    if !matches!(
                        directory.placement(target.shard),
                        Placement::Moving | Placement::Unassigned
                    ) {
                        continue;
                    }
                    // Wait in the bounded buffer of commands for moving
                    // shards; a full buffer turns the command away at once.
                    let Some(_slot) = shared.waiting.try_enter() else {
                        target.host.metrics.busy_moving.increment(1);
                        return Err(if maybe_sent {
                            // It may have reached an owner already: `Busy`
                            // would wrongly promise it never ran.
                            AskError::Timeout
                        } else {
                            AskError::Busy
                        });
                    };
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Err(out_of_time(maybe_sent, target.shard));
                    }
                    fresh = None;
                }
            }
        }
    }
}

/// `Busy` promises the command never ran: after an earlier attempt that may
/// have reached an owner, a `Busy` answer to a retry is a `Timeout`.
fn busy_after_send<T, E>(
    result: Result<T, AskError<E>>,
    maybe_sent: bool,
) -> Result<T, AskError<E>> {
    match result {
        Err(AskError::Busy) if maybe_sent => Err(AskError::Timeout),
        other => other,
    }
}

fn out_of_time<E>(maybe_sent: bool, shard: ShardId) -> AskError<E> {
    if maybe_sent {
        AskError::Timeout
    } else {
        AskError::Unavailable(format!(
            "shard {shard} could not be reached before the deadline"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_after_an_attempt_that_may_have_arrived_is_a_timeout() {
        let busy = || Err::<(), AskError<std::io::Error>>(AskError::Busy);
        assert!(matches!(
            busy_after_send(busy(), false),
            Err(AskError::Busy)
        ));
        assert!(matches!(
            busy_after_send(busy(), true),
            Err(AskError::Timeout)
        ));
        assert!(busy_after_send(Ok::<(), AskError<std::io::Error>>(()), true).is_ok());
    }
}
