//! A bank account as an event-sourced actor, on the embedded default: the
//! actor system on the in-memory store, in one process, with no server.
//!
//! Run it with `cargo run --example bank_account`. The story: an account is
//! opened and used, its history is the events in the store; an overdraft is
//! refused and writes nothing; a command sent twice with one id (a retry
//! after a lost reply) is applied once, even by a system started afresh; a
//! snapshot bounds replay, and a new system rebuilds the account from it;
//! namespaces keep one account id apart. (`cargo run --example repository`
//! tells the same story one command at a time, without actors.)

use std::time::Duration;

use aether::actor::{ActorSystem, AskError, persistence_id};
use aether::prelude::*;

#[path = "account.rs"]
mod account;

use account::{Account, AccountCommand, AccountEvent};

// ---- The story ----------------------------------------------------------------

/// The actor system every chapter runs on: accounts, snapshots every 5 events.
fn bank(store: &InMemoryEventStore) -> Result<ActorSystem, Box<dyn std::error::Error>> {
    Ok(ActorSystem::builder(store.clone())
        .register::<Account>()
        .snapshot_every(5)
        .idle_timeout(Duration::from_secs(60))
        .build()?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = InMemoryEventStore::builder()
        .namespace(Namespace::new("bank.retail")?)
        .build();
    let system = bank(&store)?;
    let id = ActorId::new("alice")?;
    // The actor system stores actor `alice` of kind `account` as `account:alice`.
    let stored_as = persistence_id(Account::KIND, &id)?;
    let alice = system.actor::<Account>(id.clone());

    println!(
        "1. Alice opens an account and uses it (namespace `{}`)",
        store.namespace()
    );
    for command in [
        AccountCommand::Open {
            owner: "Alice".into(),
        },
        AccountCommand::Deposit { amount: 100 },
        AccountCommand::Deposit { amount: 50 },
        AccountCommand::Withdraw { amount: 30 },
    ] {
        let outcome = alice.ask(command).await?;
        println!("   v{} balance {}", outcome.version, outcome.state.balance);
    }
    println!("   its history, as stored under `{stored_as}`:");
    for e in store.get_events(&stored_as, Version::ZERO).await? {
        println!(
            "   v{} {:<15} {:?}",
            e.version,
            e.event_type,
            e.decode::<AccountEvent>()?
        );
    }

    println!("\n2. An overdraft is refused, and nothing is written");
    match alice.ask(AccountCommand::Withdraw { amount: 1_000 }).await {
        Err(AskError::Rejected(e)) => println!("   refused: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    let latest = store.get_latest_version(&stored_as).await?;
    println!("   latest version is still v{latest}");
    assert_eq!(latest, Version::new(4));

    println!("\n3. A retried command is applied once");
    let deposit = CommandId::new();
    let first = alice
        .ask(AccountCommand::Deposit { amount: 20 })
        .id(deposit)
        .await?;
    println!(
        "   deposit 20 (command {deposit}) -> v{} balance {}",
        first.version, first.state.balance
    );
    // The reply was lost, say: the caller sends the same command again.
    let again = alice
        .ask(AccountCommand::Deposit { amount: 20 })
        .id(deposit)
        .await?;
    println!(
        "   sent again -> v{} balance {}, duplicate: {}",
        again.version, again.state.balance, again.duplicate
    );
    assert!(again.duplicate && again.version == first.version);

    println!("\n4. A snapshot bounds replay (taken every 5 events)");
    alice.ask(AccountCommand::Withdraw { amount: 120 }).await?;
    alice.ask(AccountCommand::Deposit { amount: 5 }).await?;
    let snapshot = store
        .get_latest_snapshot(&stored_as)
        .await?
        .ok_or("a snapshot should exist after 5 events")?;
    let at_snapshot: Account = snapshot.decode()?;
    println!("   snapshot at v{}: {at_snapshot:?}", snapshot.version);
    println!("   active actors: {}", system.active_actors());
    system.shutdown().await;

    println!("\n5. A new system rebuilds Alice from the snapshot and the events after it");
    let restarted = bank(&store)?;
    let alice = restarted.actor::<Account>(id.clone());
    let retried = alice
        .ask(AccountCommand::Deposit { amount: 20 })
        .id(deposit)
        .await?;
    println!(
        "   the deposit of chapter 3, sent a third time: duplicate: {} (the window of recent commands is rebuilt too)",
        retried.duplicate
    );
    assert!(retried.duplicate);
    let latest = store.get_latest_version(&stored_as).await?;
    println!(
        "   Alice at v{latest}, balance {}, owner {:?}: the snapshot at v{} plus {} later events",
        retried.state.balance,
        retried.state.owner,
        snapshot.version,
        latest.get() - snapshot.version.get()
    );
    let balance = 100 + 50 - 30 + 20 - 120 + 5;
    assert_eq!(retried.state.balance, balance);

    println!("\n6. Namespaces are isolated: the same account id elsewhere is a new account");
    let business = store.with_namespace(Namespace::new("bank.business")?);
    let elsewhere = bank(&business)?;
    match elsewhere
        .actor::<Account>(id.clone())
        .ask(AccountCommand::Deposit { amount: 1 })
        .await
    {
        Err(AskError::Rejected(e)) => println!("   `{}`: {e}", business.namespace()),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    println!(
        "   `{}` has v{} for {id}; `{}` has v{}",
        store.namespace(),
        store.get_latest_version(&stored_as).await?,
        business.namespace(),
        business.get_latest_version(&stored_as).await?
    );
    elsewhere.shutdown().await;
    restarted.shutdown().await;
    println!("\nDone: balance {balance}, every command applied once.");
    Ok(())
}
