//! The `aether-core` feed conformance suite against the in-memory store.

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
        self.0.event_size_limit() - sized_event(1, 0).approx_size()
    }
}

aether_core::feed_conformance_suite!(tokio::test, Memory(InMemoryEventStore::new()));

/// The memory feed needs no runtime: a live subscriber is woken by commits.
#[test]
fn live_feed_without_a_runtime() {
    use aether_core::testkit::conformance::test_event;
    use aether_core::{EventFeed, EventStore, FeedFilter, Position, Version};
    use futures::StreamExt;
    let store = InMemoryEventStore::new();
    let a = ActorId::new("a").unwrap();
    let mut live = store.subscribe_all(Position::ZERO, FeedFilter::all());
    let writer = async {
        for v in 1..=3u64 {
            store
                .append(&a, Version::new(v - 1), vec![test_event(&a, v, "t")])
                .await
                .unwrap();
        }
    };
    let reader = async {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(live.next().await.unwrap().unwrap().position.get());
        }
        got
    };
    let ((), got) = futures::executor::block_on(async { futures::join!(writer, reader) });
    assert_eq!(got, vec![1, 2, 3]);
}
