//! Criterion benchmarks of Aether, each beside a same-run baseline, and the
//! small domain they share.

use aether_core::{ActorId, Aggregate, DomainEvent, Event, Version};
use serde::{Deserialize, Serialize};

/// A counter aggregate: the cheapest real fold, so benches measure the
/// store and not the domain.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counter {
    /// Sum of every amount added.
    pub total: u64,
    /// Number of events folded.
    pub count: u64,
}

/// The counter's only event.
#[derive(Debug, Serialize, Deserialize)]
pub struct Added {
    /// The amount added.
    pub amount: u64,
}

impl DomainEvent for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }
}

/// The counter never refuses a command.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("never")]
pub struct Never;

impl Aggregate for Counter {
    type Command = u64;
    type Event = Added;
    type Error = Never;
    const KIND: &'static str = "counter";

    fn handle(&self, amount: u64) -> Result<Vec<Added>, Never> {
        Ok(vec![Added { amount }])
    }

    fn apply(&mut self, e: &Added) {
        self.total += e.amount;
        self.count += 1;
    }
}

/// `n` encoded `Added` events for `actor` with versions `after + 1 ..= after + n`.
///
/// # Panics
/// Never in practice: `Added` always encodes.
pub fn added_events(actor: &ActorId, after: u64, n: u64) -> Vec<Event> {
    (1..=n)
        .map(|i| {
            Event::from_domain(
                actor.clone(),
                Version::new(after + i),
                &Added { amount: after + i },
            )
            .expect("Added encodes")
        })
        .collect()
}

/// The event `Added { amount: version }` at `version` of `actor`.
///
/// # Panics
/// If the event cannot be encoded (it always can).
pub fn added_event(actor: &ActorId, version: u64) -> Event {
    Event::from_domain(
        actor.clone(),
        Version::new(version),
        &Added { amount: version },
    )
    .expect("encode")
}

/// A real nats-server, a client and a JetStream context, with the two-thread
/// runtime the NATS benches measure on.
pub struct NatsBench {
    /// The runtime every measured future runs on.
    pub rt: tokio::runtime::Runtime,
    /// The server, stopped when the bench ends.
    pub server: aether_testkit_nats::NatsServer,
    /// A client of the server.
    pub client: async_nats::Client,
    /// A JetStream context on `client`.
    pub js: async_nats::jetstream::Context,
}

impl NatsBench {
    /// Starts the server and connects.
    ///
    /// # Panics
    /// If the runtime or the server cannot be started.
    pub fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (server, client, js) = rt.block_on(async {
            let server = aether_testkit_nats::NatsServer::start().await;
            let client = aether_testkit_nats::connect(&server.url()).await;
            // The context spawns its acknowledgement task: inside the runtime.
            let js = async_nats::jetstream::new(client.clone());
            (server, client, js)
        });
        NatsBench {
            rt,
            server,
            client,
            js,
        }
    }
}

/// The bus benches' event: `OrderPlaced` at version 1 of `order-1` with a
/// 128-byte payload.
///
/// # Panics
/// Never: the id is valid.
pub fn bus_sample_event() -> Event {
    Event::from_raw(
        ActorId::new("order-1").expect("valid id"),
        Version::FIRST,
        "OrderPlaced",
        vec![7u8; 128],
    )
}
