//! [`PublishingStore`]: an event store that publishes what it appended.

use std::future::Future;

use aether_core::{
    ActorId, ActorSnapshot, BoxStream, Event, EventBus, EventStore, Namespace, SnapshotStore,
    StoreError, Version,
};

/// Wraps an [`EventStore`] so that every successfully appended event is
/// published on an [`EventBus`] in the store's namespace.
///
/// # Semantics
///
/// * **The store is the source of truth.** Events are published *after*
///   [`append`](EventStore::append) succeeded, one by one in version order.
///   A failed append publishes nothing.
/// * **A bus failure never fails the append.** The events are stored; an
///   error here would make the caller believe they were not (and the
///   [`EventStore`] contract promises that an error means nothing was
///   written). Instead the failure is logged (`tracing::warn!`) and counted
///   in `aether_bus_store_publish_failures_total{namespace}`, and the rest of
///   the batch is still published. The bus is at-most-once anyway: readers
///   that must see every event read the store (by version), and use the bus
///   as a low-latency hint.
/// * **Idempotent retries publish again.** An append that the store
///   recognises as an already stored batch succeeds and is published again;
///   subscribers that care dedupe by [`Event::id`].
/// * Snapshot operations pass through unchanged (when `S` is a
///   [`SnapshotStore`]); snapshots are not published.
///
/// ```
/// use aether_bus::{LocalEventBus, PublishingStore};
/// use aether_core::{ActorId, Event, EventBus, EventFilter, EventStore, Namespace, Version};
/// use aether_store_memory::InMemoryEventStore;
/// use futures::StreamExt;
///
/// # futures::executor::block_on(async {
/// let bus = LocalEventBus::new();
/// let store = PublishingStore::new(
///     InMemoryEventStore::builder().namespace(Namespace::new("shop")?).build(),
///     bus.clone(),
/// );
/// let mut sub = bus.subscribe(EventFilter::namespace(Namespace::new("shop")?)).await?;
///
/// let cart = ActorId::new("cart-1")?;
/// let event = Event::new(cart.clone(), Version::FIRST, "ItemAdded", &"apple")?;
/// store.append(&cart, Version::ZERO, vec![event]).await?;
///
/// let got = sub.next().await.expect("open")?;
/// assert_eq!(got.event.version, Version::FIRST);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct PublishingStore<S, B> {
    store: S,
    bus: B,
}

impl<S, B> PublishingStore<S, B> {
    /// Wraps `store`, publishing its appended events on `bus`.
    pub fn new(store: S, bus: B) -> Self {
        PublishingStore { store, bus }
    }

    /// The wrapped store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The bus events are published on.
    pub fn bus(&self) -> &B {
        &self.bus
    }

    /// Splits the wrapper into the store and the bus.
    pub fn into_parts(self) -> (S, B) {
        (self.store, self.bus)
    }
}

impl<S: EventStore, B: EventBus> PublishingStore<S, B> {
    async fn publish_all(&self, namespace: &Namespace, events: Vec<Event>) {
        for event in events {
            let (id, actor, version) = (event.id, event.actor_id.clone(), event.version);
            if let Err(error) = self.bus.publish(namespace, event).await {
                metrics::counter!(
                    "aether_bus_store_publish_failures_total",
                    "namespace" => namespace.as_str().to_owned()
                )
                .increment(1);
                tracing::warn!(
                    %namespace, %actor, %version, event_id = %id, %error,
                    "event appended to the store but not published on the bus"
                );
            }
        }
    }
}

impl<S: EventStore, B: EventBus> EventStore for PublishingStore<S, B> {
    fn namespace(&self) -> &Namespace {
        self.store.namespace()
    }

    /// Appends through the wrapped store, then publishes the batch (see the
    /// type's docs for what happens when publishing fails).
    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        let copies = events.clone();
        let version = self.store.append(actor, expected, events).await?;
        self.publish_all(self.store.namespace(), copies).await;
        Ok(version)
    }

    fn get_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send {
        self.store.get_events(actor, from)
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        self.store.stream_events(actor, from)
    }

    fn get_latest_version(
        &self,
        actor: &ActorId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send {
        self.store.get_latest_version(actor)
    }
}

impl<S: SnapshotStore, B: Send + Sync> SnapshotStore for PublishingStore<S, B> {
    fn save_snapshot(
        &self,
        snapshot: ActorSnapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.save_snapshot(snapshot)
    }

    fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> impl Future<Output = Result<Option<ActorSnapshot>, StoreError>> + Send {
        self.store.get_latest_snapshot(actor)
    }
}
