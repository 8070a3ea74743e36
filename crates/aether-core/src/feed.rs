//! The namespace-wide event feed: every event of a namespace, in commit
//! order, from any [`Position`], without skips.
//!
//! [`EventFeed`] is a separate trait from [`EventStore`] so that a store
//! without a feed still compiles; both Aether stores implement it. A
//! projection (read model) reads the feed from its checkpoint (see
//! `aether-projection`).
//!
//! # Delivery rules
//!
//! Every feed stream (both [`EventFeed::read_all`] and
//! [`EventFeed::subscribe_all`]) keeps these rules, and the `testkit` feed
//! conformance suite checks each of them against every store:
//!
//! * **Exactly once, in commit order.** Each event of the namespace that
//!   passes the filter appears once, in the order the store committed it;
//!   positions strictly increase along a stream (they need not be
//!   contiguous: foreign records and filtered events use positions too).
//! * **Atomic batches are contiguous.** The events of one `append` appear
//!   one after another, with no event of another append between them.
//! * **None skipped under concurrent writers.** A position is visible only
//!   once every lower position is: an event committed "late" by a slow
//!   writer never hides behind a reader that already passed its position.
//! * **From a position.** A stream opened at `p` yields exactly the events
//!   with positions `> p`; [`Position::ZERO`] means from the beginning.
//! * **Trust.** Records the store did not write follow the store's
//!   [`crate::TrustPolicy`] exactly as its per-actor reads do: skipped
//!   (logged and counted) by default, or a [`crate::StoreError::Corrupt`] item
//!   under the strict policy.
//! * **Errors end the stream.** After an `Err` item the stream ends; it
//!   never ends early without one (a live stream does not end at all while
//!   it is consumed). A consumer resumes by opening a new stream at the
//!   position of the last item it handled.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::store::{BoxStream, EventStore, Result};

/// Where an event stands in its namespace's commit order: the JetStream
/// stream sequence, or the memory store's commit counter.
///
/// Per namespace, positions strictly increase in commit order. They are not
/// contiguous and mean nothing across namespaces or stores.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Position(u64);

impl Position {
    /// Before the first event: a feed opened here yields everything.
    pub const ZERO: Position = Position(0);

    /// Wraps a raw position.
    pub const fn new(p: u64) -> Self {
        Position(p)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One event of the feed and its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// The event's position in its namespace.
    pub position: Position,
    /// The event.
    pub event: Event,
}

/// Which events a feed yields: all by default, optionally narrowed to a
/// set of event types and an actor-id prefix (both must match).
///
/// ```
/// use aether_core::{ActorId, Event, FeedFilter, Version};
///
/// let filter = FeedFilter::all().event_types(["Deposited"]).actor_prefix("account-");
/// let e = Event::new(ActorId::new("account-1")?, Version::FIRST, "Deposited", &5)?;
/// assert!(filter.matches(&e));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedFilter {
    event_types: Option<Arc<BTreeSet<String>>>,
    actor_prefix: Option<Arc<str>>,
}

impl FeedFilter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events whose type is one of `types`.
    #[must_use]
    pub fn event_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(Arc::new(types.into_iter().map(Into::into).collect()));
        self
    }

    /// Only events of actors whose id starts with `prefix`.
    #[must_use]
    pub fn actor_prefix(mut self, prefix: impl AsRef<str>) -> Self {
        self.actor_prefix = Some(Arc::from(prefix.as_ref()));
        self
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|t| t.contains(&*event.event_type))
            && self
                .actor_prefix
                .as_ref()
                .is_none_or(|p| event.actor_id.as_str().starts_with(&**p))
    }

    /// Whether events of `actor` can pass (its id has the prefix, if one
    /// is set); lets a store skip an actor's records before decoding them.
    pub fn matches_actor(&self, actor: &crate::ActorId) -> bool {
        self.actor_prefix
            .as_ref()
            .is_none_or(|p| actor.as_str().starts_with(&**p))
    }

    /// Whether the filter lets every event through.
    pub fn is_all(&self) -> bool {
        self.event_types.is_none() && self.actor_prefix.is_none()
    }
}

/// A store whose namespace can be read as one feed in commit order (see the
/// [module docs](self) for the delivery rules every implementation keeps).
pub trait EventFeed: EventStore {
    /// A finite catch-up read: the events with positions `> from` that pass
    /// `filter`, up to the namespace's head as of opening (the call, or at the
    /// latest the first poll; events committed later may or may not appear),
    /// then the stream ends.
    ///
    /// After an `Err` item (transport failure that the store could not ride
    /// out, or [`crate::StoreError::Corrupt`] under the strict trust
    /// policy) the stream ends.
    fn read_all(&self, from: Position, filter: FeedFilter) -> BoxStream<'static, Result<FeedItem>>;

    /// Catch-up, then live, as one stream: the events with positions
    /// `> from` that pass `filter`, then every event committed later, as it
    /// is committed. It never ends on its own except after an `Err` item.
    ///
    /// Buffering is bounded: a consumer that stops polling makes the store
    /// stop reading ahead (it never holds more than a bounded number of
    /// events for it).
    fn subscribe_all(
        &self,
        from: Position,
        filter: FeedFilter,
    ) -> BoxStream<'static, Result<FeedItem>>;

    /// The namespace's head: the position of the last committed record
    /// ([`Position::ZERO`] when empty). Used to measure how far a reader lags.
    ///
    /// # Errors
    /// Transport errors.
    fn head(&self) -> impl Future<Output = Result<Position>> + Send;
}

macro_rules! forward_feed {
    ($($wrapper:ident),*) => {$(
        impl<S: EventFeed + ?Sized> EventFeed for $wrapper<S> {
            fn read_all(&self, from: Position, filter: FeedFilter) -> BoxStream<'static, Result<FeedItem>> {
                (**self).read_all(from, filter)
            }
            fn subscribe_all(&self, from: Position, filter: FeedFilter) -> BoxStream<'static, Result<FeedItem>> {
                (**self).subscribe_all(from, filter)
            }
            fn head(&self) -> impl Future<Output = Result<Position>> + Send {
                (**self).head()
            }
        }
    )*};
}

forward_feed!(Arc, Box);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActorId, Version};

    fn ev(actor: &str, ty: &str) -> Event {
        Event::new(ActorId::new(actor).unwrap(), Version::FIRST, ty, &1).unwrap()
    }

    #[test]
    fn filter_narrows_by_type_and_prefix() {
        assert!(FeedFilter::all().matches(&ev("a", "X")));
        assert!(FeedFilter::all().is_all());
        let f = FeedFilter::all().event_types(["X", "Y"]);
        assert!(f.matches(&ev("a", "Y")));
        assert!(!f.matches(&ev("a", "Z")));
        let f = f.actor_prefix("acc-");
        assert!(f.matches(&ev("acc-1", "X")));
        assert!(!f.matches(&ev("ac-1", "X")));
        assert!(!f.is_all());
    }

    #[test]
    fn positions_order() {
        assert!(Position::ZERO < Position::new(1));
        assert_eq!(Position::new(7).get(), 7);
        assert_eq!(Position::new(7).to_string(), "7");
    }
}
