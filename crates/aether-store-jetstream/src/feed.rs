//! The namespace feed on JetStream: an ordered consumer over the events
//! stream (`<prefix>.<ns>.events.*`), positions = stream sequences.
//!
//! * **No gap, no repeat.** The stream sequence is assigned at commit, so
//!   reading in sequence order skips nothing. The reader remembers the last
//!   sequence it processed; after an error, a lost connection or a server
//!   restart it opens a new ordered consumer at the next sequence and drops
//!   anything at or below the last one.
//! * **Trust.** Each actor met is followed by a [`HistoryGuard`], as
//!   per-actor reads are: a message is delivered only if it is a valid
//!   envelope of its subject's actor with the version after the last valid
//!   one. A feed opened at position 0 follows every actor from its start; one
//!   opened later learns an actor's last valid version before its first
//!   message there from the message before it on the actor's subject (when
//!   that is the actor's previous version) or else by reading the actor's
//!   history. The map holds one small entry per actor met.
//! * **Bounded.** The consumer pulls in bounded batches and only when the
//!   stream is polled; a reader that stops polling holds at most one batch
//!   and falls behind instead of buffering without bound; how far behind
//!   the head it is, the server says with every message, and the feed
//!   reports it as the gauge `aether_feed_behind_events{namespace}`.
//!   Other metrics: `aether_feed_events_total`, `aether_feed_resumes_total`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use aether_core::feed::{EventFeed, FeedFilter, FeedItem, Position};
use aether_core::name::decode_token;
use aether_core::store::BoxStream;
use aether_core::{ActorId, CodecError, Event, HistoryGuard, StoreError, TrustPolicy, Version};
use async_nats::jetstream::consumer::pull::Ordered;
use futures::StreamExt;
use metrics::{Counter, Gauge};

use crate::envelope::{Origin, decode_event};
use crate::store::{Inner, JetStreamEventStore, RESUME_BACKOFF};

/// How long a catch-up read rides out a failing server before it ends with
/// the error (a live subscription rides out any transient failure).
const CATCH_UP_GIVE_UP: u32 = 6;

struct Feed {
    inner: Arc<Inner>,
    filter: FeedFilter,
    /// The position the feed was opened at.
    from: u64,
    /// The last stream sequence processed (delivered, filtered or foreign).
    last: u64,
    /// Catch-up reads end at this sequence (the head when opened); `None`
    /// for a live feed.
    end: Option<u64>,
    live: bool,
    /// In a mutex only to make the feed `Sync` (the consumer is not); it is
    /// reached through `get_mut`, never locked.
    consumer: Option<std::sync::Mutex<Ordered>>,
    guards: HashMap<ActorId, HistoryGuard>,
    failing_since: Option<Instant>,
    done: bool,
    resumes: Counter,
    delivered: Counter,
    /// Messages of the stream after the last one read: how far this reader
    /// is behind the head.
    behind: Gauge,
}

impl Feed {
    fn new(inner: Arc<Inner>, from: Position, filter: FeedFilter, live: bool) -> Self {
        let ns = inner.namespace.as_str().to_owned();
        Feed {
            resumes: metrics::counter!("aether_feed_resumes_total", "namespace" => ns.clone(), "backend" => "jetstream"),
            delivered: metrics::counter!("aether_feed_events_total", "namespace" => ns.clone(), "backend" => "jetstream"),
            behind: metrics::gauge!("aether_feed_behind_events", "namespace" => ns, "backend" => "jetstream"),
            inner,
            filter,
            from: from.get(),
            last: from.get(),
            end: None,
            live,
            consumer: None,
            guards: HashMap::new(),
            failing_since: None,
            done: false,
        }
    }

    async fn next(&mut self) -> Option<Result<FeedItem, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            match self.step().await {
                Ok(Some(item)) => {
                    self.failing_since = None;
                    self.delivered.increment(1);
                    return Some(Ok(item));
                }
                Ok(None) => {}
                Err(e) => {
                    if let Some(e) = self.failed(e).await {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// After an error: drop the consumer and resume (`None`) while the
    /// failure is transient (and, for a catch-up read, younger than its
    /// limit); otherwise the error ends the feed.
    async fn failed(&mut self, e: StoreError) -> Option<StoreError> {
        self.consumer = None;
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        let limit = self.inner.timeout * CATCH_UP_GIVE_UP;
        if e.is_transient() && (self.live || since.elapsed() < limit) {
            tracing::debug!(namespace = %self.inner.namespace, error = %e, last = self.last, "feed interrupted; resuming");
            self.resumes.increment(1);
            tokio::time::sleep(RESUME_BACKOFF.delay(0)).await;
            return None;
        }
        Some(e)
    }

    /// Processes one message; `Ok(None)` when it yields nothing (filtered,
    /// foreign, a repeat, or the catch-up end reached).
    async fn step(&mut self) -> Result<Option<FeedItem>, StoreError> {
        if !self.live {
            let end = match self.end {
                Some(end) => end,
                None => {
                    let end = head(&self.inner).await?;
                    self.end = Some(end);
                    end
                }
            };
            if self.last >= end {
                self.done = true;
                return Ok(None);
            }
        }
        if self.consumer.is_none() {
            self.consumer = Some(std::sync::Mutex::new(self.open().await?));
        }
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(None);
        };
        let consumer = consumer
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lost = self.inner.connection.lost(&self.inner.client);
        let (live, timeout) = (self.live, self.inner.timeout);
        let next = async {
            if live {
                tokio::select! {
                    m = consumer.next() => Ok(m),
                    () = lost => Err(StoreError::Unavailable {
                        message: "reading the feed: the connection was lost".into(),
                        source: None,
                    }),
                }
            } else {
                tokio::select! {
                    m = tokio::time::timeout(timeout, consumer.next()) => m.map_err(|_| StoreError::Timeout(format!("reading the feed: no message within {timeout:?}"))),
                    () = lost => Err(StoreError::Unavailable {
                        message: "reading the feed: the connection was lost".into(),
                        source: None,
                    }),
                }
            }
        };
        let msg = match next.await? {
            None => {
                return Err(StoreError::Unavailable {
                    message: "reading the feed: the consumer ended".into(),
                    source: None,
                });
            }
            Some(Err(e)) => {
                return Err(StoreError::unavailable(
                    "reading the feed through an ordered consumer",
                    e,
                ));
            }
            Some(Ok(m)) => m,
        };
        let info = msg.info().map_err(|e| StoreError::Backend {
            message: format!("reading the feed: a consumer message without metadata: {e}"),
            source: None,
        })?;
        let seq = info.stream_sequence;
        self.behind.set(info.pending as f64);
        if seq <= self.last {
            // Redelivered after the consumer was recreated.
            return Ok(None);
        }
        let msg = msg.message;
        let item = self.judge(seq, &msg).await?;
        self.last = seq;
        Ok(item)
    }

    /// Applies the filter and the trust rule to the message at `seq`.
    async fn judge(
        &mut self,
        seq: u64,
        msg: &async_nats::Message,
    ) -> Result<Option<FeedItem>, StoreError> {
        let inner = &self.inner;
        let token = msg
            .subject
            .as_str()
            .strip_prefix(inner.events.subject_base.as_str())
            .and_then(|t| t.strip_prefix('.'));
        let actor = token
            .and_then(decode_token)
            .and_then(|id| ActorId::new(id).ok());
        let Some(actor) = actor else {
            // A subject no actor of this store has: foreign, with no actor
            // to name.
            metrics::counter!(
                "aether_foreign_messages_total",
                "namespace" => inner.namespace.as_str().to_owned(),
                "reason" => "bad_subject",
            )
            .increment(1);
            tracing::warn!(namespace = %inner.namespace, subject = %msg.subject, seq, "feed: a message on a subject that names no actor");
            return match inner.policy {
                TrustPolicy::Strict => Err(StoreError::Codec(CodecError::Malformed(format!(
                    "message {seq} of {} is on subject {}, which names no actor",
                    inner.events.name, msg.subject
                )))),
                _ => Ok(None),
            };
        };
        if !self.filter.is_all() && !self.filter.matches_actor(&actor) {
            return Ok(None);
        }
        let origin = Origin {
            stream: &inner.events.name,
            sequence: seq,
        };
        let decoded = decode_event(msg.headers.as_ref(), &msg.payload, &actor, origin);
        if !self.guards.contains_key(&actor) {
            let start = self.start_of(&actor, seq, decoded.as_ref().ok()).await?;
            let guard = HistoryGuard::new(&self.inner.namespace, &actor, start, self.inner.policy);
            self.guards.insert(actor.clone(), guard);
        }
        let Some(guard) = self.guards.get_mut(&actor) else {
            return Ok(None);
        };
        match decoded {
            Ok(event) => {
                if guard.admit(seq, &event)? && self.filter.matches(&event) {
                    Ok(Some(FeedItem {
                        position: Position::new(seq),
                        event,
                    }))
                } else {
                    Ok(None)
                }
            }
            Err(reason) => {
                guard.reject(seq, reason)?;
                Ok(None)
            }
        }
    }

    /// The last valid version of `actor` before `seq`, its first message in
    /// this feed.
    async fn start_of(
        &self,
        actor: &ActorId,
        seq: u64,
        event: Option<&Event>,
    ) -> Result<Version, StoreError> {
        if self.from == 0 {
            return Ok(Version::ZERO);
        }
        let subject = self.inner.events.subject(actor);
        let Some(prev) = self.inner.prev_msg(&subject, seq).await? else {
            return Ok(Version::ZERO);
        };
        if let (Ok(p), Some(e)) = (self.inner.judge(actor, &prev), event)
            && p.version.next() == Some(e.version)
        {
            return Ok(p.version);
        }
        self.inner.valid_version_before(actor, seq).await
    }

    async fn open(&self) -> Result<Ordered, StoreError> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        let what = "opening the feed's ordered consumer";
        let consumer = self
            .inner
            .events
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("{}.*", self.inner.events.subject_base),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: self.last + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::unavailable(what, e))?;
        consumer
            .messages()
            .await
            .map_err(|e| StoreError::unavailable(what, e))
    }
}

/// The last stream sequence of the events stream (from the stream leader).
async fn head(inner: &Inner) -> Result<u64, StoreError> {
    let info = tokio::time::timeout(inner.timeout, inner.events.stream.get_info())
        .await
        .map_err(|_| StoreError::Timeout("reading the events stream's head".into()))?
        .map_err(|e| StoreError::unavailable("reading the events stream's head", e))?;
    Ok(info.state.last_sequence)
}

impl JetStreamEventStore {
    fn feed(
        &self,
        from: Position,
        filter: FeedFilter,
        live: bool,
    ) -> BoxStream<'static, Result<FeedItem, StoreError>> {
        let feed = Feed::new(self.inner.clone(), from, filter, live);
        Box::pin(futures::stream::unfold(feed, |mut feed| async move {
            let item = feed.next().await?;
            Some((item, feed))
        }))
    }
}

impl EventFeed for JetStreamEventStore {
    fn read_all(
        &self,
        from: Position,
        filter: FeedFilter,
    ) -> BoxStream<'static, Result<FeedItem, StoreError>> {
        self.feed(from, filter, false)
    }

    fn subscribe_all(
        &self,
        from: Position,
        filter: FeedFilter,
    ) -> BoxStream<'static, Result<FeedItem, StoreError>> {
        self.feed(from, filter, true)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        head(&self.inner).await.map(Position::new)
    }
}
