//! The host of one aggregate kind on this node: activation, the mailbox or
//! in-place path of a command, each incarnation's task (the mailbox loop),
//! passivation (idle, LRU, moved shards, handoff, shutdown). The table's
//! lock and the incarnations' locks are taken here and only here.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use aether_core::{ActorId, Aggregate, Command};
use foldhash::fast::RandomState;
use tokio::sync::{Mutex as AsyncMutex, Notify, OwnedMutexGuard, mpsc, oneshot};
use tokio::time::Instant;

use crate::actor::{self, Actor, Incarnations};
use crate::ask::AskError;
use crate::directory::Placement;
use crate::hash::shard_of;
use crate::ids::ShardId;
use crate::in_place::run_in_place;
use crate::shared::{Answer, Envelope, KindMetrics, Local, Shared, StopReason, count_retry};
use crate::table::{Key, LruOrder, Slot, Slots, Table};

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

/// The host of one aggregate kind.
pub(crate) struct KindHost<A: Aggregate> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: Arc<KindMetrics>,
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
            metrics: Arc::new(KindMetrics::new(A::KIND)),
            actors: Mutex::new(Table {
                slots: Slots::default(),
                lru: LruOrder::default(),
            }),
            hasher: RandomState::default(),
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
        let host: Weak<dyn Incarnations> = Arc::downgrade(self) as Weak<KindHost<A>>;
        let actor = Arc::new(AsyncMutex::new(Actor::new(
            self.shared.clone(),
            self.metrics.clone(),
            host,
            id.clone(),
            store_id.clone(),
            incarnation,
        )));
        // Counted here, not in the task: a command run in place may come
        // back before the task first runs.
        metrics::gauge!("aether_actors_active", "kind" => A::KIND).increment(1.0);
        metrics::counter!("aether_actor_activations_total", "kind" => A::KIND).increment(1);
        self.shared.task_started();
        let task = tokio::spawn(run_incarnation(
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

impl<A> Incarnations for KindHost<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    fn stop_incarnation(&self, id: &ActorId, incarnation: u64, reason: StopReason) {
        KindHost::stop_incarnation(self, id, incarnation, reason);
    }
}

/// The task's ends of an incarnation's mailbox.
struct Mailbox<A: Aggregate> {
    rx: mpsc::Receiver<Envelope<A>>,
    /// Woken after a command was queued.
    wake: Arc<Notify>,
    /// Tells the task to passivate, with the reason.
    stop: oneshot::Receiver<StopReason>,
}

/// The task of one incarnation of actor `id`: it runs the commands queued
/// in its mailbox, passivates when idle or told to stop, and hands what is
/// still queued to the next incarnation.
async fn run_incarnation<A>(
    host: Arc<KindHost<A>>,
    id: ActorId,
    store_id: ActorId,
    incarnation: u64,
    actor: Arc<AsyncMutex<Actor<A>>>,
    mailbox: Mailbox<A>,
) where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    let Mailbox {
        mut rx,
        wake,
        mut stop,
    } = mailbox;
    let idle = host.shared.settings.idle_timeout;
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let reason = loop {
        tokio::select! {
            biased;
            reason = &mut stop => break reason.unwrap_or("shutdown"),
            () = wake.notified() => {
                // Waits for a command run in place to finish first.
                let mut guard = actor.lock().await;
                if let Some(reason) = drain(&mut guard, &host, &mut rx, &mut stop).await {
                    break reason;
                }
            }
            () = &mut sleep => match host.leave_if_idle(&id, incarnation, &actor, idle) {
                None => break "idle",
                Some(next) => sleep.as_mut().reset(next),
            },
        }
    };
    // Leave the table first, so no new command can reach this incarnation,
    // let a command still running in place finish, then hand what is still
    // queued to the next incarnation.
    host.leave(&id, incarnation);
    let finished = actor.lock().await;
    rx.close();
    while let Ok(env) = rx.try_recv() {
        host.reroute(&id, &store_id, env).await;
    }
    drop(finished);
    tracing::debug!(kind = A::KIND, actor = %id, reason, "actor passivated");
    metrics::counter!("aether_actor_passivations_total", "kind" => A::KIND, "reason" => reason)
        .increment(1);
    metrics::gauge!("aether_actors_active", "kind" => A::KIND).decrement(1.0);
    host.shared.task_ended();
}

/// Runs the queued commands one at a time, looking for a stop request
/// between them; `Some(reason)` when the incarnation must end.
async fn drain<A>(
    actor: &mut Actor<A>,
    host: &KindHost<A>,
    rx: &mut mpsc::Receiver<Envelope<A>>,
    stop: &mut oneshot::Receiver<StopReason>,
) -> Option<StopReason>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    loop {
        if let Some(reason) = actor.stopped {
            return Some(reason);
        }
        match stop.try_recv() {
            Ok(reason) => return Some(reason),
            Err(oneshot::error::TryRecvError::Closed) => return Some("shutdown"),
            Err(oneshot::error::TryRecvError::Empty) => {}
        }
        let Ok(env) = rx.try_recv() else {
            return None;
        };
        let now = Instant::now();
        actor.last_used = now;
        host.metrics.mailbox_depth.record(rx.len() as f64);
        let Envelope {
            command,
            deadline,
            reply,
            span,
        } = env;
        let (answer, flow) = actor.process(command, deadline, span, now).await;
        let _ = reply.send(answer);
        if let actor::Flow::Stop(reason) = flow {
            actor.stopped = Some(reason);
            return Some(reason);
        }
    }
}
