//! Event ids on the wire: the `Nats-Msg-Id` header.
//!
//! The `Nats-Msg-Id` is the event id *scoped by actor*
//! (`<event id>.<actor scope>`, see [`msg_id`]), because the server's duplicate
//! detection is per stream and an event id is unique per actor only. Streams
//! written before the scope (a bare event id) read the same way.

use aether_core::{ActorId, EventId, ForeignReason};
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use uuid::Uuid;

/// Header names the store reads.
pub(crate) mod names {
    /// The stream sequence of a message, added by the server to direct-get replies.
    pub(crate) const NATS_SEQUENCE: &str = "Nats-Sequence";
}

/// The namespace of actor scopes (a fixed UUID; part of the stored format).
const ACTOR_SCOPE: Uuid = Uuid::from_u128(0x6165_7468_6572_2d61_6374_6f72_2d69_6473);

/// The scope of an actor's message ids: the UUID v5 (SHA-1) of the actor id's
/// UTF-8 bytes in the namespace `61657468-6572-2d61-6374-6f722d696473`, as 32
/// lowercase hex digits.
pub(crate) fn actor_scope(actor: &ActorId) -> String {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    Uuid::new_v5(&ACTOR_SCOPE, actor.as_str().as_bytes())
        .simple()
        .encode_lower(&mut buf)
        .to_owned()
}

/// The `Nats-Msg-Id` of an event: `<event id>.<actor scope>`. The server
/// deduplicates by message id per stream, so the id is scoped by actor: the
/// same event id in two actors is two events.
pub(crate) fn msg_id(id: EventId, scope: &str) -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut s = String::with_capacity(buf.len() + 1 + scope.len());
    s.push_str(id.as_uuid().hyphenated().encode_lower(&mut buf));
    s.push('.');
    s.push_str(scope);
    s
}

/// Reads the event id of a stored event from its `Nats-Msg-Id` header:
/// `<event id>.<actor scope>`, or a bare event id (streams written before
/// ids were scoped by actor).
pub(crate) fn read_event_id(h: Option<&HeaderMap>) -> Result<EventId, ForeignReason> {
    let raw = h
        .and_then(|h| h.get(NATS_MESSAGE_ID))
        .ok_or(ForeignReason::MissingEventId)?
        .as_str();
    let id = raw.split_once('.').map_or(raw, |(id, _scope)| id);
    id.parse().map_err(|_| {
        ForeignReason::NotAnEnvelope(format!(
            "Nats-Msg-Id {:?} is not an Aether event id",
            raw.chars().take(80).collect::<String>()
        ))
    })
}

/// The event id of a message on `actor`'s subject whose envelope names
/// `found` as its actor: an envelope of another actor is foreign, and so is
/// a message without an Aether event id.
pub(super) fn read_event_id_of(
    h: Option<&HeaderMap>,
    found: &str,
    actor: &ActorId,
) -> Result<EventId, ForeignReason> {
    if found != actor.as_str() {
        return Err(ForeignReason::WrongActor {
            found: found.chars().take(300).collect(),
        });
    }
    read_event_id(h)
}
