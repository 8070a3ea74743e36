//! One actor incarnation: its task, mailbox loop and the command path
//! (window check → handle → append(expected = cached version) → apply).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aether_core::{
    ActorId, Aggregate, Command, CommandWindow, EventStore, Version, command_events,
};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use super::directory::Placement;
use super::host::{Answer, Envelope, KindHost, StopReason, count_retry};
use super::{AskError, AskOutcome};
use crate::shard_of;

/// The state an active actor keeps between commands.
struct Loaded<A> {
    state: Arc<A>,
    version: Version,
    window: CommandWindow,
}

/// What the mailbox loop does after a command.
enum Flow {
    Continue,
    Stop(StopReason),
}

struct Actor<A: Aggregate> {
    host: Arc<KindHost<A>>,
    id: ActorId,
    store_id: ActorId,
    loaded: Option<Loaded<A>>,
}

/// The task of one incarnation of actor `id`.
pub(crate) async fn run<A>(
    host: Arc<KindHost<A>>,
    id: ActorId,
    store_id: ActorId,
    incarnation: u64,
    mut rx: mpsc::Receiver<Envelope<A>>,
    mut stop: oneshot::Receiver<StopReason>,
) where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    metrics::gauge!("aether_actors_active", "kind" => A::KIND).increment(1.0);
    metrics::counter!("aether_actor_activations_total", "kind" => A::KIND).increment(1);
    let idle = host.shared.settings.idle_timeout;
    let mut actor = Actor {
        host: host.clone(),
        id,
        store_id,
        loaded: None,
    };
    let mut last = Instant::now();
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let reason = loop {
        tokio::select! {
            biased;
            reason = &mut stop => break reason.unwrap_or("shutdown"),
            env = rx.recv() => match env {
                Some(env) => {
                    last = Instant::now();
                    host.metrics.mailbox_depth.record(rx.len() as f64);
                    if let Flow::Stop(reason) = actor.process(env, last).await {
                        break reason;
                    }
                }
                None => break "shutdown",
            },
            () = &mut sleep => {
                if last.elapsed() >= idle {
                    break "idle";
                }
                sleep.as_mut().reset(last + idle);
            }
        }
    };
    // Leave the table first, so no new command can reach this mailbox, then
    // hand what is still queued to the next incarnation.
    host.leave(&actor.id, incarnation);
    rx.close();
    while let Ok(env) = rx.try_recv() {
        host.reroute(&actor.id, &actor.store_id, env).await;
    }
    tracing::debug!(kind = A::KIND, actor = %actor.id, reason, "actor passivated");
    metrics::counter!("aether_actor_passivations_total", "kind" => A::KIND, "reason" => reason)
        .increment(1);
    metrics::gauge!("aether_actors_active", "kind" => A::KIND).decrement(1.0);
    host.shared.task_ended();
}

impl<A> Actor<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    async fn process(&mut self, env: Envelope<A>, now: Instant) -> Flow {
        let Envelope {
            command,
            deadline,
            reply,
            span: parent,
        } = env;
        if now >= deadline {
            // The caller has stopped waiting: do not run what it gave up on.
            self.host.metrics.expired.increment(1);
            let _ = reply.send(Answer::Done(Err(AskError::Timeout)));
            return Flow::Continue;
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
                let _ = reply.send(Answer::Bounced(command));
                Flow::Stop("conflict")
            }
            Ok(Ok((result, flow))) => {
                let m = &self.host.metrics;
                match &result {
                    Ok(o) if o.duplicate => &m.duplicate,
                    Ok(_) => &m.applied,
                    Err(AskError::Rejected(_)) => &m.rejected,
                    Err(_) => &m.error,
                }
                .increment(1);
                let _ = reply.send(Answer::Done(result));
                flow
            }
            Err(_) => {
                self.host.metrics.panicked.increment(1);
                tracing::error!(kind = A::KIND, actor = %self.id, "user code panicked; stopping the actor");
                self.loaded = None;
                let _ = reply.send(Answer::Done(Err(AskError::ActorPanicked)));
                Flow::Stop("panic")
            }
        }
    }

    async fn load(&self) -> Result<Loaded<A>, AskError<A::Error>> {
        let r = self
            .host
            .shared
            .repo
            .load::<A>(&self.store_id)
            .await
            .map_err(AskError::from_command)?;
        Ok(Loaded {
            state: Arc::new(r.state),
            version: r.version,
            window: CommandWindow::new(
                self.host.shared.settings.recent_commands,
                r.recent_commands,
            ),
        })
    }

    /// Runs `command`; `Err(command)`, unrun, if the actor was fenced by a
    /// version conflict after its shard left this node.
    async fn execute(
        &mut self,
        command: Command<A::Command>,
    ) -> Result<(Result<AskOutcome<A>, AskError<A::Error>>, Flow), Command<A::Command>> {
        let shared = &self.host.shared;
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
        let Some(bus) = &self.host.shared.bus else {
            return;
        };
        let namespace = self.host.shared.store.namespace();
        for e in &outcome.events {
            if let Err(error) = bus.publish_dyn(namespace, e.clone()).await {
                metrics::counter!("aether_actor_bus_failures_total", "kind" => A::KIND)
                    .increment(1);
                tracing::warn!(kind = A::KIND, actor = %self.id, %error, "event not published on the bus");
            }
        }
    }
}
