//! # aether-store-jetstream
//!
//! [`JetStreamEventStore`]: Aether's production [`EventStore`] and
//! [`SnapshotStore`] on NATS JetStream. It keeps every rule of the storage
//! contract (it runs `aether-core`'s whole conformance suite, on one server
//! and on a 3-node cluster with R3 streams): per-actor versions without gaps,
//! atomic multi-event appends, optimistic concurrency, idempotent retries,
//! namespace isolation.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use aether_core::{ActorId, Event, EventStore, EventStoreExt, Namespace, Version};
//! use aether_store_jetstream::{JetStreamEventStore, async_nats};
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let store = JetStreamEventStore::builder(client)
//!     .namespace(Namespace::new("shop")?)
//!     .open()
//!     .await?;
//! let cart = ActorId::new("cart-7")?;
//! store.save_event(Event::new(cart.clone(), Version::FIRST, "ItemAdded", &"book")?).await?;
//! assert_eq!(store.get_latest_version(&cart).await?, Version::FIRST);
//! // The same client and settings in another namespace:
//! let _billing = store.with_namespace(Namespace::new("billing")?).await?;
//! # Ok(()) }
//! ```
//!
//! `JetStreamEventStore::new(client)` opens the `default` namespace with every
//! setting at its default; [`JetStreamEventStore::builder`] sets the rest. The
//! crate re-exports the [`async_nats`] it is built with: connect through
//! `aether_store_jetstream::async_nats` to never pin a second version.
//!
//! # Requirements
//!
//! **nats-server 2.12 or newer** with JetStream enabled (atomic batch publish
//! arrived in 2.12; batched direct get in 2.11). `open` reads the version the
//! server announces and refuses an older one with [`StoreError::Unsupported`]
//! naming both versions. Connection settings (URL, credentials, TLS,
//! reconnection) are the caller's: build the `async_nats::Client` with
//! `async_nats::ConnectOptions` and hand it to the store.
//!
//! # Layout
//!
//! | what | stream | subject |
//! |---|---|---|
//! | events | `<PREFIX>_EVENTS_<ns>` | `<prefix>.<ns>.events.<actor>` |
//! | snapshots | `<PREFIX>_SNAPSHOTS_<ns>` | `<prefix>.<ns>.snapshots.<actor>` |
//!
//! `<prefix>` is `aether` unless [`JetStreamStoreBuilder::prefix`] says
//! otherwise; `<ns>` is [`Namespace::encoded`] and `<actor>`
//! [`ActorId::encoded`](aether_core::ActorId::encoded), an injective encoding
//! (`a.b` → `a_2Eb`, `a_b` → `a_5Fb`), so no two actors or namespaces ever
//! share a subject or a stream and no id can inject a wildcard. One subject
//! per actor means `Nats-Expected-Last-Subject-Sequence` is the optimistic
//! concurrency check and a direct get of the subject's last message is the
//! actor's latest version in one round trip.
//!
//! The events stream is created with `allow_atomic` (atomic batches),
//! `allow_direct`, `deny_delete` and `deny_purge` (events are immutable), no
//! limits, the configured storage, replicas and duplicate window. Snapshots
//! live in a second stream rather than a KV bucket: it is the same thing a
//! bucket is (a stream with `max_msgs_per_subject = 1`), but as a plain stream
//! it shares the events' envelope format, subject encoding, direct gets,
//! expected-sequence compare-and-set and validation code, and needs no `$KV`
//! key rules. An existing stream is validated, and one whose configuration
//! the store cannot use (wrong subjects, no atomic publish, limits that would
//! discard events, different storage or replicas, …) is refused at `open`
//! with a [`StoreError::Backend`] whose source is an [`IncompatibleStream`]
//! listing every problem.
//!
//! **Server memory.** JetStream keeps an index entry per subject in memory
//! (the subject string plus its first/last sequence and count), so a stream
//! with millions of actors costs that much memory on every replica and makes
//! some operations that scan subjects (filtered consumers over wildcards,
//! subject listings) slower; plan for it, or spread actors over namespaces.
//!
//! # Envelope
//!
//! The event id travels in the `Nats-Msg-Id` header, scoped by actor:
//! `<event id>.<actor scope>`, where the scope is the UUID v5 of the actor
//! id's UTF-8 bytes in the namespace `61657468-6572-2d61-6374-6f722d696473`,
//! as 32 hex digits. The server's duplicate detection is per stream while an
//! event id is unique per actor, so the same id in two actors is two events.
//! Streams written before the scope (`Nats-Msg-Id` = the bare event id) read
//! the same way. The body is a small MessagePack value, the envelope, with
//! the payload inside as an opaque `bin`. Two formats are read; format 2 is
//! written unless [`JetStreamStoreBuilder::envelope_format`] says
//! [`EnvelopeFormat::V1`] (for a rolling upgrade from a version that reads
//! only format 1).
//!
//! **Format 2** (default), a positional array, about 45 bytes shorter per
//! event than format 1:
//!
//! | position | value |
//! |---|---|
//! | 0 | `2`, the envelope format |
//! | 1 | the event type |
//! | 2 | the actor id |
//! | 3 | the per-actor version |
//! | 4 | the timestamp: MessagePack timestamp extension (type -1), 96-bit form, UTC |
//! | 5 | the payload's schema version |
//! | 6, 7 | correlation and causation ids, or nil |
//! | 8 | custom metadata (string map, empty when none) |
//! | 9 | the payload (MessagePack, as given), `bin` |
//!
//! A snapshot is `[2, version, seq, ts, schema, cmds, state]`, `seq` an
//! integer or nil, `cmds` an array of `[command id (16 bytes bin), first, last]`.
//!
//! **Format 1**, a map:
//!
//! | key | value |
//! |---|---|
//! | `aether` | `1`, the envelope format |
//! | `type` | the event type |
//! | `actor` | the actor id |
//! | `version` | the per-actor version |
//! | `ts` | RFC 3339 timestamp, UTC, nine fractional digits (fixed width) |
//! | `schema` | the payload's schema version |
//! | `corr`, `cause` | correlation and causation ids, when set |
//! | `meta` | custom metadata (string map), when not empty |
//! | `data` | the payload (MessagePack, as given), `bin` |
//!
//! A format 1 snapshot's body is `{aether, version, seq, ts, schema, cmds, state}`
//! alike, where `seq` (when the writer knew it) is the stream sequence of the
//! event at `version`, `schema` the state's schema version and `cmds` (when
//! not empty) the actor's window of recent commands, an array of
//! `{id: "<command uuid>", first: <version>, last: <version>}`.
//! [`inspect_event`] reads the fields of either format for tools.
//! Any MessagePack library reads every field without decoding `data`, and
//! events read back exactly equal, unicode metadata included (the store hands
//! the payload back as a zero-copy slice of the message). The envelope is in
//! the body rather than in `Aether-*` headers because the server scans a
//! message's headers for its own keys on every publish: measured here with
//! 1000 appends in flight, six such headers cost 25% of the raw publish
//! throughput, the same fields in the body 15%.
//!
//! # Foreign messages (the trust boundary)
//!
//! Any client allowed to publish on an actor's subject can put something
//! there that the store did not write. A message is part of the actor's
//! history only if it is an envelope of this format, with a `Nats-Msg-Id`,
//! naming the actor, whose version is the previous valid version + 1;
//! anything else (garbage, another program's MessagePack, an envelope of
//! another actor or without an id, a repeated, backward or skipped version)
//! is *foreign* ([`aether_core::trust`]). Under the default
//! [`TrustPolicy::SkipForeign`](aether_core::TrustPolicy) reads skip it,
//! `get_latest_version` is the last valid version, and an append lands after
//! it (its expected subject sequence is the foreign message's, its version
//! follows the last valid event); each one met is logged and counted in
//! `aether_foreign_messages_total{namespace, reason}`. Under
//! [`TrustPolicy::Strict`](aether_core::TrustPolicy) the read, stream or
//! append that meets one fails with [`StoreError::Corrupt`] naming its stream
//! sequence. A snapshot ahead of the latest valid event, or one that cannot
//! be decoded, is ignored (counted) and the actor replays its events.
//!
//! The latest valid version is read from the subject's last message and the
//! one before it (one batched direct get, server 2.11+), which agree for an
//! intact tip; foreign messages at the tip are stepped over, and when the
//! messages there do not settle it the whole history is read under the rule.
//! A read of the whole history always applies the rule exactly; only a run
//! of forged envelopes with consecutive versions of their own at the very
//! tip can make the *latest version* read disagree with the history until
//! an append refreshes it. The way to keep foreign messages out is NATS
//! permissions: see the crate README for a tested configuration.
//!
//! # Appends
//!
//! [`EventStore::append`] validates the batch, checks each message (headers
//! included) against the server's `max_payload` (**1 MiB** by default) and
//! refuses an oversized one with [`StoreError::TooLarge`] before anything is
//! sent. One event is one publish with `Nats-Expected-Last-Subject-Sequence`;
//! several (at most [`MAX_BATCH`] = 1000) are one atomic batch
//! (`Nats-Batch-Id` / `Nats-Batch-Sequence` / `Nats-Batch-Commit`, the
//! expected sequence on the first message), stored whole or not at all.
//!
//! The expected sequence comes from a **version cache** (actor → latest
//! valid version, its stream sequence, and the sequence of the subject's last
//! message, which a foreign message may have moved past it), so a steady
//! writer needs no read before a write. A miss costs a tip read (two direct
//! gets). The cache is only a hint — the server checks the sequence — and is
//! dropped on a conflict or failure and raised when a read sees a newer
//! version or a later message written elsewhere.
//!
//! When the server refuses a publish (wrong last sequence 10071, an R3 write
//! in flight 10164, a duplicate id) or acknowledges it as a duplicate, the
//! store reads the subject back: if the batch's last event id is stored at its
//! version, the append was a **retry of a stored batch** and reports success;
//! otherwise it is a [`StoreError::VersionConflict`] with the actual version.
//! So retrying an append after a timeout or a lost connection is always safe.
//! Refusals that say another write is in flight or the stream is busy are
//! retried inside the append after a jittered exponential back-off (2 ms
//! doubling to 256 ms, at most 8 attempts), so writers refused together do
//! not retry in step.
//!
//! An append waits for its acknowledgement up to the request timeout
//! ([`DEFAULT_TIMEOUT`], 5 s) while the connection is up; when the client
//! loses the connection (a crashed server, a reset) while the append waits,
//! it fails within about 20 ms with [`StoreError::Unavailable`] instead (the
//! events may have been stored: retry the same events). A server that
//! freezes without closing the connection is noticed only by the client's
//! pings (`ConnectOptions::ping_interval`, 60 s by default): see the README
//! for the trade-off.
//!
//! # Reads
//!
//! A read first reads the actor's tip (one direct get; from the stream leader
//! with more than one replica, so a read always sees every acknowledged
//! write) and reads up to that sequence, so a read of an actor that keeps
//! being written still ends. Up to `read_batch` (default 1000) events are
//! read with batched direct gets (`next_by_subj`, server 2.11+), which cost
//! the server no state; longer reads go through an ordered consumer on the
//! actor's subject, which streams with flow control (measured here at 2-3x
//! the per-message rate of direct gets). Events are decoded as they arrive,
//! so [`EventStore::stream_events`] holds little memory however long the
//! history (the conformance suite reads 100 000 events). A read from a
//! version past 1 must find where that version is: right after a snapshot
//! loaded by this store, the snapshot's `seq` says it (the read checks that
//! its first message is the snapshot's event, and searches if not);
//! otherwise one direct get when the actor's latest events are contiguous in
//! the stream, else a binary search over stream sequences (about log2 of the
//! stream's length in direct gets). So loading an actor from its snapshot
//! (`Repository::load`) costs three round trips once the version cache knows
//! the actor (snapshot, tip, events), two more when it does not (the
//! snapshot is checked against the latest valid version). With more than
//! one replica a direct get may be answered by a
//! replica behind the leader; the read then waits for it to catch up to the
//! tip (bounded by the request timeout).
//!
//! A read interrupted by a transient failure (time-out, lost connection, a
//! consumer gone with its server) **resumes** from the message after the last
//! one it processed, for up to the request timeout after the failure; if it
//! cannot, the error is the stream's last item. A stream never ends early
//! without an error, and never repeats or skips an event.
//!
//! # Snapshots
//!
//! One message per actor (`max_msgs_per_subject = 1` trims older ones). A
//! save reads the stored snapshot and, unless it is newer, replaces it with a
//! compare-and-set on its sequence (so concurrent saves keep the highest
//! version); a snapshot beyond the actor's latest event is refused with
//! [`StoreError::SnapshotAhead`].
//!
//! # Errors
//!
//! | error | meaning | what to do |
//! |---|---|---|
//! | [`StoreError::VersionConflict`] | the actor is not at the expected version; nothing written | reload, decide again |
//! | [`StoreError::TooLarge`] | an event or snapshot (with headers) exceeds `max_payload`; nothing sent | make it smaller |
//! | [`StoreError::InvalidInput`] | malformed batch, more than 1000 events, bad configuration | fix the call |
//! | [`StoreError::SnapshotAhead`] | snapshot beyond the actor's latest event | snapshot a stored version |
//! | [`StoreError::Corrupt`] | under the strict policy, a foreign message or snapshot (its stream sequence and why) | inspect the stream; permissions |
//! | [`StoreError::Codec`] | an event or snapshot cannot be encoded | fix the value |
//! | [`StoreError::Timeout`] | no reply in time; an append may have been stored | retry the same events (idempotent) |
//! | [`StoreError::Unavailable`] | no connection (also: lost while an append waited for its acknowledgement, or not connected yet at `open`), no responders, leader election, transient refusals | retry later (idempotent) |
//! | [`StoreError::Unsupported`] | server older than 2.12, no JetStream, atomic publish off | upgrade / reconfigure |
//! | [`StoreError::Backend`] | anything else; incompatible stream configuration ([`IncompatibleStream`]) | see the source |
//!
//! Sources are kept: JetStream error answers as [`ApiError`], client errors
//! as the async-nats error.
//!
//! # Metrics
//!
//! Through the `metrics` macros, labelled `namespace` and
//! `backend="jetstream"`: `aether_append_duration_seconds` (histogram),
//! `aether_appends_total`, `aether_events_appended_total`,
//! `aether_append_conflicts_total`, `aether_append_errors_total`,
//! `aether_append_retries_total`, `aether_events_read_total`,
//! `aether_read_resumes_total`,
//! `aether_snapshots_saved_total`, `aether_version_cache_hits_total`,
//! `aether_version_cache_misses_total`; the feed adds
//! `aether_feed_events_total`, `aether_feed_behind_events` and
//! `aether_feed_resumes_total`. The store keeps no handle: each emission asks
//! the recorder installed at that moment (the keys are built once at
//! `open`), so a recorder installed after the store was opened sees
//! everything.
//!
//! # Tracing
//!
//! Each operation runs in a `debug` span (`aether.store.append`,
//! `aether.store.read`, `aether.store.latest_version`,
//! `aether.store.save_snapshot`, `aether.store.load_snapshot`, with
//! `backend`, `namespace`, `actor` and the version), one per operation, never
//! one per event.
//!
//! [`EventStore`]: aether_core::EventStore
//! [`EventStore::append`]: aether_core::EventStore::append
//! [`EventStore::stream_events`]: aether_core::EventStore::stream_events
//! [`SnapshotStore`]: aether_core::SnapshotStore
//! [`StoreError`]: aether_core::StoreError
//! [`StoreError::Unsupported`]: aether_core::StoreError::Unsupported
//! [`StoreError::Backend`]: aether_core::StoreError::Backend
//! [`StoreError::Codec`]: aether_core::StoreError::Codec
//! [`StoreError::Corrupt`]: aether_core::StoreError::Corrupt
//! [`StoreError::TooLarge`]: aether_core::StoreError::TooLarge
//! [`StoreError::VersionConflict`]: aether_core::StoreError::VersionConflict
//! [`StoreError::InvalidInput`]: aether_core::StoreError::InvalidInput
//! [`StoreError::SnapshotAhead`]: aether_core::StoreError::SnapshotAhead
//! [`StoreError::Timeout`]: aether_core::StoreError::Timeout
//! [`StoreError::Unavailable`]: aether_core::StoreError::Unavailable
//! [`Namespace::encoded`]: aether_core::Namespace::encoded
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod config;
mod envelope;
mod error;
mod feed;
mod store;
mod version;

pub use config::{DEFAULT_TIMEOUT, JetStreamStoreBuilder, MIN_SERVER_VERSION, Storage};
pub use envelope::{EnvelopeFormat, StoredEnvelope, inspect_event, inspect_snapshot_version};
pub use error::{ApiError, IncompatibleStream};
pub use store::{JetStreamEventStore, MAX_BATCH};
pub use version::ServerVersion;

/// The async-nats version this crate's API takes (`async_nats::Client`,
/// `ConnectOptions`): use it through this re-export so an application never
/// builds a client of a second, mismatching version.
pub use async_nats;
