//! What every host and actor of one system shares: the settings, the store
//! and directory, the bounds on waiting and served commands, the messages
//! between routers, hosts and actors, the per-kind metric handles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aether_core::{Aggregate, Command, DynEventBus, DynStore, Repository};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::time::Instant;

use crate::ask::{AskError, AskOutcome};

use crate::directory::ShardDirectory;
#[cfg(feature = "nats")]
use crate::node::Nats;

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
    #[cfg(feature = "nats")]
    pub(crate) nats: Option<Nats>,
    /// The commands waiting for a moving or unassigned shard.
    pub(crate) waiting: Semaphore,
    /// The other nodes' requests being served.
    pub(crate) serving: Arc<Semaphore>,
    /// The LRU clock: ticks once per routed command.
    pub(crate) clock: AtomicU64,
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
        #[cfg(feature = "nats")] nats: Option<Nats>,
    ) -> Self {
        let repo = Repository::new(store.clone()).recent_commands(settings.recent_commands);
        Shared {
            waiting: Semaphore::new(settings.moving_buffer.min(Semaphore::MAX_PERMITS)),
            serving: Arc::new(Semaphore::new(
                settings.max_remote_requests.min(Semaphore::MAX_PERMITS),
            )),
            store,
            repo,
            bus,
            directory,
            settings,
            #[cfg(feature = "nats")]
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

    /// How many commands wait for a moving or unassigned shard now.
    pub(crate) fn waiting_for_placement(&self) -> usize {
        self.settings.moving_buffer.min(Semaphore::MAX_PERMITS) - self.waiting.available_permits()
    }

    /// How many other nodes' requests are being served now.
    pub(crate) fn serving_remote(&self) -> usize {
        self.settings
            .max_remote_requests
            .min(Semaphore::MAX_PERMITS)
            - self.serving.available_permits()
    }

    /// Whether asks may cross NATS (and so need trace ids to carry).
    pub(crate) fn has_transport(&self) -> bool {
        #[cfg(feature = "nats")]
        return self.nats.is_some();
        #[cfg(not(feature = "nats"))]
        false
    }

    pub(crate) async fn all_tasks_ended(&self) {
        let mut rx = self.running.subscribe();
        // The sender lives in `self`, so the wait cannot fail.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// Why an actor stops, as a metric label.
pub(crate) type StopReason = &'static str;

/// The metric handles a kind's hot path records to, registered once when
/// the host is built (a `metrics!` call with a non-literal label allocates
/// its key and looks it up in the recorder on every call).
pub(crate) struct KindMetrics {
    pub(crate) mailbox_depth: metrics::Histogram,
    pub(crate) ask_local: metrics::Histogram,
    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "recorded by remote asks")
    )]
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
    pub(crate) fn new(kind: &'static str) -> Self {
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

/// Counts one retry of an ask of kind `A`, by reason.
pub(crate) fn count_retry<A: Aggregate>(reason: &'static str) {
    metrics::counter!("aether_actor_retries_total", "kind" => A::KIND, "reason" => reason)
        .increment(1);
}
