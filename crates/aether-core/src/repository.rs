//! The [`Repository`]: loads an aggregate from a store (its latest usable
//! snapshot and the events after it), runs a command and appends the
//! command's events with optimistic concurrency, effectively once.
//!
//! # Effectively-once commands
//!
//! Every command the [`Repository`] runs carries a [`CommandId`] (the
//! caller's, through [`Command::id`], or one generated per
//! [`Repository::execute`] call and kept across its conflict retries). Its
//! events get ids derived from it ([`EventId::for_command`]) and carry it as
//! their causation id. Each actor keeps a bounded window of the command ids
//! it applied (the last 128 by default, [`Repository::recent_commands`]),
//! rebuilt from its events and stored in snapshots. A command whose id is in
//! the window is not run again: the repository answers with the original
//! outcome (its events read back, `duplicate: true`). So a caller that
//! retries after `Timeout` or `Unavailable`, not knowing whether the first
//! attempt was stored, applies the command once — as long as it retries
//! with the same id before `recent_commands` newer commands push it out of
//! the window.
//!
//! [`EventId::for_command`]: crate::EventId::for_command

use std::time::Instant;

use crate::aggregate::{Aggregate, Rehydrated, fold, ignore_snapshot, usable_snapshot};
use crate::command::{
    Command, CommandId, CommandWindow, DEFAULT_COMMAND_WINDOW, RecentCommand, command_events,
};
use crate::error::{CommandError, StoreError};
use crate::event::Event;
use crate::name::ActorId;
use crate::snapshot::ActorSnapshot;
use crate::store::{EventStore, SnapshotStore};
use crate::version::Version;

/// What a command did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CommandOutcome<A> {
    /// The state after the command's events were applied (for a duplicate:
    /// the actor's current state, which may include later commands).
    pub state: A,
    /// The actor's version after the command's append.
    pub version: Version,
    /// The events the command appended (empty if it produced none); for a
    /// duplicate, the original events read back from the store.
    pub events: Vec<Event>,
    /// How many times the command was re-run after a version conflict.
    pub retries: u32,
    /// Whether a snapshot was written after this command.
    pub snapshotted: bool,
    /// The command's id.
    pub command_id: CommandId,
    /// Whether the command had already been applied (its id was in the
    /// actor's window): nothing was run or written this time.
    pub duplicate: bool,
}

/// Loads aggregates from a store (snapshot + later events), runs commands and
/// appends their events with the loaded version as the expected version.
///
/// On a [`crate::StoreError::VersionConflict`] the aggregate is reloaded and the
/// command re-run, up to [`Repository::max_retries`] times: a command is a
/// decision on the *current* state, so re-deciding after a concurrent write is
/// correct. Commands are effectively-once (see the [module docs](self)). A
/// snapshot is written every `snapshot_every` events.
///
/// # Metrics
/// `aether_commands_total{kind, outcome}` (`applied`, `duplicate`,
/// `rejected`, `conflict`, `error`), `aether_command_retries_total{kind}`,
/// `aether_load_duration_seconds{kind}` (histogram),
/// `aether_events_replayed_total{kind}`,
/// `aether_snapshot_failures_total{kind, stage}` (`encode`, `save`),
/// `aether_snapshots_ignored_total{kind, reason}`. The macros are called at
/// each use, so a recorder installed after the repository was made sees
/// everything.
///
/// # Tracing
/// Spans `aether.repository.execute` (info; `kind`, `actor`,
/// `command_id`), `aether.repository.decide_and_append` (info) and
/// `aether.repository.load` (debug).
#[derive(Debug, Clone)]
pub struct Repository<S> {
    store: S,
    snapshot_every: Option<u64>,
    max_retries: u32,
    window: usize,
}

impl<S: EventStore + SnapshotStore> Repository<S> {
    /// A repository over `store`, with 3 retries, no snapshots and a window
    /// of [`DEFAULT_COMMAND_WINDOW`] recent commands per actor.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            snapshot_every: None,
            max_retries: 3,
            window: DEFAULT_COMMAND_WINDOW,
        }
    }

    /// Writes a snapshot whenever an append crosses a multiple of `n` events.
    #[must_use]
    pub fn snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = (n > 0).then_some(n);
        self
    }

    /// How often a conflicting command is re-run before the conflict is returned.
    #[must_use]
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// How many recent command ids each actor remembers (default 128). A
    /// retry is recognised only while its command is among the last `n`
    /// commands of the actor.
    #[must_use]
    pub fn recent_commands(mut self, n: usize) -> Self {
        self.window = n;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Loads `actor` from its latest usable snapshot and the events after it.
    /// A snapshot of another schema version, with undecodable state, or
    /// ahead of the stored events is ignored and the actor is replayed from
    /// its first event.
    ///
    /// # Errors
    /// Store and rehydration errors.
    #[tracing::instrument(
        name = "aether.repository.load",
        level = "debug",
        skip_all,
        fields(kind = A::KIND, actor = %actor),
    )]
    pub async fn load<A: Aggregate>(
        &self,
        actor: &ActorId,
    ) -> Result<Rehydrated<A>, CommandError<A::Error>> {
        let started = Instant::now();
        let snapshot = self.store.get_latest_snapshot(actor).await?;
        let start = match &snapshot {
            Some(s) => usable_snapshot::<A>(actor, s)?,
            None => None,
        };
        let loaded = match start {
            Some(start) => {
                let from = start.version.next().unwrap_or(start.version);
                let events = self.store.get_events(actor, from).await?;
                let latest = match events.last() {
                    Some(e) => e.version,
                    None => self.store.get_latest_version(actor).await?,
                };
                if latest < start.version {
                    if let Some(s) = &snapshot {
                        ignore_snapshot::<A>(
                            actor,
                            s,
                            "ahead",
                            &format!("the latest stored version is {latest}"),
                        );
                    }
                    self.replay(actor).await?
                } else {
                    fold(actor, Some(start), &events, self.window)?
                }
            }
            None => self.replay(actor).await?,
        };
        metrics::histogram!("aether_load_duration_seconds", "kind" => A::KIND)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("aether_events_replayed_total", "kind" => A::KIND)
            .increment(loaded.events_applied as u64);
        Ok(loaded)
    }

    async fn replay<A: Aggregate>(
        &self,
        actor: &ActorId,
    ) -> Result<Rehydrated<A>, CommandError<A::Error>> {
        let events = self.store.get_events(actor, Version::ZERO).await?;
        Ok(fold(actor, None, &events, self.window)?)
    }

    /// Loads `actor`, runs `command` with a fresh [`CommandId`] (kept across
    /// the conflict retries) and appends the resulting events.
    ///
    /// If this returns `Timeout` or `Unavailable` the command may or may not
    /// have been stored: to retry safely, use
    /// [`execute_command`](Self::execute_command) with an id of your own.
    ///
    /// # Errors
    /// As [`execute_command`](Self::execute_command).
    pub async fn execute<A>(
        &self,
        actor: &ActorId,
        command: A::Command,
    ) -> Result<CommandOutcome<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        self.execute_command(actor, Command::new(command)).await
    }

    /// Loads `actor`, runs `command` and appends the resulting events,
    /// retrying on version conflicts, effectively once: if the command's id
    /// is in the actor's window of recent commands, nothing runs and the
    /// original outcome is returned with `duplicate: true`. Retrying after
    /// `Timeout` or `Unavailable` with the same [`Command`] is therefore safe.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] if the aggregate refuses the command;
    /// [`CommandError::Store`] with a [`crate::StoreError::VersionConflict`] if
    /// conflicts outlast the retries; other store, codec and rehydration
    /// errors. A snapshot failure is never an error (the events are stored).
    #[tracing::instrument(
        name = "aether.repository.execute",
        skip_all,
        fields(kind = A::KIND, actor = %actor, command_id = %command.command_id()),
    )]
    pub async fn execute_command<A>(
        &self,
        actor: &ActorId,
        command: Command<A::Command>,
    ) -> Result<CommandOutcome<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let mut retries = 0;
        loop {
            let loaded = match self.load::<A>(actor).await {
                Ok(l) => l,
                Err(e) => {
                    count_command::<A>("error");
                    return Err(e);
                }
            };
            match self.run(actor, loaded, command.clone()).await {
                Err(CommandError::Store(e)) if e.is_conflict() && retries < self.max_retries => {
                    retries += 1;
                    metrics::counter!("aether_command_retries_total", "kind" => A::KIND)
                        .increment(1);
                }
                Ok(mut outcome) => {
                    outcome.retries = retries;
                    return Ok(outcome);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `command` against an already loaded aggregate and appends the
    /// events with `loaded.version` as the expected version. No retry. A
    /// command whose id is in `loaded`'s window returns its original outcome.
    ///
    /// # Errors
    /// As [`Repository::execute_command`], with conflicts returned at once.
    #[tracing::instrument(
        name = "aether.repository.decide_and_append",
        skip_all,
        fields(kind = A::KIND, actor = %actor, command_id = %command.command_id(), version = %loaded.version),
    )]
    pub async fn decide_and_append<A: Aggregate>(
        &self,
        actor: &ActorId,
        loaded: Rehydrated<A>,
        command: Command<A::Command>,
    ) -> Result<CommandOutcome<A>, CommandError<A::Error>> {
        self.run(actor, loaded, command).await
    }

    async fn run<A: Aggregate>(
        &self,
        actor: &ActorId,
        loaded: Rehydrated<A>,
        command: Command<A::Command>,
    ) -> Result<CommandOutcome<A>, CommandError<A::Error>> {
        let result = self.decide(actor, loaded, command).await;
        count_command::<A>(match &result {
            Ok(o) if o.duplicate => "duplicate",
            Ok(_) => "applied",
            Err(CommandError::Rejected(_)) => "rejected",
            Err(CommandError::Store(e)) if e.is_conflict() => "conflict",
            Err(_) => "error",
        });
        result
    }

    async fn decide<A: Aggregate>(
        &self,
        actor: &ActorId,
        loaded: Rehydrated<A>,
        command: Command<A::Command>,
    ) -> Result<CommandOutcome<A>, CommandError<A::Error>> {
        let command_id = command.id;
        if let Some(done) = loaded.find_command(command_id) {
            let events = self.read_command(actor, done).await?;
            return Ok(CommandOutcome {
                state: loaded.state,
                version: done.last,
                events,
                retries: 0,
                snapshotted: false,
                command_id,
                duplicate: true,
            });
        }
        let Rehydrated {
            mut state,
            version,
            recent_commands,
            ..
        } = loaded;
        let new_events = state
            .handle(command.command)
            .map_err(CommandError::Rejected)?;
        if new_events.is_empty() {
            return Ok(CommandOutcome {
                state,
                version,
                events: Vec::new(),
                retries: 0,
                snapshotted: false,
                command_id,
                duplicate: false,
            });
        }
        let batch = command_events(
            actor,
            version,
            &new_events,
            command_id,
            command.correlation_id.as_deref(),
        )
        .map_err(|e| match e {
            StoreError::Codec(c) => CommandError::Codec(c),
            other => CommandError::Store(other),
        })?;
        let new_version = self.store.append(actor, version, batch.clone()).await?;
        for e in &new_events {
            state.apply(e);
        }
        let snapshotted = match self.snapshot_every {
            Some(n) if version.get() / n != new_version.get() / n => {
                let mut window = CommandWindow::new(self.window, recent_commands);
                for e in &batch {
                    window.note_event(e);
                }
                self.write_snapshot::<A>(actor, new_version, &state, window.to_vec())
                    .await
            }
            _ => false,
        };
        Ok(CommandOutcome {
            state,
            version: new_version,
            events: batch,
            retries: 0,
            snapshotted,
            command_id,
            duplicate: false,
        })
    }

    /// The events an already applied command wrote (versions
    /// `done.first..=done.last`), read back from the store: the original
    /// outcome a repeated command is answered with.
    ///
    /// # Errors
    /// Store errors.
    pub async fn read_command(
        &self,
        actor: &ActorId,
        done: RecentCommand,
    ) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .store
            .get_events(actor, done.first)
            .await?
            .into_iter()
            .take_while(|e| e.version <= done.last)
            .collect())
    }

    /// Writes a snapshot of `state` at `version` with the window `recent`
    /// (oldest first) and the aggregate's [`Aggregate::SNAPSHOT_VERSION`];
    /// returns whether it was stored. A failure is counted
    /// (`aether_snapshot_failures_total{kind, stage}`) and logged, never
    /// returned: the events are already stored and a snapshot only bounds
    /// replay. Hosts that keep actors in memory use it to snapshot by the
    /// same rule as [`Repository::execute`].
    pub async fn write_snapshot<A: Aggregate>(
        &self,
        actor: &ActorId,
        version: Version,
        state: &A,
        recent: Vec<RecentCommand>,
    ) -> bool {
        let failed = |stage: &'static str, error: &dyn std::fmt::Display| {
            metrics::counter!("aether_snapshot_failures_total", "kind" => A::KIND, "stage" => stage)
                .increment(1);
            tracing::warn!(kind = A::KIND, actor = %actor, %version, stage, %error, "snapshot not written");
            false
        };
        let snapshot = match ActorSnapshot::new(actor.clone(), version, state) {
            Ok(s) => s
                .with_schema_version(A::SNAPSHOT_VERSION)
                .with_recent_commands(recent),
            Err(e) => return failed("encode", &e),
        };
        match self.store.save_snapshot(snapshot).await {
            Ok(()) => true,
            Err(e) => failed("save", &e),
        }
    }
}

fn count_command<A: Aggregate>(outcome: &'static str) {
    metrics::counter!("aether_commands_total", "kind" => A::KIND, "outcome" => outcome)
        .increment(1);
}
