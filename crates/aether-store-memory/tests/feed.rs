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

/// Writers on many threads at once and a live subscriber from 0 on another:
/// the subscriber sees exactly what `read_all` finds afterwards, positions
/// strictly increasing, per-actor versions contiguous (no position becomes
/// visible before a lower one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn threads_writing_at_once_skip_nothing() {
    use aether_core::testkit::conformance::test_event;
    use aether_core::{EventFeed, EventStore, FeedFilter, Position, Version};
    use futures::StreamExt;
    const WRITERS: u64 = 8;
    const EVENTS: u64 = 500;
    let store = InMemoryEventStore::new();
    let total = (WRITERS * EVENTS) as usize;
    let mut live = store.subscribe_all(Position::ZERO, FeedFilter::all());
    let reader = tokio::spawn(async move {
        let mut got = Vec::with_capacity(total);
        while got.len() < total {
            got.push(live.next().await.expect("live").expect("ok"));
        }
        got
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let a = ActorId::new(format!("w{w}")).unwrap();
                let mut v = 0;
                while v < EVENTS {
                    let len = 1 + (v % 3).min(EVENTS - v - 1);
                    let batch = (1..=len).map(|i| test_event(&a, v + i, "t")).collect();
                    store.append(&a, Version::new(v), batch).await.unwrap();
                    v += len;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let seen = reader.await.unwrap();
    let after: Vec<_> = store
        .read_all(Position::ZERO, FeedFilter::all())
        .map(|i| i.unwrap())
        .collect()
        .await;
    assert_eq!(seen, after);
    assert!(seen.windows(2).all(|w| w[0].position < w[1].position));
    let mut versions = std::collections::HashMap::new();
    for item in &seen {
        let v = versions.entry(item.event.actor_id.clone()).or_insert(0u64);
        *v += 1;
        assert_eq!(item.event.version.get(), *v);
    }
    assert_eq!(versions.len() as u64, WRITERS);
}
