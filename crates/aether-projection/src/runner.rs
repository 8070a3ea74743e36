//! [`ProjectionRunner`]: drives a [`Projection`] from the feed and keeps its
//! checkpoint.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_core::{
    BoxError, Checkpoint, CheckpointError, CheckpointStore, EventFeed, FeedItem, Position,
    Projection, StoreError,
};
use futures::StreamExt;
use metrics::{Counter, Gauge};

use crate::lease::{LeaseError, ProjectionLease};

/// Why a runner stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The feed failed (a store error it could not ride out, or a foreign
    /// record under the strict trust policy). Run again to resume from the
    /// checkpoint.
    #[error("the feed failed: {0}")]
    Feed(#[source] StoreError),
    /// A live feed ended without an error (a store that breaks the feed
    /// contract).
    #[error("the live feed ended")]
    FeedEnded,
    /// The checkpoint store failed. [`CheckpointError::Conflict`] means
    /// another runner of this projection advanced the checkpoint (or a
    /// rebuild reset it): this runner is fenced and must stop.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The runner's lease ([`ProjectionRunner::lease`]) is held by another
    /// runner, was lost, or could not be renewed: this runner stopped
    /// before handling another event.
    #[error("lease: {0}")]
    Lease(#[from] LeaseError),
    /// The projection's `handle`, `commit` or `reset` failed; the position
    /// of the event it failed on (or the commit position) is given.
    #[error("projection failed at position {position}: {source}")]
    Projection {
        /// The position of the event (or commit) that failed.
        position: Position,
        /// The projection's error.
        #[source]
        source: BoxError,
    },
}

impl RunnerError {
    /// Whether another runner has this projection (its checkpoint moved, or
    /// it holds or took over the lease): this runner must not continue.
    pub fn is_fenced(&self) -> bool {
        matches!(
            self,
            RunnerError::Checkpoint(CheckpointError::Conflict { .. })
                | RunnerError::Lease(LeaseError::Held { .. } | LeaseError::Lost { .. })
        )
    }
}

/// Where a run stands, reported after each checkpoint (see
/// [`ProjectionRunner::on_progress`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// The projection.
    pub projection: String,
    /// The checkpoint just saved.
    pub position: Position,
    /// The namespace's head when last measured.
    pub head: Position,
    /// Every position up to here was either handled or holds nothing for
    /// this projection (foreign records the trust policy skipped, events
    /// the filter leaves out): known when the feed last reached the head.
    pub clear_to: Position,
    /// Events handled by this run.
    pub handled: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl Progress {
    /// Events handled per second in this run.
    pub fn events_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.handled as f64 / secs
        } else {
            0.0
        }
    }

    /// How far the checkpoint is from the head, in positions, not counting
    /// the positions known to hold nothing for this projection (see
    /// [`Progress::clear_to`]): 0 once the feed reached the head, even when
    /// the last records of the stream are foreign.
    pub fn behind(&self) -> u64 {
        let done = self.position.max(self.clear_to);
        self.head.get().saturating_sub(done.get())
    }
}

struct Metrics {
    position: Gauge,
    lag_events: Gauge,
    lag_seconds: Gauge,
    events: Counter,
    errors: Counter,
    checkpoints: Counter,
}

impl Metrics {
    fn new(namespace: &str, projection: &str) -> Self {
        let (ns, p) = (namespace.to_owned(), projection.to_owned());
        Metrics {
            position: metrics::gauge!("aether_projection_position", "namespace" => ns.clone(), "projection" => p.clone()),
            lag_events: metrics::gauge!("aether_projection_lag_events", "namespace" => ns.clone(), "projection" => p.clone()),
            lag_seconds: metrics::gauge!("aether_projection_lag_seconds", "namespace" => ns.clone(), "projection" => p.clone()),
            events: metrics::counter!("aether_projection_events_total", "namespace" => ns.clone(), "projection" => p.clone()),
            errors: metrics::counter!("aether_projection_errors_total", "namespace" => ns.clone(), "projection" => p.clone()),
            checkpoints: metrics::counter!("aether_projection_checkpoints_total", "namespace" => ns, "projection" => p),
        }
    }
}

type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Runs a [`Projection`] over a store's feed with a [`CheckpointStore`].
///
/// It loads the checkpoint, reads the feed from it, hands each event to
/// [`Projection::handle`] in commit order, and after every `batch_size`
/// events (or when no event arrives for `flush_after`, or at the end of a
/// catch-up) calls [`Projection::commit`] and saves the position with
/// compare-and-set. Delivery is at least once across crashes (exactly once
/// when the read model is its own checkpoint store; see
/// [`aether_core::projection`]).
///
/// # Metrics
/// Labelled `namespace` and `projection`: `aether_projection_position`
/// (last checkpoint), `aether_projection_lag_events` (head minus
/// checkpoint, measured at each checkpoint), `aether_projection_lag_seconds`
/// (now minus the last handled event's timestamp; 0 when caught up),
/// `aether_projection_events_total` (its rate is events/s),
/// `aether_projection_errors_total`, `aether_projection_checkpoints_total`.
pub struct ProjectionRunner<S, C> {
    store: S,
    checkpoints: C,
    batch_size: usize,
    flush_after: Duration,
    progress: Option<ProgressFn>,
    lease: Option<(Arc<dyn ProjectionLease>, Duration)>,
    owner: String,
}

impl<S: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for ProjectionRunner<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("store", &self.store)
            .field("checkpoints", &self.checkpoints)
            .field("batch_size", &self.batch_size)
            .field("flush_after", &self.flush_after)
            .finish_non_exhaustive()
    }
}

impl<S: EventFeed, C: CheckpointStore> ProjectionRunner<S, C> {
    /// A runner over `store`'s feed, keeping checkpoints in `checkpoints`;
    /// batches of 256 events, flushed after 50 ms without an event.
    pub fn new(store: S, checkpoints: C) -> Self {
        ProjectionRunner {
            store,
            checkpoints,
            batch_size: 256,
            flush_after: Duration::from_millis(50),
            progress: None,
            lease: None,
            owner: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Runs only while holding `lease` on the projection, taken for `ttl`
    /// (at least 1 s) before the checkpoint is loaded, renewed at a third of
    /// `ttl` (before handling an event once the renewal is due, and while
    /// idle) and given back when the run stops. A runner that finds the
    /// lease held fails at once with [`RunnerError::Lease`]
    /// ([`RunnerError::is_fenced`]) without handling anything; one whose
    /// renewal fails stops before its next event. See [`ProjectionLease`](crate::ProjectionLease).
    #[must_use]
    pub fn lease(mut self, lease: impl ProjectionLease, ttl: Duration) -> Self {
        self.lease = Some((Arc::new(lease), ttl.max(Duration::from_secs(1))));
        self
    }

    /// This runner's owner id in its lease (random per runner).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Commits and saves a checkpoint at least every `n` events (at least 1).
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Commits what is pending when no event arrives for this long.
    #[must_use]
    pub fn flush_after(mut self, d: Duration) -> Self {
        self.flush_after = d;
        self
    }

    /// Calls `f` after every checkpoint with the run's [`Progress`] (for
    /// long rebuilds: position, head, events/s).
    #[must_use]
    pub fn on_progress(mut self, f: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.progress = Some(Box::new(f));
        self
    }

    /// The checkpoint store.
    pub fn checkpoints(&self) -> &C {
        &self.checkpoints
    }

    /// Catch-up, then live, forever: returns only when something fails.
    ///
    /// # Errors
    /// See [`RunnerError`]; a fenced runner gets
    /// [`RunnerError::Checkpoint`] with a conflict ([`RunnerError::is_fenced`]).
    pub async fn run<P: Projection>(
        &mut self,
        projection: &mut P,
    ) -> Result<std::convert::Infallible, RunnerError> {
        self.drive(projection, true, false).await?;
        // A live drive ends only with an error.
        Err(RunnerError::FeedEnded)
    }

    /// Reads the feed from the checkpoint up to the namespace's head as of
    /// now, commits, saves the checkpoint and returns it.
    ///
    /// # Errors
    /// See [`RunnerError`].
    pub async fn catch_up<P: Projection>(
        &mut self,
        projection: &mut P,
    ) -> Result<Position, RunnerError> {
        self.drive(projection, false, false).await
    }

    /// Rebuilds from position 0: [`Projection::reset`], the checkpoint set
    /// back to 0 (compare-and-set: a runner still running on the old
    /// checkpoint is fenced at its next save), then [`Self::catch_up`].
    ///
    /// # Errors
    /// See [`RunnerError`].
    pub async fn rebuild<P: Projection>(
        &mut self,
        projection: &mut P,
    ) -> Result<Position, RunnerError> {
        self.drive(projection, false, true).await
    }

    async fn drive<P: Projection>(
        &mut self,
        projection: &mut P,
        live: bool,
        reset: bool,
    ) -> Result<Position, RunnerError> {
        let name = projection.name().to_owned();
        let m = Metrics::new(self.store.namespace().as_str(), &name);
        let mut lease = Lease {
            store: self.lease.clone(),
            owner: self.owner.clone(),
            held: None,
        };
        let result = match lease.keep(&name).await {
            Ok(()) => {
                self.drive_inner(projection, live, reset, &name, &m, &mut lease)
                    .await
            }
            Err(e) => Err(e),
        };
        if let (Some((store, _)), Some(held)) = (&lease.store, lease.held)
            && let Err(e) = store.release(&name, &lease.owner, held.token).await
        {
            tracing::debug!(projection = %name, error = %e, "could not give the lease back; it expires by itself");
        }
        if let Err(e) = &result {
            m.errors.increment(1);
            tracing::warn!(projection = %name, error = %e, "projection runner stopped");
        }
        result
    }

    async fn drive_inner<P: Projection>(
        &mut self,
        projection: &mut P,
        live: bool,
        reset: bool,
        name: &str,
        m: &Metrics,
        lease: &mut Lease,
    ) -> Result<Position, RunnerError> {
        if reset {
            tracing::info!(projection = %name, "rebuilding from position 0");
            projection
                .reset()
                .await
                .map_err(|source| RunnerError::Projection {
                    position: Position::ZERO,
                    source,
                })?;
            let cp = self.checkpoints.load(name).await?;
            if cp.position != Position::ZERO {
                self.checkpoints.save(name, cp, Position::ZERO).await?;
            }
        }
        let mut run = Run {
            cp: self.checkpoints.load(name).await?,
            last: Position::ZERO,
            pending: 0,
            handled: 0,
            started: Instant::now(),
            head: self.store.head().await.map_err(RunnerError::Feed)?,
            clear_to: Position::ZERO,
            probed_at: Position::ZERO,
        };
        // A finite read ends at the head it measured when opened, which is
        // at least this one.
        let end_of_read = run.head;
        run.last = run.cp.position;
        m.position.set(run.cp.position.get() as f64);
        let filter = projection.filter();
        let mut feed = if live {
            self.store.subscribe_all(run.cp.position, filter)
        } else {
            self.store.read_all(run.cp.position, filter)
        };
        loop {
            // Wait for the next event no longer than until a pending batch
            // is due (`flush_after`) or the lease must be renewed.
            let mut wait = (run.pending > 0).then_some(self.flush_after);
            if let Some(h) = lease.held.as_ref() {
                let until_renewal = h.renew_at.saturating_duration_since(Instant::now());
                wait = Some(wait.map_or(until_renewal, |w| w.min(until_renewal)));
            }
            let next = match wait {
                Some(wait) => match tokio::time::timeout(wait, feed.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        lease.keep(name).await?;
                        if run.pending > 0 {
                            self.flush(projection, name, m, &mut run).await?;
                            m.lag_seconds.set(0.0);
                            if live {
                                self.probe(projection.filter(), name, m, &mut run).await;
                            }
                        }
                        continue;
                    }
                },
                None => feed.next().await,
            };
            match next {
                Some(Ok(item)) => {
                    // Fence before handling: a runner whose lease is due is
                    // renewed (or stopped) before it touches the read model.
                    lease.keep(name).await?;
                    self.handle(projection, &item, m, &mut run).await?;
                    if run.pending >= self.batch_size {
                        self.flush(projection, name, m, &mut run).await?;
                    }
                }
                Some(Err(e)) => return Err(RunnerError::Feed(e)),
                None if live => return Err(RunnerError::FeedEnded),
                None => {
                    // The read reached its end: everything up to the head
                    // measured at the start was handled or is nothing for
                    // this projection (foreign or filtered out).
                    run.clear_to = end_of_read;
                    if run.pending > 0 {
                        self.flush(projection, name, m, &mut run).await?;
                    } else {
                        self.report(name, m, &mut run).await;
                    }
                    return Ok(run.last);
                }
            }
        }
    }

    async fn handle<P: Projection>(
        &mut self,
        projection: &mut P,
        item: &FeedItem,
        m: &Metrics,
        run: &mut Run,
    ) -> Result<(), RunnerError> {
        projection
            .handle(item)
            .await
            .map_err(|source| RunnerError::Projection {
                position: item.position,
                source,
            })?;
        run.last = item.position;
        run.pending += 1;
        run.handled += 1;
        m.events.increment(1);
        let behind = time::OffsetDateTime::now_utc() - item.event.timestamp;
        m.lag_seconds.set(behind.as_seconds_f64().max(0.0));
        Ok(())
    }

    async fn flush<P: Projection>(
        &mut self,
        projection: &mut P,
        name: &str,
        m: &Metrics,
        run: &mut Run,
    ) -> Result<(), RunnerError> {
        projection
            .commit(run.last)
            .await
            .map_err(|source| RunnerError::Projection {
                position: run.last,
                source,
            })?;
        run.cp = self.checkpoints.save(name, run.cp, run.last).await?;
        run.pending = 0;
        m.checkpoints.increment(1);
        m.position.set(run.last.get() as f64);
        self.report(name, m, run).await;
        tracing::debug!(projection = %name, position = %run.last, head = %run.head, "checkpoint saved");
        // A feed that is always ready (a long catch-up in memory) must not
        // hold the worker: give other tasks a turn once per batch.
        tokio::task::yield_now().await;
        Ok(())
    }
}

impl<S: EventFeed, C: CheckpointStore> ProjectionRunner<S, C> {
    /// An idle live feed: when the head is past the last handled event, a
    /// finite read from there shows whether anything for this projection is
    /// in between; when nothing is, the positions up to the head are clear
    /// (foreign records, filtered-out events) and stop counting as lag.
    /// Once per head.
    async fn probe(
        &mut self,
        filter: aether_core::FeedFilter,
        name: &str,
        m: &Metrics,
        run: &mut Run,
    ) {
        let head = run.head;
        if head <= run.last.max(run.clear_to) || head == run.probed_at {
            return;
        }
        run.probed_at = head;
        let mut rest = self.store.read_all(run.last, filter);
        // Bounded: the runner is idle, but a new event waits meanwhile.
        let bound = self.flush_after.max(Duration::from_secs(2));
        if let Ok(None) = tokio::time::timeout(bound, rest.next()).await {
            run.clear_to = head;
            self.report(name, m, run).await;
        }
    }

    /// Measures the head and reports lag (metrics and the progress
    /// callback). Lag counts positions after the checkpoint that are not
    /// known to be clear: foreign records and filtered-out events after the
    /// last handled event stop counting once the feed is known to have
    /// passed them (the end of a catch-up, or an idle live feed whose probe
    /// found nothing up to the head).
    async fn report(&mut self, name: &str, m: &Metrics, run: &mut Run) {
        if let Ok(head) = self.store.head().await {
            run.head = head.max(run.last);
        }
        let done = run.last.max(run.clear_to);
        m.lag_events
            .set(run.head.get().saturating_sub(done.get()) as f64);
        if let Some(report) = self.progress.as_mut() {
            report(&Progress {
                projection: name.to_owned(),
                position: run.last,
                head: run.head,
                clear_to: run.clear_to,
                handled: run.handled,
                elapsed: run.started.elapsed(),
            });
        }
    }
}

/// A run's lease: the store (none without a lease), the owner id, and
/// the lease held.
struct Lease {
    store: Option<(Arc<dyn ProjectionLease>, Duration)>,
    owner: String,
    held: Option<Held>,
}

impl Lease {
    /// Takes the lease (first call) or renews it when due; nothing without
    /// a lease store.
    async fn keep(&mut self, name: &str) -> Result<(), RunnerError> {
        let Some((store, ttl)) = &self.store else {
            return Ok(());
        };
        let now = Instant::now();
        if self.held.as_ref().is_some_and(|h| now < h.renew_at) {
            return Ok(());
        }
        let token = store
            .acquire(name, &self.owner, *ttl, self.held.as_ref().map(|h| h.token))
            .await?;
        self.held = Some(Held {
            token,
            renew_at: now + *ttl / 3,
        });
        Ok(())
    }
}

/// The lease a runner holds.
struct Held {
    token: u64,
    renew_at: Instant,
}

struct Run {
    /// Positions up to here hold nothing more for this projection (see
    /// [`Progress::clear_to`]).
    clear_to: Position,
    /// The head last probed for being clear (see `ProjectionRunner::probe`).
    probed_at: Position,
    cp: Checkpoint,
    last: Position,
    pending: usize,
    handled: u64,
    started: Instant,
    head: Position,
}
