//! The active actors of one kind on this node: the table from actor id to
//! mailbox, activation, least-recently-used eviction and passivation.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use aether_core::{ActorId, Aggregate, Command, DynEventBus, DynStore, Repository};
use tokio::sync::{Mutex as AsyncMutex, Notify, OwnedMutexGuard, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::actor::{self, Actor, Mailbox};
use super::directory::{Placement, ShardDirectory};
use super::router::Nats;
use super::{AskError, AskOutcome};
use crate::hash::shard_of;
use crate::types::ShardId;

/// The settings every host shares (see `ActorSystemBuilder`).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) mailbox_capacity: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_active_actors: usize,
    pub(crate) snapshot_every: Option<u64>,
    pub(crate) ask_deadline: Duration,
    pub(crate) recent_commands: usize,
    pub(crate) max_conflict_retries: u32,
    pub(crate) moving_buffer: usize,
    pub(crate) max_remote_requests: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mailbox_capacity: 64,
            idle_timeout: Duration::from_secs(120),
            max_active_actors: 100_000,
            snapshot_every: Some(100),
            ask_deadline: Duration::from_secs(5),
            recent_commands: aether_core::DEFAULT_COMMAND_WINDOW,
            max_conflict_retries: 3,
            moving_buffer: 1024,
            max_remote_requests: 1024,
        }
    }
}

/// What every host and actor of one system shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn DynStore>,
    pub(crate) repo: Repository<Arc<dyn DynStore>>,
    pub(crate) bus: Option<Arc<dyn DynEventBus>>,
    pub(crate) directory: Arc<dyn ShardDirectory>,
    pub(crate) settings: Settings,
    pub(crate) nats: Option<Nats>,
    /// The commands waiting for a moving or unassigned shard.
    pub(crate) waiting: Gate,
    /// The other nodes' requests being served.
    pub(crate) serving: Arc<Gate>,
    /// The LRU clock: ticks once per routed command.
    clock: AtomicU64,
    closed: AtomicBool,
    /// How many actor tasks are running (shutdown waits for 0).
    running: watch::Sender<usize>,
}

impl Shared {
    pub(crate) fn new(
        store: Arc<dyn DynStore>,
        bus: Option<Arc<dyn DynEventBus>>,
        directory: Arc<dyn ShardDirectory>,
        settings: Settings,
        nats: Option<Nats>,
    ) -> Self {
        let repo = Repository::new(store.clone()).recent_commands(settings.recent_commands);
        Shared {
            waiting: Gate::new(settings.moving_buffer),
            serving: Arc::new(Gate::new(settings.max_remote_requests)),
            store,
            repo,
            bus,
            directory,
            settings,
            nats,
            clock: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            running: watch::Sender::new(0),
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub(crate) fn task_started(&self) {
        self.running.send_modify(|n| *n += 1);
    }

    pub(crate) fn task_ended(&self) {
        self.running.send_modify(|n| *n = n.saturating_sub(1));
    }

    pub(crate) async fn all_tasks_ended(&self) {
        let mut rx = self.running.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// A counting bound: at most `cap` holders of a [`GateSlot`] at once.
pub(crate) struct Gate {
    cap: usize,
    held: AtomicUsize,
}

impl Gate {
    pub(crate) fn new(cap: usize) -> Self {
        Gate {
            cap,
            held: AtomicUsize::new(0),
        }
    }

    /// A slot if fewer than `cap` are held; freed when dropped.
    pub(crate) fn try_enter(&self) -> Option<GateSlot<'_>> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cap).then_some(n + 1)
            })
            .ok()
            .map(|_| GateSlot(self))
    }

    /// Like [`try_enter`](Self::try_enter), with a slot that owns a handle
    /// to the gate (to move into a task).
    pub(crate) fn try_enter_owned(self: &Arc<Self>) -> Option<OwnedGateSlot> {
        self.try_enter().map(|slot| {
            std::mem::forget(slot);
            OwnedGateSlot(self.clone())
        })
    }

    /// How many slots are held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// One held slot of a [`Gate`].
pub(crate) struct GateSlot<'a>(&'a Gate);

impl Drop for GateSlot<'_> {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One held slot of a [`Gate`] behind an `Arc`.
pub(crate) struct OwnedGateSlot(Arc<Gate>);

impl Drop for OwnedGateSlot {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One command on its way to an actor.
pub(crate) struct Envelope<A: Aggregate> {
    pub(crate) command: Command<A::Command>,
    pub(crate) deadline: Instant,
    pub(crate) reply: oneshot::Sender<Answer<A>>,
    /// The span the command runs under (`aether.ask` or `aether.handle`).
    pub(crate) span: tracing::Span,
}

/// What an envelope's sender hears back.
pub(crate) enum Answer<A: Aggregate> {
    /// The actor's answer (or why it gave none).
    Done(Result<AskOutcome<A>, AskError<A::Error>>),
    /// The command, unrun: it was queued in an actor whose shard left this
    /// node, and no local incarnation may take it.
    Bounced(Command<A::Command>),
}

/// What a local ask came to.
pub(crate) enum Local<A: Aggregate> {
    Answer(Result<AskOutcome<A>, AskError<A::Error>>),
    /// The shard is not local: the command, back for the router.
    NotHere(Command<A::Command>),
}

/// How a local command gets to its actor.
enum Claim<A: Aggregate> {
    /// Run it in place, under the incarnation's lock, on this runtime (the
    /// incarnation's).
    InPlace(OwnedMutexGuard<Actor<A>>, tokio::runtime::Handle),
    /// Queue it in the mailbox.
    Queue,
    /// The shard is not local and no incarnation is active.
    NotHere,
}

/// Runs a claimed command in the caller's task, polled by the caller until
/// it completes or `deadline` passes. A command that completes at once
/// needs no timer; one that has to wait (for the store) is polled here too,
/// and only if the caller stops waiting (its deadline passed, or its future
/// was dropped) does the rest go on in a task of its own (see
/// [`Unfinished`]), so a caller that gives up never cuts a command in half.
async fn run_in_place<A>(
    actor: OwnedMutexGuard<Actor<A>>,
    runtime: tokio::runtime::Handle,
    command: Command<A::Command>,
    now: Instant,
    deadline: Instant,
    span: tracing::Span,
) -> Local<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    let mut run = Unfinished {
        run: Some(Box::pin(actor::run_in_place(
            actor, command, now, deadline, span,
        ))),
        runtime,
    };
    let answer = match std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut run).poll(cx))).await {
        Poll::Ready(answer) => answer,
        // On a time-out `run` is dropped here: the command goes on in a task.
        Poll::Pending => match tokio::time::timeout_at(deadline, &mut run).await {
            Ok(answer) => answer,
            Err(_) => return Local::Answer(Err(AskError::Timeout)),
        },
    };
    match answer {
        Answer::Done(result) => Local::Answer(result),
        Answer::Bounced(command) => Local::NotHere(command),
    }
}

/// A command run in place, until it completes. Dropped before that (its
/// caller stopped waiting), it hands the rest of the command to a task on
/// the actor's runtime, which runs it to the end under the incarnation's
/// lock: the commands behind it wait for it, as they would for a queued one.
struct Unfinished<F: Future + Send + 'static>
where
    F::Output: Send + 'static,
{
    /// `None` once the command completed.
    run: Option<Pin<Box<F>>>,
    runtime: tokio::runtime::Handle,
}

impl<F: Future + Send + 'static> Future for Unfinished<F>
where
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(run) = self.run.as_mut() else {
            // Never polled after completing (`run_in_place` awaits it once).
            return Poll::Pending;
        };
        let answer = std::task::ready!(run.as_mut().poll(cx));
        self.run = None;
        Poll::Ready(answer)
    }
}

impl<F: Future + Send + 'static> Drop for Unfinished<F>
where
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            // The answer has no one to go to; the command runs to its end.
            // (A runtime that is shutting down drops it, as it drops every
            // task.)
            drop(self.runtime.spawn(run));
        }
    }
}

/// Why an actor stops, as a metric label.
pub(crate) type StopReason = &'static str;

/// An actor id with its hash in the host's table, computed once
/// ([`KindHost::key`]): an [`ActorRef`](super::ActorRef) keeps its key, so
/// finding its actor hashes no text.
#[derive(Clone)]
pub(crate) struct Key {
    hash: u64,
    id: ActorId,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.id == other.id
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Hashes a [`Key`] to the hash it carries.
#[derive(Clone, Copy, Default)]
struct KeyHash;

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (by `Key`); anything else still hashes.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Slot<A: Aggregate> {
    tx: mpsc::Sender<Envelope<A>>,
    /// Wakes the incarnation's task after a command was queued.
    wake: Arc<Notify>,
    /// The incarnation's state; held by whoever runs a command.
    actor: Arc<AsyncMutex<Actor<A>>>,
    /// The runtime the incarnation's task runs on.
    runtime: tokio::runtime::Id,
    incarnation: u64,
    shard: ShardId,
    task: tokio::task::JoinHandle<()>,
    last_used: u64,
    /// Tells the actor to passivate (with the reason), e.g. when evicted.
    stop: Option<oneshot::Sender<StopReason>>,
}

/// The metric handles a kind's hot path records to, registered once when
/// the host is built (a `metrics!` call with a non-literal label allocates
/// its key and looks it up in the recorder on every call).
pub(crate) struct KindMetrics {
    pub(crate) mailbox_depth: metrics::Histogram,
    pub(crate) ask_local: metrics::Histogram,
    pub(crate) ask_remote: metrics::Histogram,
    pub(crate) applied: metrics::Counter,
    pub(crate) duplicate: metrics::Counter,
    pub(crate) rejected: metrics::Counter,
    pub(crate) error: metrics::Counter,
    pub(crate) expired: metrics::Counter,
    pub(crate) panicked: metrics::Counter,
    pub(crate) busy: metrics::Counter,
    pub(crate) busy_moving: metrics::Counter,
}

impl KindMetrics {
    fn new(kind: &'static str) -> Self {
        let command = |outcome: &'static str| metrics::counter!("aether_actor_commands_total", "kind" => kind, "outcome" => outcome);
        let ask = |route: &'static str| metrics::histogram!("aether_actor_ask_duration_seconds", "kind" => kind, "route" => route);
        KindMetrics {
            mailbox_depth: metrics::histogram!("aether_actor_mailbox_depth", "kind" => kind),
            ask_local: ask("local"),
            ask_remote: ask("remote"),
            applied: command("applied"),
            duplicate: command("duplicate"),
            rejected: command("rejected"),
            error: command("error"),
            expired: command("expired"),
            panicked: command("panicked"),
            busy: metrics::counter!("aether_actor_busy_total", "kind" => kind, "reason" => "mailbox"),
            busy_moving: metrics::counter!("aether_actor_busy_total", "kind" => kind, "reason" => "moving"),
        }
    }
}

/// The active actors of a kind and their order of last use.
struct Table<A: Aggregate> {
    slots: HashMap<Key, Slot<A>, KeyHash>,
    lru: LruOrder<Key>,
}

/// The order in which actors were last used, for least-recently-used
/// eviction without a scan of the table: a queue of `(tick, id)` in tick
/// order, one entry per use. An entry is current while its tick is the
/// actor's `last_used`; stale entries are skipped when a victim is taken
/// and dropped when the queue outgrows twice the table, so every
/// operation is amortised O(1).
#[derive(Debug)]
pub(crate) struct LruOrder<K> {
    order: std::collections::VecDeque<(u64, K)>,
}

impl<K> Default for LruOrder<K> {
    fn default() -> Self {
        LruOrder {
            order: std::collections::VecDeque::new(),
        }
    }
}

impl<K: PartialEq + Clone> LruOrder<K> {
    /// Notes a use of `id` at `tick` (ticks only grow).
    pub(crate) fn touch(&mut self, id: &K, tick: u64) {
        match self.order.back_mut() {
            // The same actor again: its entry moves, nothing grows.
            Some((t, last)) if last == id => *t = tick,
            _ => self.order.push_back((tick, id.clone())),
        }
    }

    /// The least recently used actor, given each actor's current tick
    /// (`None`: not active). Its entry leaves the queue.
    pub(crate) fn victim(&mut self, current: impl Fn(&K) -> Option<u64>) -> Option<K> {
        while let Some((tick, id)) = self.order.pop_front() {
            if current(&id) == Some(tick) {
                return Some(id);
            }
        }
        None
    }

    /// Drops stale entries once the queue holds more than twice `live`.
    pub(crate) fn compact(&mut self, live: usize, current: impl Fn(&K) -> Option<u64>) {
        if self.order.len() > 2 * live + 16 {
            self.order.retain(|(tick, id)| current(id) == Some(*tick));
        }
    }

    /// How many entries the queue holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

/// The host of one aggregate kind.
pub(crate) struct KindHost<A: Aggregate> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: KindMetrics,
    actors: Mutex<Table<A>>,
    /// Hashes actor ids into [`Key`]s.
    hasher: RandomState,
    next_incarnation: AtomicU64,
}

/// The kind-independent controls the system needs over every host.
pub(crate) trait HostControl: Send + Sync {
    /// Passivates every active actor (for shutdown): their mailboxes drain first.
    fn stop_all(&self, reason: StopReason);
    /// How many actors of this kind are active.
    fn active(&self) -> usize;
    /// Passivates the actors whose shard passes `moved` (each finishes the
    /// command it runs) and returns their tasks, to wait for.
    fn stop_shards(
        &self,
        moved: &dyn Fn(ShardId) -> bool,
        reason: StopReason,
    ) -> Vec<tokio::task::JoinHandle<()>>;
}

impl<A> KindHost<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        KindHost {
            shared,
            metrics: KindMetrics::new(A::KIND),
            actors: Mutex::new(Table {
                slots: HashMap::default(),
                lru: LruOrder::default(),
            }),
            hasher: RandomState::new(),
            next_incarnation: AtomicU64::new(1),
        }
    }

    /// The table key of `id`.
    pub(crate) fn key(&self, id: &ActorId) -> Key {
        Key {
            hash: self.hasher.hash_one(id),
            id: id.clone(),
        }
    }

    fn table(&self) -> MutexGuard<'_, Table<A>> {
        // A panic while holding this lock can only come from the standard
        // library (the table runs no user code), so poisoning is ignored.
        self.actors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts `env` into the mailbox of actor `id` (store id `store_id`),
    /// activating it if needed. With `wait`, a full mailbox is waited on
    /// until the envelope's deadline. On failure the envelope is handed back
    /// with the error, unsent.
    pub(crate) async fn enqueue(
        self: &Arc<Self>,
        key: &Key,
        store_id: &ActorId,
        mut env: Envelope<A>,
        wait: bool,
    ) -> Result<(), (AskError<A::Error>, Envelope<A>)> {
        loop {
            if self.shared.is_closed() {
                return Err((
                    AskError::Unavailable("the actor system is shut down".into()),
                    env,
                ));
            }
            let full = {
                let mut table = self.table();
                let tick = self.shared.clock.fetch_add(1, Ordering::Relaxed);
                if !table.slots.contains_key(key) {
                    let shard = shard_of(A::KIND, &key.id, self.shared.directory.shard_count());
                    if self.shared.directory.placement(shard) != Placement::Local {
                        // The shard left this node (or is moving): the
                        // caller's router looks again.
                        return Err((
                            AskError::NotHere {
                                epoch: self.shared.directory.epoch(),
                            },
                            env,
                        ));
                    }
                    self.activate(&mut table, key, store_id, shard);
                }
                let Table { slots, lru } = &mut *table;
                lru.compact(slots.len(), |k| slots.get(k).map(|s| s.last_used));
                let Some(slot) = slots.get_mut(key) else {
                    continue;
                };
                slot.last_used = tick;
                lru.touch(key, tick);
                match slot.tx.try_send(env) {
                    Ok(()) => {
                        slot.wake.notify_one();
                        return Ok(());
                    }
                    Err(mpsc::error::TrySendError::Closed(back)) => {
                        // An incarnation that ended without leaving the
                        // table (it died): forget it and start another.
                        env = back;
                        slots.remove(key);
                        count_retry::<A>("passivated");
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Full(back)) => {
                        env = back;
                        (slot.tx.clone(), slot.wake.clone())
                    }
                }
            };
            if !wait {
                self.metrics.busy.increment(1);
                return Err((AskError::Busy, env));
            }
            let (full, wake) = full;
            match tokio::time::timeout_at(env.deadline, full.reserve()).await {
                Ok(Ok(permit)) => {
                    permit.send(env);
                    wake.notify_one();
                    return Ok(());
                }
                // Closed while we waited: the actor passivated; go again.
                Ok(Err(_)) => count_retry::<A>("passivated"),
                Err(_) => {
                    self.metrics.busy.increment(1);
                    return Err((AskError::Busy, env));
                }
            }
        }
    }

    /// Takes the lock of the incarnation of `id` (activating it if needed)
    /// for a command to run in place: only if the caller runs on the
    /// incarnation's runtime, its mailbox is empty and no command is
    /// running, so the command runs in the order a queued one would.
    /// Anything else (`Queue`): the command goes through the mailbox.
    fn claim(self: &Arc<Self>, key: &Key, store_id: &ActorId) -> Claim<A> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Claim::Queue;
        };
        if self.shared.is_closed() {
            return Claim::Queue;
        }
        let mut table = self.table();
        let tick = self.shared.clock.fetch_add(1, Ordering::Relaxed);
        {
            let Table { slots, lru } = &mut *table;
            lru.compact(slots.len(), |k| slots.get(k).map(|s| s.last_used));
            // One lookup of the id while the actor is active (the usual case).
            if let Some(slot) = slots.get_mut(key) {
                slot.last_used = tick;
                lru.touch(key, tick);
                return Self::claim_slot(slot, runtime);
            }
        }
        let shard = shard_of(A::KIND, &key.id, self.shared.directory.shard_count());
        if self.shared.directory.placement(shard) != Placement::Local {
            return Claim::NotHere;
        }
        self.activate(&mut table, key, store_id, shard);
        let Table { slots, lru } = &mut *table;
        let Some(slot) = slots.get_mut(key) else {
            return Claim::Queue;
        };
        slot.last_used = tick;
        lru.touch(key, tick);
        Self::claim_slot(slot, runtime)
    }

    /// The lock of `slot`'s incarnation, if a command may run in place now.
    fn claim_slot(slot: &Slot<A>, runtime: tokio::runtime::Handle) -> Claim<A> {
        // An empty mailbox has all its permits: none queued, none reserved.
        if slot.runtime != runtime.id()
            || slot.tx.is_closed()
            || slot.tx.capacity() != slot.tx.max_capacity()
        {
            return Claim::Queue;
        }
        match slot.actor.clone().try_lock_owned() {
            Ok(actor) if actor.stopped.is_none() => Claim::InPlace(actor, runtime),
            _ => Claim::Queue,
        }
    }

    /// Runs `command` on the local incarnation of `id` and waits for its
    /// answer until `deadline`; hands the command back if the shard is not
    /// local (any more) and no incarnation is active. An idle incarnation
    /// runs it in the caller's task (see [`claim`](Self::claim)); otherwise
    /// it is queued in the mailbox. `now` is the caller's reading of the
    /// clock when it sent the command (a command run in place starts then).
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per route, all distinct"
    )]
    pub(crate) async fn ask_local(
        self: &Arc<Self>,
        key: &Key,
        store_id: &ActorId,
        command: Command<A::Command>,
        now: Instant,
        deadline: Instant,
        wait: bool,
        span: tracing::Span,
    ) -> Local<A> {
        match self.claim(key, store_id) {
            Claim::InPlace(actor, runtime) => {
                return run_in_place(actor, runtime, command, now, deadline, span).await;
            }
            Claim::NotHere => return Local::NotHere(command),
            Claim::Queue => {}
        }
        let (reply, rx) = oneshot::channel();
        let env = Envelope {
            command,
            deadline,
            reply,
            span,
        };
        match self.enqueue(key, store_id, env, wait).await {
            Ok(()) => {}
            Err((AskError::NotHere { .. }, env)) => return Local::NotHere(env.command),
            Err((e, _)) => return Local::Answer(Err(e)),
        }
        Local::Answer(match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Answer::Done(result))) => result,
            Ok(Ok(Answer::Bounced(command))) => return Local::NotHere(command),
            // A reply is dropped unsent only by an incarnation that died.
            Ok(Err(_)) => Err(AskError::ActorPanicked),
            Err(_) => Err(AskError::Timeout),
        })
    }

    /// Sends a command taken from a passivating actor's mailbox to the next
    /// incarnation, or answers it with the reason it cannot go there.
    pub(crate) async fn reroute(
        self: &Arc<Self>,
        id: &ActorId,
        store_id: &ActorId,
        env: Envelope<A>,
    ) {
        count_retry::<A>("passivated");
        match self.enqueue(&self.key(id), store_id, env, true).await {
            Ok(()) => {}
            Err((AskError::NotHere { .. }, env)) => {
                let _ = env.reply.send(Answer::Bounced(env.command));
            }
            Err((e, env)) => {
                let _ = env.reply.send(Answer::Done(Err(e)));
            }
        }
    }

    /// Starts a new incarnation of `id`, evicting the least recently used
    /// actor first if the table is full.
    fn activate(
        self: &Arc<Self>,
        table: &mut Table<A>,
        key: &Key,
        store_id: &ActorId,
        shard: ShardId,
    ) {
        let id = &key.id;
        let Table { slots, lru } = table;
        if slots.len() >= self.shared.settings.max_active_actors.max(1)
            && let Some(victim) = lru.victim(|k| slots.get(k).map(|s| s.last_used))
            && let Some(mut slot) = slots.remove(&victim)
            && let Some(stop) = slot.stop.take()
        {
            let _ = stop.send("lru");
        }
        lru.compact(slots.len(), |k| slots.get(k).map(|s| s.last_used));
        let (tx, rx) = mpsc::channel(self.shared.settings.mailbox_capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let wake = Arc::new(Notify::new());
        let incarnation = self.next_incarnation.fetch_add(1, Ordering::Relaxed);
        let actor = Arc::new(AsyncMutex::new(Actor::new(
            self.clone(),
            id.clone(),
            store_id.clone(),
            incarnation,
        )));
        // Counted here, not in the task: a command run in place may come
        // back before the task first runs.
        metrics::gauge!("aether_actors_active", "kind" => A::KIND).increment(1.0);
        metrics::counter!("aether_actor_activations_total", "kind" => A::KIND).increment(1);
        self.shared.task_started();
        let task = tokio::spawn(actor::run(
            self.clone(),
            id.clone(),
            store_id.clone(),
            incarnation,
            actor.clone(),
            Mailbox {
                rx,
                wake: wake.clone(),
                stop: stop_rx,
            },
        ));
        slots.insert(
            key.clone(),
            Slot {
                tx,
                wake,
                actor,
                runtime: tokio::runtime::Handle::current().id(),
                incarnation,
                shard,
                task,
                last_used: 0,
                stop: Some(stop_tx),
            },
        );
    }

    /// Commands waiting in the mailbox of `id`'s active incarnation.
    pub(crate) fn queued(&self, key: &Key) -> usize {
        self.table()
            .slots
            .get(key)
            .map_or(0, |s| s.tx.max_capacity() - s.tx.capacity())
    }

    /// Whether `id` has an incarnation in the table.
    pub(crate) fn is_active(&self, key: &Key) -> bool {
        self.table().slots.contains_key(key)
    }

    /// Removes incarnation `incarnation` of `id` from the table if it has
    /// been idle for `idle` (no command running or queued): `None`. Else
    /// `Some(when)` to look again (also when someone else already took it
    /// out of the table: it is told to stop with the reason).
    pub(crate) fn leave_if_idle(
        &self,
        id: &ActorId,
        incarnation: u64,
        actor: &AsyncMutex<Actor<A>>,
        idle: Duration,
    ) -> Option<Instant> {
        let key = self.key(id);
        let mut table = self.table();
        let now = Instant::now();
        let Some(slot) = table
            .slots
            .get(&key)
            .filter(|s| s.incarnation == incarnation)
        else {
            // Taken out of the table by whoever stops it (eviction, a moved
            // shard, a command that ended it): its stop request is on the way.
            return Some(now + idle);
        };
        // A command runs or is queued: not idle.
        let Ok(state) = actor.try_lock() else {
            return Some(now + idle);
        };
        if slot.tx.capacity() != slot.tx.max_capacity() {
            return Some(now + idle);
        }
        let until = state.last_used + idle;
        if until > now {
            return Some(until);
        }
        // Under the table's lock with the incarnation's lock held: no
        // command can be claimed in between.
        table.slots.remove(&key);
        None
    }

    /// Ends incarnation `incarnation` of `id` after a command stopped it:
    /// removes it from the table (if still there) and tells its task.
    pub(crate) fn stop_incarnation(&self, id: &ActorId, incarnation: u64, reason: StopReason) {
        let key = self.key(id);
        let slot = {
            let mut table = self.table();
            if table
                .slots
                .get(&key)
                .is_none_or(|s| s.incarnation != incarnation)
            {
                return;
            }
            table.slots.remove(&key)
        };
        if let Some(stop) = slot.and_then(|mut s| s.stop.take()) {
            let _ = stop.send(reason);
        }
    }

    /// Removes incarnation `incarnation` of `id` from the table, if it is
    /// still there (an evicted actor is already gone).
    pub(crate) fn leave(&self, id: &ActorId, incarnation: u64) {
        let key = self.key(id);
        let mut table = self.table();
        if table
            .slots
            .get(&key)
            .is_some_and(|s| s.incarnation == incarnation)
        {
            table.slots.remove(&key);
        }
    }
}

impl<A> HostControl for KindHost<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    fn stop_all(&self, reason: StopReason) {
        let slots: Vec<Slot<A>> = {
            let mut table = self.table();
            table.lru = LruOrder::default();
            table.slots.drain().map(|(_, s)| s).collect()
        };
        for mut slot in slots {
            if let Some(stop) = slot.stop.take() {
                let _ = stop.send(reason);
            }
        }
    }

    fn active(&self) -> usize {
        self.table().slots.len()
    }

    fn stop_shards(
        &self,
        moved: &dyn Fn(ShardId) -> bool,
        reason: StopReason,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let slots: Vec<Slot<A>> = {
            let mut table = self.table();
            let ids: Vec<Key> = table
                .slots
                .iter()
                .filter(|(_, s)| moved(s.shard))
                .map(|(k, _)| k.clone())
                .collect();
            ids.iter().filter_map(|k| table.slots.remove(k)).collect()
        };
        slots
            .into_iter()
            .map(|mut slot| {
                if let Some(stop) = slot.stop.take() {
                    let _ = stop.send(reason);
                }
                slot.task
            })
            .collect()
    }
}

pub(crate) fn count_retry<A: Aggregate>(reason: &'static str) {
    metrics::counter!("aether_actor_retries_total", "kind" => A::KIND, "reason" => reason)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> ActorId {
        ActorId::new(format!("a{n}")).expect("id")
    }

    #[test]
    fn the_victim_is_the_least_recently_used_and_the_queue_stays_bounded() {
        let mut lru = LruOrder::default();
        let mut current: HashMap<ActorId, u64> = HashMap::new();
        let mut tick = 0;
        let mut touch =
            |lru: &mut LruOrder<ActorId>, current: &mut HashMap<ActorId, u64>, n: usize| {
                tick += 1;
                current.insert(id(n), tick);
                lru.touch(&id(n), tick);
            };
        for n in [0, 1, 2, 0, 0, 1] {
            touch(&mut lru, &mut current, n);
        }
        // 2 was used least recently (0 and 1 since).
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(2)));
        current.remove(&id(2));
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(0)));
        current.remove(&id(0));
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(1)));
        current.remove(&id(1));
        assert_eq!(lru.victim(|k| current.get(k).copied()), None);
        // Many uses of a few actors: compaction keeps the queue near the table.
        for round in 0..10_000 {
            touch(&mut lru, &mut current, round % 7);
            lru.compact(current.len(), |k| current.get(k).copied());
            assert!(lru.len() <= 2 * current.len() + 17, "queue {}", lru.len());
        }
        // The order survives compaction: the oldest of the seven goes first.
        let oldest = (0..7).min_by_key(|n| current[&id(*n)]).expect("seven");
        assert_eq!(lru.victim(|k| current.get(k).copied()), Some(id(oldest)));
    }
}
