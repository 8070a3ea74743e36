//! The in-memory store under real parallelism: many tasks on a multi-threaded
//! runtime, many actors, and many writers racing on one actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Barrier;

use aether_core::testkit::conformance::test_event;
use aether_core::{ActorId, EventStore, EventStoreExt, StoreError, Version};
use aether_store_memory::InMemoryEventStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tasks_many_actors_lose_nothing() {
    let store = InMemoryEventStore::new();
    let tasks = 64;
    let per_task = 200u64;
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                // Each task owns 4 actors and interleaves writes between them.
                let actors: Vec<ActorId> = (0..4)
                    .map(|i| ActorId::new(format!("t{t}-a{i}")).unwrap())
                    .collect();
                for v in 1..=per_task / 4 {
                    for a in &actors {
                        store
                            .save_event(test_event(a, v, "x"))
                            .await
                            .expect("no conflicts on owned actors");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("task");
    }
    assert_eq!(store.actor_count(), tasks * 4);
    for t in 0..tasks {
        for i in 0..4 {
            let a = ActorId::new(format!("t{t}-a{i}")).unwrap();
            let events = store.get_events(&a, Version::ZERO).await.unwrap();
            assert_eq!(events.len() as u64, per_task / 4);
            assert!(
                events
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.version.get() == i as u64 + 1)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_threads_never_fork_an_actor() {
    let store = InMemoryEventStore::new();
    let actor = ActorId::new("contended").unwrap();
    let wins = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let writers = 16u64;
    // Phase 1: lock-step rounds. Every writer reads the latest version, waits
    // for all the others to have read it too, then writes the next version:
    // each round has exactly one winner and writers - 1 conflicts, on every
    // machine however its threads are scheduled.
    let rounds = 100u64;
    // Phase 2: free racing up to the target.
    let target = 2_000u64;
    let read = Arc::new(Barrier::new(writers as usize));
    let wrote = Arc::new(Barrier::new(writers as usize));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (store, actor, wins, conflicts, read, wrote) = (
                store.clone(),
                actor.clone(),
                wins.clone(),
                conflicts.clone(),
                read.clone(),
                wrote.clone(),
            );
            tokio::spawn(async move {
                let attempt = |latest: u64| {
                    let (store, actor, wins, conflicts) = (&store, &actor, &wins, &conflicts);
                    async move {
                        match store
                            .save_event(test_event(actor, latest + 1, &format!("w{w}")))
                            .await
                        {
                            Ok(_) => wins.fetch_add(1, Ordering::Relaxed),
                            Err(StoreError::VersionConflict { .. }) => {
                                conflicts.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(e) => panic!("unexpected {e}"),
                        };
                    }
                };
                for _ in 0..rounds {
                    let latest = store.get_latest_version(&actor).await.unwrap().get();
                    read.wait().await;
                    attempt(latest).await;
                    wrote.wait().await;
                }
                loop {
                    let latest = store.get_latest_version(&actor).await.unwrap().get();
                    if latest >= target {
                        break;
                    }
                    attempt(latest).await;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let events = store.get_events(&actor, Version::ZERO).await.unwrap();
    assert_eq!(events.len() as u64, target);
    assert_eq!(
        wins.load(Ordering::Relaxed),
        target,
        "every win is stored exactly once"
    );
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len());
    assert!(
        conflicts.load(Ordering::Relaxed) >= rounds * (writers - 1),
        "contention happened: {} conflicts, at least {} expected from the lock-step rounds",
        conflicts.load(Ordering::Relaxed),
        rounds * (writers - 1)
    );
    // The lock-step rounds wrote one event each, by exactly one writer.
    assert!(
        events[..rounds as usize]
            .iter()
            .enumerate()
            .all(|(i, e)| e.version.get() == i as u64 + 1)
    );
}

#[tokio::test]
async fn views_share_data_per_namespace_only() {
    let a = InMemoryEventStore::builder()
        .namespace("tenant-a".parse().unwrap())
        .build();
    let b = a.with_namespace("tenant-b".parse().unwrap());
    let a2 = b.with_namespace("tenant-a".parse().unwrap());
    let actor = ActorId::new("x").unwrap();
    a.save_event(test_event(&actor, 1, "a")).await.unwrap();
    assert_eq!(
        a2.get_latest_version(&actor).await.unwrap(),
        Version::FIRST,
        "same namespace, same data"
    );
    assert_eq!(b.get_latest_version(&actor).await.unwrap(), Version::ZERO);
}

#[tokio::test]
async fn dyn_store_is_usable() {
    use aether_core::DynStore;
    let store: Arc<dyn DynStore> = Arc::new(InMemoryEventStore::new());
    let actor = ActorId::new("dyn").unwrap();
    store
        .append_dyn(&actor, Version::ZERO, vec![test_event(&actor, 1, "d")])
        .await
        .unwrap();
    assert_eq!(
        store.get_latest_version_dyn(&actor).await.unwrap(),
        Version::FIRST
    );
    let as_event_store: Arc<dyn aether_core::DynEventStore> = Arc::new(InMemoryEventStore::new());
    // `dyn DynEventStore` is itself an EventStore, so generic code takes it.
    async fn generic<S: EventStore + ?Sized>(s: &S, a: &ActorId) -> Version {
        s.get_latest_version(a).await.unwrap()
    }
    assert_eq!(generic(&*as_event_store, &actor).await, Version::ZERO);
}
