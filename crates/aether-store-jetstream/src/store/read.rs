//! Reading an actor's history: batched direct gets for short reads, an
//! ordered consumer for long ones, resumed after transient failures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_core::{ActorId, Event, ForeignReason, HistoryGuard, StoreError, Version};
use async_nats::{StatusCode, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::{Inner, RESUME_BACKOFF};
use crate::cache::Tip;
use crate::envelope::{Origin, decode_event, names, read_event_version};
use crate::error::{publish_error, subscribe_error};

/// A batched direct get (server 2.11+): up to `batch` messages of
/// `next_by_subj` from stream sequence `seq`.
#[derive(Serialize)]
struct DirectBatchRequest<'a> {
    seq: u64,
    batch: usize,
    next_by_subj: &'a str,
}

/// Reads an actor's events up to its tip when the read began: short reads
/// with batched direct gets (`{"seq", "batch", "next_by_subj"}`, server
/// 2.11+), long ones through an ordered consumer, decoding each message as it
/// arrives and admitting it through the trust rule ([`HistoryGuard`]).
///
/// A transient failure mid-read (time-out, lost connection, consumer gone)
/// resumes from the message after the last one processed, for up to the
/// request timeout; after that, or on any other error, the error is the
/// read's last item.
pub(crate) struct Reader {
    inner: Arc<Inner>,
    actor: ActorId,
    subject: String,
    from: Version,
    phase: Phase,
    guard: HistoryGuard,
    /// The last event admitted (version and sequence).
    pub(crate) admitted: Option<Tip>,
    /// The stream sequence of the last message processed (0: none).
    seen: u64,
    /// The stream sequence the read continues from.
    next_seq: u64,
    /// The sequence the read ends at (the subject's last message when it began).
    target: Option<u64>,
    read: u64,
    /// Set after a wrong start hint: search instead.
    no_hint: bool,
    /// Since when the read has been failing transiently.
    failing_since: Option<Instant>,
}

impl Drop for Reader {
    /// A stream dropped before its end still counts what it read and feeds
    /// the cache with the newest version it saw.
    fn drop(&mut self) {
        self.finish();
    }
}

enum Started {
    Empty,
    Direct(Open),
    Consumer { start: u64 },
}

enum Phase {
    Start,
    Open(Open),
    Tail(Box<Tail>),
    /// Waiting to resume after a transient failure.
    Resume,
    Done,
}

/// The rest of a long history, through an ordered consumer.
struct Tail {
    /// In a mutex only to make the reader `Sync` (the consumer's stream is
    /// not); it is reached through `get_mut`, never locked.
    messages: std::sync::Mutex<async_nats::jetstream::consumer::pull::Ordered>,
    finished: bool,
}

struct Open {
    sub: Subscriber,
    inbox: String,
    in_batch: usize,
    /// Since when a replica has answered short of the target.
    stale_since: Option<Instant>,
    /// The message the read must start with when it starts at a hint.
    verify: Option<Tip>,
}

enum Step {
    Item(Event),
    Continue,
    /// Many events remain: read them through an ordered consumer.
    SwitchToConsumer,
    /// The start hint was wrong: start again with a search.
    Reseek,
    Finished,
}

/// Past how many events (in read batches) a read uses an ordered consumer
/// instead of batched direct gets: the consumer streams with flow control
/// (measured here 2-3x the per-message rate of direct gets) but costs a
/// consumer on the server, so short reads (after a snapshot) stay direct.
const CONSUMER_AFTER_BATCHES: u64 = 1;

impl Reader {
    pub(crate) fn new(inner: Arc<Inner>, actor: ActorId, from: Version) -> Self {
        let subject = inner.events.subject(&actor);
        let last_valid = Version::new(from.get().max(1) - 1);
        let guard = HistoryGuard::new(&inner.namespace, &actor, last_valid, inner.policy);
        Reader {
            inner,
            actor,
            subject,
            from,
            phase: Phase::Start,
            guard,
            admitted: None,
            seen: 0,
            next_seq: 1,
            target: None,
            read: 0,
            no_hint: false,
            failing_since: None,
        }
    }

    pub(crate) async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            let step = match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => {
                    self.finish();
                    return None;
                }
                Phase::Start => match self.start().await {
                    Ok(Started::Empty) => Ok(Step::Finished),
                    Ok(Started::Direct(open)) => {
                        self.phase = Phase::Open(open);
                        Ok(Step::Continue)
                    }
                    Ok(Started::Consumer { start }) => self.switch_to_consumer(start).await,
                    Err(e) => Err(e),
                },
                Phase::Open(mut open) => {
                    let step = self.step(&mut open).await;
                    self.phase = Phase::Open(open);
                    step
                }
                Phase::Tail(mut tail) => {
                    let step = self.tail_step(&mut tail).await;
                    self.phase = Phase::Tail(tail);
                    step
                }
                Phase::Resume => self.resume().await,
            };
            match step {
                Ok(Step::Item(e)) => {
                    self.failing_since = None;
                    return Some(Ok(e));
                }
                Ok(Step::Continue) => {}
                Ok(Step::SwitchToConsumer) => {
                    if let Err(e) = self.switch_to_consumer(self.next_seq).await
                        && let Some(e) = self.failed(e)
                    {
                        return Some(Err(e));
                    }
                }
                Ok(Step::Reseek) => {
                    self.inner.hints.invalidate(&self.actor);
                    self.no_hint = true;
                    self.phase = Phase::Start;
                }
                Ok(Step::Finished) => {
                    self.phase = Phase::Done;
                    self.finish();
                    return None;
                }
                Err(e) => {
                    if let Some(e) = self.failed(e) {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// After an error: resume (`None`) while it is transient, the read has
    /// begun and the failure is younger than the request timeout; otherwise
    /// end the read with the error.
    fn failed(&mut self, e: StoreError) -> Option<StoreError> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        if e.is_transient() && self.target.is_some() && since.elapsed() < self.inner.timeout {
            tracing::debug!(actor = %self.actor, error = %e, next_seq = self.next_seq, "read interrupted; resuming");
            self.phase = Phase::Resume;
            return None;
        }
        self.phase = Phase::Done;
        self.finish();
        Some(e)
    }

    /// Opens the read again at the message after the last one processed.
    async fn resume(&mut self) -> Result<Step, StoreError> {
        tokio::time::sleep(RESUME_BACKOFF.delay(0)).await;
        self.inner.metrics.read_resumes.increment(1);
        let Some(target) = self.target else {
            self.phase = Phase::Start;
            return Ok(Step::Continue);
        };
        if self.admitted.is_none() && (self.seen == 0 || self.from.get() > 1) {
            // Nothing of the requested range read yet (the start position
            // may be unsettled, e.g. after a wrong hint): start over.
            self.phase = Phase::Start;
            return Ok(Step::Continue);
        }
        if self.next_seq > target {
            return Ok(Step::Finished);
        }
        let remaining = target - self.next_seq + 1;
        if remaining > CONSUMER_AFTER_BATCHES * self.inner.read_batch as u64 {
            return self.switch_to_consumer(self.next_seq).await;
        }
        let open = self.open_direct(self.next_seq, None).await?;
        self.phase = Phase::Open(open);
        Ok(Step::Continue)
    }

    async fn switch_to_consumer(&mut self, start: u64) -> Result<Step, StoreError> {
        let tail = Self::tail(self.inner.clone(), self.subject.clone(), start).await?;
        self.phase = Phase::Tail(Box::new(tail));
        Ok(Step::Continue)
    }

    /// The tip this read saw: the last admitted event and the last message
    /// processed (`None` when that says nothing).
    pub(crate) fn tip(&self) -> Option<Tip> {
        match self.admitted {
            Some(t) => Some(Tip {
                last: self.seen.max(t.seq),
                ..t
            }),
            None if self.from.get() <= 1 && self.seen > 0 => Some(Tip {
                last: self.seen,
                ..Tip::EMPTY
            }),
            None => None,
        }
    }

    fn finish(&mut self) {
        if let Some(t) = self.tip() {
            self.inner.cache.observe(&self.actor, t);
        }
        if self.read > 0 {
            self.inner.metrics.events_read.increment(self.read);
            self.read = 0;
        }
    }

    /// Reads the actor's tip and decides where and how the read starts.
    async fn start(&mut self) -> Result<Started, StoreError> {
        let inner = self.inner.clone();
        let from = self.from.get().max(1);
        let Some(last) = inner.last_msg(&inner.events, &self.subject).await? else {
            return Ok(Started::Empty);
        };
        self.target = Some(last.seq);
        let threshold = CONSUMER_AFTER_BATCHES * inner.read_batch as u64;
        let (start, remaining, verify) = if from == 1 {
            // The whole history; the last message's version (if it has one)
            // only chooses how to read it.
            let estimate = inner.event_version(&last).map_or(0, Version::get);
            (1, estimate, None)
        } else {
            let tip = match inner.cache.get(&self.actor) {
                Some(t) if t.last == last.seq => t,
                _ => Box::pin(inner.tip(&self.actor, &self.subject)).await?,
            };
            self.target = Some(tip.last.max(last.seq));
            if from > tip.version {
                return Ok(Started::Empty);
            }
            let remaining = tip.version - from + 1;
            // A short read right after a snapshot that recorded where its
            // event is: start there, and check that the first message is
            // that event (else search after all).
            let hint = inner
                .hints
                .get(&self.actor)
                .filter(|h| !self.no_hint && h.version + 1 == from && h.seq < tip.seq);
            match hint {
                Some(h) if remaining <= threshold => (h.seq, remaining, Some(h)),
                _ => (inner.seek(&self.subject, from, tip).await?, remaining, None),
            }
        };
        self.next_seq = start;
        if remaining > threshold {
            return Ok(Started::Consumer { start });
        }
        Ok(Started::Direct(self.open_direct(start, verify).await?))
    }

    /// Subscribes to a fresh inbox and asks for the first batch from `start`.
    async fn open_direct(&mut self, start: u64, verify: Option<Tip>) -> Result<Open, StoreError> {
        let inner = &*self.inner;
        let inbox = inner.client.new_inbox();
        let sub = inner
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| subscribe_error("reading events", e))?;
        let mut open = Open {
            sub,
            inbox,
            in_batch: 0,
            stale_since: None,
            verify,
        };
        self.next_seq = start;
        self.request(&mut open).await?;
        Ok(open)
    }

    async fn request(&self, open: &mut Open) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let payload = Bytes::from(
            serde_json::to_vec(&DirectBatchRequest {
                seq: self.next_seq,
                batch: inner.read_batch,
                next_by_subj: &self.subject,
            })
            .map_err(|e| crate::error::backend("encoding a read request", e))?,
        );
        open.in_batch = 0;
        inner
            .client
            .publish_with_reply(
                inner.direct_get_subject.clone(),
                open.inbox.clone(),
                payload,
            )
            .await
            .map_err(|e| publish_error(&format!("reading {}", self.subject), e))
    }

    /// Opens an ordered consumer on the actor's subject from `start` (a free
    /// function of the inner store, so the reader need not be `Sync`).
    async fn tail(inner: Arc<Inner>, subject: String, start: u64) -> Result<Tail, StoreError> {
        use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
        let what = format!("reading {subject} through an ordered consumer");
        let consumer = inner
            .events
            .stream
            .create_consumer(OrderedConfig {
                filter_subject: subject,
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| StoreError::unavailable(what.clone(), e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| StoreError::unavailable(what, e))?;
        Ok(Tail {
            messages: std::sync::Mutex::new(messages),
            finished: false,
        })
    }

    async fn tail_step(&mut self, tail: &mut Tail) -> Result<Step, StoreError> {
        if tail.finished {
            return Ok(Step::Finished);
        }
        let timeout = self.inner.timeout;
        let msg = match tokio::time::timeout(
            timeout,
            tail.messages
                .get_mut()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .next(),
        )
        .await
        {
            Err(_) => {
                return Err(StoreError::Timeout(format!(
                    "reading {}: no message within {timeout:?}",
                    self.subject
                )));
            }
            Ok(None) => {
                return Err(StoreError::Unavailable {
                    message: format!("reading {}: the consumer ended", self.subject),
                    source: None,
                });
            }
            Ok(Some(Err(e))) => {
                return Err(StoreError::unavailable(
                    format!("reading {} through an ordered consumer", self.subject),
                    e,
                ));
            }
            Ok(Some(Ok(m))) => m,
        };
        let seq = match msg.info() {
            Ok(info) => info.stream_sequence,
            Err(e) => {
                return Err(StoreError::Backend {
                    message: format!(
                        "reading {}: a consumer message without metadata: {e}",
                        self.subject
                    ),
                    source: None,
                });
            }
        };
        if seq < self.next_seq {
            // Redelivered after the consumer was recreated.
            return Ok(Step::Continue);
        }
        let target = self.target.unwrap_or(seq);
        tail.finished = seq >= target;
        let origin = Origin {
            stream: &self.inner.events.name,
            sequence: seq,
        };
        let msg = msg.message;
        let event = decode_event(msg.headers.as_ref(), &msg.payload, &self.actor, origin);
        self.decoded(event, seq, tail.finished)
    }

    /// Judges a decoded message through the trust rule; versions before
    /// `from` (of a read that starts past the first event) are passed over.
    fn decoded(
        &mut self,
        event: Result<Event, ForeignReason>,
        seq: u64,
        last: bool,
    ) -> Result<Step, StoreError> {
        self.next_seq = seq + 1;
        let skip = if last { Step::Finished } else { Step::Continue };
        let step = match event {
            Ok(e) if self.admitted.is_none() && self.from.get() > 1 && e.version < self.from => {
                skip
            }
            Ok(e) => {
                if self.guard.admit(seq, &e)? {
                    self.admitted = Some(Tip::at(e.version.get(), seq));
                    self.read += 1;
                    Step::Item(e)
                } else {
                    skip
                }
            }
            Err(reason) => {
                self.guard.reject(seq, reason)?;
                skip
            }
        };
        self.seen = seq;
        Ok(step)
    }

    async fn step(&mut self, open: &mut Open) -> Result<Step, StoreError> {
        let timeout = self.inner.timeout;
        let target = self.target.unwrap_or(0);
        let msg = match tokio::time::timeout(timeout, open.sub.next()).await {
            Err(_) => {
                return Err(StoreError::Timeout(format!(
                    "reading {}: no reply within {timeout:?}",
                    self.subject
                )));
            }
            Ok(None) => {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "reading {}: the connection closed the reply subscription",
                        self.subject
                    ),
                    source: None,
                });
            }
            Ok(Some(m)) => m,
        };
        match msg.status {
            None => {
                let headers = msg.headers.as_ref();
                let seq = headers
                    .and_then(|h| h.get(names::NATS_SEQUENCE))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                let Some(seq) = seq else {
                    return Err(StoreError::Backend {
                        message: format!(
                            "reading {}: a direct-get reply without Nats-Sequence",
                            self.subject
                        ),
                        source: None,
                    });
                };
                open.in_batch += 1;
                if seq < self.next_seq {
                    // A reply to a request made before a resume.
                    return Ok(Step::Continue);
                }
                let origin = Origin {
                    stream: &self.inner.events.name,
                    sequence: seq,
                };
                if let Some(hint) = open.verify.take() {
                    self.next_seq = seq + 1;
                    let found = read_event_version(&msg.payload, origin)
                        .ok()
                        .map(Version::get);
                    return Ok(if seq == hint.seq && found == Some(hint.version) {
                        Step::Continue
                    } else {
                        tracing::debug!(actor = %self.actor, ?hint, seq, ?found, "stale read hint");
                        Step::Reseek
                    });
                }
                let event = decode_event(msg.headers.as_ref(), &msg.payload, &self.actor, origin);
                self.decoded(event, seq, false)
            }
            Some(status) if status.as_u16() == 204 || status == StatusCode::NOT_FOUND => {
                let pending = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Num-Pending"))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                if self.next_seq > target {
                    return Ok(Step::Finished);
                }
                // More than the estimate remains (the history has holes the
                // estimate did not see): stream the rest.
                let remaining = pending.unwrap_or_else(|| target.saturating_sub(self.next_seq) + 1);
                if remaining > CONSUMER_AFTER_BATCHES * self.inner.read_batch as u64 {
                    return Ok(Step::SwitchToConsumer);
                }
                if pending.unwrap_or(0) == 0 && open.in_batch == 0 {
                    // A replica that has not applied the latest writes yet.
                    let since = *open.stale_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > timeout {
                        return Err(StoreError::Timeout(format!(
                            "reading {}: replicas did not reach sequence {target} within {timeout:?}",
                            self.subject
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                } else {
                    open.stale_since = None;
                }
                self.request(open).await?;
                Ok(Step::Continue)
            }
            Some(status) => Err(StoreError::Backend {
                message: format!(
                    "reading {}: the server answered {status} {}",
                    self.subject,
                    msg.description.as_deref().unwrap_or("")
                ),
                source: None,
            }),
        }
    }
}
