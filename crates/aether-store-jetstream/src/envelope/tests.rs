//! Tests of the entry points, over both formats; fixtures the format tests share.

use std::collections::BTreeMap;

use aether_core::{
    ActorId, ActorSnapshot, CodecError, CommandId, Event, EventId, ForeignReason, RecentCommand,
    Version,
};
use async_nats::HeaderMap;
use async_nats::header::NATS_MESSAGE_ID;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};

use super::ids::read_event_id;
use super::*;

pub(super) const ORIGIN: Origin<'static> = Origin {
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
    let s = ActorSnapshot::new(ActorId::new("s").unwrap(), Version::new(4), &vec![1u8, 2]).unwrap();
    let with_cmds = s
        .clone()
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

/// The event both golden-bytes tests store.
pub(super) fn golden_event() -> (ActorId, Event) {
    let actor = ActorId::new("order-1").unwrap();
    let id: EventId = "0195f0a0-1234-7000-8000-00000000abcd".parse().unwrap();
    let mut e = Event::from_raw(actor.clone(), Version::new(3), "Placed", vec![0x91, 0x2a]);
    e.id = id;
    e.timestamp =
        OffsetDateTime::UNIX_EPOCH + time::Duration::nanoseconds(1_700_000_000_000_000_007);
    (actor, e)
}

pub(super) fn from_hex(hex: &str) -> Bytes {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}
