//! Remote asks over NATS request/reply (feature `nats`): the caller's side
//! (one attempt, classified as done or worth a retry) and the owner's side
//! (the node's request subject, served per kind).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use aether_core::{ActorId, Aggregate, Command, CommandId, StoreError};
use async_nats::RequestErrorKind;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::time::Instant;
use tracing::Instrument;

use super::directory::Placement;
use super::host::KindHost;
use super::node::Nats;
use super::shared::Local;
use super::trace::{TRACEPARENT, TraceContext};
use super::wire::{Failure, Reply, Request, WIRE_FORMAT, WireError};
use super::{AskError, AskOutcome, persistence_id};
use crate::hash::shard_of;
use crate::ids::NodeId;
use tokio::sync::Semaphore;

/// One remote attempt: a final answer, or a reason to refresh and retry.
pub(crate) enum Attempt<A: Aggregate> {
    Done(Result<AskOutcome<A>, AskError<A::Error>>),
    Retry(&'static str),
}

/// How long one remote attempt waits for its reply before the router
/// retries it. A retry of a command still running at the owner is answered
/// from the actor's window of recent commands, never applied twice.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `command` for actor `id` to `node` and reads the answer. The
/// request is encoded before the future is returned, so the future holds no
/// borrow of the command (commands need not be `Sync`).
pub(crate) fn ask_remote<'a, A>(
    nats: &'a Nats,
    node: &'a NodeId,
    id: &ActorId,
    command: &Command<A::Command>,
    deadline: Instant,
    epoch: u64,
    trace: Option<TraceContext>,
) -> impl Future<Output = Attempt<A>> + Send + 'a
where
    A: Aggregate,
{
    let prepared = prepare::<A>(id, command, deadline, epoch, trace);
    let command_id = command.command_id();
    async move {
        match prepared {
            Ok((bytes, remaining)) => {
                send::<A>(nats, node, bytes, remaining, deadline, command_id).await
            }
            Err(done) => done,
        }
    }
}

/// The encoded request and the time left, or the attempt's end if there is
/// no time left or the command cannot be encoded.
fn prepare<A: Aggregate>(
    id: &ActorId,
    command: &Command<A::Command>,
    deadline: Instant,
    epoch: u64,
    trace: Option<TraceContext>,
) -> Result<(Vec<u8>, Duration), Attempt<A>> {
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(Attempt::Done(Err(AskError::Timeout)));
    }
    let payload = match rmp_serde::to_vec_named(command.inner()) {
        Ok(p) => p,
        Err(e) => {
            return Err(Attempt::Done(Err(AskError::Wire(WireError::Payload(
                e.to_string(),
            )))));
        }
    };
    let request = Request {
        format: WIRE_FORMAT,
        command_id: command.command_id(),
        correlation_id: command.correlation().map(str::to_owned),
        kind: A::KIND.to_owned(),
        actor: id.as_str().to_owned(),
        deadline_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
        epoch,
        trace: trace
            .map(|t| BTreeMap::from([(TRACEPARENT.to_owned(), t.traceparent())]))
            .unwrap_or_default(),
        command: payload.into(),
    };
    match request.encode() {
        Ok(b) => Ok((b, remaining)),
        Err(e) => Err(Attempt::Done(Err(AskError::Wire(e)))),
    }
}

async fn send<A: Aggregate>(
    nats: &Nats,
    node: &NodeId,
    bytes: Vec<u8>,
    remaining: Duration,
    deadline: Instant,
    command_id: CommandId,
) -> Attempt<A> {
    // One attempt waits at most ATTEMPT_TIMEOUT: a request lost with an
    // owner that died or was cut off is retried (same command id) inside the
    // caller's deadline instead of using it all up.
    let attempt = async_nats::Request::new()
        .payload(bytes.into())
        .timeout(Some(remaining.min(ATTEMPT_TIMEOUT)));
    let sent = nats.client.send_request(nats.subject(node), attempt);
    let msg = match tokio::time::timeout_at(deadline, sent).await {
        Err(_) => return Attempt::Done(Err(AskError::Timeout)),
        Ok(Err(e)) => {
            return Attempt::Retry(match e.kind() {
                RequestErrorKind::NoResponders => "no_responders",
                RequestErrorKind::TimedOut => "timeout",
                _ => "transport",
            });
        }
        Ok(Ok(msg)) => msg,
    };
    let reply = match Reply::decode(&msg.payload) {
        Ok(r) => r,
        Err(e) => return Attempt::Done(Err(AskError::Wire(e))),
    };
    Attempt::Done(match reply {
        Reply::NotHere { .. } => return Attempt::Retry("not_here"),
        Reply::Unavailable(_) => return Attempt::Retry("unavailable"),
        Reply::Done {
            version,
            events,
            state,
            duplicate,
            retries,
        } => match rmp_serde::from_slice::<A>(&state) {
            Ok(state) => Ok(AskOutcome {
                version,
                events,
                state: Arc::new(state),
                command_id,
                duplicate,
                retries,
            }),
            Err(e) => Err(AskError::Wire(WireError::Payload(e.to_string()))),
        },
        Reply::Rejected(bytes) => match rmp_serde::from_slice::<A::Error>(&bytes) {
            Ok(e) => Err(AskError::Rejected(e)),
            Err(e) => Err(AskError::Wire(WireError::Payload(e.to_string()))),
        },
        Reply::Busy => Err(AskError::Busy),
        Reply::Timeout => Err(AskError::Timeout),
        Reply::Failed { failure, message } => Err(match failure {
            Failure::Panicked => AskError::ActorPanicked,
            Failure::NotRegistered => AskError::NotRegistered(A::KIND),
            Failure::Store => AskError::Store(StoreError::Backend {
                message: format!("on node {node}: {message}"),
                source: None,
            }),
            Failure::Rehydrate | Failure::Codec | Failure::InvalidId => {
                AskError::Remote(format!("on node {node}: {message}"))
            }
        }),
        Reply::BadRequest(e) => Err(AskError::Wire(e)),
    })
}

/// A kind as the owner's request loop sees it.
pub(crate) trait RemoteKind: Send + Sync {
    /// Runs one request for this kind (its command under `span`) and
    /// answers it.
    fn serve(self: Arc<Self>, request: Request, span: tracing::Span) -> BoxFuture<'static, Reply>;
}

impl<A> RemoteKind for KindHost<A>
where
    A: Aggregate + Clone,
    A::Command: Clone,
{
    fn serve(self: Arc<Self>, request: Request, span: tracing::Span) -> BoxFuture<'static, Reply> {
        Box::pin(async move {
            let Ok(id) = ActorId::new(&request.actor) else {
                return Reply::BadRequest(WireError::Malformed(format!(
                    "invalid actor id {:?}",
                    request.actor
                )));
            };
            let command: A::Command = match rmp_serde::from_slice(&request.command) {
                Ok(c) => c,
                Err(e) => return Reply::BadRequest(WireError::Payload(e.to_string())),
            };
            let directory = &self.shared.directory;
            let shard = shard_of(A::KIND, &id, directory.shard_count());
            if directory.placement(shard) != Placement::Local {
                return Reply::NotHere {
                    epoch: directory.epoch(),
                };
            }
            let store_id = match persistence_id(A::KIND, &id) {
                Ok(s) => s,
                Err(e) => {
                    return Reply::Failed {
                        failure: Failure::InvalidId,
                        message: e.to_string(),
                    };
                }
            };
            let now = Instant::now();
            let deadline = now + Duration::from_millis(request.deadline_ms);
            let mut command = Command::new(command).id(request.command_id);
            if let Some(c) = request.correlation_id {
                command = command.correlation_id(c);
            }
            match self
                .ask_local(
                    &self.key(&id),
                    &store_id,
                    command,
                    now,
                    deadline,
                    true,
                    span,
                )
                .await
            {
                Local::Answer(result) => to_reply(result),
                Local::NotHere(_) => Reply::NotHere {
                    epoch: directory.epoch(),
                },
            }
        })
    }
}

/// The owner's span for one request: `aether.handle`, in the caller's trace
/// (a child of its `aether.ask` span) if the request carries a readable
/// `traceparent`, else in a new trace.
fn handle_span(request: &Request) -> (TraceContext, tracing::Span) {
    let parent = request
        .trace
        .get(TRACEPARENT)
        .and_then(|v| TraceContext::from_traceparent(v));
    let ctx = parent.map_or_else(TraceContext::new_root, |p| p.child());
    let span = tracing::debug_span!(
        "aether.handle",
        kind = %request.kind,
        actor = %request.actor,
        command = %request.command_id,
        trace_id = %ctx.trace_id_hex(),
        span_id = %ctx.span_id_hex(),
        parent_span_id = tracing::field::Empty,
    );
    if let Some(p) = parent {
        span.record("parent_span_id", p.span_id_hex());
    }
    (ctx, span)
}

fn to_reply<A: Aggregate>(result: Result<AskOutcome<A>, AskError<A::Error>>) -> Reply {
    let failed = |failure, message: String| Reply::Failed { failure, message };
    match result {
        Ok(o) => match rmp_serde::to_vec_named(&*o.state) {
            Ok(state) => Reply::Done {
                version: o.version,
                events: o.events,
                state: state.into(),
                duplicate: o.duplicate,
                retries: o.retries,
            },
            Err(e) => failed(Failure::Codec, e.to_string()),
        },
        Err(AskError::Rejected(e)) => match rmp_serde::to_vec_named(&e) {
            Ok(bytes) => Reply::Rejected(bytes.into()),
            Err(e) => failed(Failure::Codec, e.to_string()),
        },
        Err(AskError::Busy) => Reply::Busy,
        Err(AskError::Timeout) => Reply::Timeout,
        Err(AskError::Unavailable(m)) => Reply::Unavailable(m),
        // A transient store failure (the write may or may not be stored) is
        // retried by the caller's router with the same command id, which the
        // actor's window answers once it has reloaded: safe, and it keeps the
        // failure retryable across the wire.
        Err(AskError::Store(e)) if e.is_transient() => {
            Reply::Unavailable(format!("store unavailable on the owner: {e}"))
        }
        Err(AskError::Store(e)) => failed(Failure::Store, e.to_string()),
        Err(AskError::Rehydrate(e)) => failed(Failure::Rehydrate, e.to_string()),
        Err(AskError::Codec(e)) => failed(Failure::Codec, e.to_string()),
        Err(AskError::ActorPanicked) => failed(Failure::Panicked, "the actor panicked".into()),
        Err(AskError::NotRegistered(k)) => failed(Failure::NotRegistered, k.to_owned()),
        Err(AskError::InvalidId(e)) => failed(Failure::InvalidId, e.to_string()),
        Err(AskError::NotHere { epoch }) => Reply::NotHere { epoch },
        Err(AskError::Wire(e)) => Reply::BadRequest(e),
        Err(AskError::Remote(m)) => failed(Failure::Codec, m),
    }
}

/// The owner's loop: every message on the node's subject is one request,
/// served in its own task, at most `serving`'s capacity at once; beyond it
/// a request gets a `Busy` reply at once (never queued, never run; counted
/// in `aether_actor_remote_busy_total`). Garbage and unknown kinds get a
/// typed error reply; a message without a reply subject is counted and
/// dropped.
pub(crate) async fn serve(
    client: async_nats::Client,
    mut subscriber: async_nats::Subscriber,
    kinds: Arc<HashMap<String, Arc<dyn RemoteKind>>>,
    serving: Arc<Semaphore>,
) {
    let busy = metrics::counter!("aether_actor_remote_busy_total");
    while let Some(msg) = subscriber.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            metrics::counter!("aether_actor_wire_rejected_total", "reason" => "no_reply_subject")
                .increment(1);
            continue;
        };
        let Ok(slot) = serving.clone().try_acquire_owned() else {
            busy.increment(1);
            if let Err(error) = client.publish(reply_to, Reply::Busy.encode().into()).await {
                tracing::warn!(%error, "actor reply not sent");
            }
            continue;
        };
        let client = client.clone();
        let kinds = kinds.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let reply = match Request::decode(&msg.payload) {
                Err(e) => {
                    metrics::counter!("aether_actor_wire_rejected_total", "reason" => "malformed")
                        .increment(1);
                    tracing::warn!(subject = %msg.subject, error = %e, "unreadable actor request");
                    Reply::BadRequest(e)
                }
                Ok(request) => match kinds.get(&request.kind) {
                    Some(kind) => {
                        let (ctx, span) = handle_span(&request);
                        let served = kind.clone().serve(request, span.clone());
                        ctx.scope(served).instrument(span).await
                    }
                    None => Reply::Failed {
                        failure: Failure::NotRegistered,
                        message: request.kind,
                    },
                },
            };
            if let Err(error) = client.publish(reply_to, reply.encode().into()).await {
                tracing::warn!(%error, "actor reply not sent");
            }
        });
    }
}
