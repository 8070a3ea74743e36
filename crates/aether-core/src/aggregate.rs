//! Aggregates (event-sourced actors): the [`Aggregate`] trait, pure
//! [`rehydrate`], and the [`Repository`] that loads an aggregate from a store,
//! runs a command and appends its events with optimistic concurrency.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CommandError, RehydrateError};
use crate::event::{DomainEvent, Event};
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
pub struct Rehydrated<A> {
    /// The folded state.
    pub state: A,
    /// The version of the last event folded in ([`Version::ZERO`] if none).
    pub version: Version,
    /// The version of the snapshot it started from, if any.
    pub snapshot_version: Option<Version>,
    /// How many events were applied on top of the snapshot.
    pub events_applied: usize,
}

/// Rebuilds an aggregate from an optional snapshot and the events after it.
/// Pure: no I/O.
///
/// Events at or below the snapshot's version are skipped; the rest must
/// continue it without a gap.
///
/// # Errors
/// [`RehydrateError::Codec`] if the snapshot state or an event cannot be
/// decoded, [`RehydrateError::Gap`] if versions do not follow on,
/// [`RehydrateError::WrongActor`] if a record belongs to another actor.
pub fn rehydrate<'e, A: Aggregate>(
    actor: &ActorId,
    snapshot: Option<&ActorSnapshot>,
    events: impl IntoIterator<Item = &'e Event>,
) -> Result<Rehydrated<A>, RehydrateError> {
    let (mut state, mut version, snapshot_version) = match snapshot {
        Some(s) => {
            if s.actor_id != *actor {
                return Err(RehydrateError::WrongActor {
                    expected: actor.clone(),
                    found: s.actor_id.clone(),
                });
            }
            (s.decode::<A>()?, s.version, Some(s.version))
        }
        None => (A::default(), Version::ZERO, None),
    };
    let mut events_applied = 0;
    for e in events {
        fold_one(actor, &mut state, &mut version, e, &mut events_applied)?;
    }
    Ok(Rehydrated {
        state,
        version,
        snapshot_version,
        events_applied,
    })
}

fn fold_one<A: Aggregate>(
    actor: &ActorId,
    state: &mut A,
    version: &mut Version,
    e: &Event,
    applied: &mut usize,
) -> Result<(), RehydrateError> {
    if e.actor_id != *actor {
        return Err(RehydrateError::WrongActor {
            expected: actor.clone(),
            found: e.actor_id.clone(),
        });
    }
    if e.version <= *version {
        return Ok(());
    }
    let expected = version.next().unwrap_or(*version);
    if e.version != expected {
        return Err(RehydrateError::Gap {
            actor: actor.clone(),
            expected,
            found: e.version,
        });
    }
    state.apply(&e.decode::<A::Event>()?);
    *version = e.version;
    *applied += 1;
    Ok(())
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct CommandOutcome<A> {
    /// The state after the command's events were applied.
    pub state: A,
    /// The actor's version after the append.
    pub version: Version,
    /// The events appended (empty if the command produced none).
    pub events: Vec<Event>,
    /// How many times the command was re-run after a version conflict.
    pub retries: u32,
    /// Whether a snapshot was written after this command.
    pub snapshotted: bool,
}

/// Loads aggregates from a store (snapshot + later events), runs commands and
/// appends their events with the loaded version as the expected version.
///
/// On a [`crate::StoreError::VersionConflict`] the aggregate is reloaded and the
/// command re-run, up to [`Repository::max_retries`] times: a command is a
/// decision on the *current* state, so re-deciding after a concurrent write is
/// correct. A snapshot is written every `snapshot_every` events.
#[derive(Debug, Clone)]
pub struct Repository<S> {
    store: S,
    snapshot_every: Option<u64>,
    max_retries: u32,
}

impl<S: EventStore + SnapshotStore> Repository<S> {
    /// A repository over `store`, with 3 retries and no snapshots.
    pub fn new(store: S) -> Self {
        Repository {
            store,
            snapshot_every: None,
            max_retries: 3,
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

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Loads `actor` from its latest snapshot and the events after it.
    ///
    /// # Errors
    /// Store and rehydration errors.
    pub async fn load<A: Aggregate>(
        &self,
        actor: &ActorId,
    ) -> Result<Rehydrated<A>, CommandError<A::Error>> {
        let snapshot = self.store.get_latest_snapshot(actor).await?;
        let from = snapshot
            .as_ref()
            .and_then(|s| s.version.next())
            .unwrap_or(Version::ZERO);
        let events = self.store.get_events(actor, from).await?;
        Ok(rehydrate(actor, snapshot.as_ref(), &events)?)
    }

    /// Loads `actor`, runs `command` and appends the resulting events,
    /// retrying on version conflicts.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] if the aggregate refuses the command;
    /// [`CommandError::Store`] with a [`crate::StoreError::VersionConflict`] if
    /// conflicts outlast the retries; other store, codec and rehydration errors.
    pub async fn execute<A>(
        &self,
        actor: &ActorId,
        command: A::Command,
    ) -> Result<CommandOutcome<A>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Command: Clone,
    {
        let mut retries = 0;
        loop {
            let loaded = self.load::<A>(actor).await?;
            match self.decide_and_append(actor, loaded, command.clone()).await {
                Err(CommandError::Store(e)) if e.is_conflict() && retries < self.max_retries => {
                    retries += 1;
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
    /// events with `loaded.version` as the expected version. No retry.
    ///
    /// # Errors
    /// As [`Repository::execute`], with conflicts returned at once.
    pub async fn decide_and_append<A: Aggregate>(
        &self,
        actor: &ActorId,
        loaded: Rehydrated<A>,
        command: A::Command,
    ) -> Result<CommandOutcome<A>, CommandError<A::Error>> {
        let Rehydrated {
            mut state, version, ..
        } = loaded;
        let new_events = state.handle(command).map_err(CommandError::Rejected)?;
        if new_events.is_empty() {
            return Ok(CommandOutcome {
                state,
                version,
                events: Vec::new(),
                retries: 0,
                snapshotted: false,
            });
        }
        let batch = Event::sequence(actor, version, &new_events)?;
        let new_version = self.store.append(actor, version, batch.clone()).await?;
        for e in &new_events {
            state.apply(e);
        }
        let snapshotted = match self.snapshot_every {
            Some(n) if version.get() / n != new_version.get() / n => {
                let snap = ActorSnapshot::new(actor.clone(), new_version, &state)?;
                // A snapshot only bounds replay: the events are already stored, so
                // failing to write one loses nothing and must not fail the command.
                self.store.save_snapshot(snap).await.is_ok()
            }
            _ => false,
        };
        Ok(CommandOutcome {
            state,
            version: new_version,
            events: batch,
            retries: 0,
            snapshotted,
        })
    }
}
