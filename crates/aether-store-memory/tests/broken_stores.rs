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

#[derive(Clone, Copy, PartialEq)]
enum Flaw {
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
        Ok(events)
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        self.inner.stream_events(actor, from)
    }

    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        self.inner.get_latest_version(actor).await
    }
}

impl SnapshotStore for Broken {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> Result<(), StoreError> {
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

    async fn open_with_policy(&self, namespace: Namespace, _policy: TrustPolicy) -> Broken {
        let inner = if self.flaw == Flaw::SharesNamespaces {
            self.backend.clone()
        } else {
            self.backend.with_namespace(namespace.clone())
        };
        Broken {
            inner,
            namespace,
            flaw: self.flaw,
            last_snapshot: Mutex::default(),
        }
    }

    async fn inject_foreign(&self, _store: &Broken, _actor: &ActorId, _record: ForeignRecord) {
        panic!("not used by these tests");
    }

    fn max_event_size(&self) -> usize {
        self.backend.event_size_limit()
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

/// The unbroken wrapper passes everything: the flaws above, not the wrapper, fail.
#[tokio::test]
async fn the_wrapper_itself_is_sound() {
    struct Sound(InMemoryEventStore);
    impl StoreFactory for Sound {
        type Store = InMemoryEventStore;
        async fn open_with_policy(
            &self,
            namespace: Namespace,
            _policy: TrustPolicy,
        ) -> InMemoryEventStore {
            self.0.with_namespace(namespace)
        }
        async fn inject_foreign(
            &self,
            _store: &InMemoryEventStore,
            _actor: &ActorId,
            _record: ForeignRecord,
        ) {
            panic!("not used by these tests");
        }
        fn max_event_size(&self) -> usize {
            self.0.event_size_limit()
        }
    }
    conformance::run_all(&Sound(InMemoryEventStore::new())).await;
}
