//! A profiling driver, not a bench: `N` local asks, one at a time, to one
//! counter actor on the in-memory store (snapshots off) on a current-thread
//! runtime; with `hand` as the second argument, the same through the
//! hand-written tokio actor of `benches/actors.rs`. Instructions per ask are
//! the difference of two runs under callgrind divided by the difference of
//! their `N`:
//!
//! ```text
//! cargo build --release -p aether-benches --example ask_driver
//! valgrind --tool=callgrind target/release/examples/ask_driver 2000
//! valgrind --tool=callgrind target/release/examples/ask_driver 12000
//! ```

use std::sync::Arc;

use aether_actor::ActorSystem;
use aether_benches::{Added, Counter};
use aether_core::ActorId;
use aether_store_memory::InMemoryEventStore;
use tokio::sync::{mpsc, oneshot};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let hand = std::env::args().nth(2).as_deref() == Some("hand");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        if hand {
            let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(64);
            tokio::spawn(async move {
                let mut events: Vec<Added> = Vec::new();
                while let Some((amount, reply)) = rx.recv().await {
                    events.push(Added { amount });
                    let _ = reply.send(events.len() as u64);
                }
            });
            for i in 0..n {
                let (reply, rx) = oneshot::channel();
                tx.send((i, reply)).await?;
                rx.await?;
            }
            return Ok(());
        }
        let system = ActorSystem::builder(Arc::new(InMemoryEventStore::new()))
            .register::<Counter>()
            .snapshot_every(0)
            .build()?;
        let r = system.actor::<Counter>(ActorId::new("acct-1")?);
        for i in 0..n {
            r.ask(i).await?;
        }
        system.shutdown().await;
        Ok(())
    })
}
