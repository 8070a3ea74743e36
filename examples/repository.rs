//! A bank account through `Repository`: one command at a time, no actor
//! task and no cache, on the embedded in-memory store.
//!
//! Run it with `cargo run --example repository`. It needs no server. The
//! story: an account is opened and used; an overdraft is refused; two tellers
//! race on the same account and the loser reloads and retries; a snapshot is
//! taken; the account is rebuilt from the snapshot plus the events after it,
//! and from the full history, with the same result.

use aether::prelude::*;
use aether::{Command, CommandError, rehydrate};

#[path = "account.rs"]
mod account;

use account::{Account, AccountCommand, AccountEvent};

// ---- The story ----------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = InMemoryEventStore::builder()
        .namespace(Namespace::new("bank.retail")?)
        .build();
    let bank = Repository::new(store.clone()).snapshot_every(5);
    let alice = ActorId::new("account-alice")?;

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
        let outcome = bank.execute::<Account>(&alice, command).await?;
        for e in &outcome.events {
            println!(
                "   v{} {:<15} {:?}",
                e.version,
                e.event_type,
                e.decode::<AccountEvent>()?
            );
        }
    }

    println!("\n2. An overdraft is refused, and nothing is written");
    match bank
        .execute::<Account>(&alice, AccountCommand::Withdraw { amount: 1_000 })
        .await
    {
        Err(CommandError::Rejected(e)) => println!("   refused: {e}"),
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }
    println!(
        "   latest version is still v{}",
        store.get_latest_version(&alice).await?
    );

    println!("\n3. Two tellers load the account at the same version and both act");
    let teller_a = bank.load::<Account>(&alice).await?;
    let teller_b = bank.load::<Account>(&alice).await?;
    println!(
        "   both see v{} with balance {}",
        teller_a.version, teller_a.state.balance
    );
    let a = bank
        .decide_and_append(
            &alice,
            teller_a,
            Command::new(AccountCommand::Deposit { amount: 20 }),
        )
        .await?;
    println!("   teller A deposits 20 -> v{}", a.version);
    match bank
        .decide_and_append(
            &alice,
            teller_b,
            Command::new(AccountCommand::Withdraw { amount: 120 }),
        )
        .await
    {
        Err(CommandError::Store(conflict @ StoreError::VersionConflict { .. })) => {
            println!("   teller B withdraws 120 -> {conflict}");
        }
        other => return Err(format!("expected a version conflict, got {other:?}").into()),
    }
    println!("   teller B reloads and decides again on the new state:");
    let b = bank
        .execute::<Account>(&alice, AccountCommand::Withdraw { amount: 120 })
        .await?;
    println!(
        "   -> v{} balance {} ({} retries needed this time)",
        b.version, b.state.balance, b.retries
    );

    println!("\n4. A snapshot bounds replay (taken every 5 events)");
    let snapshot = store
        .get_latest_snapshot(&alice)
        .await?
        .ok_or("a snapshot should exist after 6 events")?;
    let snap_state: Account = snapshot.decode()?;
    println!("   snapshot at v{}: {:?}", snapshot.version, snap_state);
    bank.execute::<Account>(&alice, AccountCommand::Deposit { amount: 5 })
        .await?;

    println!("\n5. Rehydration: snapshot + later events == the full history");
    let after_snapshot = snapshot
        .version
        .next()
        .ok_or("no version follows the snapshot")?;
    let tail = store.get_events(&alice, after_snapshot).await?;
    let fast = rehydrate::<Account>(&alice, Some(&snapshot), &tail)?;
    let all = store.get_events(&alice, Version::ZERO).await?;
    let full = rehydrate::<Account>(&alice, None, &all)?;
    println!(
        "   from the snapshot: v{} balance {} ({} events replayed)",
        fast.version, fast.state.balance, fast.events_applied
    );
    println!(
        "   from scratch:      v{} balance {} ({} events replayed)",
        full.version, full.state.balance, full.events_applied
    );
    assert_eq!(fast.state, full.state);
    assert_eq!(full.state.balance, 100 + 50 - 30 + 20 - 120 + 5);

    println!("\n6. Namespaces are isolated: the same account id elsewhere is empty");
    let other = store.with_namespace(Namespace::new("bank.business")?);
    println!(
        "   `{}` has v{} for {alice}; `{}` has v{}",
        store.namespace(),
        store.get_latest_version(&alice).await?,
        other.namespace(),
        other.get_latest_version(&alice).await?
    );
    println!(
        "\nDone: {} events, balance {}.",
        all.len(),
        full.state.balance
    );
    Ok(())
}
