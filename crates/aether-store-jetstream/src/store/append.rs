//! Appends: encoding, publishing single events and atomic batches, and
//! deciding what a refusal means.

use std::sync::Arc;

use aether_core::{ActorId, Event, StoreError, Version};
use async_nats::header::{
    NATS_BATCH_COMMIT, NATS_BATCH_ID, NATS_BATCH_SEQUENCE, NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
};
use async_nats::{HeaderMap, HeaderValue, Request, StatusCode, Subject};
use bytes::Bytes;
use serde::Deserialize;

use super::read::Reader;
use super::{APPEND_BACKOFF, CONTROL_HEADERS, Inner, MAX_ATTEMPTS};
use crate::cache::{Keys, Tip};
use crate::envelope::{Encoded, encode_event};
use crate::error::{ApiError, Refusal, api_error, codes, publish_error, request_error};

/// A publish acknowledgement (or error answer) as JSON.
#[derive(Debug, Deserialize)]
pub(crate) struct AckResponse {
    #[serde(default)]
    error: Option<ApiError>,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    duplicate: bool,
}

#[derive(Debug)]
pub(crate) struct Ack {
    pub(crate) seq: u64,
    pub(crate) duplicate: bool,
}

/// What a read-back says about an append that could not simply be published.
pub(crate) enum Resolution {
    /// The batch is already stored (a retry): report success.
    Stored(Version),
    /// Another write got there first.
    Conflict(Version),
    /// The actor is still at the expected version, with this tip.
    Unchanged(Tip),
}

impl Inner {
    pub(crate) fn conflict(
        &self,
        actor: &ActorId,
        expected: Version,
        actual: Version,
    ) -> StoreError {
        self.metrics.conflicts.increment(1);
        tracing::debug!(namespace = %self.namespace, %actor, %expected, %actual, "append conflict");
        StoreError::VersionConflict {
            actor: actor.clone(),
            expected,
            actual,
        }
    }

    /// Decides what a refused or pre-empted append means, from the actor's
    /// valid tip on the server.
    pub(crate) async fn resolve(
        self: &Arc<Self>,
        actor: &ActorId,
        subject: &str,
        expected: Version,
        events: &[Event],
    ) -> Result<Resolution, StoreError> {
        let mut tip = self.tip(actor, subject).await?;
        if tip.version < expected.get() {
            // Behind what the caller read: only consecutive forged
            // envelopes at the tip can fool the tip read; read it all.
            tip = self.scan(actor).await?;
            self.cache.observe(actor, tip);
        }
        let latest = tip.version;
        if let Some(last) = events.last() {
            let want = last.version.get();
            if latest >= want {
                let stored_id = if latest == want {
                    self.next_msg(&self.events, subject, tip.seq)
                        .await?
                        .filter(|m| m.seq == tip.seq)
                        .and_then(|m| self.judge(actor, &m).ok())
                        .map(|e| e.id)
                } else {
                    // The valid event at `want`, read under the trust rule.
                    let mut reader = Reader::new(self.clone(), actor.clone(), last.version);
                    match Box::pin(reader.next()).await {
                        Some(Ok(e)) if e.version == last.version => Some(e.id),
                        Some(Err(e)) => return Err(e),
                        _ => None,
                    }
                };
                if stored_id == Some(last.id) {
                    tracing::debug!(namespace = %self.namespace, %actor, version = want, "append was already stored (retry)");
                    return Ok(Resolution::Stored(last.version));
                }
            }
        }
        if latest == expected.get() {
            return Ok(Resolution::Unchanged(tip));
        }
        Ok(Resolution::Conflict(Version::new(latest)))
    }

    /// Sends a request whose answer is a publish acknowledgement.
    pub(crate) async fn request_ack(
        &self,
        subject: &Subject,
        headers: HeaderMap,
        payload: Bytes,
        what: impl Fn() -> String,
    ) -> Result<Result<Ack, Refusal>, StoreError> {
        let request = Request::new()
            .headers(headers)
            .payload(payload)
            .timeout(Some(self.timeout));
        if self.client.connection_state() != async_nats::connection::State::Connected {
            // Known lost: fail now, before anything is sent.
            return Err(StoreError::Unavailable {
                message: format!("{}: not connected to NATS (nothing was sent)", what()),
                source: None,
            });
        }
        let lost = self.connection.lost(&self.client);
        let reply = tokio::select! {
            reply = self.client.send_request(subject.clone(), request) => {
                reply.map_err(|e| request_error(&what(), self.timeout, e))?
            }
            () = lost => {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "{}: the connection was lost while waiting for the acknowledgement (the write may have been stored; retrying the same events is safe)",
                        what()
                    ),
                    source: None,
                });
            }
        };
        if reply.status == Some(StatusCode::NO_RESPONDERS) {
            return Err(StoreError::Unavailable {
                message: format!("{}: no responders", what()),
                source: None,
            });
        }
        let ack: AckResponse = serde_json::from_slice(&reply.payload).map_err(|e| {
            crate::error::backend(format!("{}: unreadable acknowledgement", what()), e)
        })?;
        if let Some(e) = ack.error {
            return Ok(Err(Refusal::classify(e, &what())));
        }
        if ack.seq == 0 {
            return Err(StoreError::Backend {
                message: format!("{}: acknowledgement without a sequence", what()),
                source: None,
            });
        }
        Ok(Ok(Ack {
            seq: ack.seq,
            duplicate: ack.duplicate,
        }))
    }

    /// Publishes one event or an atomic batch with the expected last
    /// sequence of the actor's subject. The messages are consumed: their
    /// headers and bodies go to the client without a copy.
    pub(crate) async fn publish(
        &self,
        subject: &Subject,
        msgs: Vec<Encoded>,
        expected_seq: u64,
    ) -> Result<Result<Ack, Refusal>, StoreError> {
        let n = msgs.len();
        let (headers, body) = match <[Encoded; 1]>::try_from(msgs) {
            Ok([one]) => {
                let (mut h, body) = one.into_parts();
                h.insert(
                    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    HeaderValue::from(expected_seq),
                );
                (h, body)
            }
            // The staged messages of a batch in a future of their own, so
            // the common single-event append keeps a small future.
            Err(msgs) => match Box::pin(self.stage_batch(subject, msgs, expected_seq)).await? {
                Some(commit) => commit,
                None => {
                    return Err(StoreError::Backend {
                        message: format!("appending to {subject}: empty batch"),
                        source: None,
                    });
                }
            },
        };
        self.request_ack(subject, headers, body, || {
            if n == 1 {
                format!("appending to {subject}")
            } else {
                format!("appending a batch of {n} to {subject}")
            }
        })
        .await
    }

    /// Sends every message of a batch but the last without a reply (the
    /// server stages them) and returns the last one's headers (with the
    /// commit) and body: its reply is the batch's acknowledgement.
    async fn stage_batch(
        &self,
        subject: &Subject,
        msgs: Vec<Encoded>,
        expected: u64,
    ) -> Result<Option<(HeaderMap, Bytes)>, StoreError> {
        let n = msgs.len();
        let mut msgs = msgs.into_iter();
        let Some(last) = msgs.next_back() else {
            return Ok(None);
        };
        let mut id_buf = [0u8; uuid::fmt::Simple::LENGTH];
        // Built once, cloned per message.
        let batch_id = HeaderValue::from(&*uuid::Uuid::new_v4().simple().encode_lower(&mut id_buf));
        let what = || format!("appending a batch of {n} to {subject}");
        let batch_headers = |msg: Encoded, i: usize| {
            let (mut h, body) = msg.into_parts();
            h.insert(NATS_BATCH_ID, batch_id.clone());
            h.insert(NATS_BATCH_SEQUENCE, HeaderValue::from(i as u64 + 1));
            if i == 0 {
                h.insert(
                    NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                    HeaderValue::from(expected),
                );
            }
            (h, body)
        };
        for (i, msg) in msgs.enumerate() {
            let (h, body) = batch_headers(msg, i);
            self.client
                .publish_with_headers(subject.clone(), h, body)
                .await
                .map_err(|e| publish_error(&what(), e))?;
        }
        let (mut h, body) = batch_headers(last, n - 1);
        h.insert(NATS_BATCH_COMMIT, "1");
        Ok(Some((h, body)))
    }

    pub(crate) async fn append_checked(
        self: &Arc<Self>,
        actor: &ActorId,
        keys: &Keys,
        expected: Version,
        events: &[Event],
        msgs: Vec<Encoded>,
    ) -> Result<Version, StoreError> {
        let subject = &keys.subject;
        // The first attempt sends `msgs`; a later one encodes the events again.
        let mut msgs = Some(msgs);
        // The batch was validated: its versions run expected + 1, expected + 2, ….
        let last_version = events.last().map_or(expected, |e| e.version);
        let mut known = match self.cache.get(actor) {
            Some(t) => {
                self.metrics.cache_hits.increment(1);
                Some(t)
            }
            None if expected.is_zero() => Some(Tip::EMPTY),
            None => {
                self.metrics.cache_misses.increment(1);
                None
            }
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tip = match known {
                Some(t) if t.version == expected.get() => t,
                _ => match Box::pin(self.resolve(actor, subject, expected, events)).await? {
                    Resolution::Stored(v) => return Ok(v),
                    Resolution::Conflict(actual) => {
                        return Err(self.conflict(actor, expected, actual));
                    }
                    Resolution::Unchanged(t) => t,
                },
            };
            let batch = match msgs.take() {
                Some(m) => m,
                None => self.encode_batch(actor, &keys.scope, events)?,
            };
            match self.publish(subject, batch, tip.last).await {
                Ok(Ok(ack)) if !ack.duplicate => {
                    self.cache
                        .observe(actor, Tip::at(last_version.get(), ack.seq));
                    return Ok(last_version);
                }
                Ok(Ok(_duplicate)) => {
                    self.cache.invalidate(actor);
                    known = None;
                }
                Ok(Err(Refusal::Conflict(e))) => {
                    tracing::trace!(%actor, error = %e, "append refused; reading back");
                    self.cache.invalidate(actor);
                    known = None;
                    if e.err_code == codes::WRONG_LAST_SEQUENCE_IN_FLIGHT {
                        // Another write to the subject is being replicated:
                        // let it land before reading back, and do not retry in
                        // step with the other refused writers.
                        self.metrics.retries.increment(1);
                        tokio::time::sleep(APPEND_BACKOFF.delay(attempt)).await;
                    }
                }
                Ok(Err(Refusal::Retry(e))) => {
                    self.cache.invalidate(actor);
                    known = None;
                    if attempt >= MAX_ATTEMPTS {
                        return Err(api_error(&format!("appending to {subject}"), e));
                    }
                    self.metrics.retries.increment(1);
                    tracing::debug!(%actor, error = %e, attempt, "transient refusal; retrying");
                    tokio::time::sleep(APPEND_BACKOFF.delay(attempt)).await;
                }
                Ok(Err(Refusal::Fatal(e))) => return Err(e),
                Err(e) => {
                    self.cache.invalidate(actor);
                    return Err(e);
                }
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "appending to {subject}: still refused after {MAX_ATTEMPTS} attempts while the actor stayed at version {expected}"
                    ),
                    source: None,
                });
            }
        }
    }

    pub(crate) fn encode_batch(
        &self,
        actor: &ActorId,
        scope: &str,
        events: &[Event],
    ) -> Result<Vec<Encoded>, StoreError> {
        events
            .iter()
            .map(|e| {
                let enc = encode_event(e, scope, self.format)?;
                let size = enc.wire_len(CONTROL_HEADERS);
                if size > self.max_payload {
                    return Err(StoreError::TooLarge {
                        what: format!("event {} (version {}) of {actor}", e.id, e.version),
                        size,
                        max: self.max_payload,
                    });
                }
                Ok(enc)
            })
            .collect()
    }
}
