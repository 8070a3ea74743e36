//! The stored form of events and snapshots.
//!
//! The message body is a small MessagePack map (the envelope) whose `data`
//! field holds the event's payload as an opaque `bin`, untouched. Tools in any
//! language read the envelope's fields by decoding the outer map without
//! decoding the payload. The event id travels in the `Nats-Msg-Id` header (the
//! server's duplicate detection uses it).
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
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Header names the store reads.
pub(crate) mod names {
    /// The stream sequence of a message, added by the server to direct-get replies.
    pub(crate) const NATS_SEQUENCE: &str = "Nats-Sequence";
}

/// The value of the envelope's `aether` field this version writes.
pub(crate) const ENVELOPE_VERSION: u8 = 1;

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
    pub(crate) id: String,
    pub(crate) body: Bytes,
}

impl Encoded {
    /// The bytes the message takes against `max_payload`: the body and a
    /// header block with the id and `control` bytes of further headers.
    pub(crate) fn wire_len(&self, control: usize) -> usize {
        b"NATS/1.0\r\n\r\n".len()
            + "Nats-Msg-Id: \r\n".len()
            + self.id.len()
            + control
            + self.body.len()
    }

    /// The headers to publish it with: the id, plus whatever the caller adds.
    pub(crate) fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(NATS_MESSAGE_ID, self.id.as_str());
        h
    }
}

/// Encodes one event; `scope` is [`actor_scope`] of its actor.
pub(crate) fn encode_event(event: &Event, scope: &str) -> Result<Encoded, CodecError> {
    let mut ts = [0u8; TIMESTAMP_LEN];
    let out = EventOut {
        aether: ENVELOPE_VERSION,
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
    let body = Bytes::from(body);
    Ok(Encoded {
        id: msg_id(event.id, scope),
        body,
    })
}

/// The body of one snapshot; `seq` is the stream sequence of the event at
/// its version, when known.
pub(crate) fn encode_snapshot(
    snapshot: &ActorSnapshot,
    seq: Option<u64>,
) -> Result<Bytes, CodecError> {
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
            aether: ENVELOPE_VERSION,
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
        write!(f, "message {} of stream {}", self.sequence, self.stream)
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
    if v == ENVELOPE_VERSION {
        Ok(())
    } else {
        Err(malformed(origin, format!("unknown envelope version {v}")))
    }
}

fn parse_timestamp(raw: &str, origin: Origin<'_>) -> Result<OffsetDateTime, CodecError> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map_err(|e| malformed(origin, format!("timestamp {raw:?}: {e}")))
}

/// Reads only the version of a stored event or snapshot (the payload is skipped).
pub(crate) fn read_version(body: &[u8], origin: Origin<'_>) -> Result<Version, CodecError> {
    let v: VersionIn = decode(body, origin)?;
    check_version(v.aether, origin)?;
    Ok(Version::new(v.version))
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
        let enc = encode_event(&e, &actor_scope(&actor)).unwrap();
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
        assert_eq!(read_version(&body, ORIGIN).unwrap(), Version::new(7));
        assert_eq!(read_event_id(Some(&h)).unwrap(), e.id);
        // The id is scoped by actor; a bare id (older streams) reads the same.
        assert_eq!(enc.id, format!("{}.{}", e.id, actor_scope(&actor)));
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
        let body = encode_event(&e, "scope").unwrap().body;
        #[derive(Deserialize)]
        struct Tool {
            #[serde(rename = "type")]
            event_type: String,
            version: u64,
        }
        let t: Tool = rmp_serde::from_slice(&body).unwrap();
        assert_eq!((t.event_type.as_str(), t.version), ("Opened", 2));
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
        let body = encode_snapshot(&with_cmds, None).unwrap();
        assert_eq!(
            decode_snapshot(&body, &s.actor_id, ORIGIN).unwrap(),
            (with_cmds, None)
        );
        let body = encode_snapshot(&s, Some(9)).unwrap();
        assert_eq!(
            decode_snapshot(&body, &s.actor_id, ORIGIN).unwrap(),
            (s.clone(), Some(9))
        );
        let body = encode_snapshot(&s, None).unwrap();
        assert_eq!(
            decode_snapshot(&body, &s.actor_id, ORIGIN).unwrap(),
            (s, None)
        );
        assert_eq!(read_version(&body, ORIGIN).unwrap(), Version::new(4));
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
        assert!(read_version(&garbage, ORIGIN).is_err());
        assert!(read_version(b"", ORIGIN).is_err());
        let other = rmp_serde::to_vec_named(&VersionOut {
            aether: 9,
            version: 1,
        })
        .unwrap();
        assert!(matches!(
            read_version(&other, ORIGIN),
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
        let actor = ActorId::new("order-1").unwrap();
        let id: EventId = "0195f0a0-1234-7000-8000-00000000abcd".parse().unwrap();
        let mut e = Event::from_raw(actor.clone(), Version::new(3), "Placed", vec![0x91, 0x2a]);
        e.id = id;
        e.timestamp =
            OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_700_000_000_000_000_007);
        let stored = concat!(
            "86a6616574686572 01 a474797065 a6506c61636564 a56163746f72 a76f726465722d31",
            " a776657273696f6e 03 a27473 be323032332d31312d31345432323a31333a32302e3030303030303030375a",
            " a464617461 c4029 12a"
        )
        .replace(' ', "");
        let enc = encode_event(&e, &actor_scope(&actor)).unwrap();
        let hex: String = enc.body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, stored);
        assert_eq!(
            enc.id,
            "0195f0a0-1234-7000-8000-00000000abcd.".to_owned() + &actor_scope(&actor)
        );
        let body = Bytes::from(
            (0..stored.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&stored[i..i + 2], 16).unwrap())
                .collect::<Vec<u8>>(),
        );
        let origin = Origin {
            stream: "S",
            sequence: 1,
        };
        let back = decode_event(Some(&enc.headers()), &body, &actor, origin).unwrap();
        assert_eq!(back, e);
    }
}
