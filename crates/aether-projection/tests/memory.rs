//! The runner over the in-memory store: live runs follow appends and save
//! checkpoints; a rebuild resets the read model and reports progress; the
//! memory checkpoint store refuses a stale save; a lease keeps a second
//! runner out until the holder dies and the lease expires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_core::{
    ActorId, Checkpoint, CheckpointError, CheckpointStore, Event, EventStore, FeedFilter, FeedItem,
    Position, Projection, ProjectionError, Version,
};
use aether_projection::{
    LeaseError, MemoryCheckpointStore, MemoryLease, Progress, ProjectionRunner, RunnerError,
};
use aether_store_memory::InMemoryEventStore;
use aether_testkit_nats::wait_until;

#[derive(Clone, Default)]
struct Count {
    seen: Arc<AtomicU64>,
    resets: Arc<AtomicU64>,
}

impl Projection for Count {
    fn name(&self) -> &str {
        "count"
    }
    fn filter(&self) -> FeedFilter {
        FeedFilter::all().event_types(["Counted"])
    }
    async fn handle(&mut self, _: &FeedItem) -> Result<(), ProjectionError> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn reset(&mut self) -> Result<(), ProjectionError> {
        self.seen.store(0, Ordering::SeqCst);
        self.resets.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn append(store: &InMemoryEventStore, a: &ActorId, from: u64, n: u64, ty: &str) {
    let events = (1..=n)
        .map(|i| Event::new(a.clone(), Version::new(from + i), ty, &i).unwrap())
        .collect();
    store.append(a, Version::new(from), events).await.unwrap();
}

#[tokio::test]
async fn live_run_checkpoints_and_rebuild_reports_progress() {
    let store = InMemoryEventStore::new();
    let a = ActorId::new("a").unwrap();
    append(&store, &a, 0, 5, "Counted").await;
    append(&store, &a, 5, 2, "Ignored").await;
    let checkpoints = MemoryCheckpointStore::new();
    let count = Count::default();
    let task = {
        let (store, checkpoints, mut count) = (store.clone(), checkpoints.clone(), count.clone());
        tokio::spawn(async move {
            ProjectionRunner::new(store, checkpoints)
                .batch_size(2)
                .flush_after(Duration::from_millis(5))
                .run(&mut count)
                .await
        })
    };
    let at = async |p: u64| checkpoints.load("count").await.unwrap().position == Position::new(p);
    wait_until(Duration::from_secs(10), "checkpoint at 5", async || {
        at(5).await
    })
    .await;
    append(&store, &a, 7, 3, "Counted").await;
    wait_until(Duration::from_secs(10), "checkpoint at 10", async || {
        at(10).await
    })
    .await;
    assert_eq!(
        count.seen.load(Ordering::SeqCst),
        8,
        "only the filtered events"
    );
    task.abort();

    let reports = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let sink = reports.clone();
    let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .batch_size(3)
        .on_progress(move |p| sink.lock().unwrap().push(p.clone()));
    let mut fresh = Count::default();
    let end = runner.rebuild(&mut fresh).await.expect("rebuild");
    assert_eq!(end, Position::new(10));
    assert_eq!(fresh.seen.load(Ordering::SeqCst), 8);
    assert_eq!(fresh.resets.load(Ordering::SeqCst), 1);
    let reports = reports.lock().unwrap();
    assert_eq!(
        reports.len(),
        3,
        "a report per checkpoint (3 + 3 + 2 events)"
    );
    let last = reports.last().unwrap();
    assert_eq!((last.position, last.head, last.handled), (end, end, 8));
    assert_eq!(last.behind(), 0);
    assert!(
        reports.windows(2).all(|w| w[0].position < w[1].position),
        "progress moves forward"
    );
}

#[tokio::test]
async fn memory_checkpoints_refuse_a_stale_save() {
    let cps = MemoryCheckpointStore::new();
    let first = cps.load("p").await.unwrap();
    assert_eq!(first, Checkpoint::default());
    let saved = cps.save("p", first, Position::new(4)).await.unwrap();
    assert_eq!(saved.position, Position::new(4));
    assert!(matches!(
        cps.save("p", first, Position::new(9)).await,
        Err(CheckpointError::Conflict { expected: 0, .. })
    ));
    assert_eq!(
        cps.load("p").await.unwrap(),
        saved,
        "the stale save changed nothing"
    );
}

/// A runner holding the lease keeps a second one out while it runs live and
/// renews; when it dies without giving the lease back, the second takes the
/// lease once it expired, and handles everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_keeps_a_second_runner_out_until_the_holder_dies_and_it_expires() {
    let store = InMemoryEventStore::new();
    let a = ActorId::new("a").unwrap();
    append(&store, &a, 0, 3, "Counted").await;
    let lease = MemoryLease::new();
    let ttl = Duration::from_secs(1);
    let first = Count::default();
    let holder = {
        let (store, lease, mut count) = (store.clone(), lease.clone(), first.clone());
        tokio::spawn(async move {
            ProjectionRunner::new(store, MemoryCheckpointStore::new())
                .flush_after(Duration::from_millis(5))
                .lease(lease, ttl)
                .run(&mut count)
                .await
        })
    };
    wait_until(
        Duration::from_secs(10),
        "the holder handled 3",
        async || first.seen.load(Ordering::SeqCst) == 3,
    )
    .await;
    let second = Count::default();
    let mut runner = ProjectionRunner::new(store.clone(), MemoryCheckpointStore::new())
        .lease(lease.clone(), ttl);
    // Past several renewals of the holder (a third of 1 s each): still held.
    let deadline = std::time::Instant::now() + Duration::from_millis(1500);
    let mut refusals = 0;
    while std::time::Instant::now() < deadline {
        let err = runner
            .catch_up(&mut second.clone())
            .await
            .expect_err("held by the running holder");
        assert!(
            matches!(err, RunnerError::Lease(LeaseError::Held { .. })),
            "{err}"
        );
        refusals += 1;
        // Paces the attempts over the window; no condition is waited for.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refusals >= 5);
    assert_eq!(second.seen.load(Ordering::SeqCst), 0);

    // The holder dies without giving the lease back: it expires.
    holder.abort();
    let _ = holder.await;
    wait_until(
        Duration::from_secs(10),
        "the second runner takes over",
        async || runner.catch_up(&mut second.clone()).await.is_ok(),
    )
    .await;
    assert_eq!(second.seen.load(Ordering::SeqCst), 3);
}
