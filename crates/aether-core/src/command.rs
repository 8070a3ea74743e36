//! Effectively-once commands: the [`CommandId`] that names one command
//! wherever it is retried, the [`Command`] that carries it, the batch of
//! events a command writes ([`command_events`]), and the bounded
//! [`CommandWindow`] of [`RecentCommand`]s an actor keeps.
//!
//! A command's events get ids derived from its command id
//! ([`EventId::for_command`]) and carry it as their causation id, so a
//! retried command writes the same event ids (the store recognises them) and
//! an actor can tell, from its own history, that it has already applied it.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::StoreError;
use crate::event::{DomainEvent, Event, EventId};
use crate::name::ActorId;
use crate::version::Version;

/// The id of one command, kept across every retry of it (the repository's
/// own retries and the caller's). New ids are UUID v7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandId(pub Uuid);

thread_local! {
    /// Each thread's UUID v7 counter: minting an id takes no lock shared
    /// with other threads.
    static CONTEXT_V7: uuid::ContextV7 = const { uuid::ContextV7::new() };
}

impl CommandId {
    /// A fresh, time-ordered id (UUID v7: the millisecond of its minting,
    /// then a counter and random bits). Ids minted by one thread strictly
    /// increase; ids of distinct threads within one millisecond are
    /// unordered among themselves.
    pub fn new() -> Self {
        CommandId(CONTEXT_V7.with(|c| Uuid::new_v7(uuid::Timestamp::now(c))))
    }

    /// Wraps an existing UUID (e.g. an idempotency key from a request).
    pub const fn from_uuid(uuid: Uuid) -> Self {
        CommandId(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for CommandId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for CommandId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(CommandId)
    }
}

/// A command an actor applied recently, with the versions of the events it
/// wrote (`first..=last`). Kept in a bounded window, rebuilt from the events'
/// causation ids and stored in snapshots, so a repeated command is answered
/// with its original outcome instead of running again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentCommand {
    /// The command.
    pub id: CommandId,
    /// The version of its first event.
    pub first: Version,
    /// The version of its last event.
    pub last: Version,
}

/// The default size of an actor's window of recent command ids.
pub const DEFAULT_COMMAND_WINDOW: usize = 128;

/// An actor's bounded window of the commands it applied most recently, with
/// the versions of their events: what makes a repeated command recognisable.
///
/// [`rehydrate_with_window`](crate::rehydrate_with_window) and
/// [`Repository::load`](crate::Repository::load) rebuild it (as
/// [`Rehydrated::recent_commands`](crate::Rehydrated::recent_commands)); a
/// host that keeps an actor in memory turns that into a `CommandWindow` and
/// notes each appended event, so its window follows exactly the rule a
/// reload would rebuild.
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

/// The window's hasher: foldhash, seeded per window. Collisions forced by a
/// caller can only slow lookups in one bounded window.
type IdHash = foldhash::fast::RandomState;

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
            index: HashMap::with_capacity_and_hasher(seed.len() - skip, IdHash::default()),
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

    /// [`to_vec`](Self::to_vec), taking the window apart instead of copying it.
    pub(crate) fn into_vec(self) -> Vec<RecentCommand> {
        self.items.into()
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

/// A command with its id and correlation id, for
/// [`Repository::execute_command`](crate::Repository::execute_command).
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
    pub(crate) command: C,
    pub(crate) id: CommandId,
    pub(crate) correlation_id: Option<String>,
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
    use super::*;

    #[test]
    fn command_ids_round_trip_as_text_and_serde() {
        let id = CommandId::new();
        assert_eq!(id.to_string().parse::<CommandId>().unwrap(), id);
        assert_eq!(id.0.get_version_num(), 7);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert!("not-a-uuid".parse::<CommandId>().is_err());
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
}
