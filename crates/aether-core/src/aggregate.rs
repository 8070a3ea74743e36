//! Aggregates (event-sourced actors): the [`Aggregate`] trait and pure
//! [`rehydrate`], which folds an actor's snapshot and events into its state
//! and rebuilds its window of recent commands.
//!
//! The [`Repository`] that loads an aggregate from a store, runs a command
//! and appends its events lives in [`crate::repository`]; the command
//! vocabulary ([`Command`], [`CommandWindow`], [`command_events`]) in
//! [`crate::command`]. Both are re-exported here.
//!
//! # Snapshots
//!
//! A snapshot only bounds replay. One written with another
//! [`Aggregate::SNAPSHOT_VERSION`], one whose state does not decode, or one
//! ahead of the stored events is ignored (counted in
//! `aether_snapshots_ignored_total{kind, reason}`, logged) and the actor is
//! replayed from its events. Failing to encode or save a snapshot never fails
//! a command whose events were stored.

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::command::{Command, CommandWindow, DEFAULT_COMMAND_WINDOW, command_events};
use crate::command::{CommandId, RecentCommand};
use crate::error::RehydrateError;
use crate::event::{DomainEvent, Event};
use crate::name::ActorId;
pub use crate::repository::{CommandOutcome, Repository};
use crate::snapshot::ActorSnapshot;
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
pub(crate) struct Start<A> {
    state: A,
    pub(crate) version: Version,
    recent: Vec<RecentCommand>,
}

/// Decodes a snapshot if it can be used; ignores (counts, logs) one of
/// another schema version or with undecodable state.
pub(crate) fn usable_snapshot<A: Aggregate>(
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

/// Counts and logs a snapshot that is not used, with why.
pub(crate) fn ignore_snapshot<A: Aggregate>(
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

/// Folds `events` onto `start` (or the default state), skipping those at or
/// below its version and rebuilding the window of at most `window` recent
/// commands: the one fold of [`rehydrate`] and [`Repository::load`].
pub(crate) fn fold<'e, A: Aggregate>(
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
        recent_commands: recent.into_vec(),
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::event::EventId;

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
