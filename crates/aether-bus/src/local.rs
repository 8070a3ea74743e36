//! [`LocalEventBus`]: the in-process bus.

use std::sync::{Arc, Weak};

use aether_core::{BusError, Event, EventBus, EventFilter, Namespace};

use crate::hub::{BusStats, DEFAULT_CAPACITY, Detach, Hub, Slot, Subscription};

/// An in-process [`EventBus`]: publish and subscribe within one process, with
/// no runtime of its own (it works under any executor).
///
/// * **Isolation.** A subscriber receives only the events whose namespace its
///   [`EventFilter`] covers: `Exact(acme)` only `acme`; `Within(acme)` `acme`
///   and `acme.orders`, never `acme-corp` or `acme_x`.
/// * **Ordering.** A subscriber receives the events of one publisher in publish
///   order. `publish` returns after the event is in every matching queue.
/// * **Overflow.** Every subscriber has a bounded queue ([`capacity`](LocalEventBusBuilder::capacity),
///   1024 by default). A publisher never waits: when a queue is full its oldest
///   event is dropped, the subscriber receives [`BusError::Lagged`] with the
///   number it missed and then continues, and `aether_bus_dropped_total` is
///   incremented for the dropped event's namespace. Other subscribers are not
///   affected.
/// * **Cost.** Events are shared (`Arc<Event>`); a publish costs one hash lookup
///   (plus one per ancestor segment where `Within` subscriptions are
///   anchored), then, per group of subscribers with the same filter, one
///   short lock and one write, and per subscriber a comparison. Taking an
///   event is one compare-and-swap and two reference-count increments, with
///   no lock.
///
/// Cloning is cheap and clones share the bus. When the last clone is dropped
/// (or [`close`](Self::close) is called) every subscription ends after the
/// events already queued for it.
///
/// ```
/// use aether_bus::LocalEventBus;
/// use aether_core::{ActorId, Event, EventBus, EventFilter, Namespace, Version};
/// use futures::StreamExt;
///
/// # futures::executor::block_on(async {
/// let bus = LocalEventBus::new();
/// let acme = Namespace::new("acme")?;
/// let mut all_of_acme = bus.subscribe(EventFilter::within(acme.clone())).await?;
///
/// let event = Event::new(ActorId::new("order-1")?, Version::FIRST, "OrderPlaced", &42u32)?;
/// bus.publish(&Namespace::new("acme.orders")?, event).await?;
/// bus.publish(&Namespace::new("acme-corp")?, Event::from_raw(
///     ActorId::new("x")?, Version::FIRST, "Other", vec![],
/// )).await?; // not within `acme`
///
/// let got = all_of_acme.next().await.expect("open")?;
/// assert_eq!(got.namespace.as_str(), "acme.orders");
/// assert_eq!(&*got.event.event_type, "OrderPlaced");
/// assert!(all_of_acme.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct LocalEventBus {
    inner: Arc<LocalInner>,
}

struct LocalInner {
    hub: Hub,
}

impl Detach for LocalInner {
    fn detach(&self, slot: &Arc<Slot>) {
        self.hub.remove(slot);
    }
}

impl Drop for LocalInner {
    fn drop(&mut self) {
        self.hub.close();
    }
}

impl std::fmt::Debug for LocalEventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEventBus")
            .field("capacity", &self.inner.hub.capacity())
            .field("closed", &self.inner.hub.is_closed())
            .finish_non_exhaustive()
    }
}

impl Default for LocalEventBus {
    fn default() -> Self {
        Self::new()
    }
}

/// Configures a [`LocalEventBus`].
#[derive(Debug, Clone)]
pub struct LocalEventBusBuilder {
    capacity: usize,
}

impl LocalEventBusBuilder {
    /// The queue capacity of each subscriber, in events (at least 1;
    /// default 1024). A subscriber more than this many events behind loses
    /// the oldest and is told with [`BusError::Lagged`].
    #[must_use]
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// Builds the bus.
    pub fn build(self) -> LocalEventBus {
        LocalEventBus {
            inner: Arc::new(LocalInner {
                hub: Hub::new(self.capacity),
            }),
        }
    }
}

impl LocalEventBus {
    /// A bus whose subscribers queue up to 1024 events each.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set the per-subscriber capacity.
    pub fn builder() -> LocalEventBusBuilder {
        LocalEventBusBuilder {
            capacity: DEFAULT_CAPACITY,
        }
    }

    /// The default per-subscriber queue capacity of this bus.
    pub fn capacity(&self) -> usize {
        self.inner.hub.capacity()
    }

    /// Like [`EventBus::subscribe`], with a queue capacity for this
    /// subscription only (at least 1).
    ///
    /// # Errors
    /// [`BusError::Closed`] if the bus was closed.
    pub fn subscribe_with_capacity(
        &self,
        filter: EventFilter,
        capacity: usize,
    ) -> Result<Subscription, BusError> {
        self.subscribe_now(filter, Some(capacity))
    }

    fn subscribe_now(
        &self,
        filter: EventFilter,
        capacity: Option<usize>,
    ) -> Result<Subscription, BusError> {
        let slot = self.inner.hub.new_slot(filter, capacity);
        self.inner.hub.insert(&slot)?;
        let owner: Weak<dyn Detach> = Arc::downgrade(&self.inner) as Weak<dyn Detach>;
        Ok(Subscription::new(slot, owner))
    }

    /// Publishes `event` in `namespace` without an `.await` (it never waits
    /// anyway). Returns how many subscribers received it.
    ///
    /// # Errors
    /// [`BusError::Closed`] if the bus was closed.
    pub fn publish_now(&self, namespace: &Namespace, event: Event) -> Result<usize, BusError> {
        let hub = &self.inner.hub;
        if hub.is_closed() {
            return Err(BusError::Closed);
        }
        Ok(hub.publish_local(namespace, Arc::new(event)))
    }

    /// Publishes an event that is already shared, without copying it.
    /// Returns how many subscribers received it.
    ///
    /// # Errors
    /// [`BusError::Closed`] if the bus was closed.
    pub fn publish_shared(
        &self,
        namespace: &Namespace,
        event: &Arc<Event>,
    ) -> Result<usize, BusError> {
        let hub = &self.inner.hub;
        if hub.is_closed() {
            return Err(BusError::Closed);
        }
        Ok(hub.publish_local(namespace, Arc::clone(event)))
    }

    /// Counters of this bus since it was created.
    pub fn stats(&self) -> BusStats {
        self.inner.hub.stats()
    }

    /// Closes the bus for every clone: subscriptions end after their queued
    /// events; later publishes and subscribes return [`BusError::Closed`].
    pub fn close(&self) {
        self.inner.hub.close();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.hub.is_closed()
    }
}

impl EventBus for LocalEventBus {
    type Subscription = Subscription;

    /// Delivers `event` to every matching subscriber's queue before returning;
    /// never waits for a subscriber.
    async fn publish(&self, namespace: &Namespace, event: Event) -> Result<(), BusError> {
        self.publish_now(namespace, event).map(|_| ())
    }

    async fn subscribe(&self, filter: EventFilter) -> Result<Subscription, BusError> {
        self.subscribe_now(filter, None)
    }
}
