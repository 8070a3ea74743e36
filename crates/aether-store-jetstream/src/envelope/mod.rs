//! The stored form of events and snapshots.
//!
//! The message body is a small MessagePack value (the envelope) that holds
//! the event's payload as an opaque `bin`, untouched. Tools in any language
//! read the envelope's fields without decoding the payload. The event id
//! travels in the `Nats-Msg-Id` header (the server's duplicate detection uses
//! it).
//!
//! Two formats are read; the store writes the one configured
//! ([`EnvelopeFormat`], format 2 by default):
//!
//! * format 1, a map with string keys
//!   (`{aether: 1, type, actor, version, ts, schema?, corr?, cause?, meta?, data}`);
//! * format 2, a positional array with the format first:
//!   `[2, type, actor, version, ts, schema, corr, cause, meta, data]`, where
//!   `ts` is the MessagePack timestamp extension in its 96-bit form (15
//!   bytes), `corr` and `cause` are a string or nil and `meta` a string map
//!   (empty when none); a snapshot is `[2, version, seq, ts, schema, cmds, state]`
//!   with `seq` an integer or nil and `cmds` an array of
//!   `[command id (16 bytes), first, last]`. Format 2 is about 45 bytes
//!   shorter per event than format 1 and is written and read without serde.
//!
//! The `Nats-Msg-Id` is the event id *scoped by actor*
//! (`<event id>.<actor scope>`, see [`msg_id`]), because the server's duplicate
//! detection is per stream and an event id is unique per actor only. Streams
//! written before the scope (a bare event id) read the same way.
//!
//! The envelope lives in the body rather than in headers because JetStream
//! scans a message's headers for its own `Nats-*` keys on every publish:
//! measured on loopback with 1000 appends in flight, six `Aether-*` headers
//! cost 25% of the raw publish throughput, the same fields in the body 15%.

use std::collections::BTreeMap;
use std::sync::Arc;

use aether_core::{
    ActorId, ActorSnapshot, CodecError, CommandId, Event, EventId, ForeignReason, Metadata,
    RecentCommand, Version,
};
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::{HeaderMap, HeaderValue};
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::wire::{
    Reader, TIMESTAMP96_SIZE, WireError, Writer, bin_size, map_size, str_size, uint_size,
};

/// Header names the store reads.
pub(crate) mod names {
    /// The stream sequence of a message, added by the server to direct-get replies.
    pub(crate) const NATS_SEQUENCE: &str = "Nats-Sequence";
}

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

/// Serializes borrowed bytes as MessagePack `bin` (serde's default for a
/// slice is an array of integers).
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[derive(Serialize)]
struct EventOut<'a> {
    aether: u8,
    #[serde(rename = "type")]
    event_type: &'a str,
    actor: &'a str,
    version: u64,
    ts: &'a str,
    #[serde(skip_serializing_if = "is_one")]
    schema: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    corr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: &'a BTreeMap<String, String>,
    data: Bin<'a>,
}

#[derive(Deserialize)]
struct EventIn<'a> {
    aether: u8,
    #[serde(rename = "type")]
    event_type: &'a str,
    actor: &'a str,
    version: u64,
    ts: &'a str,
    #[serde(default = "one")]
    schema: u32,
    #[serde(default)]
    corr: Option<String>,
    #[serde(default)]
    cause: Option<String>,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    #[serde(borrow)]
    data: &'a [u8],
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct VersionIn {
    aether: u8,
    version: u64,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    aether: u8,
    version: u64,
    /// The stream sequence of the event at `version`, when the writer knew it:
    /// a hint that lets a later read of the events after the snapshot start
    /// right there instead of searching (the reader verifies it).
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    ts: String,
    schema: u32,
    #[serde(skip_serializing_if = "<[CommandOut]>::is_empty")]
    cmds: &'a [CommandOut],
    state: Bin<'a>,
}

/// One entry of a snapshot's window of recent commands:
/// `{id: "<uuid>", first: <version>, last: <version>}`.
#[derive(Serialize, Deserialize)]
struct CommandOut {
    id: String,
    first: u64,
    last: u64,
}

#[derive(Deserialize)]
struct SnapshotIn<'a> {
    aether: u8,
    version: u64,
    #[serde(default)]
    seq: Option<u64>,
    ts: &'a str,
    schema: u32,
    #[serde(default)]
    cmds: Vec<CommandOut>,
    #[serde(borrow)]
    state: &'a [u8],
}

/// RFC 3339 in UTC with exactly nine fractional digits
/// (`2026-01-02T03:04:05.000000007Z`): always 30 bytes, so an event's stored
/// size does not depend on the instant it was made.
fn format_timestamp(ts: OffsetDateTime) -> Result<String, CodecError> {
    let mut buf = [0u8; TIMESTAMP_LEN];
    Ok(write_timestamp(ts, &mut buf)?.to_owned())
}

/// The length of a stored timestamp.
const TIMESTAMP_LEN: usize = 30;

/// [`format_timestamp`] into `buf`, without allocating.
fn write_timestamp(ts: OffsetDateTime, buf: &mut [u8; TIMESTAMP_LEN]) -> Result<&str, CodecError> {
    let t = ts.to_offset(UtcOffset::UTC);
    let year = t.year();
    let Ok(year @ 0..=9999) = u32::try_from(year) else {
        return Err(CodecError::Malformed(format!(
            "timestamp {ts} cannot be stored: the year is outside 0000-9999"
        )));
    };
    fn digits(out: &mut [u8], mut n: u32) {
        for d in out.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
    digits(&mut buf[0..4], year);
    buf[4] = b'-';
    digits(&mut buf[5..7], u32::from(u8::from(t.month())));
    buf[7] = b'-';
    digits(&mut buf[8..10], u32::from(t.day()));
    buf[10] = b'T';
    digits(&mut buf[11..13], u32::from(t.hour()));
    buf[13] = b':';
    digits(&mut buf[14..16], u32::from(t.minute()));
    buf[16] = b':';
    digits(&mut buf[17..19], u32::from(t.second()));
    buf[19] = b'.';
    digits(&mut buf[20..29], t.nanosecond());
    buf[29] = b'Z';
    // Only ASCII digits and separators were written.
    std::str::from_utf8(buf).map_err(|e| CodecError::Malformed(e.to_string()))
}

fn encode<T: Serialize>(value: &T, what: &str) -> Result<Bytes, CodecError> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|source| CodecError::Encode {
            what: what.to_owned(),
            source,
        })
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
        EnvelopeFormat::V1 => encode_event_v1(event)?,
        EnvelopeFormat::V2 => encode_event_v2(event),
    };
    Ok(Encoded {
        id: HeaderValue::from(msg_id(event.id, scope)),
        body,
    })
}

/// The event's body in format 2: `[2, type, actor, version, ts, schema,
/// corr, cause, meta, data]`, in one allocation of the exact size (so the
/// bytes need no separate reference count until they are shared).
fn encode_event_v2(event: &Event) -> Bytes {
    let m = &event.metadata;
    let opt_str = |s: Option<&str>| s.map_or(1, |s| str_size(s.len()));
    // A BTreeMap's length fits the map header (it is at most memory).
    let custom_len = u32::try_from(m.custom.len()).unwrap_or(u32::MAX);
    let capacity = map_size(10)
        + uint_size(u64::from(FORMAT_2))
        + str_size(event.event_type.len())
        + str_size(event.actor_id.as_str().len())
        + uint_size(event.version.get())
        + TIMESTAMP96_SIZE
        + uint_size(u64::from(event.schema_version))
        + opt_str(m.correlation_id.as_deref())
        + opt_str(m.causation_id.as_deref())
        + map_size(custom_len)
        + m.custom
            .iter()
            .map(|(k, v)| str_size(k.len()) + str_size(v.len()))
            .sum::<usize>()
        + bin_size(event.data.len());
    let mut body = Vec::with_capacity(capacity);
    let mut w = Writer(&mut body);
    w.array(10);
    w.uint(u64::from(FORMAT_2));
    w.str(&event.event_type);
    w.str(event.actor_id.as_str());
    w.uint(event.version.get());
    w.timestamp96(
        event.timestamp.unix_timestamp(),
        event.timestamp.nanosecond(),
    );
    w.uint(u64::from(event.schema_version));
    w.opt_str(m.correlation_id.as_deref());
    w.opt_str(m.causation_id.as_deref());
    w.map(custom_len);
    for (k, v) in &m.custom {
        w.str(k);
        w.str(v);
    }
    w.bin(&event.data);
    debug_assert_eq!(body.len(), capacity, "format 2 size");
    Bytes::from(body)
}

/// The event's body in format 1 (a map with string keys).
fn encode_event_v1(event: &Event) -> Result<Bytes, CodecError> {
    let mut ts = [0u8; TIMESTAMP_LEN];
    let out = EventOut {
        aether: FORMAT_1,
        event_type: &event.event_type,
        actor: event.actor_id.as_str(),
        version: event.version.get(),
        ts: write_timestamp(event.timestamp, &mut ts)?,
        schema: event.schema_version,
        corr: event.metadata.correlation_id.as_deref(),
        cause: event.metadata.causation_id.as_deref(),
        meta: &event.metadata.custom,
        data: Bin(&event.data),
    };
    // Sized once: the fixed keys and small values take under 96 bytes, the
    // rest is the variable strings and the payload.
    let mut body = Vec::with_capacity(
        96 + TIMESTAMP_LEN
            + out.event_type.len()
            + out.actor.len()
            + out.corr.map_or(0, str::len)
            + out.cause.map_or(0, str::len)
            + out
                .meta
                .iter()
                .map(|(k, v)| k.len() + v.len() + 10)
                .sum::<usize>()
            + out.data.0.len(),
    );
    rmp_serde::encode::write_named(&mut body, &out).map_err(|source| CodecError::Encode {
        what: "event envelope".to_owned(),
        source,
    })?;
    Ok(Bytes::from(body))
}

/// The body of one snapshot in `format`; `seq` is the stream sequence of the
/// event at its version, when known.
pub(crate) fn encode_snapshot(
    snapshot: &ActorSnapshot,
    seq: Option<u64>,
    format: EnvelopeFormat,
) -> Result<Bytes, CodecError> {
    match format {
        EnvelopeFormat::V1 => encode_snapshot_v1(snapshot, seq),
        EnvelopeFormat::V2 => Ok(encode_snapshot_v2(snapshot, seq)),
    }
}

/// `[2, version, seq, ts, schema, cmds, state]`.
fn encode_snapshot_v2(snapshot: &ActorSnapshot, seq: Option<u64>) -> Bytes {
    let cmds = &snapshot.recent_commands;
    let mut body = Vec::with_capacity(48 + cmds.len() * 38 + snapshot.state.len());
    let mut w = Writer(&mut body);
    w.array(7);
    w.uint(u64::from(FORMAT_2));
    w.uint(snapshot.version.get());
    match seq {
        Some(seq) => w.uint(seq),
        None => w.nil(),
    }
    w.timestamp96(
        snapshot.timestamp.unix_timestamp(),
        snapshot.timestamp.nanosecond(),
    );
    w.uint(u64::from(snapshot.schema_version));
    w.array(u32::try_from(cmds.len()).unwrap_or(u32::MAX));
    for c in cmds {
        w.array(3);
        w.bin(c.id.as_uuid().as_bytes());
        w.uint(c.first.get());
        w.uint(c.last.get());
    }
    w.bin(&snapshot.state);
    Bytes::from(body)
}

fn encode_snapshot_v1(snapshot: &ActorSnapshot, seq: Option<u64>) -> Result<Bytes, CodecError> {
    let cmds: Vec<CommandOut> = snapshot
        .recent_commands
        .iter()
        .map(|c| CommandOut {
            id: c.id.to_string(),
            first: c.first.get(),
            last: c.last.get(),
        })
        .collect();
    encode(
        &SnapshotOut {
            aether: FORMAT_1,
            version: snapshot.version.get(),
            seq,
            ts: format_timestamp(snapshot.timestamp)?,
            schema: snapshot.schema_version,
            cmds: &cmds,
            state: Bin(&snapshot.state),
        },
        "snapshot envelope",
    )
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

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8], origin: Origin<'_>) -> Result<T, CodecError> {
    rmp_serde::from_slice(body).map_err(|source| CodecError::Decode {
        what: format!("the Aether envelope of {origin} (not written by Aether?)"),
        source,
    })
}

fn check_version(v: u8, origin: Origin<'_>) -> Result<(), CodecError> {
    if v == FORMAT_1 {
        Ok(())
    } else {
        Err(malformed(origin, format!("unknown envelope version {v}")))
    }
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

fn wire(origin: Origin<'_>, e: WireError) -> CodecError {
    malformed(origin, format!("envelope format 2: {e}"))
}

/// Opens a format 2 array of `len` elements and checks its format.
fn open_v2<'a>(body: &'a [u8], len: usize, origin: Origin<'_>) -> Result<Reader<'a>, CodecError> {
    let mut r = Reader::new(body);
    let n = r.array().map_err(|e| wire(origin, e))?;
    let format = r.uint().map_err(|e| wire(origin, e))?;
    if format != u64::from(FORMAT_2) {
        return Err(malformed(
            origin,
            format!("unknown envelope version {format}"),
        ));
    }
    if n != len {
        return Err(malformed(
            origin,
            format!("envelope format 2 with {n} elements, expected {len}"),
        ));
    }
    Ok(r)
}

fn timestamp_v2(secs: i64, nanos: u32, origin: Origin<'_>) -> Result<OffsetDateTime, CodecError> {
    if nanos >= 1_000_000_000 {
        return Err(malformed(origin, "timestamp nanoseconds out of range"));
    }
    OffsetDateTime::from_unix_timestamp(secs)
        .map(|t| t + time::Duration::nanoseconds(i64::from(nanos)))
        .map_err(|e| malformed(origin, format!("timestamp {secs}: {e}")))
}

/// The fields of a format 2 event, borrowed from the body.
struct EventV2<'a> {
    event_type: &'a str,
    actor: &'a str,
    version: u64,
    ts: OffsetDateTime,
    schema: u32,
    corr: Option<&'a str>,
    cause: Option<&'a str>,
    meta: BTreeMap<String, String>,
    data: &'a [u8],
}

fn decode_event_v2<'a>(body: &'a [u8], origin: Origin<'_>) -> Result<EventV2<'a>, CodecError> {
    let mut r = open_v2(body, 10, origin)?;
    let w = |e| wire(origin, e);
    let event_type = r.str().map_err(w)?;
    let actor = r.str().map_err(w)?;
    let version = r.uint().map_err(w)?;
    let (secs, nanos) = r.timestamp().map_err(w)?;
    let schema = r.u32().map_err(w)?;
    let corr = r.opt_str().map_err(w)?;
    let cause = r.opt_str().map_err(w)?;
    let n = r.map().map_err(w)?;
    let mut meta = BTreeMap::new();
    for _ in 0..n {
        let k = r.str().map_err(w)?;
        let v = r.str().map_err(w)?;
        meta.insert(k.to_owned(), v.to_owned());
    }
    let data = r.bin().map_err(w)?;
    if !r.at_end() {
        return Err(malformed(origin, "bytes after the envelope"));
    }
    Ok(EventV2 {
        event_type,
        actor,
        version,
        ts: timestamp_v2(secs, nanos, origin)?,
        schema,
        corr,
        cause,
        meta,
        data,
    })
}

fn parse_timestamp(raw: &str, origin: Origin<'_>) -> Result<OffsetDateTime, CodecError> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map_err(|e| malformed(origin, format!("timestamp {raw:?}: {e}")))
}

/// Reads only the version of a stored event or snapshot of format 1.
fn read_version_v1(body: &[u8], origin: Origin<'_>) -> Result<Version, CodecError> {
    let v: VersionIn = decode(body, origin)?;
    check_version(v.aether, origin)?;
    Ok(Version::new(v.version))
}

/// Reads only the version of a stored event (the payload is skipped).
pub(crate) fn read_event_version(body: &[u8], origin: Origin<'_>) -> Result<Version, CodecError> {
    match shape(body) {
        Shape::Map => read_version_v1(body, origin),
        Shape::Array => {
            let mut r = open_v2(body, 10, origin)?;
            let w = |e| wire(origin, e);
            r.str().map_err(w)?;
            r.str().map_err(w)?;
            Ok(Version::new(r.uint().map_err(w)?))
        }
        Shape::Other => Err(not_aether(origin)),
    }
}

/// Reads only the version of a stored snapshot (the state is skipped).
pub(crate) fn read_snapshot_version(
    body: &[u8],
    origin: Origin<'_>,
) -> Result<Version, CodecError> {
    match shape(body) {
        Shape::Map => read_version_v1(body, origin),
        Shape::Array => {
            let mut r = open_v2(body, 7, origin)?;
            Ok(Version::new(r.uint().map_err(|e| wire(origin, e))?))
        }
        Shape::Other => Err(not_aether(origin)),
    }
}

/// The envelope fields of a stored event, read without the payload (for
/// tools that scan a stream: see [`inspect_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredEnvelope {
    /// The envelope format (1 or 2).
    pub format: u8,
    /// The event type.
    pub event_type: String,
    /// The actor id the envelope names (it must be the one of the subject).
    pub actor: String,
    /// The per-actor version the envelope claims.
    pub version: u64,
}

/// Reads the envelope fields of a stored event's body in either format,
/// without decoding the payload. It checks the form only: whether the
/// message is part of the actor's history also depends on its subject, its
/// `Nats-Msg-Id` and the versions before it (the trust rule).
///
/// # Errors
/// [`CodecError`] when the body is not an event envelope of a known format
/// (never a panic, whatever the bytes).
pub fn inspect_event(body: &[u8]) -> Result<StoredEnvelope, CodecError> {
    const ORIGIN: Origin<'static> = Origin {
        stream: "the inspected record",
        sequence: 0,
    };
    match shape(body) {
        Shape::Map => {
            #[derive(Deserialize)]
            struct Fields<'a> {
                aether: u8,
                #[serde(rename = "type")]
                event_type: &'a str,
                actor: &'a str,
                version: u64,
            }
            let f: Fields<'_> = decode(body, ORIGIN)?;
            check_version(f.aether, ORIGIN)?;
            Ok(StoredEnvelope {
                format: FORMAT_1,
                event_type: f.event_type.to_owned(),
                actor: f.actor.to_owned(),
                version: f.version,
            })
        }
        Shape::Array => {
            let mut r = open_v2(body, 10, ORIGIN)?;
            let w = |e| wire(ORIGIN, e);
            Ok(StoredEnvelope {
                format: FORMAT_2,
                event_type: r.str().map_err(w)?.to_owned(),
                actor: r.str().map_err(w)?.to_owned(),
                version: r.uint().map_err(w)?,
            })
        }
        Shape::Other => Err(not_aether(ORIGIN)),
    }
}

/// Reads the version of a stored snapshot's body in either format.
///
/// # Errors
/// [`CodecError`] when the body is not a snapshot envelope of a known format.
pub fn inspect_snapshot_version(body: &[u8]) -> Result<u64, CodecError> {
    read_snapshot_version(
        body,
        Origin {
            stream: "the inspected record",
            sequence: 0,
        },
    )
    .map(Version::get)
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

/// Decodes a stored event of `actor` (the actor its subject names); a message
/// that is not such an envelope is foreign, for the reason given.
pub(crate) fn decode_event(
    h: Option<&HeaderMap>,
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<Event, ForeignReason> {
    let not_envelope = |e: CodecError| ForeignReason::NotAnEnvelope(e.to_string());
    match shape(body) {
        Shape::Array => {}
        Shape::Map => return decode_event_v1(h, body, actor, origin),
        Shape::Other => return Err(not_envelope(not_aether(origin))),
    }
    let e = decode_event_v2(body, origin).map_err(not_envelope)?;
    if e.actor != actor.as_str() {
        return Err(ForeignReason::WrongActor {
            found: e.actor.chars().take(300).collect(),
        });
    }
    let id = read_event_id(h)?;
    Ok(Event {
        id,
        event_type: Arc::from(e.event_type),
        actor_id: actor.clone(),
        version: Version::new(e.version),
        schema_version: e.schema,
        timestamp: e.ts,
        metadata: Metadata {
            correlation_id: e.corr.map(str::to_owned),
            causation_id: e.cause.map(str::to_owned),
            custom: e.meta,
        },
        data: body.slice_ref(e.data),
    })
}

fn decode_event_v1(
    h: Option<&HeaderMap>,
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<Event, ForeignReason> {
    let not_envelope = |e: CodecError| ForeignReason::NotAnEnvelope(e.to_string());
    let e: EventIn<'_> = decode(body, origin).map_err(not_envelope)?;
    check_version(e.aether, origin).map_err(not_envelope)?;
    if e.actor != actor.as_str() {
        return Err(ForeignReason::WrongActor {
            found: e.actor.chars().take(300).collect(),
        });
    }
    let id = read_event_id(h)?;
    Ok(Event {
        id,
        event_type: Arc::from(e.event_type),
        actor_id: actor.clone(),
        version: Version::new(e.version),
        schema_version: e.schema,
        timestamp: parse_timestamp(e.ts, origin).map_err(not_envelope)?,
        metadata: Metadata {
            correlation_id: e.corr,
            causation_id: e.cause,
            custom: e.meta,
        },
        data: body.slice_ref(e.data),
    })
}

/// Decodes a stored snapshot of `actor`, with the sequence hint of its event.
pub(crate) fn decode_snapshot(
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<(ActorSnapshot, Option<u64>), CodecError> {
    match shape(body) {
        Shape::Map => decode_snapshot_v1(body, actor, origin),
        Shape::Array => decode_snapshot_v2(body, actor, origin),
        Shape::Other => Err(not_aether(origin)),
    }
}

fn decode_snapshot_v2(
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<(ActorSnapshot, Option<u64>), CodecError> {
    let mut r = open_v2(body, 7, origin)?;
    let w = |e| wire(origin, e);
    let version = r.uint().map_err(w)?;
    let seq = if r.nil().map_err(w)? {
        None
    } else {
        Some(r.uint().map_err(w)?)
    };
    let (secs, nanos) = r.timestamp().map_err(w)?;
    let schema_version = r.u32().map_err(w)?;
    let n = r.array().map_err(w)?;
    let mut recent_commands = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        if r.array().map_err(w)? != 3 {
            return Err(malformed(
                origin,
                "a recent command is not [id, first, last]",
            ));
        }
        let id = Uuid::from_slice(r.bin().map_err(w)?)
            .map_err(|_| malformed(origin, "a command id that is not 16 bytes"))?;
        recent_commands.push(RecentCommand {
            id: CommandId::from_uuid(id),
            first: Version::new(r.uint().map_err(w)?),
            last: Version::new(r.uint().map_err(w)?),
        });
    }
    let state = r.bin().map_err(w)?;
    if !r.at_end() {
        return Err(malformed(origin, "bytes after the envelope"));
    }
    let snapshot = ActorSnapshot {
        actor_id: actor.clone(),
        version: Version::new(version),
        state: body.slice_ref(state),
        timestamp: timestamp_v2(secs, nanos, origin)?,
        schema_version,
        recent_commands,
    };
    Ok((snapshot, seq))
}

fn decode_snapshot_v1(
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<(ActorSnapshot, Option<u64>), CodecError> {
    let s: SnapshotIn<'_> = decode(body, origin)?;
    check_version(s.aether, origin)?;
    let recent_commands = s
        .cmds
        .iter()
        .map(|c| {
            Ok(RecentCommand {
                id: c.id.parse::<CommandId>().map_err(|_| {
                    malformed(origin, format!("command id {:?} is not a UUID", c.id))
                })?,
                first: Version::new(c.first),
                last: Version::new(c.last),
            })
        })
        .collect::<Result<Vec<_>, CodecError>>()?;
    let snapshot = ActorSnapshot {
        actor_id: actor.clone(),
        version: Version::new(s.version),
        state: body.slice_ref(s.state),
        timestamp: parse_timestamp(s.ts, origin)?,
        schema_version: s.schema,
        recent_commands,
    };
    Ok((snapshot, s.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: Origin<'static> = Origin {
        stream: "S",
        sequence: 1,
    };

    #[test]
    fn event_round_trips() {
        let actor = ActorId::new("a.b ü").unwrap();
        let mut e = Event::new(actor.clone(), Version::new(7), "Typ ü", &"payload").unwrap();
        e.metadata.correlation_id = Some("c ✓".into());
        e.metadata.causation_id = Some(String::new());
        e.metadata.custom.insert("k=1 ü".into(), "v%2\n".into());
        e.metadata.custom.insert(String::new(), String::new());
        e.schema_version = 3;
        // A non-UTC offset is stored as the same instant in UTC, which compares equal.
        e.timestamp = e.timestamp.to_offset(UtcOffset::from_hms(2, 0, 0).unwrap());
        for format in [EnvelopeFormat::V1, EnvelopeFormat::V2] {
            event_round_trips_in(&e, &actor, format);
        }
    }

    fn event_round_trips_in(e: &Event, actor: &ActorId, format: EnvelopeFormat) {
        let e = e.clone();
        let actor = actor.clone();
        let enc = encode_event(&e, &actor_scope(&actor), format).unwrap();
        let (h, body) = (enc.headers(), enc.body.clone());
        assert_eq!(enc.wire_len(0), {
            // What async-nats puts on the wire for these headers and body.
            let mut block = String::from("NATS/1.0\r\n");
            for (k, vs) in h.iter() {
                for v in vs {
                    block.push_str(&format!("{}: {}\r\n", AsRef::<str>::as_ref(k), v.as_str()));
                }
            }
            block.push_str("\r\n");
            block.len() + body.len()
        });
        let back = decode_event(Some(&h), &body, &actor, ORIGIN).unwrap();
        assert_eq!(back, e);
        let other = ActorId::new("other").unwrap();
        assert!(matches!(
            decode_event(Some(&h), &body, &other, ORIGIN),
            Err(ForeignReason::WrongActor { found }) if found == "a.b ü"
        ));
        assert!(matches!(
            decode_event(None, &body, &actor, ORIGIN),
            Err(ForeignReason::MissingEventId)
        ));
        assert_eq!(read_event_version(&body, ORIGIN).unwrap(), Version::new(7));
        assert_eq!(read_event_id(Some(&h)).unwrap(), e.id);
        // The id is scoped by actor; a bare id (older streams) reads the same.
        assert_eq!(enc.id.as_str(), format!("{}.{}", e.id, actor_scope(&actor)));
        assert_ne!(actor_scope(&actor), actor_scope(&other));
        let mut old = HeaderMap::new();
        old.insert(NATS_MESSAGE_ID, e.id.to_string().as_str());
        assert_eq!(decode_event(Some(&old), &body, &actor, ORIGIN).unwrap(), e);
        // The payload is a zero-copy slice of the body.
        assert!(body.as_ptr_range().contains(&back.data.as_ptr()) || back.data.is_empty());
    }

    #[test]
    fn envelope_is_readable_as_plain_messagepack() {
        let actor = ActorId::new("a").unwrap();
        let e = Event::new(actor, Version::new(2), "Opened", &"x").unwrap();
        let body = encode_event(&e, "scope", EnvelopeFormat::V1).unwrap().body;
        #[derive(Deserialize)]
        struct Tool {
            #[serde(rename = "type")]
            event_type: String,
            version: u64,
        }
        let t: Tool = rmp_serde::from_slice(&body).unwrap();
        assert_eq!((t.event_type.as_str(), t.version), ("Opened", 2));
        // Format 2 is a plain array: a tool reads it by position.
        let body = encode_event(&e, "scope", EnvelopeFormat::V2).unwrap().body;
        type Positional = (
            u8,
            String,
            String,
            u64,
            serde::de::IgnoredAny,
            u32,
            Option<String>,
            Option<String>,
            BTreeMap<String, String>,
            serde::de::IgnoredAny,
        );
        let t: Positional = rmp_serde::from_slice(&body).unwrap();
        assert_eq!(
            (t.0, t.1.as_str(), t.2.as_str(), t.3),
            (2, "Opened", "a", 2)
        );
    }

    #[test]
    fn snapshot_round_trips() {
        let s =
            ActorSnapshot::new(ActorId::new("s").unwrap(), Version::new(4), &vec![1u8, 2]).unwrap();
        let with_cmds =
            s.clone()
                .with_schema_version(3)
                .with_recent_commands(vec![RecentCommand {
                    id: CommandId::new(),
                    first: Version::new(2),
                    last: Version::new(4),
                }]);
        for format in [EnvelopeFormat::V1, EnvelopeFormat::V2] {
            let body = encode_snapshot(&with_cmds, None, format).unwrap();
            assert_eq!(
                decode_snapshot(&body, &s.actor_id, ORIGIN).unwrap(),
                (with_cmds.clone(), None)
            );
            let body = encode_snapshot(&s, Some(9), format).unwrap();
            assert_eq!(
                decode_snapshot(&body, &s.actor_id, ORIGIN).unwrap(),
                (s.clone(), Some(9))
            );
            let body = encode_snapshot(&s, None, format).unwrap();
            assert_eq!(
                decode_snapshot(&body, &s.actor_id, ORIGIN).unwrap(),
                (s.clone(), None)
            );
            assert_eq!(
                read_snapshot_version(&body, ORIGIN).unwrap(),
                Version::new(4)
            );
            // The state is a zero-copy slice of the body.
            let (back, _) = decode_snapshot(&body, &s.actor_id, ORIGIN).unwrap();
            assert!(body.as_ptr_range().contains(&back.state.as_ptr()));
        }
    }

    #[test]
    fn foreign_messages_are_codec_errors() {
        let a = ActorId::new("a").unwrap();
        let garbage = Bytes::from_static(b"\xc1garbage");
        assert!(matches!(
            decode_event(None, &garbage, &a, ORIGIN),
            Err(ForeignReason::NotAnEnvelope(_))
        ));
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, "0195f0a0-0000-7000-8000-000000000000");
        assert!(matches!(
            decode_event(Some(&h), &garbage, &a, ORIGIN),
            Err(ForeignReason::NotAnEnvelope(_))
        ));
        assert!(read_event_version(&garbage, ORIGIN).is_err());
        assert!(read_event_version(b"", ORIGIN).is_err());
        assert!(read_snapshot_version(b"", ORIGIN).is_err());
        // Arrays that are not format 2 envelopes.
        for bad in [
            &[0x90][..],
            &[0x9a, 0x03][..],
            &[0x93, 0x02, 0xa0, 0xa0][..],
            &[0x9a, 0x02, 0xa1, b'T', 0xa1, b'a', 0x01][..],
        ] {
            let body = Bytes::copy_from_slice(bad);
            assert!(matches!(
                decode_event(Some(&h), &body, &a, ORIGIN),
                Err(ForeignReason::NotAnEnvelope(_))
            ));
            assert!(decode_snapshot(&body, &a, ORIGIN).is_err());
        }
        // Every prefix of a valid format 2 event is refused, never a panic.
        let e = Event::new(a.clone(), Version::new(2), "T", &"x").unwrap();
        let full = encode_event(&e, "s", EnvelopeFormat::V2).unwrap().body;
        for n in 0..full.len() {
            let cut = full.slice(..n);
            assert!(
                decode_event(Some(&h), &cut, &a, ORIGIN).is_err(),
                "prefix {n}"
            );
        }
        let other = rmp_serde::to_vec_named(&VersionOut {
            aether: 9,
            version: 1,
        })
        .unwrap();
        assert!(matches!(
            read_event_version(&other, ORIGIN),
            Err(CodecError::Malformed(_))
        ));
        #[derive(Serialize)]
        struct VersionOut {
            aether: u8,
            version: u64,
        }
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn timestamps_have_a_fixed_width() {
        for ts in [
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::now_utc(),
            OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(7),
        ] {
            let s = format_timestamp(ts).unwrap();
            assert_eq!(s.len(), 30, "{s}");
            assert_eq!(OffsetDateTime::parse(&s, &Rfc3339).unwrap(), ts);
        }
        assert_eq!(
            format_timestamp(OffsetDateTime::UNIX_EPOCH).unwrap(),
            "1970-01-01T00:00:00.000000000Z"
        );
        // The same text as the `format!` it replaced, over the whole range.
        let min = time::Date::from_calendar_date(0, time::Month::January, 1)
            .unwrap()
            .midnight()
            .assume_utc();
        let max = time::Date::from_calendar_date(9999, time::Month::December, 31)
            .unwrap()
            .with_hms_nano(23, 59, 59, 999_999_999)
            .unwrap()
            .assume_utc();
        for ts in [min, max, OffsetDateTime::now_utc()] {
            let t = ts.to_offset(UtcOffset::UTC);
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.nanosecond()
            );
            assert_eq!(format_timestamp(ts).unwrap(), expected);
        }
        assert!(format_timestamp(min - time::Duration::nanoseconds(1)).is_err());
    }

    /// The bytes of an event as this envelope version stores it: a stream
    /// written by it must keep reading, and the encoder must keep writing it.
    #[test]
    fn the_stored_format_is_stable() {
        let (actor, e) = golden_event();
        let stored = concat!(
            "86a6616574686572 01 a474797065 a6506c61636564 a56163746f72 a76f726465722d31",
            " a776657273696f6e 03 a27473 be323032332d31312d31345432323a31333a32302e3030303030303030375a",
            " a464617461 c4029 12a"
        )
        .replace(' ', "");
        let enc = encode_event(&e, &actor_scope(&actor), EnvelopeFormat::V1).unwrap();
        let hex: String = enc.body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, stored);
        assert_eq!(
            enc.id.as_str(),
            "0195f0a0-1234-7000-8000-00000000abcd.".to_owned() + &actor_scope(&actor)
        );
        let body = from_hex(&stored);
        let back = decode_event(Some(&enc.headers()), &body, &actor, ORIGIN_F).unwrap();
        assert_eq!(back, e);
    }

    /// The event both golden-bytes tests store.
    fn golden_event() -> (ActorId, Event) {
        let actor = ActorId::new("order-1").unwrap();
        let id: EventId = "0195f0a0-1234-7000-8000-00000000abcd".parse().unwrap();
        let mut e = Event::from_raw(actor.clone(), Version::new(3), "Placed", vec![0x91, 0x2a]);
        e.id = id;
        e.timestamp =
            OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_700_000_000_000_000_007);
        (actor, e)
    }

    fn from_hex(hex: &str) -> Bytes {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
            .into()
    }

    /// The bytes of an event in format 2, the default: a stream written by it
    /// must keep reading, and the encoder must keep writing it.
    #[test]
    fn the_stored_format_2_is_stable() {
        let (actor, e) = golden_event();
        let stored = concat!(
            "9a 02 a6506c61636564 a76f726465722d31 03",
            " c70cff 00000007 000000006553f100",
            " 01 c0 c0 80 c402912a"
        )
        .replace(' ', "");
        let enc = encode_event(&e, &actor_scope(&actor), EnvelopeFormat::default()).unwrap();
        let hex: String = enc.body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, stored);
        let body = from_hex(&stored);
        let back = decode_event(Some(&enc.headers()), &body, &actor, ORIGIN_F).unwrap();
        assert_eq!(back, e);
        // Shorter than format 1 by the keys and the textual timestamp.
        let v1 = encode_event(&e, &actor_scope(&actor), EnvelopeFormat::V1).unwrap();
        assert!(
            v1.body.len() >= body.len() + 45,
            "{} vs {}",
            v1.body.len(),
            body.len()
        );
        assert_eq!(
            read_event_version(&body, ORIGIN_F).unwrap(),
            Version::new(3)
        );
    }

    const ORIGIN_F: Origin<'static> = Origin {
        stream: "S",
        sequence: 1,
    };
}
