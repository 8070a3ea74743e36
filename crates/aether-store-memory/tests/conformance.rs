//! The whole `aether-core` conformance suite against the in-memory store.

use aether_core::Namespace;
use aether_core::testkit::StoreFactory;
use aether_store_memory::InMemoryEventStore;

/// One backend shared by every namespace the suite opens.
struct Memory(InMemoryEventStore);

impl StoreFactory for Memory {
    type Store = InMemoryEventStore;

    async fn open(&self, namespace: Namespace) -> InMemoryEventStore {
        self.0.with_namespace(namespace)
    }

    fn max_event_size(&self) -> Option<usize> {
        Some(self.0.event_size_limit())
    }
}

aether_core::conformance_suite!(tokio::test, Memory(InMemoryEventStore::new()));
