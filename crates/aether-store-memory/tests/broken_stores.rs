//! The conformance suite must catch broken stores: each test here wraps the
//! in-memory store with one deliberate flaw and checks that the rule guarding
//! against it fails.

use std::collections::HashMap;
use std::sync::Mutex;

use aether_core::store::BoxStream;
use aether_core::testkit::{ForeignRecord, StoreFactory, conformance};
use aether_core::{
    ActorId, ActorSnapshot, Event, EventId, EventStore, Namespace, SnapshotStore, StoreError,
    TrustPolicy, Version,
};
use aether_store_memory::InMemoryEventStore;
use futures::StreamExt;

#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    /// No flaw: the wrapper as it is.
    None,
    /// Every append conflicts, so no batch ever lands.
    NeverLands,
    /// Treats an event id already used by another actor as a retry (dedupe
    /// per namespace, not per actor): reports success, stores nothing.
    IdsPerNamespace,
    /// Returns forged records in reads, as a store without the trust rule.
    ReturnsForeignRecords,
    /// Drops error items from streams, so a stream ends quietly.
    SwallowsStreamErrors,
    /// Forgets the recent-commands window and schema version of snapshots.
    LosesSnapshotFields,
    /// Refuses events exactly at the declared limit.
    LimitOffByOne,
    /// Writes at the latest version whatever the caller expected.
    IgnoresExpectedVersion,
    /// Stores only the first half of a multi-event batch.
    HalfWritesBatches,
    /// Gives every event a fresh id, so a retry is not recognised.
    ForgetsEventIds,
    /// Keeps the snapshot written last, not the highest version.
    LastSnapshotWins,
    /// Every namespace reads and writes the same data.
    SharesNamespaces,
    /// Returns events newest first.
    ReversesReads,
}

struct Broken {
    inner: InMemoryEventStore,
    namespace: Namespace,
    flaw: Flaw,
    last_snapshot: Mutex<HashMap<ActorId, ActorSnapshot>>,
    /// Which actor first used each event id (`IdsPerNamespace`).
    ids: Mutex<HashMap<EventId, ActorId>>,
    /// Forged records per actor (`ReturnsForeignRecords`).
    forged: Mutex<HashMap<ActorId, Vec<Event>>>,
}

impl EventStore for Broken {
    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        mut events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        match self.flaw {
            Flaw::NeverLands => Err(StoreError::VersionConflict {
                actor: actor.clone(),
                expected,
                actual: expected,
            }),
            Flaw::IdsPerNamespace => {
                {
                    let mut ids = self.ids.lock().expect("lock");
                    if events
                        .iter()
                        .any(|e| ids.get(&e.id).is_some_and(|owner| owner != actor))
                    {
                        return Ok(expected
                            .checked_add(events.len() as u64)
                            .expect("small test versions"));
                    }
                    for e in &events {
                        ids.insert(e.id, actor.clone());
                    }
                }
                self.inner.append(actor, expected, events).await
            }
            Flaw::LimitOffByOne
                if events
                    .iter()
                    .any(|e| e.approx_size() >= self.inner.event_size_limit()) =>
            {
                Err(StoreError::TooLarge {
                    what: "event".into(),
                    size: self.inner.event_size_limit(),
                    max: self.inner.event_size_limit() - 1,
                })
            }
            Flaw::IgnoresExpectedVersion => {
                let latest = self.inner.get_latest_version(actor).await?;
                for (i, e) in events.iter_mut().enumerate() {
                    e.version = latest
                        .checked_add(i as u64 + 1)
                        .expect("small test versions");
                }
                self.inner.append(actor, latest, events).await
            }
            Flaw::HalfWritesBatches if events.len() > 1 => {
                let n = events.len() as u64;
                events.truncate(events.len() / 2);
                self.inner.append(actor, expected, events).await?;
                Ok(expected.checked_add(n).expect("small test versions"))
            }
            Flaw::ForgetsEventIds => {
                for e in &mut events {
                    e.id = EventId::new();
                }
                self.inner.append(actor, expected, events).await
            }
            _ => self.inner.append(actor, expected, events).await,
        }
    }

    async fn get_events(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        let mut events = self.inner.get_events(actor, from).await?;
        if self.flaw == Flaw::ReversesReads {
            events.reverse();
        }
        events.extend(self.forged_of(actor));
        Ok(events)
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        let inner = self.inner.stream_events(actor, from);
        let forged = futures::stream::iter(self.forged_of(actor).into_iter().map(Ok));
        let all = inner.chain(forged);
        if self.flaw == Flaw::SwallowsStreamErrors {
            Box::pin(all.filter(|item| futures::future::ready(item.is_ok())))
        } else {
            Box::pin(all)
        }
    }

    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        self.inner.get_latest_version(actor).await
    }
}

impl Broken {
    fn forged_of(&self, actor: &ActorId) -> Vec<Event> {
        self.forged
            .lock()
            .expect("lock")
            .get(actor)
            .cloned()
            .unwrap_or_default()
    }
}

impl SnapshotStore for Broken {
    async fn save_snapshot(&self, mut snapshot: ActorSnapshot) -> Result<(), StoreError> {
        if self.flaw == Flaw::LosesSnapshotFields {
            snapshot.recent_commands.clear();
            snapshot.schema_version = 1;
        }
        if self.flaw == Flaw::LastSnapshotWins {
            let latest = self.inner.get_latest_version(&snapshot.actor_id).await?;
            if snapshot.version > latest {
                return Err(StoreError::SnapshotAhead {
                    actor: snapshot.actor_id,
                    snapshot: snapshot.version,
                    latest,
                });
            }
            let mut map = self.last_snapshot.lock().expect("lock");
            map.insert(snapshot.actor_id.clone(), snapshot);
            return Ok(());
        }
        self.inner.save_snapshot(snapshot).await
    }

    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        if self.flaw == Flaw::LastSnapshotWins {
            return Ok(self.last_snapshot.lock().expect("lock").get(actor).cloned());
        }
        self.inner.get_latest_snapshot(actor).await
    }
}

struct BrokenFactory {
    backend: InMemoryEventStore,
    flaw: Flaw,
}

impl StoreFactory for BrokenFactory {
    type Store = Broken;

    async fn open_with_policy(&self, namespace: Namespace, policy: TrustPolicy) -> Broken {
        let inner = if self.flaw == Flaw::SharesNamespaces {
            self.backend.clone()
        } else {
            self.backend.with_namespace(namespace.clone())
        };
        Broken {
            inner: inner.trust_policy(policy),
            namespace,
            flaw: self.flaw,
            last_snapshot: Mutex::default(),
            ids: Mutex::default(),
            forged: Mutex::default(),
        }
    }

    async fn inject_foreign(&self, store: &Broken, actor: &ActorId, record: ForeignRecord) {
        match record {
            ForeignRecord::Forged(e) if self.flaw == Flaw::ReturnsForeignRecords => store
                .forged
                .lock()
                .expect("lock")
                .entry(actor.clone())
                .or_default()
                .push(e),
            ForeignRecord::Garbage(bytes) => store.inner.inject_garbage(actor, bytes),
            ForeignRecord::Forged(e) => store.inner.inject_event(actor, e),
            ForeignRecord::SnapshotAhead(s) => store.inner.inject_snapshot(s),
            other => panic!("no hook for {other:?}"),
        }
    }

    fn max_event_size(&self) -> usize {
        self.backend.event_size_limit() - conformance::sized_event(1, 0).approx_size()
    }
}

fn broken(flaw: Flaw) -> BrokenFactory {
    BrokenFactory {
        backend: InMemoryEventStore::new(),
        flaw,
    }
}

#[tokio::test]
#[should_panic(expected = "VersionConflict")]
async fn ignoring_expected_versions_is_caught() {
    conformance::version_conflict(&broken(Flaw::IgnoresExpectedVersion)).await;
}

#[tokio::test]
#[should_panic(expected = "concurrent_writers")]
async fn ignoring_expected_versions_under_races_is_caught() {
    conformance::concurrent_writers(&broken(Flaw::IgnoresExpectedVersion)).await;
}

#[tokio::test]
#[should_panic(expected = "append_is_atomic")]
async fn half_written_batches_are_caught() {
    conformance::append_is_atomic(&broken(Flaw::HalfWritesBatches)).await;
}

#[tokio::test]
#[should_panic(expected = "retried save must succeed")]
async fn forgotten_event_ids_are_caught() {
    conformance::idempotent_retry(&broken(Flaw::ForgetsEventIds)).await;
}

#[tokio::test]
#[should_panic(expected = "the highest version must win")]
async fn last_written_snapshot_is_caught() {
    conformance::snapshots(&broken(Flaw::LastSnapshotWins)).await;
}

#[tokio::test]
#[should_panic(expected = "namespace_isolation")]
async fn shared_namespaces_are_caught() {
    conformance::namespace_isolation(&broken(Flaw::SharesNamespaces)).await;
}

#[tokio::test]
#[should_panic(expected = "reads_from_any_version")]
async fn reversed_reads_are_caught() {
    conformance::reads_from_any_version(&broken(Flaw::ReversesReads)).await;
}

#[tokio::test]
#[should_panic(expected = "append_is_atomic: only 0 batches landed")]
async fn batches_that_never_land_are_caught() {
    conformance::append_is_atomic(&broken(Flaw::NeverLands)).await;
}

#[tokio::test]
#[should_panic(expected = "event_ids_are_per_actor")]
async fn ids_deduplicated_per_namespace_are_caught() {
    conformance::event_ids_are_per_actor(&broken(Flaw::IdsPerNamespace)).await;
}

#[tokio::test]
#[should_panic(expected = "reads must return exactly the valid history")]
async fn foreign_records_in_reads_are_caught() {
    conformance::foreign_records_are_skipped(&broken(Flaw::ReturnsForeignRecords)).await;
}

#[tokio::test]
#[should_panic(expected = "ended without an error")]
async fn streams_that_end_quietly_are_caught() {
    conformance::foreign_records_are_refused_when_strict(&broken(Flaw::SwallowsStreamErrors)).await;
}

#[tokio::test]
#[should_panic(expected = "ended after 1500 events without an error")]
async fn long_streams_that_end_quietly_are_caught() {
    conformance::streams_end_only_at_the_end_or_an_error(&broken(Flaw::SwallowsStreamErrors)).await;
}

#[tokio::test]
#[should_panic(expected = "the snapshot must read back unchanged")]
async fn lost_snapshot_fields_are_caught() {
    conformance::snapshot_fields_round_trip(&broken(Flaw::LosesSnapshotFields)).await;
}

#[tokio::test]
#[should_panic(expected = "exactly limit bytes must be stored")]
async fn a_limit_off_by_one_is_caught() {
    conformance::oversized_events_rejected(&broken(Flaw::LimitOffByOne)).await;
}

/// The unbroken wrapper passes everything: the flaws above, not the wrapper,
/// fail.
#[tokio::test]
async fn the_wrapper_itself_is_sound() {
    conformance::run_all(&broken(Flaw::None)).await;
}
