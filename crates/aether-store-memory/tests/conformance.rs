//! The whole `aether-core` conformance suite against the in-memory store.

use aether_core::testkit::conformance::sized_event;
use aether_core::testkit::{ForeignRecord, StoreFactory};
use aether_core::{ActorId, Namespace, TrustPolicy};
use aether_store_memory::InMemoryEventStore;

/// One backend shared by every namespace the suite opens.
struct Memory(InMemoryEventStore);

impl StoreFactory for Memory {
    type Store = InMemoryEventStore;

    async fn open_with_policy(
        &self,
        namespace: Namespace,
        policy: TrustPolicy,
    ) -> InMemoryEventStore {
        self.0.with_namespace(namespace).trust_policy(policy)
    }

    async fn inject_foreign(
        &self,
        store: &InMemoryEventStore,
        actor: &ActorId,
        record: ForeignRecord,
    ) {
        match record {
            ForeignRecord::Garbage(bytes) => store.inject_garbage(actor, bytes),
            ForeignRecord::Forged(event) => store.inject_event(actor, event),
            ForeignRecord::SnapshotAhead(snapshot) => store.inject_snapshot(snapshot),
            other => panic!("no hook for {other:?}"),
        }
    }

    fn max_event_size(&self) -> usize {
        // The store measures `Event::approx_size`; the suite counts payload bytes.
        self.0.event_size_limit() - sized_event(1, 0).approx_size()
    }
}

aether_core::conformance_suite!(tokio::test, Memory(InMemoryEventStore::new()));
