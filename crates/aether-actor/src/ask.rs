//! One ask: what a command did ([`AskOutcome`]), why it failed
//! ([`AskError`]), and the request builder ([`Ask`]) that sets its id,
//! deadline and whether it waits for room in a full mailbox.

use std::sync::Arc;

use aether_core::{
    CodecError, CommandError, CommandId, Event, NameError, RehydrateError, StoreError, Version,
};

#[cfg(feature = "nats")]
use crate::wire::WireError;

/// What a command did, as seen by the caller.
#[derive(Debug, Clone)]
pub struct AskOutcome<A> {
    /// The actor's version after the command (for a command that produced
    /// no event: the version it was decided on; for a duplicate: the version
    /// of its last event).
    pub version: Version,
    /// The events the command appended (stored under the persistence id);
    /// for a duplicate, the original events read back from the store.
    pub events: Vec<Event>,
    /// A read view of the state right after the command (for a duplicate:
    /// the actor's current state). The actor never mutates a view it handed
    /// out: it copies the state on its next write if a view is still held.
    pub state: Arc<A>,
    /// The command's id.
    pub command_id: CommandId,
    /// Whether the command had already been applied: nothing ran this time.
    pub duplicate: bool,
    /// How many times the command was decided again after a version conflict.
    pub retries: u32,
}

/// Why an ask failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AskError<E> {
    /// The aggregate refused the command; nothing was written.
    #[error("the actor refused the command: {0}")]
    Rejected(E),
    /// The command was queued but no reply came before the deadline. It may
    /// or may not have been applied; retry with the same command id.
    #[error("no reply before the deadline")]
    Timeout,
    /// The actor's mailbox stayed full until the deadline (or at once, for
    /// an ask with [`Ask::no_wait`](crate::Ask::no_wait)): the command was
    /// never queued and never run.
    #[error("the actor's mailbox is full")]
    Busy,
    /// The actor cannot be reached from this node (its shard is owned
    /// elsewhere, unassigned, or the system is shut down). Nothing was run.
    #[error("actor unavailable: {0}")]
    Unavailable(String),
    /// The store failed. After `Unavailable` or `Timeout` of the store the
    /// command may have been stored; the actor reloads before its next command.
    #[error(transparent)]
    Store(StoreError),
    /// The actor's history could not be folded (activation failed).
    #[error(transparent)]
    Rehydrate(RehydrateError),
    /// A command's event or the state could not be encoded.
    #[error(transparent)]
    Codec(CodecError),
    /// User code (`handle`, `apply`, serde) panicked; that incarnation of the
    /// actor stopped. A panic in `apply` comes after the append, so the
    /// command's events may be stored.
    #[error("the actor panicked while running the command")]
    ActorPanicked,
    /// The aggregate kind was not registered with the system.
    #[error("actor kind {0:?} is not registered with this actor system")]
    NotRegistered(&'static str),
    /// The actor id is too long once the kind is prefixed (see
    /// [`persistence_id`](crate::persistence_id)).
    #[error(transparent)]
    InvalidId(NameError),
    /// The actor's shard is not hosted by the node that got the command
    /// (it moved, or is moving). Routers retry it after a refresh within the
    /// deadline; a caller sees it only from a raw host. Nothing was run.
    #[error("the actor's shard is not hosted here (map epoch {epoch})")]
    NotHere {
        /// The epoch of the placement the node acted on.
        epoch: u64,
    },
    /// A remote request or reply could not be encoded or read.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[error(transparent)]
    Wire(WireError),
    /// The owner failed in a way that has no local variant (its history
    /// could not be folded, its state not encoded); the text says why.
    #[error("remote failure: {0}")]
    Remote(String),
}

impl<E: std::error::Error> AskError<E> {
    pub(crate) fn from_command(e: CommandError<E>) -> Self {
        match e {
            CommandError::Rejected(e) => AskError::Rejected(e),
            CommandError::Store(e) => AskError::from_store(e),
            CommandError::Rehydrate(e) => AskError::Rehydrate(e),
            CommandError::Codec(e) => AskError::Codec(e),
            other => AskError::Store(StoreError::Backend {
                message: other.to_string(),
                source: None,
            }),
        }
    }

    pub(crate) fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::Codec(c) => AskError::Codec(c),
            other => AskError::Store(other),
        }
    }

    /// Whether the caller may retry the same command (same id) and expect
    /// it to be applied at most once: `Timeout`, `Busy`, `Unavailable` and
    /// transient store failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            AskError::Timeout
            | AskError::Busy
            | AskError::Unavailable(_)
            | AskError::NotHere { .. } => true,
            AskError::Store(e) => e.is_transient() || e.is_conflict(),
            _ => false,
        }
    }
}
