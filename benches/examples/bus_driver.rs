//! A profiling driver, not a bench: `N` events (the event of
//! `benches/bus.rs`) published by one `NatsEventBus` node and received by a
//! subscriber on another, in rounds of 1000 publishes then 1000 receives,
//! on a current-thread runtime; with `raw` as the second argument, the same
//! wire bytes through raw async-nats publish/subscribe. Instructions per
//! event are the difference of two runs under callgrind divided by the
//! difference of their `N` (the server is a child process and is not
//! counted):
//!
//! ```text
//! cargo build --release -p aether-benches --example bus_driver
//! valgrind --tool=callgrind target/release/examples/bus_driver 2000
//! valgrind --tool=callgrind target/release/examples/bus_driver 12000
//! ```

use aether_benches::bus_sample_event;
use aether_bus::NatsEventBus;
use aether_core::{EventBus, EventFilter, Namespace, NamespacePattern};
use aether_testkit_nats::{NatsServer, connect, unique_name};
use futures::StreamExt;

const ROUND: u64 = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let raw = std::env::args().nth(2).as_deref() == Some("raw");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server = NatsServer::builder().jetstream(false).start().await;
        let url = server.url();
        let prefix = unique_name("driver");
        let ns = Namespace::new("acme.orders")?;
        let node = |client| {
            NatsEventBus::builder(client)
                .prefix(prefix.clone())
                .capacity(2 * ROUND as usize)
                .build()
        };
        let node_a = node(connect(&url).await)?;
        let node_b = node(connect(&url).await)?;
        let mut sub_b = node_b.subscribe(EventFilter::namespace(ns.clone())).await?;
        let event = bus_sample_event();
        if raw {
            let raw_a = connect(&url).await;
            let raw_b = connect(&url).await;
            let mut capture = raw_b
                .subscribe(
                    node_a
                        .subject_pattern(&NamespacePattern::Exact(ns.clone()))
                        .ok_or("pattern")?,
                )
                .await?;
            let subject = unique_name("driver-raw");
            let mut sub = raw_b.subscribe(subject.clone()).await?;
            raw_b.flush().await?;
            // The subscriptions are in place once a publish through them
            // comes back.
            loop {
                node_a.publish(&ns, event.clone()).await?;
                if let Ok(Some(m)) =
                    tokio::time::timeout(std::time::Duration::from_millis(50), capture.next()).await
                {
                    let payload = m.payload;
                    for _ in 0..n.div_ceil(ROUND) {
                        for _ in 0..ROUND {
                            raw_a.publish(subject.clone(), payload.clone()).await?;
                        }
                        for _ in 0..ROUND {
                            std::hint::black_box(sub.next().await.ok_or("closed")?);
                        }
                    }
                    return Ok(());
                }
            }
        }
        for _ in 0..n.div_ceil(ROUND) {
            for _ in 0..ROUND {
                node_a.publish(&ns, event.clone()).await?;
            }
            for _ in 0..ROUND {
                std::hint::black_box(sub_b.next().await.ok_or("closed")??);
            }
        }
        Ok(())
    })
}
