//! One actor incarnation: its cached state and the command path (window
//! check → handle → append(expected = cached version) → apply), run under
//! the incarnation's lock by its task (the mailbox loop, in the host) or,
//! when the actor is idle, in place by the caller (see [`run_in_place`]).
//! It knows the system's shared parts, its kind's metrics and a weak handle
//! on whoever ends it (the [`Incarnations`] it declares), not the host's type.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};

use aether_core::{
    ActorId, Aggregate, Command, CommandWindow, EventStore, Version, command_events,
};
use futures::FutureExt;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tracing::Instrument;

use super::directory::Placement;
use super::shared::{Answer, KindMetrics, Shared};
use super::shared::{StopReason, count_retry};
use super::{AskError, AskOutcome};
use crate::shard_of;

/// The state an active actor keeps between commands.
struct Loaded<A> {
    state: Arc<A>,
    version: Version,
    window: CommandWindow,
}

/// What the mailbox loop does after a command.
pub(crate) enum Flow {
    Continue,
    Stop(StopReason),
}

/// Who ends an incarnation a command stopped (its host): it takes the
/// incarnation out of the table and tells its task.
pub(crate) trait Incarnations: Send + Sync {
    fn stop_incarnation(&self, id: &ActorId, incarnation: u64, reason: StopReason);
}

/// One incarnation of an actor: what its commands run on. It sits behind a
/// [`Mutex`](tokio::sync::Mutex) that whoever runs a command holds (the incarnation's task for
/// a queued command, a caller for a command run in place), so commands run
/// one at a time.
pub(crate) struct Actor<A: Aggregate> {
    shared: Arc<Shared>,
    metrics: Arc<KindMetrics>,
    /// Weak: the host's table holds the incarnation.
    host: Weak<dyn Incarnations>,
    id: ActorId,
    store_id: ActorId,
    incarnation: u64,
    loaded: Option<Loaded<A>>,
    /// When the last command started.
    pub(crate) last_used: Instant,
    /// Set when a command ended the incarnation: nothing more runs on it.
    pub(crate) stopped: Option<StopReason>,
}

impl<A: Aggregate> Actor<A> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        metrics: Arc<KindMetrics>,
        host: Weak<dyn Incarnations>,
        id: ActorId,
        store_id: ActorId,
        incarnation: u64,
    ) -> Self {
        Actor {
            shared,
            metrics,
            host,
            id,
            store_id,
            incarnation,
            loaded: None,
            last_used: Instant::now(),
            stopped: None,
        }
    }
}

/// Runs one command on an idle incarnation, in the caller's task, under
/// the incarnation's lock (taken by the host only when the mailbox was
/// empty and no command was running), as of `now` (the caller's reading of
/// the clock when it sent it). A command that ends the incarnation
/// (a panic in user code, a fence) marks it stopped and has its host end
/// it.
pub(crate) async fn run_in_place<A>(
    mut actor: OwnedMutexGuard<Actor<A>>,
    command: Command<A::Command>,
    now: Instant,
    deadline: Instant,
    span: tracing::Span,
) -> Answer<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    actor.last_used = now;
    // Nothing waited in the mailbox.
    actor.metrics.mailbox_depth.record(0.0);
    let (answer, flow) = actor.process(command, deadline, span, now).await;
    if let Flow::Stop(reason) = flow {
        actor.stopped = Some(reason);
        if let Some(host) = actor.host.upgrade() {
            host.stop_incarnation(&actor.id, actor.incarnation, reason);
        }
    }
    answer
}

impl<A> Actor<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    pub(crate) async fn process(
        &mut self,
        command: Command<A::Command>,
        deadline: Instant,
        parent: tracing::Span,
        now: Instant,
    ) -> (Answer<A>, Flow) {
        if now >= deadline {
            // The caller has stopped waiting: do not run what it gave up on.
            self.metrics.expired.increment(1);
            return (Answer::Done(Err(AskError::Timeout)), Flow::Continue);
        }
        let span = tracing::debug_span!(
            parent: &parent,
            "aether.actor.command",
            kind = A::KIND,
            actor = %self.id,
            command = %command.command_id(),
        );
        let run = AssertUnwindSafe(self.execute(command).instrument(span)).catch_unwind();
        match run.await {
            Ok(Err(command)) => {
                // Fenced after its shard left this node: nothing was written;
                // the caller's router sends the command to the new owner.
                (Answer::Bounced(command), Flow::Stop("conflict"))
            }
            Ok(Ok((result, flow))) => {
                let m = &self.metrics;
                match &result {
                    Ok(o) if o.duplicate => &m.duplicate,
                    Ok(_) => &m.applied,
                    Err(AskError::Rejected(_)) => &m.rejected,
                    Err(_) => &m.error,
                }
                .increment(1);
                (Answer::Done(result), flow)
            }
            Err(_) => {
                self.metrics.panicked.increment(1);
                tracing::error!(kind = A::KIND, actor = %self.id, "user code panicked; stopping the actor");
                self.loaded = None;
                (
                    Answer::Done(Err(AskError::ActorPanicked)),
                    Flow::Stop("panic"),
                )
            }
        }
    }

    async fn load(&self) -> Result<Loaded<A>, AskError<A::Error>> {
        let r = self
            .shared
            .repo
            .load::<A>(&self.store_id)
            .await
            .map_err(AskError::from_command)?;
        Ok(Loaded {
            state: Arc::new(r.state),
            version: r.version,
            window: CommandWindow::new(self.shared.settings.recent_commands, r.recent_commands),
        })
    }

    /// Runs `command`; `Err(command)`, unrun, if the actor was fenced by a
    /// version conflict after its shard left this node.
    async fn execute(
        &mut self,
        command: Command<A::Command>,
    ) -> Result<(Result<AskOutcome<A>, AskError<A::Error>>, Flow), Command<A::Command>> {
        let shared = &self.shared;
        let command_id = command.command_id();
        let mut retries = 0;
        loop {
            let loaded = match self.loaded.take() {
                Some(l) => l,
                None => match self.load().await {
                    Ok(l) => l,
                    // Keep the incarnation: the next command tries again.
                    Err(e) => return Ok((Err(e), Flow::Continue)),
                },
            };
            let loaded = self.loaded.insert(loaded);
            if let Some(done) = loaded.window.find(command_id) {
                let result = shared
                    .repo
                    .read_command(&self.store_id, done)
                    .await
                    .map(|events| AskOutcome {
                        version: done.last,
                        events,
                        state: loaded.state.clone(),
                        command_id,
                        duplicate: true,
                        retries,
                    })
                    .map_err(AskError::from_store);
                return Ok((result, Flow::Continue));
            }
            let events = match loaded.state.handle(command.inner().clone()) {
                Ok(events) => events,
                Err(e) => return Ok((Err(AskError::Rejected(e)), Flow::Continue)),
            };
            if events.is_empty() {
                let outcome = AskOutcome {
                    version: loaded.version,
                    events: Vec::new(),
                    state: loaded.state.clone(),
                    command_id,
                    duplicate: false,
                    retries,
                };
                return Ok((Ok(outcome), Flow::Continue));
            }
            let expected = loaded.version;
            let batch = match command_events(
                &self.store_id,
                expected,
                &events,
                command_id,
                command.correlation(),
            ) {
                Ok(b) => b,
                Err(e) => return Ok((Err(AskError::from_store(e)), Flow::Continue)),
            };
            match shared
                .store
                .append(&self.store_id, expected, batch.clone())
                .await
            {
                Ok(version) => {
                    let state = Arc::make_mut(&mut loaded.state);
                    for e in &events {
                        state.apply(e);
                    }
                    // The batch's causation id is `command_id` (as
                    // `command_events` wrote it), so this is what a reload
                    // rebuilds, without parsing it back.
                    for e in &batch {
                        loaded.window.note(command_id, e.version);
                    }
                    loaded.version = version;
                    if let Some(n) = shared.settings.snapshot_every
                        && expected.get() / n != version.get() / n
                    {
                        shared
                            .repo
                            .write_snapshot::<A>(
                                &self.store_id,
                                version,
                                &loaded.state,
                                loaded.window.to_vec(),
                            )
                            .await;
                    }
                    let outcome = AskOutcome {
                        version,
                        events: batch,
                        state: loaded.state.clone(),
                        command_id,
                        duplicate: false,
                        retries,
                    };
                    self.publish(&outcome).await;
                    return Ok((Ok(outcome), Flow::Continue));
                }
                Err(e) if e.is_conflict() => {
                    self.loaded = None;
                    // A stale owner (its shard left this node while it was
                    // frozen or cut off) is fenced: it must not decide again.
                    let directory = shared.directory.as_ref();
                    let shard = shard_of(A::KIND, &self.id, directory.shard_count());
                    if directory.placement(shard) != Placement::Local {
                        return Err(command);
                    }
                    // Another writer moved the actor on: reload and decide again.
                    if retries >= shared.settings.max_conflict_retries {
                        return Ok((Err(AskError::Store(e)), Flow::Stop("conflict")));
                    }
                    retries += 1;
                    count_retry::<A>("conflict");
                }
                Err(e) => {
                    // The batch may or may not be stored: reload before the
                    // next command.
                    self.loaded = None;
                    return Ok((Err(AskError::from_store(e)), Flow::Continue));
                }
            }
        }
    }

    /// Publishes the appended events on the bus, if there is one. A bus
    /// failure is counted and logged, never returned: the store is the
    /// source of truth.
    async fn publish(&self, outcome: &AskOutcome<A>) {
        let Some(bus) = &self.shared.bus else {
            return;
        };
        let namespace = self.shared.store.namespace();
        for e in &outcome.events {
            if let Err(error) = bus.publish_dyn(namespace, e.clone()).await {
                metrics::counter!("aether_actor_bus_failures_total", "kind" => A::KIND)
                    .increment(1);
                tracing::warn!(kind = A::KIND, actor = %self.id, %error, "event not published on the bus");
            }
        }
    }
}
