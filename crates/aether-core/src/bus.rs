//! The [`EventBus`] contract: namespaced publish/subscribe of events.
//!
//! Implementations live in `aether-bus` (in process and over NATS).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use futures_core::Stream;
use futures_core::stream::BoxStream;

use crate::error::BusError;
use crate::event::Event;
use crate::name::Namespace;
use crate::store::BoxFuture;

/// One event delivered by a bus, with the namespace it was published in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// The namespace the event was published in.
    pub namespace: Namespace,
    /// The event (shared between subscribers).
    pub event: Arc<Event>,
}

/// Which namespaces a subscription covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NamespacePattern {
    /// Exactly this namespace.
    Exact(Namespace),
    /// This namespace and every namespace under it (`acme` covers `acme` and
    /// `acme.orders`, never `acme-corp`).
    Within(Namespace),
}

impl NamespacePattern {
    /// Whether `namespace` is covered.
    pub fn matches(&self, namespace: &Namespace) -> bool {
        match self {
            NamespacePattern::Exact(ns) => ns == namespace,
            NamespacePattern::Within(ns) => namespace.is_within(ns),
        }
    }

    /// The namespace the pattern is anchored at.
    pub fn root(&self) -> &Namespace {
        match self {
            NamespacePattern::Exact(ns) | NamespacePattern::Within(ns) => ns,
        }
    }
}

/// What a subscriber wants to receive: a namespace pattern, optionally
/// narrowed to some event types and to actors whose id starts with a prefix.
///
/// ```
/// use aether_core::{bus::EventFilter, Namespace};
/// let filter = EventFilter::within(Namespace::new("acme")?)
///     .event_types(["OrderPlaced", "OrderShipped"])
///     .actor_prefix("order-");
/// # Ok::<(), aether_core::NameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventFilter {
    /// The namespaces covered.
    pub namespaces: NamespacePattern,
    /// Only these event types (all when `None`).
    pub event_types: Option<BTreeSet<String>>,
    /// Only actors whose id starts with this (all when `None`).
    pub actor_prefix: Option<String>,
}

impl EventFilter {
    /// Every event of exactly `namespace`.
    pub fn namespace(namespace: Namespace) -> Self {
        Self::pattern(NamespacePattern::Exact(namespace))
    }

    /// Every event of `namespace` and the namespaces under it.
    pub fn within(namespace: Namespace) -> Self {
        Self::pattern(NamespacePattern::Within(namespace))
    }

    /// Every event matching `pattern`.
    pub fn pattern(pattern: NamespacePattern) -> Self {
        EventFilter {
            namespaces: pattern,
            event_types: None,
            actor_prefix: None,
        }
    }

    /// Narrows to these event types.
    #[must_use]
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Narrows to actors whose id starts with `prefix`.
    #[must_use]
    pub fn actor_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.actor_prefix = Some(prefix.into());
        self
    }

    /// Whether an event published in `namespace` passes the filter.
    pub fn matches(&self, namespace: &Namespace, event: &Event) -> bool {
        self.namespaces.matches(namespace)
            && self
                .event_types
                .as_ref()
                .is_none_or(|t| t.contains(&*event.event_type))
            && self
                .actor_prefix
                .as_ref()
                .is_none_or(|p| event.actor_id.as_str().starts_with(p.as_str()))
    }
}

impl From<Namespace> for EventFilter {
    fn from(ns: Namespace) -> Self {
        EventFilter::namespace(ns)
    }
}

/// Broadcasts events per namespace to every matching subscriber, in process or
/// across nodes.
///
/// Delivery is at most once per subscriber and publish, in publish order per
/// publisher. A subscriber that falls behind receives
/// [`BusError::Lagged`] with the number of events it missed, then continues;
/// it never slows publishers or other subscribers. Dropping the subscription
/// stream unsubscribes.
pub trait EventBus: Send + Sync {
    /// The stream of a subscription. Its only error item is
    /// [`BusError::Lagged`], after which the stream resumes with the next
    /// event still queued for it; it ends (yields `None`) only when the bus is
    /// closed or its transport is gone for good, never on its own.
    type Subscription: Stream<Item = Result<BusEvent, BusError>> + Send + Unpin + 'static;

    /// Publishes `event` in `namespace`.
    ///
    /// # Errors
    /// [`BusError::TooLarge`], [`BusError::Codec`], [`BusError::Unavailable`],
    /// [`BusError::Closed`].
    fn publish(
        &self,
        namespace: &Namespace,
        event: Event,
    ) -> impl Future<Output = Result<(), BusError>> + Send;

    /// Subscribes to the events that pass `filter`, from now on.
    ///
    /// # Errors
    /// [`BusError::Unavailable`], [`BusError::Closed`].
    fn subscribe(
        &self,
        filter: EventFilter,
    ) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send;
}

/// The dyn-safe form of [`EventBus`], implemented for every bus, so a bus
/// chosen at run time can be held as `Arc<dyn DynEventBus>` (which is itself
/// an [`EventBus`], as are `Arc<B>` and `Box<B>` of any bus).
pub trait DynEventBus: Send + Sync {
    /// See [`EventBus::publish`].
    fn publish_dyn<'a>(
        &'a self,
        namespace: &'a Namespace,
        event: Event,
    ) -> BoxFuture<'a, Result<(), BusError>>;
    /// See [`EventBus::subscribe`].
    fn subscribe_dyn(
        &self,
        filter: EventFilter,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<BusEvent, BusError>>, BusError>>;
}

impl<T: EventBus> DynEventBus for T {
    fn publish_dyn<'a>(
        &'a self,
        namespace: &'a Namespace,
        event: Event,
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(self.publish(namespace, event))
    }
    fn subscribe_dyn(
        &self,
        filter: EventFilter,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Result<BusEvent, BusError>>, BusError>> {
        Box::pin(async move {
            let sub = self.subscribe(filter).await?;
            Ok(Box::pin(sub) as BoxStream<'static, _>)
        })
    }
}

/// A shared or boxed bus is a bus: `Arc<LocalEventBus>`, `Box<B>` or
/// `Arc<dyn DynEventBus>` works wherever a `B: EventBus` is taken (e.g. a
/// publishing store), with the inner bus's guarantees.
macro_rules! forward_bus {
    ($($wrapper:ident),*) => {$(
        impl<B: EventBus + ?Sized> EventBus for $wrapper<B> {
            type Subscription = B::Subscription;

            fn publish(
                &self,
                namespace: &Namespace,
                event: Event,
            ) -> impl Future<Output = Result<(), BusError>> + Send {
                (**self).publish(namespace, event)
            }

            fn subscribe(
                &self,
                filter: EventFilter,
            ) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send {
                (**self).subscribe(filter)
            }
        }
    )*};
}

forward_bus!(Arc, Box);

/// A bus chosen at run time (`Arc<dyn DynEventBus>`) is an [`EventBus`]
/// through its `*_dyn` methods, with the chosen bus's guarantees; its
/// subscriptions are boxed streams.
impl<'d> EventBus for dyn DynEventBus + 'd {
    type Subscription = BoxStream<'static, Result<BusEvent, BusError>>;

    fn publish(
        &self,
        namespace: &Namespace,
        event: Event,
    ) -> impl Future<Output = Result<(), BusError>> + Send {
        let namespace = namespace.clone();
        async move { self.publish_dyn(&namespace, event).await }
    }

    fn subscribe(
        &self,
        filter: EventFilter,
    ) -> impl Future<Output = Result<Self::Subscription, BusError>> + Send {
        self.subscribe_dyn(filter)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::StreamExt;

    use super::*;
    use crate::{ActorId, Version};

    /// A small in-test bus: every subscription gets the events published
    /// before it was made and that pass its filter.
    #[derive(Default)]
    struct RecordingBus {
        published: Mutex<Vec<BusEvent>>,
    }

    impl EventBus for RecordingBus {
        type Subscription = futures::stream::Iter<std::vec::IntoIter<Result<BusEvent, BusError>>>;

        async fn publish(&self, namespace: &Namespace, event: Event) -> Result<(), BusError> {
            self.published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(BusEvent {
                    namespace: namespace.clone(),
                    event: Arc::new(event),
                });
            Ok(())
        }

        async fn subscribe(&self, filter: EventFilter) -> Result<Self::Subscription, BusError> {
            let matching: Vec<_> = self
                .published
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .filter(|e| filter.matches(&e.namespace, &e.event))
                .cloned()
                .map(Ok)
                .collect();
            Ok(futures::stream::iter(matching))
        }
    }

    /// Code generic over `B: EventBus`, as a publishing store is.
    struct Publisher<B> {
        bus: B,
        namespace: Namespace,
    }

    impl<B: EventBus> Publisher<B> {
        async fn publish_all(&self, events: Vec<Event>) -> Result<(), BusError> {
            for e in events {
                self.bus.publish(&self.namespace, e).await?;
            }
            Ok(())
        }

        async fn seen(&self) -> Vec<Version> {
            let sub = self
                .bus
                .subscribe(EventFilter::namespace(self.namespace.clone()))
                .await
                .unwrap();
            sub.map(|e| e.unwrap().event.version).collect().await
        }
    }

    fn events(n: u64) -> Vec<Event> {
        let actor = ActorId::new("order-1").unwrap();
        (1..=n)
            .map(|v| Event::from_raw(actor.clone(), Version::new(v), "OrderPlaced", vec![]))
            .collect()
    }

    #[test]
    fn a_bus_chosen_at_run_time_is_an_event_bus() {
        futures::executor::block_on(async {
            let ns = Namespace::new("shop").unwrap();
            let chosen: Arc<dyn DynEventBus> = Arc::new(RecordingBus::default());
            let publisher = Publisher {
                bus: chosen.clone(),
                namespace: ns.clone(),
            };
            publisher.publish_all(events(3)).await.unwrap();
            assert_eq!(
                publisher.seen().await,
                vec![Version::new(1), Version::new(2), Version::new(3)]
            );
            // Another namespace sees nothing through the same trait object.
            let other = Publisher {
                bus: chosen,
                namespace: Namespace::new("shop2").unwrap(),
            };
            assert_eq!(other.seen().await, Vec::<Version>::new());

            let boxed: Box<dyn DynEventBus> = Box::new(RecordingBus::default());
            let publisher = Publisher {
                bus: boxed,
                namespace: ns.clone(),
            };
            publisher.publish_all(events(1)).await.unwrap();
            assert_eq!(publisher.seen().await, vec![Version::new(1)]);

            let shared = Publisher {
                bus: Arc::new(RecordingBus::default()),
                namespace: ns,
            };
            shared.publish_all(events(2)).await.unwrap();
            assert_eq!(shared.seen().await.len(), 2);
        });
    }

    #[test]
    fn filter_matches() {
        let ns = |s| Namespace::new(s).unwrap();
        let e = Event::from_raw(
            ActorId::new("order-1").unwrap(),
            Version::FIRST,
            "OrderPlaced",
            vec![],
        );
        assert!(EventFilter::namespace(ns("a")).matches(&ns("a"), &e));
        assert!(!EventFilter::namespace(ns("a")).matches(&ns("a.b"), &e));
        assert!(EventFilter::within(ns("a")).matches(&ns("a.b"), &e));
        assert!(!EventFilter::within(ns("a")).matches(&ns("a_b"), &e));
        assert!(!EventFilter::within(ns("a")).matches(&ns("ab"), &e));
        let typed = EventFilter::namespace(ns("a")).event_types(["OrderShipped"]);
        assert!(!typed.matches(&ns("a"), &e));
        let prefixed = EventFilter::namespace(ns("a")).actor_prefix("order-");
        assert!(prefixed.matches(&ns("a"), &e));
        assert!(
            !EventFilter::namespace(ns("a"))
                .actor_prefix("cust-")
                .matches(&ns("a"), &e)
        );
    }
}
