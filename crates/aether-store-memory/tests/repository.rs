//! `Repository` (load, decide, append, retry, snapshot) and `rehydrate` over
//! the in-memory store, plus the given/when/then kit.

use aether_core::testkit::AggregateTest;
use aether_core::{
    ActorId, ActorSnapshot, Aggregate, Command, CommandError, DomainEvent, Event, EventStore,
    EventStoreExt, RehydrateError, Repository, SnapshotStore, StoreError, Version, rehydrate,
};
use std::sync::atomic::{AtomicU32, Ordering};

use aether_store_memory::InMemoryEventStore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Stock {
    on_hand: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum StockCommand {
    Receive(u32),
    Ship(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StockEvent {
    Received(u32),
    Shipped(u32),
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> &'static str {
        match self {
            StockEvent::Received(_) => "StockReceived",
            StockEvent::Shipped(_) => "StockShipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
enum StockError {
    #[error("only {0} on hand")]
    NotEnough(u32),
}

impl Aggregate for Stock {
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;
    const KIND: &'static str = "stock";

    fn handle(&self, command: StockCommand) -> Result<Vec<StockEvent>, StockError> {
        match command {
            StockCommand::Receive(n) => Ok(vec![StockEvent::Received(n)]),
            StockCommand::Ship(n) if n > self.on_hand => Err(StockError::NotEnough(self.on_hand)),
            StockCommand::Ship(n) => Ok(vec![StockEvent::Shipped(n)]),
        }
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Received(n) => self.on_hand += n,
            StockEvent::Shipped(n) => self.on_hand -= n,
        }
    }
}

fn id(s: &str) -> ActorId {
    ActorId::new(s).unwrap()
}

#[test]
fn given_when_then() {
    AggregateTest::<Stock>::given([StockEvent::Received(5)])
        .when(StockCommand::Ship(3))
        .then_expect_events([StockEvent::Shipped(3)])
        .then_state(|s| assert_eq!(s.on_hand, 2));
    AggregateTest::<Stock>::given_no_previous_events()
        .when(StockCommand::Ship(1))
        .then_expect_error(StockError::NotEnough(0))
        .then_expect_error_message("only 0 on hand");
}

#[test]
#[should_panic(expected = "other events than expected")]
fn given_when_then_reports_wrong_events() {
    AggregateTest::<Stock>::given([StockEvent::Received(5)])
        .when(StockCommand::Ship(3))
        .then_expect_events([StockEvent::Shipped(4)]);
}

#[tokio::test]
async fn execute_appends_and_refusals_write_nothing() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone());
    let a = id("sku-1");
    let out = repo
        .execute::<Stock>(&a, StockCommand::Receive(10))
        .await
        .unwrap();
    assert_eq!((out.version, out.state.on_hand), (Version::FIRST, 10));
    match repo.execute::<Stock>(&a, StockCommand::Ship(11)).await {
        Err(CommandError::Rejected(StockError::NotEnough(10))) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.get_latest_version(&a).await.unwrap(), Version::FIRST);
}

#[tokio::test]
async fn conflicts_are_retried_on_fresh_state() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone());
    let a = id("sku-2");
    repo.execute::<Stock>(&a, StockCommand::Receive(5))
        .await
        .unwrap();
    let stale = repo.load::<Stock>(&a).await.unwrap();
    // Someone else ships 4 meanwhile.
    repo.execute::<Stock>(&a, StockCommand::Ship(4))
        .await
        .unwrap();
    // Deciding on the stale state conflicts...
    let err = repo
        .decide_and_append(&a, stale, Command::new(StockCommand::Ship(3)))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Store(StoreError::VersionConflict { .. })
    ));
    // ...and execute re-decides on the current state, which refuses.
    match repo.execute::<Stock>(&a, StockCommand::Ship(3)).await {
        Err(CommandError::Rejected(StockError::NotEnough(1))) => {}
        other => panic!("expected a refusal on fresh state, got {other:?}"),
    }
    assert_eq!(repo.load::<Stock>(&a).await.unwrap().state.on_hand, 1);
}

#[tokio::test]
async fn retries_are_bounded() {
    // A store whose every append conflicts: execute gives up after max_retries.
    struct AlwaysConflicts(InMemoryEventStore, AtomicU32);
    impl EventStore for AlwaysConflicts {
        fn namespace(&self) -> &aether_core::Namespace {
            self.0.namespace()
        }
        async fn append(
            &self,
            actor: &ActorId,
            expected: Version,
            _: Vec<Event>,
        ) -> Result<Version, StoreError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::VersionConflict {
                actor: actor.clone(),
                expected,
                actual: expected.next().expect("small test versions"),
            })
        }
        async fn get_events(
            &self,
            actor: &ActorId,
            from: Version,
        ) -> Result<Vec<Event>, StoreError> {
            self.0.get_events(actor, from).await
        }
        fn stream_events(
            &self,
            actor: &ActorId,
            from: Version,
        ) -> aether_core::BoxStream<'static, Result<Event, StoreError>> {
            self.0.stream_events(actor, from)
        }
        async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
            self.0.get_latest_version(actor).await
        }
    }
    impl SnapshotStore for AlwaysConflicts {
        async fn save_snapshot(&self, s: ActorSnapshot) -> Result<(), StoreError> {
            self.0.save_snapshot(s).await
        }
        async fn get_latest_snapshot(
            &self,
            a: &ActorId,
        ) -> Result<Option<ActorSnapshot>, StoreError> {
            self.0.get_latest_snapshot(a).await
        }
    }
    for max_retries in [0, 2, 5] {
        let repo = Repository::new(AlwaysConflicts(
            InMemoryEventStore::new(),
            AtomicU32::new(0),
        ))
        .max_retries(max_retries);
        let err = repo
            .execute::<Stock>(&id("x"), StockCommand::Receive(1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, CommandError::Store(StoreError::VersionConflict { .. })),
            "{err}"
        );
        assert_eq!(
            repo.store().1.load(Ordering::SeqCst),
            max_retries + 1,
            "one attempt plus {max_retries} retries"
        );
    }
}

#[tokio::test]
async fn snapshots_bound_replay_and_agree_with_full_replay() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone()).snapshot_every(10);
    let a = id("sku-3");
    for i in 0..25 {
        let out = repo
            .execute::<Stock>(&a, StockCommand::Receive(i))
            .await
            .unwrap();
        assert_eq!(
            out.snapshotted,
            out.version.get() % 10 == 0,
            "snapshot at v{}",
            out.version
        );
    }
    let snap = store.get_latest_snapshot(&a).await.unwrap().unwrap();
    assert_eq!(snap.version, Version::new(20));
    let loaded = repo.load::<Stock>(&a).await.unwrap();
    assert_eq!(
        (loaded.snapshot_version, loaded.events_applied),
        (Some(Version::new(20)), 5)
    );
    let all = store.get_events(&a, Version::ZERO).await.unwrap();
    let full = rehydrate::<Stock>(&a, None, &all).unwrap();
    assert_eq!(full.state, loaded.state);
    assert_eq!(full.state.on_hand, (0..25).sum::<u32>());
}

#[tokio::test]
async fn rehydrate_refuses_gaps_foreign_events_and_garbage() {
    let a = id("a");
    let e = |v| Event::from_domain(a.clone(), Version::new(v), &StockEvent::Received(1)).unwrap();
    let gap = rehydrate::<Stock>(&a, None, &[e(1), e(3)]).unwrap_err();
    assert!(
        matches!(gap, RehydrateError::Gap { expected, found, .. } if expected.get() == 2 && found.get() == 3)
    );
    let foreign = Event::from_domain(id("b"), Version::FIRST, &StockEvent::Received(1)).unwrap();
    assert!(matches!(
        rehydrate::<Stock>(&a, None, &[foreign]),
        Err(RehydrateError::WrongActor { .. })
    ));
    let garbage = Event::from_raw(a.clone(), Version::FIRST, "StockReceived", vec![0xc1]);
    assert!(matches!(
        rehydrate::<Stock>(&a, None, &[garbage]),
        Err(RehydrateError::Codec(_))
    ));
    // Events at or below the snapshot are skipped, not double-applied.
    let snap = ActorSnapshot::new(a.clone(), Version::new(2), &Stock { on_hand: 2 }).unwrap();
    let r = rehydrate::<Stock>(&a, Some(&snap), &[e(1), e(2), e(3)]).unwrap();
    assert_eq!(
        (r.state.on_hand, r.version, r.events_applied),
        (3, Version::new(3), 1)
    );
    // A save_event through the ext trait checks version 0.
    let store = InMemoryEventStore::new();
    assert!(store.save_event(e(0)).await.is_err());
}
