//! Envelope format 1: a MessagePack map with string keys, written and read
//! with serde (`rmp-serde`).
//!
//! An event is
//! `{aether: 1, type, actor, version, ts, schema?, corr?, cause?, meta?, data}`
//! with `ts` an RFC 3339 text of fixed width; a snapshot is
//! `{aether: 1, version, seq?, ts, schema, cmds?, state}` with `cmds` a list
//! of `{id: "<uuid>", first, last}`. Streams written by older versions hold
//! this format, and `EnvelopeFormat::V1` keeps writing it during a rolling
//! upgrade.

use std::collections::BTreeMap;
use std::sync::Arc;

use aether_core::{
    ActorId, ActorSnapshot, CodecError, CommandId, Event, ForeignReason, Metadata, RecentCommand,
    Version,
};
use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use super::{FORMAT_1, Origin, ids, malformed, not_envelope};

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

fn parse_timestamp(raw: &str, origin: Origin<'_>) -> Result<OffsetDateTime, CodecError> {
    OffsetDateTime::parse(raw, &Rfc3339)
        .map_err(|e| malformed(origin, format!("timestamp {raw:?}: {e}")))
}

fn encode<T: Serialize>(value: &T, what: &str) -> Result<Bytes, CodecError> {
    rmp_serde::to_vec_named(value)
        .map(Bytes::from)
        .map_err(|source| CodecError::Encode {
            what: what.to_owned(),
            source,
        })
}

/// Reads a format 1 body (or anything serde can read from MessagePack).
pub(super) fn decode<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    origin: Origin<'_>,
) -> Result<T, CodecError> {
    rmp_serde::from_slice(body).map_err(|source| CodecError::Decode {
        what: format!("the Aether envelope of {origin} (not written by Aether?)"),
        source,
    })
}

/// Checks the `aether` field of a map: format 1.
pub(super) fn check_version(v: u8, origin: Origin<'_>) -> Result<(), CodecError> {
    if v == FORMAT_1 {
        Ok(())
    } else {
        Err(malformed(origin, format!("unknown envelope version {v}")))
    }
}

/// The event's body in format 1 (a map with string keys).
pub(super) fn encode_event(event: &Event) -> Result<Bytes, CodecError> {
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

/// The snapshot's body in format 1.
pub(super) fn encode_snapshot(
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

/// Decodes a format 1 event of `actor` (see [`super::decode_event`]).
pub(super) fn decode_event(
    h: Option<&HeaderMap>,
    body: &Bytes,
    actor: &ActorId,
    origin: Origin<'_>,
) -> Result<Event, ForeignReason> {
    let e: EventIn<'_> = decode(body, origin).map_err(not_envelope)?;
    check_version(e.aether, origin).map_err(not_envelope)?;
    let id = ids::read_event_id_of(h, e.actor, actor)?;
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

/// Decodes a format 1 snapshot of `actor` (see [`super::decode_snapshot`]).
pub(super) fn decode_snapshot(
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
    use crate::envelope::tests::{ORIGIN, from_hex, golden_event};
    use crate::envelope::{self, EnvelopeFormat, actor_scope};

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
        let enc = envelope::encode_event(&e, &actor_scope(&actor), EnvelopeFormat::V1).unwrap();
        let hex: String = enc.body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, stored);
        assert_eq!(
            enc.id.as_str(),
            "0195f0a0-1234-7000-8000-00000000abcd.".to_owned() + &actor_scope(&actor)
        );
        let body = from_hex(&stored);
        let back = envelope::decode_event(Some(&enc.headers()), &body, &actor, ORIGIN).unwrap();
        assert_eq!(back, e);
    }
}
