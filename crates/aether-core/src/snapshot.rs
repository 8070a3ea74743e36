//! Snapshots bound replay.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::command::RecentCommand;
use crate::error::CodecError;
use crate::event::{decode_payload, encode_payload};
use crate::name::ActorId;
use crate::version::Version;

/// The folded state of one actor as of `version`.
///
/// A snapshot never claims a version that was not stored; the latest snapshot
/// (highest version) per actor is the one stores return. Every
/// [`crate::SnapshotStore`] round-trips every field, `recent_commands`
/// included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorSnapshot {
    /// The actor.
    pub actor_id: ActorId,
    /// The version of the last event folded into `state`.
    pub version: Version,
    /// The state, MessagePack-encoded.
    pub state: Bytes,
    /// When the snapshot was taken (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Schema version of the *state* (the aggregate's
    /// [`crate::Aggregate::SNAPSHOT_VERSION`]). A snapshot of another schema
    /// version is ignored on load and the actor replays its events.
    pub schema_version: u32,
    /// The actor's window of recently applied commands as of `version`
    /// (oldest first), so effectively-once survives replay from a snapshot.
    #[serde(default)]
    pub recent_commands: Vec<RecentCommand>,
}

impl ActorSnapshot {
    /// A snapshot of `state` encoded as MessagePack.
    ///
    /// # Errors
    /// [`CodecError::Encode`] if the state cannot be serialized.
    pub fn new<S: Serialize + ?Sized>(
        actor_id: ActorId,
        version: Version,
        state: &S,
    ) -> Result<Self, CodecError> {
        let state = encode_payload(state, "snapshot state")?;
        Ok(Self::from_raw(actor_id, version, state))
    }

    /// A snapshot around already encoded state.
    pub fn from_raw(actor_id: ActorId, version: Version, state: impl Into<Bytes>) -> Self {
        ActorSnapshot {
            actor_id,
            version,
            state: state.into(),
            timestamp: OffsetDateTime::now_utc(),
            schema_version: 1,
            recent_commands: Vec::new(),
        }
    }

    /// Sets the state's schema version.
    #[must_use]
    pub fn with_schema_version(mut self, schema_version: u32) -> Self {
        self.schema_version = schema_version;
        self
    }

    /// Sets the window of recently applied commands.
    #[must_use]
    pub fn with_recent_commands(mut self, recent: Vec<RecentCommand>) -> Self {
        self.recent_commands = recent;
        self
    }

    /// Decodes the state.
    ///
    /// # Errors
    /// [`CodecError::Decode`] if the state is not a MessagePack `S`.
    pub fn decode<S: DeserializeOwned>(&self) -> Result<S, CodecError> {
        decode_payload(&self.state, "snapshot state")
    }
}
