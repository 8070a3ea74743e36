//! Aggregates (event-sourced actors): the [`Aggregate`] trait, pure
//! [`rehydrate`], and the [`Repository`] that loads an aggregate from a store,
//! runs a command and appends its events with optimistic concurrency.
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
//! # Snapshots
//!
//! A snapshot only bounds replay. One written with another
//! [`Aggregate::SNAPSHOT_VERSION`], one whose state does not decode, or one
//! ahead of the stored events is ignored (counted in
//! `aether_snapshots_ignored_total{kind, reason}`, logged) and the actor is
//! replayed from its events. Failing to encode or save a snapshot never fails
//! a command whose events were stored.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::command::{CommandId, RecentCommand};
use crate::error::{CommandError, RehydrateError, StoreError};
use crate::event::{DomainEvent, Event, EventId};
use crate::name::ActorId;
use crate::snapshot::ActorSnapshot;
use crate::store::{EventStore, SnapshotStore};
use crate::version::Version;

/// An event-sourced aggregate: its value *is* the state, folded from events.
///
/// `handle` decides (pure: no I/O, no clock), `apply` folds (must not fail:
/// events are facts that already happened). Commands, events, errors and the
/// state are serde types, because commands cross the network to the node that
/// hosts an actor and state is stored in snapshots.
///
/// ```
/// use aether_core::{Aggregate, DomainEvent};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Counter { value: u64 }
///
/// #[derive(Serialize, Deserialize)]
/// enum CounterCommand { Add(u64) }
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// enum CounterEvent { Added(u64) }
///
/// impl DomainEvent for CounterEvent {
///     fn event_type(&self) -> &'static str { "Added" }
/// }
///
/// #[derive(Debug, thiserror::Error, Serialize, Deserialize)]
/// #[error("counter would overflow")]
/// struct Overflow;
///
/// impl Aggregate for Counter {
///     type Command = CounterCommand;
///     type Event = CounterEvent;
///     type Error = Overflow;
///     const KIND: &'static str = "counter";
///
///     fn handle(&self, command: CounterCommand) -> Result<Vec<CounterEvent>, Overflow> {
///         match command {
///             CounterCommand::Add(n) => {
///                 self.value.checked_add(n).ok_or(Overflow)?;
///                 Ok(vec![CounterEvent::Added(n)])
///             }
///         }
///     }
///
///     fn apply(&mut self, event: &CounterEvent) {
///         match event { CounterEvent::Added(n) => self.value += n }
///     }
/// }
/// ```
pub trait Aggregate: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What the aggregate is asked to do.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// What it records.
    type Event: DomainEvent;
    /// Why it refuses a command.
    type Error: std::error::Error + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// A short, stable name of the aggregate type (`"order"`, `"account"`).
    const KIND: &'static str;

    /// The schema version of the state as stored in snapshots. Bump it when
    /// the state's serialized shape changes incompatibly: snapshots of
    /// another version are then ignored and actors replay their events.
    const SNAPSHOT_VERSION: u32 = 1;

    /// Decides which events a command produces, given the current state.
    ///
    /// # Errors
    /// The aggregate's own error when the command is refused.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
}

/// An aggregate rebuilt from its history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rehydrated<A> {
    /// The folded state.
    pub state: A,
    /// The version of the last event folded in ([`Version::ZERO`] if none).
    pub version: Version,
    /// The version of the snapshot it started from, if one was used.
    pub snapshot_version: Option<Version>,
    /// How many events were applied on top of the snapshot.
    pub events_applied: usize,
    /// The commands applied most recently, oldest first, with the versions
    /// of their events (at most the window size; see [`Repository::recent_commands`]).
    pub recent_commands: Vec<RecentCommand>,
}

impl<A> Rehydrated<A> {
    /// The versions written by command `id`, if it is in the window.
    pub fn find_command(&self, id: CommandId) -> Option<RecentCommand> {
        self.recent_commands
            .iter()
            .rev()
            .find(|c| c.id == id)
            .copied()
    }
}

/// The default size of an actor's window of recent command ids.
pub const DEFAULT_COMMAND_WINDOW: usize = 128;

/// Rebuilds an aggregate from an optional snapshot and the events after it.
/// Pure: no I/O. The window of recent commands is rebuilt from the
/// snapshot's and the events' causation ids, bounded to
/// [`DEFAULT_COMMAND_WINDOW`]; see [`rehydrate_with_window`].
///
/// Events at or below the snapshot's version are skipped; the rest must
/// continue it without a gap. A snapshot of another
/// [`Aggregate::SNAPSHOT_VERSION`] or whose state does not decode is ignored
/// (counted in `aether_snapshots_ignored_total`, logged) and the events are
/// folded from the start: pass the whole history for that case to succeed.
///
/// # Errors
/// [`RehydrateError::Codec`] if an event cannot be decoded,
/// [`RehydrateError::Gap`] if versions do not follow on (e.g. an ignored
/// snapshot and only the events after it),
/// [`RehydrateError::WrongActor`] if a record belongs to another actor.
pub fn rehydrate<'e, A: Aggregate>(
    actor: &ActorId,
    snapshot: Option<&ActorSnapshot>,
    events: impl IntoIterator<Item = &'e Event>,
) -> Result<Rehydrated<A>, RehydrateError> {
    rehydrate_with_window(actor, snapshot, events, DEFAULT_COMMAND_WINDOW)
}

/// [`rehydrate`] keeping a window of at most `window` recent commands.
///
/// # Errors
/// As [`rehydrate`].
pub fn rehydrate_with_window<'e, A: Aggregate>(
    actor: &ActorId,
    snapshot: Option<&ActorSnapshot>,
    events: impl IntoIterator<Item = &'e Event>,
    window: usize,
) -> Result<Rehydrated<A>, RehydrateError> {
    let start = match snapshot {
        Some(s) => usable_snapshot::<A>(actor, s)?,
        None => None,
    };
    fold(actor, start, events, window)
}

/// The folded starting point a snapshot gives.
struct Start<A> {
    state: A,
    version: Version,
    recent: Vec<RecentCommand>,
}

/// Decodes a snapshot if it can be used; ignores (counts, logs) one of
/// another schema version or with undecodable state.
fn usable_snapshot<A: Aggregate>(
    actor: &ActorId,
    s: &ActorSnapshot,
) -> Result<Option<Start<A>>, RehydrateError> {
    if s.actor_id != *actor {
        return Err(RehydrateError::WrongActor {
            expected: actor.clone(),
            found: s.actor_id.clone(),
        });
    }
    if s.schema_version != A::SNAPSHOT_VERSION {
        ignore_snapshot::<A>(
            actor,
            s,
            "schema_version",
            &format!(
                "schema version {} is not the aggregate's {}",
                s.schema_version,
                A::SNAPSHOT_VERSION
            ),
        );
        return Ok(None);
    }
    match s.decode::<A>() {
        Ok(state) => Ok(Some(Start {
            state,
            version: s.version,
            recent: s.recent_commands.clone(),
        })),
        Err(e) => {
            ignore_snapshot::<A>(actor, s, "undecodable", &e.to_string());
            Ok(None)
        }
    }
}

fn ignore_snapshot<A: Aggregate>(
    actor: &ActorId,
    s: &ActorSnapshot,
    reason: &'static str,
    detail: &str,
) {
    metrics::counter!("aether_snapshots_ignored_total", "kind" => A::KIND, "reason" => reason)
        .increment(1);
    tracing::warn!(
        kind = A::KIND,
        actor = %actor,
        snapshot_version = %s.version,
        reason,
        detail,
        "ignoring a snapshot; replaying the actor from its events"
    );
}

/// An actor's bounded window of the commands it applied most recently, with
/// the versions of their events: what makes a repeated command recognisable.
///
/// [`rehydrate_with_window`] and [`Repository::load`] rebuild it (as
/// [`Rehydrated::recent_commands`]); a host that keeps an actor in memory
/// turns that into a `CommandWindow` and notes each appended event, so its
/// window follows exactly the rule a reload would rebuild.
///
/// ```
/// use aether_core::{ActorId, CommandId, CommandWindow, Version, command_events};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Added(u64);
/// # impl aether_core::DomainEvent for Added { fn event_type(&self) -> &'static str { "Added" } }
///
/// let actor = ActorId::new("a")?;
/// let id = CommandId::new();
/// let batch = command_events(&actor, Version::ZERO, &[Added(1), Added(2)], id, None)?;
/// let mut window = CommandWindow::new(128, Vec::new());
/// batch.iter().for_each(|e| window.note_event(e));
/// let done = window.find(id).expect("noted");
/// assert_eq!((done.first, done.last), (Version::new(1), Version::new(2)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CommandWindow {
    cap: usize,
    items: VecDeque<RecentCommand>,
    /// Where each command's latest entry is: its position counted from the
    /// first entry ever pushed (`popped + index in items`), so a lookup is
    /// one hash probe instead of a scan of the window.
    index: HashMap<CommandId, u64, IdHash>,
    /// How many entries have left the front of `items`.
    popped: u64,
}

/// A cheap hasher for command ids (UUIDs: mostly random bits). Collisions
/// forced by a caller can only slow lookups in one bounded window.
#[derive(Debug, Clone, Copy, Default)]
struct IdHash;

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

#[derive(Debug)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl PartialEq for CommandWindow {
    fn eq(&self, other: &Self) -> bool {
        self.cap == other.cap && self.items == other.items
    }
}

impl Eq for CommandWindow {}

impl CommandWindow {
    /// A window of at most `cap` commands, seeded with `seed` (oldest first;
    /// the oldest beyond `cap` are dropped).
    pub fn new(cap: usize, seed: Vec<RecentCommand>) -> Self {
        let skip = seed.len().saturating_sub(cap);
        let mut w = CommandWindow {
            cap,
            items: VecDeque::with_capacity(seed.len() - skip),
            index: HashMap::with_capacity_and_hasher(seed.len() - skip, IdHash),
            popped: 0,
        };
        for c in seed.into_iter().skip(skip) {
            w.push(c);
        }
        w
    }

    fn push(&mut self, c: RecentCommand) {
        let at = self.popped + self.items.len() as u64;
        self.items.push_back(c);
        self.index.insert(c.id, at);
        while self.items.len() > self.cap {
            if let Some(old) = self.items.pop_front() {
                // Forget the id only if this was its latest entry.
                if self.index.get(&old.id) == Some(&self.popped) {
                    self.index.remove(&old.id);
                }
            }
            self.popped += 1;
        }
    }

    /// Notes that the event of `version` was caused by command `id`. The
    /// consecutive events of one command make one entry; the oldest entry
    /// leaves when the window is full.
    pub fn note(&mut self, id: CommandId, version: Version) {
        if let Some(last) = self.items.back_mut()
            && last.id == id
            && last.last.next() == Some(version)
        {
            last.last = version;
            return;
        }
        self.push(RecentCommand {
            id,
            first: version,
            last: version,
        });
    }

    /// Notes an appended event under its causation id, if that is a
    /// [`CommandId`]; other events leave the window unchanged.
    pub fn note_event(&mut self, e: &Event) {
        if let Some(id) = e
            .metadata
            .causation_id
            .as_deref()
            .and_then(|c| c.parse::<CommandId>().ok())
        {
            self.note(id, e.version);
        }
    }

    /// The versions written by command `id`, if it is in the window (its
    /// latest entry, if it wrote more than one). One hash lookup.
    pub fn find(&self, id: CommandId) -> Option<RecentCommand> {
        let at = *self.index.get(&id)?;
        let i = usize::try_from(at.checked_sub(self.popped)?).ok()?;
        self.items.get(i).copied()
    }

    /// The commands in the window, oldest first (as snapshots store them).
    pub fn to_vec(&self) -> Vec<RecentCommand> {
        self.items.iter().copied().collect()
    }

    /// How many commands the window holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the window holds no command.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn fold<'e, A: Aggregate>(
    actor: &ActorId,
    start: Option<Start<A>>,
    events: impl IntoIterator<Item = &'e Event>,
    window: usize,
) -> Result<Rehydrated<A>, RehydrateError> {
    let (mut state, mut version, snapshot_version, recent) = match start {
        Some(s) => (s.state, s.version, Some(s.version), s.recent),
        None => (A::default(), Version::ZERO, None, Vec::new()),
    };
    let mut recent = CommandWindow::new(window, recent);
    let mut events_applied = 0;
    for e in events {
        if e.actor_id != *actor {
            return Err(RehydrateError::WrongActor {
                expected: actor.clone(),
                found: e.actor_id.clone(),
            });
        }
        if e.version <= version {
            continue;
        }
        let expected = version.next().unwrap_or(version);
        if e.version != expected {
            return Err(RehydrateError::Gap {
                actor: actor.clone(),
                expected,
                found: e.version,
            });
        }
        state.apply(&e.decode::<A::Event>()?);
        recent.note_event(e);
        version = e.version;
        events_applied += 1;
    }
    Ok(Rehydrated {
        state,
        version,
        snapshot_version,
        events_applied,
        recent_commands: recent.items.into(),
    })
}

/// A command with its id and correlation id, for [`Repository::execute_command`].
///
/// ```
/// use aether_core::{Command, CommandId};
///
/// // An id the caller keeps, so a retry of the same request is recognised.
/// let id = CommandId::new();
/// let cmd = Command::new("deposit 100").id(id).correlation_id("request-7");
/// assert_eq!(cmd.command_id(), id);
/// ```
#[derive(Debug, Clone)]
pub struct Command<C> {
    command: C,
    id: CommandId,
    correlation_id: Option<String>,
}

impl<C> Command<C> {
    /// Wraps `command` with a fresh [`CommandId`].
    pub fn new(command: C) -> Self {
        Command {
            command,
            id: CommandId::new(),
            correlation_id: None,
        }
    }

    /// Sets the command id: the same id on every retry of one request makes
    /// the command effectively-once.
    #[must_use]
    pub fn id(mut self, id: CommandId) -> Self {
        self.id = id;
        self
    }

    /// Sets the correlation id written into every event's metadata.
    #[must_use]
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The command id.
    pub fn command_id(&self) -> CommandId {
        self.id
    }

    /// The command itself.
    pub fn inner(&self) -> &C {
        &self.command
    }

    /// The correlation id, if one was set.
    pub fn correlation(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// Takes the command out, dropping its id and correlation id.
    pub fn into_inner(self) -> C {
        self.command
    }
}

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

/// The batch command `id` appends after `expected`: the events stamped with
/// consecutive versions, ids derived from the command id
/// ([`EventId::for_command`]), the command id as causation id (so a
/// [`CommandWindow`] and a reload recognise it) and the correlation id, if
/// any. This is the one rule every host of actors writes commands with.
///
/// # Errors
/// [`StoreError::Codec`] if a payload cannot be serialized;
/// [`StoreError::InvalidInput`] if the versions would run past `u64::MAX` or
/// a command produced more than `u32::MAX` events.
pub fn command_events<E: DomainEvent>(
    actor: &ActorId,
    expected: Version,
    events: &[E],
    id: CommandId,
    correlation_id: Option<&str>,
) -> Result<Vec<Event>, StoreError> {
    let mut causation = Some(String::from(
        &*id.0
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    ));
    let last = events.len().saturating_sub(1);
    let mut version = expected;
    events
        .iter()
        .enumerate()
        .map(|(i, domain)| {
            version = version
                .next()
                .ok_or(crate::error::InvalidInput::VersionOverflow { after: version })?;
            let index = u32::try_from(i).map_err(|_| {
                StoreError::InvalidInput(crate::error::InvalidInput::Other(format!(
                    "a command produced more than {} events",
                    u32::MAX
                )))
            })?;
            let mut e = Event::from_domain_with_id(
                EventId::for_command(id, actor, index),
                actor.clone(),
                version,
                domain,
            )?;
            // The last event takes the text itself, the others a copy.
            e.metadata.causation_id = if i == last {
                causation.take()
            } else {
                causation.clone()
            };
            if let Some(c) = correlation_id {
                e.metadata.correlation_id = Some(c.to_owned());
            }
            Ok(e)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Sum(u64);

    #[derive(Debug, Serialize, Deserialize)]
    struct Added(u64);

    impl DomainEvent for Added {
        fn event_type(&self) -> &'static str {
            "Added"
        }
    }

    #[derive(Debug, thiserror::Error, Serialize, Deserialize)]
    #[error("never")]
    struct Never;

    impl Aggregate for Sum {
        type Command = u64;
        type Event = Added;
        type Error = Never;
        const KIND: &'static str = "sum";
        const SNAPSHOT_VERSION: u32 = 3;

        fn handle(&self, n: u64) -> Result<Vec<Added>, Never> {
            Ok(vec![Added(n)])
        }

        fn apply(&mut self, e: &Added) {
            self.0 += e.0;
        }
    }

    fn history(actor: &ActorId, commands: &[(CommandId, u64)]) -> Vec<Event> {
        let mut version = Version::ZERO;
        let mut out = Vec::new();
        for (id, n) in commands {
            let batch = command_events(actor, version, &[Added(*n), Added(0)], *id, None).unwrap();
            version = batch.last().unwrap().version;
            out.extend(batch);
        }
        out
    }

    #[test]
    fn the_window_is_rebuilt_from_causation_ids_and_bounded() {
        let a = ActorId::new("a").unwrap();
        let ids: Vec<CommandId> = (0..3).map(|_| CommandId::new()).collect();
        let events = history(&a, &[(ids[0], 1), (ids[1], 2), (ids[2], 3)]);
        let r = rehydrate_with_window::<Sum>(&a, None, &events, 2).unwrap();
        assert_eq!(r.state, Sum(6));
        assert_eq!(
            r.recent_commands,
            vec![
                RecentCommand {
                    id: ids[1],
                    first: Version::new(3),
                    last: Version::new(4)
                },
                RecentCommand {
                    id: ids[2],
                    first: Version::new(5),
                    last: Version::new(6)
                },
            ]
        );
        assert_eq!(r.find_command(ids[0]), None);
        assert_eq!(events[2].id, EventId::for_command(ids[1], &a, 0));
        assert_eq!(events[3].id, EventId::for_command(ids[1], &a, 1));
    }

    #[test]
    fn the_window_finds_the_latest_entry_of_an_id_and_forgets_evicted_ones() {
        let ids: Vec<CommandId> = (0..5).map(|_| CommandId::new()).collect();
        let mut w = CommandWindow::new(3, Vec::new());
        // ids[0] twice, apart: the later entry is the one found.
        for (v, id) in [ids[0], ids[1], ids[0], ids[2]].into_iter().enumerate() {
            w.note(id, Version::new(v as u64 + 1));
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.find(ids[0]).map(|c| c.first), Some(Version::new(3)));
        assert_eq!(w.find(ids[1]).map(|c| c.first), Some(Version::new(2)));
        // Evicting the later ids[0] forgets it; ids[3], ids[4] are found.
        w.note(ids[3], Version::new(5));
        w.note(ids[4], Version::new(6));
        w.note(ids[4], Version::new(7));
        assert_eq!(w.find(ids[0]), None);
        assert_eq!(w.find(ids[1]), None);
        assert_eq!(
            w.find(ids[4]).map(|c| (c.first, c.last)),
            Some((Version::new(6), Version::new(7)))
        );
        assert_eq!(
            w.to_vec().iter().map(|c| c.id).collect::<Vec<_>>(),
            vec![ids[2], ids[3], ids[4]]
        );
        // A window rebuilt from its own list is equal and finds the same.
        let again = CommandWindow::new(3, w.to_vec());
        assert_eq!(again, w);
        assert_eq!(again.find(ids[2]), w.find(ids[2]));
        // A seed longer than the cap keeps its newest entries.
        let small = CommandWindow::new(1, w.to_vec());
        assert_eq!(
            (small.find(ids[3]), small.find(ids[4]).is_some()),
            (None, true)
        );
        assert!(CommandWindow::new(0, w.to_vec()).is_empty());
    }

    #[test]
    fn a_snapshot_of_another_schema_is_ignored() {
        let a = ActorId::new("a").unwrap();
        let events = history(&a, &[(CommandId::new(), 5)]);
        let old = ActorSnapshot::new(a.clone(), Version::new(2), &Sum(999)).unwrap();
        let r = rehydrate::<Sum>(&a, Some(&old), &events).unwrap();
        assert_eq!((r.state, r.snapshot_version), (Sum(5), None));
        let current = old.clone().with_schema_version(Sum::SNAPSHOT_VERSION);
        let r = rehydrate::<Sum>(&a, Some(&current), &events).unwrap();
        assert_eq!(
            (r.state, r.snapshot_version),
            (Sum(999), Some(Version::new(2)))
        );
        let garbage = ActorSnapshot::from_raw(a.clone(), Version::new(2), vec![0xc1])
            .with_schema_version(Sum::SNAPSHOT_VERSION);
        let r = rehydrate::<Sum>(&a, Some(&garbage), &events).unwrap();
        assert_eq!((r.state, r.snapshot_version), (Sum(5), None));
    }
}
