//! The bus envelope on the wire (feature `nats`).
//!
//! ```text
//! "AEB1" (4 bytes) | origin node id (16 bytes, UUID) | MessagePack body
//! ```
//!
//! The origin is read from a fixed offset, so a node recognises and drops its
//! own echo without decoding anything. The body is written as a positional
//! MessagePack **array** whose first element is the format version:
//!
//! ```text
//! [2, namespace: str, id: bin(16), event_type: str, actor_id: str,
//!  version: uint, schema_version: uint, unix_seconds: int, nanosecond: uint,
//!  utc_offset_seconds: int, data: bin, metadata: nil | map]
//! ```
//!
//! `metadata` is `nil` when empty, otherwise [`Metadata`]'s MessagePack map
//! with named fields (absent ones left out). A version other than 2 is
//! refused (counted as a bad message), so a later format can be told apart.
//!
//! Nodes of earlier releases wrote the body as a MessagePack **map**
//! `{namespace, event}` (`rmp_serde::to_vec_named` of the namespace and the
//! [`aether_core::Event`] envelope, RFC 3339 timestamp); it is still decoded:
//! the first byte of the body (a map or an array marker) says which it is.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

use aether_core::msgpack::{MsgpackError, NIL, Reader, SliceSink, Writer};
use aether_core::{CodecError, Event, EventId, Metadata, Namespace, Version};
use serde::Deserialize;
use time::{OffsetDateTime, UtcOffset};

pub(crate) const MAGIC: &[u8; 4] = b"AEB1";
pub(crate) const HEADER_LEN: usize = MAGIC.len() + 16;

/// The version written as the body's first element.
const VERSION: u64 = 2;
/// Elements of a version-2 body.
const FIELDS: u32 = 12;

/// The allocation consecutive envelopes share.
const CHUNK: usize = 64 * 1024;

/// The body format a [`NatsEventBus`](crate::NatsEventBus) writes (both are
/// always read).
///
/// [`WireFormat::V2`], the default, is a positional array led by its format
/// version: about a third shorter than [`WireFormat::V1`] and cheaper to
/// write and read. Choose `V1`, the named map of earlier releases, only while
/// nodes of a release that reads only `V1` still subscribe to the same
/// subjects (a rolling upgrade): they count a `V2` envelope as a bad message
/// and drop it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireFormat {
    /// The map `{namespace, event}` of earlier releases.
    V1,
    /// The positional array `[2, namespace, id, type, actor, …]` (the default).
    #[default]
    V2,
}

/// Writes envelopes into a buffer that consecutive envelopes share: one
/// allocation of up to 64 KiB for many envelopes, freed when the last of
/// them is dropped, instead of one allocation each. A `V2` envelope without
/// metadata is written there directly; others go through a scratch vector
/// (with `rmp`) and are copied once.
#[derive(Default)]
pub(crate) struct Encoder {
    format: WireFormat,
    buf: BytesMut,
    scratch: Vec<u8>,
}

impl Encoder {
    /// An encoder that writes bodies in `format`.
    pub(crate) fn new(format: WireFormat) -> Self {
        Self {
            format,
            ..Self::default()
        }
    }

    /// The envelope of `event` published in `namespace` by node `origin`.
    pub(crate) fn encode(
        &mut self,
        origin: &uuid::Uuid,
        namespace: &Namespace,
        event: &Event,
    ) -> Result<Bytes, CodecError> {
        if self.format == WireFormat::V2 && event.metadata.is_empty() {
            // Written straight into the shared buffer: no scratch copy.
            let buf = &mut self.buf;
            let size = positional_size(namespace.as_str(), event);
            if buf.capacity() < size {
                // Allocations are this size (or the envelope's, if larger),
                // unless the buffer is free again.
                buf.reserve(size.max(CHUNK));
            }
            buf.extend_from_slice(MAGIC);
            buf.extend_from_slice(origin.as_bytes());
            // Zeroed, written, then cut to what was written (all within
            // the capacity just reserved).
            buf.resize(size, 0);
            let body = write_positional(&mut buf[HEADER_LEN..], namespace.as_str(), event);
            buf.truncate(HEADER_LEN + body);
            return Ok(buf.split().freeze());
        }
        let out = &mut self.scratch;
        out.clear();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(origin.as_bytes());
        match self.format {
            WireFormat::V2 => write_body(out, namespace.as_str(), event),
            WireFormat::V1 => rmp_serde::encode::write_named(out, &NamedOut { namespace, event }),
        }
        .map_err(|source| CodecError::Encode {
            what: format!("bus envelope of {} event {}", event.event_type, event.id),
            source,
        })?;
        if self.buf.capacity() == 0 {
            // Allocations after the first are this size too (or the
            // envelope's, if larger), unless the buffer is free again.
            self.buf = BytesMut::with_capacity(CHUNK);
        }
        self.buf.extend_from_slice(out);
        if out.capacity() > CHUNK {
            // Do not keep a huge scratch vector for one huge event.
            *out = Vec::new();
        }
        Ok(self.buf.split().freeze())
    }
}

/// The most bytes [`write_positional`] writes for `event` in `ns`, with
/// the header.
fn positional_size(ns: &str, event: &Event) -> usize {
    // Header, array and version markers, the id (bin 8 + 16 bytes), four
    // string or bin headers of at most 5 bytes, five integers of at most 9
    // bytes and `nil`.
    HEADER_LEN
        + 2
        + 18
        + 4 * 5
        + 5 * 9
        + 1
        + ns.len()
        + event.event_type.len()
        + event.actor_id.as_str().len()
        + event.data.len()
}

/// [`write_body`] for an event without metadata, byte for byte as `rmp`
/// writes it (the smallest form of every length and integer), into `out`,
/// which holds at least [`positional_size`] bytes; returns the length
/// written.
fn write_positional(out: &mut [u8], ns: &str, event: &Event) -> usize {
    let ts = event.timestamp;
    let mut w = Writer(SliceSink::new(out));
    w.array(FIELDS);
    w.uint(VERSION);
    w.str(ns);
    w.bin(event.id.as_uuid().as_bytes());
    w.str(&event.event_type);
    w.str(event.actor_id.as_str());
    w.uint(event.version.get());
    w.uint(u64::from(event.schema_version));
    w.sint(ts.unix_timestamp());
    w.uint(u64::from(ts.nanosecond()));
    w.sint(i64::from(ts.offset().whole_seconds()));
    w.bin(&event.data);
    w.nil();
    w.0.written()
}

fn write_body(buf: &mut Vec<u8>, ns: &str, event: &Event) -> Result<(), rmp_serde::encode::Error> {
    use rmp::encode::{write_array_len, write_bin, write_sint, write_str, write_uint};
    let ts = event.timestamp;
    write_array_len(buf, FIELDS)?;
    write_uint(buf, VERSION)?;
    write_str(buf, ns)?;
    write_bin(buf, event.id.as_uuid().as_bytes())?;
    write_str(buf, &event.event_type)?;
    write_str(buf, event.actor_id.as_str())?;
    write_uint(buf, event.version.get())?;
    write_uint(buf, u64::from(event.schema_version))?;
    write_sint(buf, ts.unix_timestamp())?;
    write_uint(buf, u64::from(ts.nanosecond()))?;
    write_sint(buf, i64::from(ts.offset().whole_seconds()))?;
    write_bin(buf, &event.data)?;
    if event.metadata.is_empty() {
        buf.push(NIL);
    } else {
        rmp_serde::encode::write_named(buf, &event.metadata)?;
    }
    Ok(())
}

/// The body of earlier releases, as they wrote it.
#[derive(serde::Serialize)]
struct NamedOut<'a> {
    namespace: &'a Namespace,
    event: &'a Event,
}

/// A decoded envelope whose strings and payload borrow the message.
/// Nothing in it is validated yet but its MessagePack shape: the strings are
/// their bytes, not checked to be UTF-8 (a receiver that already holds an
/// equal string need not check them).
pub(crate) struct WireEvent<'a> {
    pub(crate) namespace: Text<'a>,
    pub(crate) id: EventId,
    pub(crate) event_type: Text<'a>,
    pub(crate) actor_id: Text<'a>,
    pub(crate) version: Version,
    pub(crate) schema_version: u32,
    pub(crate) timestamp: OffsetDateTime,
    pub(crate) metadata: Metadata,
    pub(crate) data: &'a [u8],
}

/// The bytes of a MessagePack string, UTF-8 not yet checked.
pub(crate) type Text<'a> = Cow<'a, [u8]>;

fn text(s: Cow<'_, str>) -> Text<'_> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

/// Decodes a body (what follows the header), in either format.
#[cfg(test)]
pub(crate) fn decode_body(body: &[u8]) -> Result<WireEvent<'_>, String> {
    decode_body_with(body, &mut LastTime::default())
}

/// The timestamp of the last positional envelope decoded with it: the next
/// one with the same whole seconds and UTC offset only replaces its
/// nanoseconds (events published in a burst share them), instead of
/// converting seconds to a date again.
#[derive(Default)]
pub(crate) struct LastTime(Option<(i64, i32, OffsetDateTime)>);

/// [`decode_body`], reusing the date of the previous envelope through `last`.
pub(crate) fn decode_body_with<'a>(
    body: &'a [u8],
    last: &mut LastTime,
) -> Result<WireEvent<'a>, String> {
    match body.first() {
        // fixmap, map 16, map 32: the format of earlier releases.
        Some(0x80..=0x8f | 0xde | 0xdf) => decode_named(body),
        _ => decode_positional(body, last).map_err(|e| format!("bad envelope: {e}")),
    }
}

/// The timestamp of `seconds` since the epoch and `nanosecond`, at UTC
/// offset `offset` (in seconds).
fn timestamp(
    seconds: i64,
    nanosecond: u32,
    offset: i32,
    last: &mut LastTime,
) -> Result<OffsetDateTime, &'static str> {
    const RANGE: &str = "timestamp out of range";
    if let Some((s, o, t)) = last.0
        && s == seconds
        && o == offset
    {
        // The same instant's second at the same offset: the local time's
        // nanosecond is the UTC one.
        return t.replace_nanosecond(nanosecond).map_err(|_| RANGE);
    }
    let t = OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.replace_nanosecond(nanosecond).ok())
        .and_then(|t| t.checked_to_offset(UtcOffset::from_whole_seconds(offset).ok()?))
        .ok_or(RANGE)?;
    last.0 = Some((seconds, offset, t));
    Ok(t)
}

fn decode_named(body: &[u8]) -> Result<WireEvent<'_>, String> {
    let wire =
        rmp_serde::from_slice::<Named<'_>>(body).map_err(|e| format!("bad envelope: {e}"))?;
    let e = wire.event;
    Ok(WireEvent {
        namespace: text(wire.namespace),
        id: e.id,
        event_type: text(e.event_type),
        actor_id: text(e.actor_id),
        version: e.version,
        schema_version: e.schema_version,
        timestamp: e.timestamp,
        metadata: e.metadata,
        data: e.data,
    })
}

fn decode_positional<'a>(
    body: &'a [u8],
    last: &mut LastTime,
) -> Result<WireEvent<'a>, Cow<'static, str>> {
    let r = &mut Reader::new(body);
    let fields = r.array().map_err(wire)?;
    let version = r.uint().map_err(wire)?;
    if version != VERSION {
        return Err(format!("unknown envelope format version {version}").into());
    }
    if fields != FIELDS as usize {
        return Err(format!("{fields} envelope fields, expected {FIELDS}").into());
    }
    let namespace = r.str_bytes().map_err(wire)?;
    let id =
        uuid::Uuid::from_slice(r.bin().map_err(wire)?).map_err(|_| "an event id is 16 bytes")?;
    let event_type = r.str_bytes().map_err(wire)?;
    let actor_id = r.str_bytes().map_err(wire)?;
    let event_version: u64 = r.int().map_err(wire)?;
    let schema_version: u32 = r.int().map_err(wire)?;
    let seconds: i64 = r.int().map_err(wire)?;
    let nanosecond: u32 = r.int().map_err(wire)?;
    let offset: i32 = r.int().map_err(wire)?;
    let timestamp = timestamp(seconds, nanosecond, offset, last)?;
    let data = r.bin().map_err(wire)?;
    let metadata = if r.nil().map_err(wire)? {
        Metadata::default()
    } else {
        let mut rest = r.rest();
        let metadata =
            rmp_serde::decode::from_read(&mut rest).map_err(|e| format!("metadata: {e}"))?;
        r.skip(r.rest().len() - rest.len()).map_err(wire)?;
        metadata
    };
    if !r.at_end() {
        return Err("bytes after the envelope".into());
    }
    Ok(WireEvent {
        namespace: Cow::Borrowed(namespace),
        id: EventId(id),
        event_type: Cow::Borrowed(event_type),
        actor_id: Cow::Borrowed(actor_id),
        version: Version::new(event_version),
        schema_version,
        timestamp,
        metadata,
        data,
    })
}

/// A MessagePack error as a decoding error's text.
fn wire(e: MsgpackError) -> Cow<'static, str> {
    e.to_string().into()
}

/// The body of earlier releases.
#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow)]
    namespace: Cow<'a, str>,
    #[serde(borrow)]
    event: NamedEvent<'a>,
}

/// [`Event`]'s serde form, read with strings and payload borrowed from the
/// message.
#[derive(Deserialize)]
struct NamedEvent<'a> {
    id: EventId,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    actor_id: Cow<'a, str>,
    version: Version,
    schema_version: u32,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    #[serde(default)]
    metadata: Metadata,
    #[serde(borrow)]
    data: &'a [u8],
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aether_core::ActorId;

    use super::*;

    fn encode(origin: &uuid::Uuid, ns: &Namespace, event: &Event) -> Result<Vec<u8>, CodecError> {
        Ok(Encoder::default().encode(origin, ns, event)?.to_vec())
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The event the fixture below was written from.
    fn fixture_event() -> Event {
        let metadata = Metadata {
            correlation_id: Some("corr-7".into()),
            causation_id: Some("cause-9".into()),
            custom: [("tenant".to_owned(), "t1".to_owned())].into(),
        };
        Event {
            id: EventId("0190f3a2-7b1c-7d4e-8f00-112233445566".parse().unwrap()),
            event_type: Arc::from("OrderPlaced"),
            actor_id: ActorId::new("order-1").unwrap(),
            version: Version::new(3),
            schema_version: 2,
            timestamp: OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_123_456_789)
                .unwrap()
                .to_offset(UtcOffset::from_hms(2, 0, 0).unwrap()),
            metadata,
            data: bytes::Bytes::from_static(&[0x93, 1, 2, 3]),
        }
    }

    /// `fixture_event` in `acme.orders` from node `ab…ab`, exactly as the
    /// previous release wrote it (`rmp_serde::to_vec_named` of
    /// `{namespace, event}`).
    const OLD_FORMAT: &str = "41454231abababababababababababababababab82a96e616d657370616365ab61636d652e6f7264657273a56576656e7488a26964c4100190f3a27b1c7d4e8f00112233445566aa6576656e745f74797065ab4f72646572506c61636564a86163746f725f6964a76f726465722d31a776657273696f6e03ae736368656d615f76657273696f6e02a974696d657374616d70d923323032362d30312d30315430323a30303a30302e3132333435363738392b30323a3030a86d6574616461746183ae636f7272656c6174696f6e5f6964a6636f72722d37ac636175736174696f6e5f6964a763617573652d39a6637573746f6d81a674656e616e74a27431a464617461c40493010203";

    fn assert_is_fixture(got: &WireEvent<'_>) {
        let want = fixture_event();
        assert_eq!(&*got.namespace, b"acme.orders");
        assert_eq!(got.id, want.id);
        assert_eq!(&*got.event_type, b"OrderPlaced");
        assert_eq!(&*got.actor_id, b"order-1");
        assert_eq!(got.version, want.version);
        assert_eq!(got.schema_version, 2);
        assert_eq!(got.timestamp, want.timestamp);
        assert_eq!(got.timestamp.offset(), want.timestamp.offset());
        assert_eq!(got.metadata, want.metadata);
        assert_eq!(got.data, &want.data[..]);
    }

    #[test]
    fn the_previous_format_still_decodes() {
        let bytes = hex(OLD_FORMAT);
        assert_eq!(&bytes[..4], MAGIC);
        assert_is_fixture(&decode_body(&bytes[HEADER_LEN..]).unwrap());
    }

    #[test]
    fn the_positional_format_round_trips_and_is_smaller() {
        let ns = Namespace::new("acme.orders").unwrap();
        let origin = uuid::Uuid::from_bytes([0xab; 16]);
        let bytes = encode(&origin, &ns, &fixture_event()).unwrap();
        assert_eq!(&bytes[..HEADER_LEN], &hex(OLD_FORMAT)[..HEADER_LEN]);
        assert_eq!(bytes[HEADER_LEN], 0x90 | FIELDS as u8, "a fixarray");
        assert_eq!(bytes[HEADER_LEN + 1], VERSION as u8);
        assert_is_fixture(&decode_body(&bytes[HEADER_LEN..]).unwrap());
        assert!(
            bytes.len() < hex(OLD_FORMAT).len() * 3 / 4,
            "{} bytes",
            bytes.len()
        );

        // Empty metadata is one `nil`.
        let mut plain = fixture_event();
        plain.metadata = Metadata::default();
        let bytes = encode(&origin, &ns, &plain).unwrap();
        assert_eq!(bytes.last(), Some(&NIL));
        let got = decode_body(&bytes[HEADER_LEN..]).unwrap();
        assert_eq!(got.metadata, Metadata::default());
        assert_eq!(got.data, &plain.data[..]);
    }

    #[test]
    fn the_direct_writer_writes_what_rmp_writes() {
        // Every length and integer form, from the smallest to the largest
        // kept in an event: the body written straight into the shared
        // buffer equals `write_body`'s, and takes no more than it reserved.
        let origin = uuid::Uuid::from_bytes([0xcd; 16]);
        let lens = [0usize, 1, 31, 32, 255, 256, 65_535, 65_536];
        let uints = [
            0u64,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ];
        let offsets = [0i32, -1, -32, -33, -128, -129, -3600, 3600, 50_400, -50_400];
        let seconds = [
            0i64,
            1,
            -1,
            -32,
            -33,
            -200,
            -40_000,
            1_767_225_600,
            -62_000_000_000,
            253_402_300_799,
        ];
        let mut encoder = Encoder::default();
        for (i, &len) in lens.iter().enumerate() {
            let mut event = fixture_event();
            event.metadata = Metadata::default();
            event.event_type = Arc::from("T".repeat(len.min(300)));
            event.actor_id = ActorId::new("a".repeat(len.clamp(1, 200))).unwrap();
            event.data = bytes::Bytes::from(vec![9u8; len]);
            event.version = Version::new(uints[i % uints.len()]);
            event.schema_version = u32::try_from(uints[(i + 3) % uints.len()]).unwrap_or(u32::MAX);
            let offset = UtcOffset::from_whole_seconds(offsets[i % offsets.len()]).unwrap();
            event.timestamp = OffsetDateTime::from_unix_timestamp(seconds[i % seconds.len()])
                .unwrap()
                .replace_nanosecond(999_999_999)
                .unwrap()
                .to_offset(offset);
            let ns = Namespace::new(format!("acme.{}", "n".repeat(len.clamp(1, 60)))).unwrap();
            let mut want = MAGIC.to_vec();
            want.extend_from_slice(origin.as_bytes());
            write_body(&mut want, ns.as_str(), &event).unwrap();
            let got = encoder.encode(&origin, &ns, &event).unwrap();
            assert_eq!(&got[..], &want[..], "length {len}");
            assert!(got.len() <= positional_size(ns.as_str(), &event));
            let back = decode_body(&got[HEADER_LEN..]).unwrap();
            assert_eq!(
                (back.version, back.timestamp),
                (event.version, event.timestamp)
            );
        }
        for v in uints.iter().copied().chain([1, 200, 1 << 40]) {
            for signed in [v as i64, (v as i64).wrapping_neg()] {
                let mut want = Vec::new();
                rmp::encode::write_uint(&mut want, v).unwrap();
                rmp::encode::write_sint(&mut want, signed).unwrap();
                let mut got = [0u8; 18];
                let mut w = Writer(SliceSink::new(&mut got));
                w.uint(v);
                w.sint(signed);
                let at = w.0.written();
                assert_eq!(&got[..at], &want[..], "{v} {signed}");
            }
        }
    }

    #[test]
    fn integers_in_every_form_are_read_as_rmp_reads_them() {
        use rmp::encode as w;
        for v in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            1 << 40,
            u64::MAX,
        ] {
            let mut forms: Vec<Vec<u8>> = vec![Vec::new(); 3];
            w::write_uint(&mut forms[0], v).unwrap();
            w::write_u64(&mut forms[1], v).unwrap();
            if let Ok(i) = i64::try_from(v) {
                w::write_i64(&mut forms[2], i).unwrap();
            }
            for form in forms.iter().filter(|f| !f.is_empty()) {
                let mut r = Reader::new(form);
                assert_eq!(r.int::<u64>().unwrap(), v);
                assert!(r.at_end());
                assert_eq!(
                    Reader::new(form).int::<u32>().ok(),
                    u32::try_from(v).ok(),
                    "{v}"
                );
                let want: Result<i64, _> = rmp::decode::read_int(&mut &form[..]);
                assert_eq!(Reader::new(form).int::<i64>().ok(), want.ok(), "{v}");
            }
        }
        for v in [
            -1i64,
            -32,
            -33,
            -128,
            -129,
            -40_000,
            i64::from(i32::MIN) - 1,
            i64::MIN,
        ] {
            let (mut min, mut wide) = (Vec::new(), Vec::new());
            w::write_sint(&mut min, v).unwrap();
            w::write_i64(&mut wide, v).unwrap();
            for form in [&min, &wide] {
                assert_eq!(Reader::new(form).int::<i64>().unwrap(), v);
                assert!(Reader::new(form).int::<u64>().is_err());
                for cut in 0..form.len() {
                    assert!(Reader::new(&form[..cut]).int::<i64>().is_err());
                }
            }
        }
        assert!(Reader::new(&[NIL]).int::<i64>().is_err());
        assert!(
            Reader::new(&[0xc4, 0]).str_bytes().is_err(),
            "bin is not a string"
        );
        assert!(Reader::new(&[0xa0]).bin().is_err(), "a string is not bin");
    }

    #[test]
    fn a_reused_date_gives_the_timestamp_a_fresh_decode_gives() {
        let mut last = LastTime::default();
        let seconds = [
            1_767_225_600i64,
            1_767_225_600,
            1_767_225_601,
            -1,
            -1,
            0,
            86_399,
            86_399,
        ];
        let offsets = [0i32, 7200, 7200, -3600, -3600, 0, 50_400, 50_400];
        let nanos = [0u32, 5, 999_999_999, 1, 1_000_000_000, 7, 123, 456];
        for i in 0..seconds.len() {
            for j in [i, (i + 1) % seconds.len()] {
                let (s, o) = (seconds[i], offsets[j]);
                for n in nanos {
                    let fresh = timestamp(s, n, o, &mut LastTime::default());
                    let reused = timestamp(s, n, o, &mut last);
                    assert_eq!(fresh, reused, "{s} {n} {o}");
                    if let Ok(t) = reused {
                        assert_eq!((t.unix_timestamp(), t.nanosecond()), (s, n));
                        assert_eq!(t.offset().whole_seconds(), o);
                    }
                }
            }
        }
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let ns = Namespace::new("acme.orders").unwrap();
        let origin = uuid::Uuid::from_bytes([0xab; 16]);
        let good = encode(&origin, &ns, &fixture_event()).unwrap();
        let body = &good[HEADER_LEN..];
        // Every truncation, and every single-byte corruption, either decodes
        // or fails; none panics. Truncations always fail.
        for len in 0..body.len() {
            assert!(decode_body(&body[..len]).is_err(), "truncated at {len}");
        }
        for at in 0..body.len() {
            for byte in [0x00, 0x7f, 0x90, 0xc0, 0xc1, 0xdd, 0xff] {
                let mut bad = body.to_vec();
                bad[at] = byte;
                let _ = decode_body(&bad);
            }
        }
        let mut extra = body.to_vec();
        extra.push(0);
        assert!(decode_body(&extra).is_err());
        let mut other_version = body.to_vec();
        other_version[1] = 3;
        let err = decode_body(&other_version).err().unwrap();
        assert!(err.contains("version 3"), "{err}");
        let old = hex(OLD_FORMAT);
        for len in 0..old.len() - HEADER_LEN {
            assert!(decode_body(&old[HEADER_LEN..HEADER_LEN + len]).is_err());
        }
    }
}
