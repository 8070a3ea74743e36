//! A command for an idle actor, run in the caller's own task: no mailbox,
//! no reply channel, no timer — and never cut in half when the caller stops
//! waiting.

use std::pin::Pin;
use std::task::{Context, Poll};

use aether_core::{Aggregate, Command};
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::actor::{self, Actor};
use crate::ask::AskError;
use crate::shared::{Answer, Local};

/// Runs a claimed command in the caller's task, polled by the caller until
/// it completes or `deadline` passes. A command that completes at once
/// needs no timer; one that has to wait (for the store) is polled here too,
/// and only if the caller stops waiting (its deadline passed, or its future
/// was dropped) does the rest go on in a task of its own (see
/// [`Unfinished`]), so a caller that gives up never cuts a command in half.
pub(crate) async fn run_in_place<A>(
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
