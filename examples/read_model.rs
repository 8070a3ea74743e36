//! A read model of account balances, built by a projection from the
//! namespace feed: the rebuild is killed half way, resumes from its
//! checkpoint, and ends equal to a full replay of every account's events.
//!
//! `cargo run --example read_model` (no server needed: the in-memory store).
//! The same code runs on JetStream with `JetStreamEventStore` and a
//! `KvCheckpointStore`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aether::memory::InMemoryEventStore;
use aether::prelude::*;
use aether::projection::{MemoryCheckpointStore, ProjectionRunner};
use aether::{CheckpointStore, EventFeed, FeedItem, Position, Projection, ProjectionError};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum AccountEvent {
    Deposited(i64),
    Withdrawn(i64),
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Deposited(_) => "Deposited",
            Self::Withdrawn(_) => "Withdrawn",
        }
    }
}

/// The read model: per account, the balance and the position of the last
/// event applied. Applying an event at or before that position again does
/// nothing, so the at-least-once runner cannot count an event twice.
#[derive(Debug, Default, Clone, PartialEq)]
struct Balances(BTreeMap<String, (i64, Position)>);

struct BalancesProjection {
    table: Arc<Mutex<Balances>>,
}

impl Projection for BalancesProjection {
    fn name(&self) -> &str {
        "balances"
    }

    async fn handle(&mut self, item: &FeedItem) -> Result<(), ProjectionError> {
        let delta = match item.event.decode::<AccountEvent>()? {
            AccountEvent::Deposited(n) => n,
            AccountEvent::Withdrawn(n) => -n,
        };
        let mut table = self.table.lock().map_err(|e| e.to_string())?;
        let row = table
            .0
            .entry(item.event.actor_id.as_str().to_owned())
            .or_default();
        if item.position > row.1 {
            *row = (row.0 + delta, item.position);
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), ProjectionError> {
        self.table.lock().map_err(|e| e.to_string())?.0.clear();
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = InMemoryEventStore::builder()
        .namespace(Namespace::new("bank")?)
        .build();
    // 200 accounts, 100 events each.
    for a in 0..200 {
        let id = ActorId::new(format!("account-{a}"))?;
        let events: Vec<AccountEvent> = (0..100)
            .map(|i| {
                if i % 4 == 3 {
                    AccountEvent::Withdrawn(i)
                } else {
                    AccountEvent::Deposited(i + a)
                }
            })
            .collect();
        store.append_domain(&id, Version::ZERO, &events).await?;
    }
    let head = store.head().await?;
    println!("{} events written; head at position {head}", head.get());

    let checkpoints = MemoryCheckpointStore::new();
    let table = Arc::new(Mutex::new(Balances::default()));

    // A rebuild that is killed when its progress passes half way.
    let (half_tx, half_rx) = tokio::sync::oneshot::channel::<Position>();
    let mut half_tx = Some(half_tx);
    let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone())
        .batch_size(500)
        .on_progress(move |p| {
            println!(
                "  rebuild: position {} of {} ({:.0} events/s)",
                p.position,
                p.head,
                p.events_per_second()
            );
            if p.position.get() * 2 >= p.head.get()
                && let Some(tx) = half_tx.take()
            {
                let _ = tx.send(p.position);
            }
        });
    let mut projection = BalancesProjection {
        table: table.clone(),
    };
    let rebuild = tokio::spawn(async move { runner.rebuild(&mut projection).await });
    let killed_at = half_rx.await?;
    rebuild.abort();
    let _ = rebuild.await;
    let checkpoint = checkpoints.load("balances").await?;
    println!(
        "killed after position {killed_at}; checkpoint at {}",
        checkpoint.position
    );
    assert!(
        checkpoint.position < head,
        "the rebuild was killed before the end"
    );

    // Resume from the checkpoint.
    let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone()).batch_size(500);
    let end = runner
        .catch_up(&mut BalancesProjection {
            table: table.clone(),
        })
        .await?;
    println!("resumed and caught up at position {end}");

    // A full replay of every account's history gives the same balances.
    let mut replay = BTreeMap::new();
    for a in 0..200 {
        let id = ActorId::new(format!("account-{a}"))?;
        let balance: i64 = store
            .get_events(&id, Version::ZERO)
            .await?
            .iter()
            .map(|e| match e.decode::<AccountEvent>() {
                Ok(AccountEvent::Deposited(n)) => n,
                Ok(AccountEvent::Withdrawn(n)) => -n,
                Err(_) => 0,
            })
            .sum();
        replay.insert(id.as_str().to_owned(), balance);
    }
    let model: BTreeMap<String, i64> = table
        .lock()
        .map_err(|e| e.to_string())?
        .0
        .iter()
        .map(|(k, (b, _))| (k.clone(), *b))
        .collect();
    assert_eq!(model, replay, "the read model equals a full replay");
    println!(
        "read model of {} accounts equals a full replay (account-7: {})",
        model.len(),
        model["account-7"]
    );
    Ok(())
}
