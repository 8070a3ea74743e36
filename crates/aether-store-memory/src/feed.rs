//! The namespace feed of the memory store: one commit log per namespace.
//!
//! A record joins the commit log while its actor's write lock is held and
//! under the log's own mutex, so positions (index + 1) are assigned in
//! commit order and a position becomes visible only together with every
//! lower one. Live readers park their waker in the log; a commit wakes them
//! all. No runtime is needed. A reader copies at most [`FEED_CHUNK`]
//! records at a time and reports how many committed records lie beyond
//! them in the gauge `aether_feed_behind_events{namespace, backend}`.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};

use aether_core::feed::{EventFeed, FeedFilter, FeedItem, Position};
use aether_core::store::BoxStream;
use aether_core::{ActorId, ForeignReason, Namespace, StoreError, TrustPolicy, report_foreign};
use futures::Stream;

use crate::{InMemoryEventStore, NamespaceData, RawRecord};

/// Records a feed reader copies out of the commit log at once (the most it
/// buffers).
const FEED_CHUNK: usize = 512;

/// One stored record, shared by its actor's log and the feed.
pub(crate) struct Committed {
    pub(crate) actor: ActorId,
    pub(crate) record: RawRecord,
    /// Why the record is not part of its actor's history, if it is not.
    pub(crate) foreign: Option<ForeignReason>,
}

/// Every record of one namespace, in commit order.
#[derive(Default)]
pub(crate) struct CommitLog {
    records: Vec<Arc<Committed>>,
    wakers: Vec<Waker>,
}

impl InMemoryEventStore {
    /// Adds records to the namespace's commit log, in order, and wakes live
    /// readers. Called with the actor's write lock held.
    pub(crate) fn commit(&self, records: impl IntoIterator<Item = Arc<Committed>>) {
        let mut log = self
            .data
            .feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        log.records.extend(records);
        for w in log.wakers.drain(..) {
            w.wake();
        }
    }

    fn feed_stream(
        &self,
        from: Position,
        filter: FeedFilter,
        live: bool,
    ) -> BoxStream<'static, Result<FeedItem, StoreError>> {
        let end = (!live).then(|| self.head_now());
        Box::pin(FeedReader {
            data: self.data.clone(),
            namespace: self.namespace.clone(),
            policy: self.policy,
            filter,
            next: usize::try_from(from.get()).unwrap_or(usize::MAX),
            end,
            buf: VecDeque::new(),
            done: false,
            metrics: self.metrics.clone(),
        })
    }

    fn head_now(&self) -> usize {
        self.data
            .feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .len()
    }
}

/// A feed stream: the index of the next record to read, and where a
/// catch-up read ends.
struct FeedReader {
    data: Arc<NamespaceData>,
    namespace: Namespace,
    policy: TrustPolicy,
    filter: FeedFilter,
    /// Index of the next record (= the position of the last one passed).
    next: usize,
    /// A catch-up read ends at this index; a live one has none.
    end: Option<usize>,
    buf: VecDeque<Result<FeedItem, StoreError>>,
    done: bool,
    /// Where `aether_feed_behind_events` (records committed after the last
    /// chunk read) and `aether_feed_events_total` go.
    metrics: crate::Metrics,
}

impl Stream for FeedReader {
    type Item = Result<FeedItem, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.buf.pop_front() {
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            let (chunk, behind) = {
                let mut log = this
                    .data
                    .feed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let limit = this.end.unwrap_or(usize::MAX).min(log.records.len());
                if this.next >= limit {
                    if this.end.is_some() {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    if !log.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                        log.wakers.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                let stop = limit.min(this.next.saturating_add(FEED_CHUNK));
                let chunk: Vec<Arc<Committed>> = log.records[this.next..stop].to_vec();
                (chunk, log.records.len() - stop)
            };
            this.metrics.feed_behind.set(behind as f64);
            let first = this.next;
            this.next += chunk.len();
            for (i, c) in chunk.iter().enumerate() {
                let position = (first + i + 1) as u64;
                match (&c.foreign, &c.record) {
                    (None, RawRecord::Event(e)) => {
                        if this.filter.matches(e) {
                            this.metrics.feed_events.increment(1);
                            this.buf.push_back(Ok(FeedItem {
                                position: Position::new(position),
                                event: e.clone(),
                            }));
                        }
                    }
                    (foreign, _) => {
                        let reason = foreign.clone().unwrap_or_else(|| {
                            ForeignReason::NotAnEnvelope("raw bytes".to_owned())
                        });
                        if let Err(e) =
                            report_foreign(&this.namespace, &c.actor, position, reason, this.policy)
                        {
                            this.buf.push_back(Err(e));
                            this.done = true;
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl EventFeed for InMemoryEventStore {
    fn read_all(
        &self,
        from: Position,
        filter: FeedFilter,
    ) -> BoxStream<'static, Result<FeedItem, StoreError>> {
        self.feed_stream(from, filter, false)
    }

    fn subscribe_all(
        &self,
        from: Position,
        filter: FeedFilter,
    ) -> BoxStream<'static, Result<FeedItem, StoreError>> {
        self.feed_stream(from, filter, true)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(Position::new(self.head_now() as u64))
    }
}
