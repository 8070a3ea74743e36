//! The whole `aether-core` conformance suite against the in-memory store.

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
        panic!("the in-memory store has no foreign-record hook yet");
    }

    fn max_event_size(&self) -> usize {
        self.0.event_size_limit()
    }
}

aether_core::conformance_suite!(tokio::test, Memory(InMemoryEventStore::new()));
