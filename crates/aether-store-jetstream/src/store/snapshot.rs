//! Snapshots: one message per actor, replaced with a compare-and-set.

use aether_core::{ActorId, ActorSnapshot, ForeignReason, SnapshotStore, StoreError, Version};
use async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE;
use async_nats::{HeaderMap, Subject};
use tracing::Instrument;

use super::{CONTROL_HEADERS, JetStreamEventStore, MAX_ATTEMPTS};
use crate::cache::Tip;
use crate::envelope::{Origin, decode_snapshot, encode_snapshot, read_snapshot_version};
use crate::error::{Refusal, api_error};

impl SnapshotStore for JetStreamEventStore {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<(), StoreError> {
        let span = tracing::debug_span!(
            "aether.store.save_snapshot",
            backend = "jetstream",
            namespace = %self.inner.namespace,
            actor = %snapshot.actor_id,
            version = %snapshot.version,
        );
        self.save_snapshot_inner(snapshot).instrument(span).await
    }

    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        let span = tracing::debug_span!(
            "aether.store.load_snapshot",
            backend = "jetstream",
            namespace = %self.inner.namespace,
            %actor,
        );
        self.get_latest_snapshot_inner(actor).instrument(span).await
    }
}

impl JetStreamEventStore {
    async fn save_snapshot_inner(&self, snapshot: ActorSnapshot) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let actor = snapshot.actor_id.clone();
        // Checked before any round trip with the largest possible envelope.
        let size = b"NATS/1.0\r\n\r\n".len()
            + CONTROL_HEADERS
            + encode_snapshot(&snapshot, Some(u64::MAX), inner.format)?.len();
        if size > inner.max_payload {
            return Err(StoreError::TooLarge {
                what: format!("snapshot of {actor} at version {}", snapshot.version),
                size,
                max: inner.max_payload,
            });
        }
        // A snapshot never claims a version that was not stored. The cache
        // never runs ahead of the server, so a cached version is proof enough.
        let mut tip = inner.cache.get(&actor);
        let events_subject = inner.events.subject(&actor);
        if snapshot.version.get() > tip.map_or(0, |t| t.version) {
            tip = Some(self.inner.tip(&actor, &events_subject).await?);
            let latest = Version::new(tip.map_or(0, |t| t.version));
            if snapshot.version > latest {
                return Err(StoreError::SnapshotAhead {
                    actor,
                    snapshot: snapshot.version,
                    latest,
                });
            }
        }
        // Where the snapshot's event is, when that is the tip we know.
        let seq = tip
            .filter(|t| t.version == snapshot.version.get())
            .map(|t| t.seq);
        let body = encode_snapshot(&snapshot, seq, inner.format)?;
        let subject = Subject::from(inner.snapshots.subject(&actor));
        let what = format!("saving the snapshot of {actor}");
        for attempt in 1..=MAX_ATTEMPTS {
            let current = inner.last_msg(&inner.snapshots, &subject).await?;
            let expected_seq = match &current {
                None => 0,
                Some(m) => {
                    let origin = Origin {
                        stream: &inner.snapshots.name,
                        sequence: m.seq,
                    };
                    // An undecodable stored snapshot is replaced, and so is
                    // one ahead of the events (foreign).
                    if let Ok(v) = read_snapshot_version(&m.payload, origin)
                        && v > snapshot.version
                    {
                        let latest = match inner.cache.get(&actor) {
                            Some(t) if t.version >= v.get() => t.version,
                            _ => self.inner.tip(&actor, &events_subject).await?.version,
                        };
                        if v.get() <= latest {
                            tracing::debug!(%actor, stored = %v, offered = %snapshot.version, "older snapshot ignored");
                            return Ok(());
                        }
                    }
                    m.seq
                }
            };
            let mut h = HeaderMap::new();
            h.insert(
                NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                expected_seq.to_string(),
            );
            match inner
                .request_ack(&subject, h, body.clone(), || what.clone())
                .await?
            {
                Ok(_) => {
                    inner.metrics.snapshots_saved.increment(1);
                    return Ok(());
                }
                Err(Refusal::Conflict(_)) | Err(Refusal::Retry(_)) if attempt < MAX_ATTEMPTS => {
                    tracing::trace!(%actor, attempt, "snapshot write raced; retrying");
                }
                Err(Refusal::Conflict(e)) | Err(Refusal::Retry(e)) => {
                    return Err(api_error(&what, e));
                }
                Err(Refusal::Fatal(e)) => return Err(e),
            }
        }
        Err(StoreError::Unavailable {
            message: format!("{what}: still racing after {MAX_ATTEMPTS} attempts"),
            source: None,
        })
    }

    async fn get_latest_snapshot_inner(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        let inner = &*self.inner;
        let subject = inner.snapshots.subject(actor);
        let Some(m) = inner.last_msg(&inner.snapshots, &subject).await? else {
            return Ok(None);
        };
        let origin = Origin {
            stream: &inner.snapshots.name,
            sequence: m.seq,
        };
        let (snapshot, seq) = match decode_snapshot(&m.payload, actor, origin) {
            Ok(decoded) => decoded,
            Err(e) => {
                inner.foreign(
                    actor,
                    m.seq,
                    ForeignReason::SnapshotUndecodable(e.to_string()),
                )?;
                return Ok(None);
            }
        };
        // A snapshot never claims a version that was not stored: one ahead
        // of the latest valid event is foreign and ignored.
        let latest = match inner.cache.get(actor) {
            Some(t) if t.version >= snapshot.version.get() => t.version,
            _ => {
                let events_subject = inner.events.subject(actor);
                self.inner.tip(actor, &events_subject).await?.version
            }
        };
        if snapshot.version.get() > latest {
            inner.foreign(
                actor,
                m.seq,
                ForeignReason::SnapshotAhead {
                    snapshot: snapshot.version,
                    latest: Version::new(latest),
                },
            )?;
            return Ok(None);
        }
        if let Some(seq) = seq {
            inner
                .hints
                .observe(actor, Tip::at(snapshot.version.get(), seq));
        }
        Ok(Some(snapshot))
    }
}
