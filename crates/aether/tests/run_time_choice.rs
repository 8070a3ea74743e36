//! A store chosen at run time (`Arc<dyn DynStore>`, `Box<dyn DynStore>`)
//! runs commands through a `Repository` like a concrete store does.
#![cfg(feature = "memory")]

use std::sync::Arc;

use aether::memory::InMemoryEventStore;
use aether::prelude::*;
use aether::{DynStore, Rehydrated};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Added(u64);

impl DomainEvent for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("zero is not a change")]
struct Zero;

impl Aggregate for Counter {
    type Command = u64;
    type Event = Added;
    type Error = Zero;
    const KIND: &'static str = "counter";

    fn handle(&self, n: u64) -> Result<Vec<Added>, Zero> {
        if n == 0 {
            Err(Zero)
        } else {
            Ok(vec![Added(n)])
        }
    }

    fn apply(&mut self, e: &Added) {
        self.total += e.0;
    }
}

/// Runs two commands, one refused, and checks the outcome and what the
/// backing store holds.
async fn run_through<S: EventStore + SnapshotStore>(
    repo: Repository<S>,
    backing: &InMemoryEventStore,
) {
    let id = ActorId::new("counter-1").unwrap();
    repo.execute::<Counter>(&id, 2).await.unwrap();
    let outcome = repo.execute::<Counter>(&id, 5).await.unwrap();
    assert_eq!((outcome.version, outcome.state.total), (Version::new(2), 7));
    assert!(outcome.snapshotted, "snapshot every 2 events");
    assert!(matches!(
        repo.execute::<Counter>(&id, 0).await,
        Err(aether::CommandError::Rejected(Zero))
    ));
    let loaded: Rehydrated<Counter> = repo.load(&id).await.unwrap();
    assert_eq!(loaded.snapshot_version, Some(Version::new(2)));
    assert_eq!(
        backing.get_events(&id, Version::ZERO).await.unwrap().len(),
        2
    );
    assert_eq!(
        backing
            .get_latest_snapshot(&id)
            .await
            .unwrap()
            .map(|s| s.version),
        Some(Version::new(2))
    );
}

#[tokio::test]
async fn a_repository_runs_on_an_arc_dyn_store() {
    let backing = InMemoryEventStore::new();
    let chosen: Arc<dyn DynStore> = Arc::new(backing.clone());
    run_through(Repository::new(chosen).snapshot_every(2), &backing).await;
}

#[tokio::test]
async fn a_repository_runs_on_a_boxed_dyn_store() {
    let backing = InMemoryEventStore::new();
    let chosen: Box<dyn DynStore> = Box::new(backing.clone());
    run_through(Repository::new(chosen).snapshot_every(2), &backing).await;
}
