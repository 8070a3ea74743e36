//! The stored form of events and snapshots.
//!
//! The message body is a small MessagePack value (the envelope) that holds
//! the event's payload as an opaque `bin`, untouched. Tools in any language
//! read the envelope's fields without decoding the payload. The event id
//! travels in the `Nats-Msg-Id` header (the server's duplicate detection uses
//! it), scoped by actor (`ids`).
//!
//! Two formats are read; the store writes the one configured
//! ([`EnvelopeFormat`], format 2 by default):
//!
//! * format 1 (`v1`), a map with string keys;
//! * format 2 (`v2`), a positional array with the format first, about 45
//!   bytes shorter per event and written and read without serde.
//!
//! A body's first byte (a map or an array marker) says which format it is;
//! `inspect` reads the fields tools and the trust rule need without the
//! payload.
//!
//! The envelope lives in the body rather than in headers because JetStream
//! scans a message's headers for its own `Nats-*` keys on every publish:
//! measured on loopback with 1000 appends in flight, six `Aether-*` headers
//! cost 25% of the raw publish throughput, the same fields in the body 15%.

use aether_core::{ActorId, ActorSnapshot, CodecError, Event, ForeignReason};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;

mod ids;
mod inspect;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

pub(crate) use ids::{actor_scope, names};
pub use inspect::{StoredEnvelope, inspect_event, inspect_snapshot_version};
pub(crate) use inspect::{read_event_version, read_snapshot_version};

/// The envelope format of format 1 (a map; the value of its `aether` field).
pub(crate) const FORMAT_1: u8 = 1;

/// The envelope format of format 2 (a positional array; its first element).
pub(crate) const FORMAT_2: u8 = 2;

/// The envelope format a store writes; both are always read.
///
/// Format 2 (the default) is a positional MessagePack array, about 45 bytes
/// shorter per event than format 1 (a map with string keys). Choose
/// [`EnvelopeFormat::V1`] only while processes of a version that reads only
/// format 1 still read the same streams (a rolling upgrade); see the crate
/// docs for both layouts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvelopeFormat {
    /// Format 1: a map with string keys.
    V1,
    /// Format 2: a positional array with the format first (the default).
    #[default]
    V2,
}

/// One event as stored: its message id (the `Nats-Msg-Id` header) and its body.
pub(crate) struct Encoded {
    /// The `Nats-Msg-Id` value, built once when encoded.
    pub(crate) id: HeaderValue,
    pub(crate) body: Bytes,
}

impl Encoded {
    /// The bytes the message takes against `max_payload`: the body and a
    /// header block with the id and `control` bytes of further headers.
    pub(crate) fn wire_len(&self, control: usize) -> usize {
        b"NATS/1.0\r\n\r\n".len()
            + "Nats-Msg-Id: \r\n".len()
            + self.id.as_str().len()
            + control
            + self.body.len()
    }

    /// The headers to publish it with (the id, plus whatever the caller
    /// adds) and the body, without copying either.
    pub(crate) fn into_parts(self) -> (HeaderMap, Bytes) {
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, self.id);
        (h, self.body)
    }

    #[cfg(test)]
    pub(crate) fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, self.id.clone());
        h
    }
}

/// Encodes one event in `format`; `scope` is [`actor_scope`] of its actor.
pub(crate) fn encode_event(
    event: &Event,
    scope: &str,
    format: EnvelopeFormat,
) -> Result<Encoded, CodecError> {
    let body = match format {
        EnvelopeFormat::V1 => v1::encode_event(event)?,
        EnvelopeFormat::V2 => v2::encode_event(event),
    };
    Ok(Encoded {
        id: HeaderValue::from(ids::msg_id(event.id, scope)),
        body,
    })
}

/// The body of one snapshot in `format`; `seq` is the stream sequence of the
/// event at its version, when known.
pub(crate) fn encode_snapshot(
    snapshot: &ActorSnapshot,
    seq: Option<u64>,
    format: EnvelopeFormat,
) -> Result<Bytes, CodecError> {
    match format {
        EnvelopeFormat::V1 => v1::encode_snapshot(snapshot, seq),
        EnvelopeFormat::V2 => Ok(v2::encode_snapshot(snapshot, seq)),
    }
}

/// Decodes a stored event of `actor` (the actor its subject names); a message
/// that is not such an envelope is foreign, for the reason given.
pub(crate) fn decode_event(
    h: Option<&HeaderMap>,
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<Event, ForeignReason> {
    match shape(body) {
        Shape::Map => v1::decode_event(h, body, actor, origin),
        Shape::Array => v2::decode_event(h, body, actor, origin),
        Shape::Other => Err(not_envelope(not_aether(origin))),
    }
}

/// Decodes a stored snapshot of `actor`, with the sequence hint of its event.
pub(crate) fn decode_snapshot(
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<(ActorSnapshot, Option<u64>), CodecError> {
    match shape(body) {
        Shape::Map => v1::decode_snapshot(body, actor, origin),
        Shape::Array => v2::decode_snapshot(body, actor, origin),
        Shape::Other => Err(not_aether(origin)),
    }
}

/// Where a stored message came from, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) stream: &'a str,
    pub(crate) sequence: u64,
}

impl std::fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // JetStream sequences start at 1: 0 marks a body inspected on its own.
        if self.sequence == 0 {
            f.write_str(self.stream)
        } else {
            write!(f, "message {} of stream {}", self.sequence, self.stream)
        }
    }
}

fn malformed(origin: Origin<'_>, what: impl std::fmt::Display) -> CodecError {
    CodecError::Malformed(format!("{origin}: {what}"))
}

/// A body that is not an event envelope makes its message foreign.
fn not_envelope(e: CodecError) -> ForeignReason {
    ForeignReason::NotAnEnvelope(e.to_string())
}

/// The shape of a body, from its first byte.
enum Shape {
    /// A map: format 1.
    Map,
    /// An array: format 2 (or later).
    Array,
    Other,
}

fn shape(body: &[u8]) -> Shape {
    match body.first() {
        Some(0x80..=0x8f | 0xde | 0xdf) => Shape::Map,
        Some(0x90..=0x9f | 0xdc | 0xdd) => Shape::Array,
        _ => Shape::Other,
    }
}

fn not_aether(origin: Origin<'_>) -> CodecError {
    malformed(
        origin,
        "not an Aether envelope (neither a format 1 map nor a format 2 array)",
    )
}
