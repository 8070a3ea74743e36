//! Two nodes seeing each other's events through the NATS event bus.
//!
//! Two NATS connections in one process stand for two nodes, A and B. Each runs
//! a `NatsEventBus`; a subscriber on either node sees every event published in
//! its namespaces once, whichever node published it, and nothing from other
//! namespaces. Node A also wraps its event store in a `PublishingStore`, so
//! what it appends reaches node B with no plumbing.
//!
//! The bus is at most once: a subscriber that is down or disconnected misses
//! events. One that must not miss any reads the store's namespace feed
//! (`subscribe_all`) instead.
//!
//! Start a server in one terminal (`cargo xtask nats` starts the pinned
//! nats-server with JetStream on port 4222, provisioning it if needed; a
//! `nats-server -p 4222` of your own does as well) and run in another:
//!
//! ```text
//! cargo run --example two_nodes_bus
//! NATS_URL=nats://127.0.0.1:4333 cargo run --example two_nodes_bus
//! ```

use std::time::Duration;

use aether::bus::{NatsEventBus, PublishingStore, Subscription};
use aether::memory::InMemoryEventStore;
use aether::prelude::*;
use aether::{BusError, BusEvent};

const WAIT: Duration = Duration::from_secs(5);

/// Receives `n` events (or fails after `WAIT`) and prints them.
async fn expect(who: &str, sub: &mut Subscription, n: usize) -> Result<Vec<BusEvent>, BusError> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(WAIT, sub.recv()).await {
            Ok(Some(Ok(e))) => {
                println!(
                    "  {who:<28} <- {:<12} {} v{} of {}",
                    e.namespace, e.event.event_type, e.event.version, e.event.actor_id
                );
                got.push(e);
            }
            Ok(Some(Err(err))) => return Err(err),
            Ok(None) => return Err(BusError::Closed),
            Err(_) => {
                return Err(BusError::Unavailable {
                    message: format!("{who} got {} of {n} events within {WAIT:?}", got.len()),
                    source: None,
                });
            }
        }
    }
    Ok(got)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    println!("connecting two nodes to {url}");
    let (node_a, node_b) = match (
        NatsEventBus::connect(&url).await,
        NatsEventBus::connect(&url).await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!(
                "cannot reach NATS at {url}: {e}\nstart one with `cargo xtask nats` or set NATS_URL"
            );
            std::process::exit(2);
        }
    };
    println!(
        "node A = {}, node B = {}",
        node_a.node_id(),
        node_b.node_id()
    );

    let acme = Namespace::new("acme")?;
    let orders = Namespace::new("acme.orders")?;
    let billing = Namespace::new("acme.billing")?;

    // Everything under `acme`, on both nodes; only invoices, on node B.
    let mut all_on_a = node_a.subscribe(EventFilter::within(acme.clone())).await?;
    let mut all_on_b = node_b.subscribe(EventFilter::within(acme.clone())).await?;
    let mut invoices_on_b = node_b
        .subscribe(EventFilter::namespace(billing.clone()).event_types(["InvoiceSent"]))
        .await?;

    // Node A appends through its store; the store publishes on A's bus.
    let store_a = PublishingStore::new(
        InMemoryEventStore::builder()
            .namespace(orders.clone())
            .build(),
        node_a.clone(),
    );
    let order = ActorId::new("order-17")?;
    let placed = Event::new(order.clone(), Version::FIRST, "OrderPlaced", &"2 apples")?;
    store_a.append(&order, Version::ZERO, vec![placed]).await?;

    // Node B publishes directly.
    let invoice = ActorId::new("invoice-17")?;
    node_b
        .publish(
            &billing,
            Event::new(invoice.clone(), Version::FIRST, "InvoiceSent", &120u32)?,
        )
        .await?;
    node_b
        .publish(
            &billing,
            Event::new(invoice, Version::new(2), "InvoicePaid", &120u32)?,
        )
        .await?;

    // Not under `acme`: no subscriber here ever sees it.
    node_a
        .publish(
            &Namespace::new("acme-corp")?,
            Event::new(ActorId::new("x")?, Version::FIRST, "Unrelated", &0u8)?,
        )
        .await?;

    println!("what each subscriber received:");
    let a = expect("node A, within acme", &mut all_on_a, 3).await?;
    let b = expect("node B, within acme", &mut all_on_b, 3).await?;
    let inv = expect("node B, InvoiceSent only", &mut invoices_on_b, 1).await?;

    // Same events on both nodes, each once (no repeat), in per-publisher order.
    let ids = |v: &[BusEvent]| {
        let mut ids: Vec<_> = v.iter().map(|e| e.event.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&a), ids(&b), "both nodes see the same events");
    assert!(a.iter().all(|e| e.namespace.is_within(&acme)));
    assert_eq!(&*inv[0].event.event_type, "InvoiceSent");

    // Nothing else arrives: no duplicate echo, nothing from `acme-corp`.
    for (who, sub) in [("A", &mut all_on_a), ("B", &mut all_on_b)] {
        if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await
        {
            return Err(format!("node {who} got an unexpected extra item: {extra:?}").into());
        }
    }
    let (sa, sb) = (node_a.stats(), node_b.stats());
    println!(
        "node A: published {}, echoes dropped {}; node B: published {}, echoes dropped {}",
        sa.published, sa.echoes_suppressed, sb.published, sb.echoes_suppressed
    );
    println!("ok: each node saw each event once");
    Ok(())
}
