//! # aether-bus
//!
//! Namespaced publish/subscribe of events for [Aether](https://docs.rs/aether):
//! the implementations of [`aether_core::EventBus`].
//!
//! * [`LocalEventBus`] — in process, no runtime of its own, always available.
//! * [`NatsEventBus`] (feature `nats`) — across processes over core NATS; each
//!   instance is a node that delivers its own publishes locally and everyone
//!   else's from NATS, dropping its own echoes.
//! * [`PublishingStore`] — wraps any [`EventStore`](aether_core::EventStore) so
//!   that what it appends is published on a bus.
//!
//! Read models, sagas and UIs subscribe with an [`EventFilter`]: a namespace
//! pattern (`Exact(ns)` or `Within(ns)` for `ns` and everything under it),
//! optionally narrowed to event types and an actor-id prefix.
//!
//! # Guarantees
//!
//! * **Isolation.** A subscriber only ever receives events whose namespace its
//!   pattern covers. `Within(acme)` covers `acme.orders` but never `acme-corp`
//!   or `acme_x`; names that differ only in special characters (`a.b`, `a_b`,
//!   `a-b`) never meet, in process or on NATS subjects.
//! * **Delivery.** At most once, in publish order per publisher. With NATS, a
//!   subscriber that stays connected sees each publish of another connected
//!   node once (no duplicates), but nothing is stored or retried: a publish
//!   is gone for a node that is disconnected, slow past its queue, or not yet
//!   subscribed, and a publish still in the client's buffer when the process
//!   dies is lost (see `NatsEventBus::publish` and `NatsEventBus::flush`).
//! * **Backpressure.** None towards publishers: each subscriber has a bounded
//!   queue; when it is full the oldest event is dropped, and the subscriber's
//!   stream yields [`BusError::Lagged`] with
//!   the number missed before continuing (the `tokio::sync::broadcast` policy).
//!   A slow subscriber never slows publishers or other subscribers.
//! * **Unsubscribe** by dropping the [`Subscription`] stream.
//!
//! # Bus or feed?
//!
//! | | bus ([`EventBus::subscribe`]) | namespace feed (`EventFeed::subscribe_all`) |
//! |---|---|---|
//! | delivery | at most once, live only | every committed event, in commit order, from a position |
//! | after a restart or disconnect | what was published meanwhile is missed | resumes from the last position, no gap, no repeat |
//! | source | any publisher, no store needed | the event store (memory or JetStream) |
//! | latency | one hop (in process: none) | the store's commit, then the feed |
//!
//! The bus is at most once: a subscriber that is down, disconnected or too
//! slow misses events, and an event appended just before a process dies may
//! never be published. Use it for notifications where a miss is harmless
//! (UI refresh, cache invalidation, waking a poller). A subscriber that must
//! not miss anything — a read model, an integration, a process manager —
//! reads the store's feed instead (`aether_core::EventFeed::subscribe_all`
//! from its last position, or a projection runner from `aether-projection`
//! with a stored checkpoint): every committed event, in commit order, after
//! any restart or disconnect.
//!
//! # Metrics
//!
//! Emitted through the `metrics` facade (install a recorder before creating
//! buses; handles are registered per namespace on first use):
//!
//! | name | labels | meaning |
//! |---|---|---|
//! | `aether_bus_published_total` | `namespace` | events published by this process, by the namespace published in |
//! | `aether_bus_delivered_total` | `namespace` | events put into a subscriber's queue, by the namespace the subscription is anchored at |
//! | `aether_bus_dropped_total` | `namespace` | events dropped from a full queue (lag), by the namespace the subscription is anchored at |
//! | `aether_bus_decode_errors_total` | — | invalid messages on bus subjects, dropped |
//! | `aether_bus_store_publish_failures_total` | `namespace` | appended events [`PublishingStore`] could not publish |
//!
//! Label values come only from this process: the namespaces it publishes in
//! and the patterns it subscribes with (`Within(acme)` counts everything it
//! receives under `acme`). A namespace named in a message from another node
//! never becomes a label value, so remote publishers cannot grow the metric
//! set.
//!
//! The same counts per bus instance are available without a recorder from
//! [`LocalEventBus::stats`] and `NatsEventBus::stats`.
//!
//! # Feature flags
//!
//! * `nats` — [`NatsEventBus`], on `async-nats` and `tokio` (its subscriptions
//!   need a tokio runtime). Off by default.
//!
//! # Example: two nodes
//!
//! Two NATS connections in one process stand for two nodes (this is
//! `examples/two_nodes_bus.rs`; it needs a running `nats-server`):
//!
//! ```no_run
//! # #[cfg(feature = "nats")]
//! # async fn two_nodes() -> Result<(), Box<dyn std::error::Error>> {
//! use aether_bus::NatsEventBus;
//! use aether_core::{ActorId, Event, EventBus, EventFilter, Namespace, Version};
//! use futures::StreamExt;
//!
//! let url = "nats://127.0.0.1:4222";
//! let node_a = NatsEventBus::new(async_nats::connect(url).await?);
//! let node_b = NatsEventBus::new(async_nats::connect(url).await?);
//!
//! let acme = Namespace::new("acme")?;
//! let mut on_a = node_a.subscribe(EventFilter::within(acme.clone())).await?;
//! let mut on_b = node_b.subscribe(EventFilter::within(acme)).await?;
//!
//! let placed = Event::new(ActorId::new("order-1")?, Version::FIRST, "OrderPlaced", &42u32)?;
//! node_a.publish(&Namespace::new("acme.orders")?, placed).await?;
//!
//! // Both nodes see it: A directly, B through NATS (at most once, never twice).
//! let seen_by_a = on_a.next().await.expect("open")?;
//! let seen_by_b = on_b.next().await.expect("open")?;
//! assert_eq!(seen_by_a.event.id, seen_by_b.event.id);
//! # Ok(())
//! # }
//! ```
//!
//! In process, with no server:
//!
//! ```
//! use aether_bus::LocalEventBus;
//! use aether_core::{ActorId, Event, EventBus, EventFilter, Namespace, Version};
//! use futures::StreamExt;
//!
//! # futures::executor::block_on(async {
//! let bus = LocalEventBus::builder().capacity(256).build();
//! let mut orders = bus
//!     .subscribe(EventFilter::within(Namespace::new("acme")?).event_types(["OrderPlaced"]))
//!     .await?;
//! let placed = Event::new(ActorId::new("order-1")?, Version::FIRST, "OrderPlaced", &42u32)?;
//! bus.publish(&Namespace::new("acme.orders")?, placed).await?;
//! assert_eq!(orders.next().await.expect("open")?.event.decode::<u32>()?, 42);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
#![cfg_attr(feature = "nats", doc = "\n[`NatsEventBus`]: crate::NatsEventBus")]
#![cfg_attr(not(feature = "nats"), doc = "\n[`NatsEventBus`]: #feature-flags")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod hub;
mod local;
#[cfg(feature = "nats")]
mod nats;
mod store;
#[cfg(feature = "nats")]
mod wire;

#[doc(no_inline)]
pub use aether_core::{BusError, BusEvent, EventBus, EventFilter, NamespacePattern};
/// The `async-nats` crate this bus is built on, re-exported so a caller
/// connects with the same version [`NatsEventBus::new`] takes (feature
/// `nats`).
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use async_nats;
pub use hub::{BusStats, DEFAULT_CAPACITY, Subscription};
pub use local::{LocalEventBus, LocalEventBusBuilder};
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::{DEFAULT_PREFIX, InvalidPrefix, NatsEventBus, NatsEventBusBuilder};
pub use store::PublishingStore;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use wire::WireFormat;
