//! The event envelope and typed payloads.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::command::CommandId;
use crate::error::{CodecError, InvalidInput, StoreError};
use crate::name::ActorId;
use crate::version::Version;

/// The id of one event, unique within its actor's history. New ids are UUID
/// v7 (time ordered); ids of a command's events are derived from the command
/// id ([`EventId::for_command`]).
///
/// Writing an event whose id is already stored for the same actor and version
/// is idempotent: it succeeds without storing a second copy. The same id in
/// two actors is two distinct events on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh, time-ordered id (UUID v7).
    pub fn new() -> Self {
        EventId(Uuid::now_v7())
    }

    /// The id of the `index`-th event (from 0) that command `command`
    /// produced for `actor`: the same inputs give the same id on every
    /// platform and release, so a retried command writes the same ids and the
    /// store recognises them.
    ///
    /// **Wire contract** (other languages may derive the same ids): a UUID v5
    /// (RFC 9562, SHA-1) whose namespace is the command id's UUID and whose
    /// name is the actor id's UTF-8 bytes, one `0x00` byte, then `index` as a
    /// big-endian `u32`.
    pub fn for_command(command: CommandId, actor: &ActorId, index: u32) -> EventId {
        let actor = actor.as_str().as_bytes();
        let len = actor.len() + 5;
        // Ids are at most `ActorId::MAX_LEN` bytes: the name fits on the stack.
        let mut buf = [0u8; ActorId::MAX_LEN + 5];
        let mut heap = Vec::new();
        let name: &mut [u8] = if len <= buf.len() {
            &mut buf[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        name[..actor.len()].copy_from_slice(actor);
        name[actor.len()] = 0;
        name[actor.len() + 1..].copy_from_slice(&index.to_be_bytes());
        // `Uuid::new_v5`, with a SHA-1 that uses the CPU's SHA instructions
        // where it has them (the same digest, so the same id).
        let mut sha = Sha1::new();
        sha.update(command.0.as_bytes());
        sha.update(name);
        let digest: [u8; 20] = sha.finalize().into();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        EventId(uuid::Builder::from_sha1_bytes(bytes).into_uuid())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for EventId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(EventId)
    }
}

/// Tracing and custom data carried beside an event's payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Id shared by every message of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Id of the message (command or event) that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Free-form string pairs (user, tenant, source system, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
}

impl Metadata {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.custom.is_empty()
    }
}

/// A typed domain event: what an aggregate emits and folds.
///
/// `event_type` names the variant in the stored envelope so that tools (and
/// other languages) can read a stream without decoding payloads.
///
/// ```
/// use aether_core::DomainEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// enum AccountEvent { Opened { owner: String }, Deposited { amount: u64 } }
///
/// impl DomainEvent for AccountEvent {
///     fn event_type(&self) -> &'static str {
///         match self {
///             AccountEvent::Opened { .. } => "AccountOpened",
///             AccountEvent::Deposited { .. } => "MoneyDeposited",
///         }
///     }
/// }
/// ```
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The schema version written into new envelopes; bump it when the
    /// payload's shape changes incompatibly.
    const SCHEMA_VERSION: u32 = 1;

    /// The event's type name, stored in the envelope.
    fn event_type(&self) -> &'static str;
}

/// One immutable fact about one actor: the envelope stored by every backend.
///
/// The payload (`data`) is MessagePack; every other field is readable without
/// decoding it. Cloning is cheap: the payload is shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; the idempotency key of writes.
    pub id: EventId,
    /// The type name (e.g. `MoneyDeposited`).
    pub event_type: Arc<str>,
    /// The actor this event belongs to.
    pub actor_id: ActorId,
    /// Position in the actor's history (1, 2, 3, … without gaps).
    pub version: Version,
    /// Schema version of the payload.
    pub schema_version: u32,
    /// When the event was created (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// Correlation, causation and custom data.
    #[serde(default)]
    pub metadata: Metadata,
    /// The payload, MessagePack-encoded.
    pub data: Bytes,
}

impl Event {
    /// Creates an event whose payload is `payload` encoded as MessagePack.
    ///
    /// # Errors
    /// [`CodecError::Encode`] if the payload cannot be serialized.
    pub fn new<T: Serialize + ?Sized>(
        actor_id: ActorId,
        version: Version,
        event_type: impl Into<Arc<str>>,
        payload: &T,
    ) -> Result<Self, CodecError> {
        let event_type = event_type.into();
        let data = encode_payload(payload, &event_type)?;
        Ok(Self::from_raw(actor_id, version, event_type, data))
    }

    /// Creates an event from a typed domain event, taking its type name and
    /// schema version from [`DomainEvent`].
    ///
    /// # Errors
    /// [`CodecError::Encode`] if the payload cannot be serialized.
    pub fn from_domain<E: DomainEvent>(
        actor_id: ActorId,
        version: Version,
        event: &E,
    ) -> Result<Self, CodecError> {
        let mut e = Self::new(actor_id, version, event.event_type(), event)?;
        e.schema_version = E::SCHEMA_VERSION;
        Ok(e)
    }

    /// [`Event::from_domain`] with the given id, so no fresh id is drawn
    /// for an event whose id is derived (see [`EventId::for_command`]).
    pub(crate) fn from_domain_with_id<E: DomainEvent>(
        id: EventId,
        actor_id: ActorId,
        version: Version,
        event: &E,
    ) -> Result<Self, CodecError> {
        let event_type = event.event_type();
        let data = encode_payload(event, event_type)?;
        Ok(Event {
            id,
            event_type: shared_type_name(event_type),
            actor_id,
            version,
            schema_version: E::SCHEMA_VERSION,
            timestamp: OffsetDateTime::now_utc(),
            metadata: Metadata::default(),
            data,
        })
    }

    /// Creates an event around an already encoded payload.
    pub fn from_raw(
        actor_id: ActorId,
        version: Version,
        event_type: impl Into<Arc<str>>,
        data: impl Into<Bytes>,
    ) -> Self {
        Event {
            id: EventId::new(),
            event_type: event_type.into(),
            actor_id,
            version,
            schema_version: 1,
            timestamp: OffsetDateTime::now_utc(),
            metadata: Metadata::default(),
            data: data.into(),
        }
    }

    /// Stamps consecutive versions after `expected` onto typed domain events:
    /// the batch an [`crate::EventStore::append`] with that expected version takes.
    ///
    /// # Errors
    /// [`StoreError::Codec`] if a payload cannot be serialized;
    /// [`StoreError::InvalidInput`] with [`InvalidInput::VersionOverflow`] if
    /// the versions would run past `u64::MAX`.
    pub fn sequence<'a, E: DomainEvent>(
        actor_id: &ActorId,
        expected: Version,
        events: impl IntoIterator<Item = &'a E>,
    ) -> Result<Vec<Event>, StoreError> {
        let mut version = expected;
        events
            .into_iter()
            .map(|e| {
                version = version
                    .next()
                    .ok_or(InvalidInput::VersionOverflow { after: version })?;
                Ok(Event::from_domain(actor_id.clone(), version, e)?)
            })
            .collect()
    }

    /// Sets the id (e.g. a deterministic id derived from a command, so retries dedupe).
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.causation_id = Some(id.into());
        self
    }

    /// Decodes the payload.
    ///
    /// # Errors
    /// [`CodecError::Decode`] if the payload is not a MessagePack `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        rmp_serde::from_slice(&self.data).map_err(|source| CodecError::Decode {
            what: format!("{} event {} of {}", self.event_type, self.id, self.actor_id),
            source,
        })
    }

    /// Size of the payload plus a fixed estimate of the envelope, in bytes.
    /// Backends compare this (or their own exact encoding) with their limit.
    pub fn approx_size(&self) -> usize {
        const ENVELOPE: usize = 160;
        let custom: usize = self
            .metadata
            .custom
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum();
        ENVELOPE
            + self.data.len()
            + self.event_type.len()
            + self.actor_id.as_str().len()
            + self.metadata.correlation_id.as_ref().map_or(0, String::len)
            + self.metadata.causation_id.as_ref().map_or(0, String::len)
            + custom
    }
}

/// Encodes a payload as MessagePack (struct fields by name, so payloads stay
/// readable by other languages and tolerant of added fields).
///
/// # Errors
/// [`CodecError::Encode`] if the value cannot be serialized.
pub fn encode_payload<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Bytes, CodecError> {
    // Encoded into this thread's scratch buffer, then copied once at its
    // exact size: no growth of a fresh vector per payload.
    const KEEP: usize = 64 * 1024;
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let encode = |buf: &mut Vec<u8>| {
        buf.clear();
        let result = rmp_serde::encode::write_named(buf, value)
            .map(|()| Bytes::copy_from_slice(buf))
            .map_err(|source| CodecError::Encode {
                what: what.to_owned(),
                source,
            });
        if buf.capacity() > KEEP {
            // A rare large payload does not pin its size in every thread.
            *buf = Vec::new();
        }
        result
    };
    SCRATCH
        .try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut buf) => encode(&mut buf),
            // A payload's `Serialize` that itself encodes a payload.
            Err(_) => encode(&mut Vec::new()),
        })
        // The thread is ending and its buffer is gone.
        .unwrap_or_else(|_| encode(&mut Vec::new()))
}

/// `name` as an `Arc<str>`, shared with earlier events of the same type on
/// this thread instead of a new allocation per event (a few dozen type
/// names are kept; beyond them each event gets its own).
fn shared_type_name(name: &'static str) -> Arc<str> {
    const KEPT: usize = 32;
    thread_local! {
        static NAMES: std::cell::RefCell<Vec<(&'static str, Arc<str>)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some((_, shared)) = names
            .iter()
            .find(|(n, _)| std::ptr::eq(n.as_ptr(), name.as_ptr()) && n.len() == name.len())
        {
            return shared.clone();
        }
        let shared: Arc<str> = name.into();
        if names.len() < KEPT {
            names.push((name, shared.clone()));
        }
        shared
    })
}

/// Decodes a MessagePack payload written by [`encode_payload`].
///
/// # Errors
/// [`CodecError::Decode`] if the bytes are not a MessagePack `T`.
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|source| CodecError::Decode {
        what: what.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Deposited {
        amount: u64,
        note: String,
    }

    #[test]
    fn typed_payload_round_trips() {
        let actor = ActorId::new("acc-1").unwrap();
        let e = Event::new(
            actor,
            Version::FIRST,
            "Deposited",
            &Deposited {
                amount: 5,
                note: "hi".into(),
            },
        )
        .unwrap();
        assert_eq!(&*e.event_type, "Deposited");
        assert_eq!(
            e.decode::<Deposited>().unwrap(),
            Deposited {
                amount: 5,
                note: "hi".into()
            }
        );
        assert!(matches!(
            e.decode::<String>(),
            Err(CodecError::Decode { .. })
        ));
    }

    #[test]
    fn garbage_payload_is_a_codec_error() {
        let e = Event::from_raw(
            ActorId::new("a").unwrap(),
            Version::FIRST,
            "X",
            vec![0xc1, 0xff],
        );
        assert!(matches!(
            e.decode::<Deposited>(),
            Err(CodecError::Decode { .. })
        ));
    }

    impl DomainEvent for Deposited {
        fn event_type(&self) -> &'static str {
            "Deposited"
        }
    }

    #[test]
    fn sequence_refuses_to_overflow() {
        let a = ActorId::new("a").unwrap();
        let events = [Deposited {
            amount: 1,
            note: String::new(),
        }];
        match Event::sequence(&a, Version::new(u64::MAX), &events) {
            Err(StoreError::InvalidInput(InvalidInput::VersionOverflow { after })) => {
                assert_eq!(after, Version::new(u64::MAX));
            }
            other => panic!("expected VersionOverflow, got {other:?}"),
        }
        let ok = Event::sequence(&a, Version::new(u64::MAX - 1), &events).unwrap();
        assert_eq!(ok[0].version, Version::new(u64::MAX));
    }

    /// Pinned vectors of the wire contract of [`EventId::for_command`]
    /// (cross-checked with Python's `uuid.uuid5`).
    #[test]
    fn command_event_ids_are_pinned() {
        let cmd =
            CommandId::from_uuid(Uuid::parse_str("0190b2a4-7c1e-7d3a-9f10-123456789abc").unwrap());
        let a = ActorId::new("account-42").unwrap();
        let b = ActorId::new("account-4").unwrap();
        let ids: Vec<String> = [
            EventId::for_command(cmd, &a, 0),
            EventId::for_command(cmd, &a, 1),
            EventId::for_command(cmd, &b, 0),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(ids, PINNED);
        assert_eq!(EventId::for_command(cmd, &a, 0).0.get_version_num(), 5);
        assert_ne!(
            EventId::for_command(cmd, &a, 0),
            EventId::for_command(CommandId::new(), &a, 0)
        );
    }

    /// The derivation is `Uuid::new_v5` of the contract's name, bit for bit,
    /// for names of every length around SHA-1's block boundaries.
    #[test]
    fn command_event_ids_are_uuid_v5_of_the_contract_name() {
        for len in (1..=ActorId::MAX_LEN).filter(|n| n % 7 == 0 || (40..=80).contains(n)) {
            let actor = ActorId::new("x".repeat(len)).unwrap();
            let cmd = CommandId::new();
            for index in [0, 1, 255, 65_536, u32::MAX] {
                let mut name = actor.as_str().as_bytes().to_vec();
                name.push(0);
                name.extend_from_slice(&index.to_be_bytes());
                assert_eq!(
                    EventId::for_command(cmd, &actor, index).0,
                    Uuid::new_v5(&cmd.0, &name),
                    "actor id of {len} bytes, index {index}"
                );
            }
        }
    }

    const PINNED: [&str; 3] = [
        "8d9c8e7f-42bc-5077-8aa6-1d564829630a",
        "fa564c77-47f0-57f1-a7ca-8348ff039539",
        "9bb66b23-614b-5623-84fc-ae3a3277d52d",
    ];

    #[test]
    fn ids_are_time_ordered() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a < b || a.0.get_timestamp() == b.0.get_timestamp());
        assert_ne!(a, b);
    }
}
