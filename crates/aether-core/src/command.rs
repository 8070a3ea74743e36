//! Effectively-once commands: the [`CommandId`] that names one command
//! wherever it is retried, and the [`RecentCommand`] window an actor keeps.
//!
//! A command's events get ids derived from its command id
//! ([`crate::EventId::for_command`]) and carry it as their causation id, so a
//! retried command writes the same event ids (the store recognises them) and
//! an actor can tell, from its own history, that it has already applied it.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
}
