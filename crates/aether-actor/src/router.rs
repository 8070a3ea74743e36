//! The routing loop of an ask: local or remote, "not here" and transport
//! retries with jittered back-off, and the bounded wait for a moving or
//! unassigned shard — all inside the caller's deadline.

use std::sync::Arc;
use std::time::Duration;

use aether_core::backoff::Backoff;
use aether_core::{ActorId, Aggregate, Command};
use tokio::time::Instant;

use crate::ask::{AskError, AskOutcome};
use crate::directory::Placement;
use crate::host::KindHost;
use crate::ids::ShardId;
#[cfg(feature = "nats")]
use crate::remote::{self, Attempt};
use crate::shared::Local;
use crate::shared::count_retry;
use crate::table::Key;
use crate::trace::TraceContext;

/// Where an `ActorRef`'s commands go: its kind's host, its pre-hashed key,
/// its store id and its shard, all worked out once when the ref is made.
pub(crate) struct Target<A: Aggregate> {
    pub(crate) host: Arc<KindHost<A>>,
    /// The actor's key in the host's table (its id, hashed once).
    pub(crate) key: Key,
    pub(crate) store_id: ActorId,
    pub(crate) shard: ShardId,
}

/// Routes `command` for actor `id` (of `target`) until it gets an answer or
/// the deadline (`timeout` from now, else the system's default) passes.
#[cfg_attr(
    not(feature = "nats"),
    expect(unused_mut, unused_variables, reason = "only remote asks use them")
)]
pub(crate) async fn route<A>(
    id: &ActorId,
    target: &Target<A>,
    mut command: Command<A::Command>,
    timeout: Option<Duration>,
    wait: bool,
    trace: Option<TraceContext>,
    span: tracing::Span,
) -> Result<AskOutcome<A>, AskError<A::Error>>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
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
                        if !backoff(attempt, deadline).await {
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
                #[cfg(feature = "nats")]
                if let Some(nats) = &shared.nats {
                    let epoch = directory.epoch();
                    match remote::ask_remote::<A>(nats, &node, id, &command, deadline, epoch, trace)
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
                            tracing::debug!(kind = A::KIND, actor = %id, %node, reason, "retrying a remote ask");
                            if !backoff(attempt, deadline).await {
                                return Err(out_of_time(maybe_sent, target.shard));
                            }
                            attempt += 1;
                            continue;
                        }
                    }
                }
                return Err(AskError::Unavailable(format!(
                    "shard {} is owned by node {node}; this system has no NATS to reach it",
                    target.shard
                )));
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
                let Ok(_slot) = shared.waiting.try_acquire() else {
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

/// The wait before a routing retry: from 5 ms, doubling, up to 200 ms,
/// jittered over the upper half of each step.
const RETRY_BACKOFF: Backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));

/// Sleeps before retry number `attempt` (from 0) by [`RETRY_BACKOFF`].
/// Returns `false` (after sleeping to the deadline) when less than the delay
/// is left, so a last attempt is never cut short by the deadline mid-flight.
pub(crate) async fn backoff(attempt: u32, deadline: Instant) -> bool {
    let delay = RETRY_BACKOFF.delay(attempt);
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining <= delay {
        tokio::time::sleep(remaining).await;
        return false;
    }
    tokio::time::sleep(delay).await;
    true
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
