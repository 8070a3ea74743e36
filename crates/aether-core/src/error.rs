//! Errors, one enum per concern.

use crate::name::{ActorId, NameKind};
use crate::trust::ForeignReason;
use crate::version::Version;

/// A boxed error kept as the source of a backend failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A name that breaks the rules of [`crate::name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {name:?}: {reason}")]
pub struct NameError {
    /// Which kind of name.
    pub kind: NameKind,
    /// The offending name (at most 80 characters of it).
    pub name: String,
    /// Why it was refused.
    pub reason: String,
}

/// Encoding or decoding a payload (MessagePack) or an envelope failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A value could not be encoded.
    #[error("could not encode {what}: {source}")]
    Encode {
        /// What was being encoded (an event type, "snapshot state", …).
        what: String,
        /// The encoder's error.
        #[source]
        source: rmp_serde::encode::Error,
    },
    /// Bytes could not be decoded into the requested type.
    #[error("could not decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's error.
        #[source]
        source: rmp_serde::decode::Error,
    },
    /// A stored record is malformed (missing header, bad envelope, foreign bytes).
    #[error("malformed record: {0}")]
    Malformed(String),
}

/// Why an event, batch or snapshot was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidInput {
    /// An event in an append names a different actor than the append.
    #[error("event for actor {found:?} in an append for actor {expected:?}")]
    WrongActor {
        /// The actor of the append.
        expected: ActorId,
        /// The actor the event names.
        found: ActorId,
    },
    /// The events of an append do not carry the consecutive versions that
    /// follow the expected version.
    #[error("event at position {index} has version {found}, expected {expected}")]
    NonConsecutive {
        /// Position in the batch.
        index: usize,
        /// The version it should have.
        expected: Version,
        /// The version it has.
        found: Version,
    },
    /// An event has version 0, which no stored event can have.
    #[error("version 0 is not a valid event version")]
    ZeroVersion,
    /// The batch is larger than the backend can write atomically.
    #[error("a batch of {len} events exceeds the atomic limit of {max}")]
    BatchTooLarge {
        /// Events in the batch.
        len: usize,
        /// The backend's limit.
        max: usize,
    },
    /// The versions of the batch would run past `u64::MAX`: no version
    /// follows `after`. Nothing was written.
    #[error("no version follows {after}: the batch would overflow the version counter")]
    VersionOverflow {
        /// The last version that could be counted.
        after: Version,
    },
    /// The same event id appears twice in one batch.
    #[error("event id {0} appears twice in one append")]
    DuplicateId(String),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// Errors of [`crate::EventStore`] and [`crate::SnapshotStore`] operations.
///
/// Callers match on meaning, not on a transport: every backend maps its own
/// failures onto these variants and keeps the cause as `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Optimistic concurrency failed: the actor's latest version is not the
    /// expected one. Nothing was written. Reload and retry.
    #[error("version conflict on actor {actor}: expected version {expected}, actual {actual}")]
    VersionConflict {
        /// The actor.
        actor: ActorId,
        /// The version the writer expected to be latest.
        expected: Version,
        /// The latest version the store had (may be a lower bound when the
        /// backend could not read it back).
        actual: Version,
    },
    /// A name broke the naming rules.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// An event, batch or snapshot was malformed. Nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InvalidInput),
    /// An event or snapshot is larger than the backend accepts. Nothing was written.
    #[error("{what} is {size} bytes, the limit is {max}")]
    TooLarge {
        /// What was too large ("event 0195…", "snapshot of order-1").
        what: String,
        /// Its encoded size.
        size: usize,
        /// The backend's limit.
        max: usize,
    },
    /// A snapshot claims a version that was not stored.
    #[error(
        "snapshot of {actor} claims version {snapshot}, but the latest stored version is {latest}"
    )]
    SnapshotAhead {
        /// The actor.
        actor: ActorId,
        /// The version the snapshot claims.
        snapshot: Version,
        /// The latest stored version.
        latest: Version,
    },
    /// A stored record is not a valid part of this actor's history (garbage
    /// bytes, another actor's envelope, a repeated, backward or skipped
    /// version, a snapshot ahead of the events). Returned only under
    /// [`crate::TrustPolicy::Strict`]; the default policy skips such records
    /// (see [`crate::trust`]). Not transient: retrying reads the same record.
    #[error(
        "stored record at position {position} of actor {actor} is not a valid part of its history: {reason}"
    )]
    Corrupt {
        /// The actor whose history holds the record.
        actor: ActorId,
        /// The record's backend position (stream sequence on JetStream, log
        /// index in memory).
        position: u64,
        /// Why the record is foreign.
        reason: ForeignReason,
    },
    /// A stored record could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The backend cannot be reached right now; the operation may be retried.
    /// Whether a write took effect is unknown unless stated by the backend.
    #[error("backend unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The operation did not finish in time. A write may or may not have taken
    /// effect; retrying with the same event ids is safe (idempotent).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The backend does not support this operation (or this server is too old).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Any other backend failure.
    #[error("backend error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
}

impl StoreError {
    /// Whether retrying the same operation may succeed without changing it
    /// (`Unavailable`, `Timeout`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Timeout(_)
        )
    }

    /// Whether this is a [`StoreError::VersionConflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::VersionConflict { .. })
    }

    /// Shorthand for [`StoreError::Unavailable`].
    pub fn unavailable(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// Shorthand for [`StoreError::Backend`].
    pub fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        StoreError::Backend {
            message: message.into(),
            source: Some(source.into()),
        }
    }
}

/// Errors of [`crate::EventBus`] operations and subscriptions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// The subscriber fell behind and `missed` events were dropped for it.
    /// The subscription goes on with the next event.
    #[error("subscriber lagged behind and missed {missed} events")]
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// A name broke the naming rules.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// An event could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The event is larger than the transport accepts.
    #[error("event is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The transport's limit.
        max: usize,
    },
    /// The transport cannot be reached right now.
    #[error("bus unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The bus was shut down.
    #[error("bus closed")]
    Closed,
}

/// Errors of rebuilding an aggregate from a snapshot and events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RehydrateError {
    /// An event or the snapshot state could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The events do not continue the snapshot / each other without a gap.
    #[error("gap in the history of {actor}: expected version {expected}, found {found}")]
    Gap {
        /// The actor.
        actor: ActorId,
        /// The version that should come next.
        expected: Version,
        /// The version found.
        found: Version,
    },
    /// An event or snapshot belongs to a different actor.
    #[error("event of {found} in the history of {expected}")]
    WrongActor {
        /// The actor being rebuilt.
        expected: ActorId,
        /// The actor found.
        found: ActorId,
    },
}

/// Errors of loading an aggregate and running a command through a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The aggregate refused the command.
    #[error("command rejected: {0}")]
    Rejected(E),
    /// The store failed (including a version conflict that outlived the retries).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored history could not be folded.
    #[error(transparent)]
    Rehydrate(#[from] RehydrateError),
    /// Encoding the new events failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
}
