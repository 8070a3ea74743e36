//! Metrics reach a recorder installed *after* the store and the repository
//! were built (the global recorder is per process: this file holds one test).

use std::sync::atomic::{AtomicBool, Ordering};

use aether_core::testkit::metrics::Recorded;
use aether_core::{
    ActorId, ActorSnapshot, Aggregate, CommandError, DomainEvent, Event, EventFeed, EventStore,
    EventStoreExt, FeedFilter, Position, Repository, SnapshotStore, StoreError, Version,
};
use aether_store_memory::InMemoryEventStore;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally(u64);

#[derive(Debug, Serialize, Deserialize)]
struct Added(u64);

impl DomainEvent for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("zero")]
struct Zero;

impl Aggregate for Tally {
    type Command = u64;
    type Event = Added;
    type Error = Zero;
    const KIND: &'static str = "tally";

    fn handle(&self, n: u64) -> Result<Vec<Added>, Zero> {
        if n == 0 {
            Err(Zero)
        } else {
            Ok(vec![Added(n)])
        }
    }

    fn apply(&mut self, e: &Added) {
        self.0 += e.0;
    }
}

/// A store where another writer gets in first once, and snapshots fail.
struct Racing {
    inner: InMemoryEventStore,
    raced: AtomicBool,
}

impl EventStore for Racing {
    fn namespace(&self) -> &aether_core::Namespace {
        self.inner.namespace()
    }
    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        if !self.raced.swap(true, Ordering::SeqCst) {
            let rival = Event::from_domain(actor.clone(), expected.next().unwrap(), &Added(1))?;
            self.inner.save_event(rival).await?;
        }
        self.inner.append(actor, expected, events).await
    }
    async fn get_events(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        self.inner.get_events(actor, from).await
    }
    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> aether_core::BoxStream<'static, Result<Event, StoreError>> {
        self.inner.stream_events(actor, from)
    }
    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        self.inner.get_latest_version(actor).await
    }
}

impl SnapshotStore for Racing {
    async fn save_snapshot(&self, _: ActorSnapshot) -> Result<(), StoreError> {
        Err(StoreError::Unavailable {
            message: "snapshots are down".into(),
            source: None,
        })
    }
    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        self.inner.get_latest_snapshot(actor).await
    }
}

#[tokio::test]
async fn a_recorder_installed_after_the_store_was_built_sees_every_metric() {
    // Built first, with no recorder installed.
    let store = InMemoryEventStore::builder()
        .namespace("bank".parse().unwrap())
        .build();
    let small = store.clone().max_event_size(16);
    let repo = Repository::new(store.clone()).snapshot_every(2);
    let racing = Repository::new(Racing {
        inner: store.clone(),
        raced: AtomicBool::new(false),
    })
    .snapshot_every(1);

    let recorded = Recorded::install();

    let a1 = ActorId::new("tally-1").unwrap();
    repo.execute::<Tally>(&a1, 2).await.unwrap();
    let second = repo.execute::<Tally>(&a1, 3).await.unwrap();
    assert!(second.snapshotted);
    assert!(matches!(
        repo.execute::<Tally>(&a1, 0).await,
        Err(CommandError::Rejected(Zero))
    ));
    let a2 = ActorId::new("tally-2").unwrap();
    let raced = racing.execute::<Tally>(&a2, 5).await.unwrap();
    assert_eq!((raced.retries, raced.snapshotted), (1, false));
    let big = Event::new(
        a1.clone(),
        Version::new(3),
        "Added",
        "x".repeat(64).as_str(),
    )
    .unwrap();
    assert!(matches!(
        small.save_event(big).await,
        Err(StoreError::TooLarge { .. })
    ));
    let feed: Vec<_> = store
        .read_all(Position::ZERO, FeedFilter::all())
        .collect()
        .await;
    assert_eq!(feed.len(), 4);

    let mem = |name: &str| format!("{name}{{backend=memory,namespace=bank}}");
    // Appends: 2 + (rival, conflict, retry) on tally-2 + the refused one.
    assert_eq!(recorded.counter(&mem("aether_appends_total")), 6);
    assert_eq!(recorded.samples(&mem("aether_append_duration_seconds")), 6);
    assert_eq!(recorded.counter(&mem("aether_events_appended_total")), 4);
    assert_eq!(recorded.counter(&mem("aether_append_conflicts_total")), 1);
    assert_eq!(recorded.counter(&mem("aether_append_errors_total")), 1);
    // Read by the loads: as many as were replayed (the feed counts apart).
    assert_eq!(recorded.counter(&mem("aether_events_read_total")), 2);
    assert_eq!(recorded.counter(&mem("aether_snapshots_saved_total")), 1);
    assert_eq!(recorded.counter(&mem("aether_feed_events_total")), 4);
    assert!(recorded.has_gauge(&mem("aether_feed_behind_events")));

    let kind = |name: &str, more: &str| format!("{name}{{kind=tally{more}}}");
    assert_eq!(
        recorded.counter(&kind("aether_commands_total", ",outcome=applied")),
        3
    );
    assert_eq!(
        recorded.counter(&kind("aether_commands_total", ",outcome=rejected")),
        1
    );
    assert_eq!(
        recorded.counter(&kind("aether_command_retries_total", "")),
        1
    );
    assert_eq!(
        recorded.counter(&kind("aether_snapshot_failures_total", ",stage=save")),
        1
    );
    // One load per command run: 3 on tally-1, 2 on tally-2 (the retry).
    assert_eq!(
        recorded.samples(&kind("aether_load_duration_seconds", "")),
        5
    );
    // tally-1: 0, 1, then 0 after its snapshot; tally-2: 0, then the rival's 1.
    assert_eq!(
        recorded.counter(&kind("aether_events_replayed_total", "")),
        2
    );
}
