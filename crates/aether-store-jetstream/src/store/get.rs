//! Single-message gets: the last, next and previous message of a subject.

use aether_core::{ActorId, Event, ForeignReason, StoreError, Version, report_foreign};
use async_nats::{HeaderMap, Request};
use bytes::Bytes;
use serde::Serialize;

use super::{Inner, StreamHandle};
use crate::envelope::{Origin, decode_event, names, read_event_version};
use crate::error::{direct_get_error, raw_get_error, request_error};

/// One stored message as read back.
pub(crate) struct RawMsg {
    pub(crate) seq: u64,
    pub(crate) headers: Option<HeaderMap>,
    pub(crate) payload: Bytes,
}

impl From<async_nats::jetstream::message::StreamMessage> for RawMsg {
    fn from(m: async_nats::jetstream::message::StreamMessage) -> Self {
        RawMsg {
            seq: m.sequence,
            headers: Some(m.headers),
            payload: m.payload,
        }
    }
}

/// A get's answer as an optional message: `map` turns its error into the
/// store's, or into `None` for "no such message".
pub(crate) fn found<M: Into<RawMsg>, E>(
    got: Result<M, E>,
    map: impl FnOnce(E) -> Option<StoreError>,
) -> Result<Option<RawMsg>, StoreError> {
    match got {
        Ok(m) => Ok(Some(m.into())),
        Err(e) => map(e).map_or(Ok(None), Err),
    }
}

impl Inner {
    /// The last message of `subject`, read so that it reflects every
    /// acknowledged write (leader read with more than one replica).
    pub(crate) async fn last_msg(
        &self,
        h: &StreamHandle,
        subject: &str,
    ) -> Result<Option<RawMsg>, StoreError> {
        let what = || format!("reading the last message of {subject}");
        if h.direct_is_coherent() {
            found(h.stream.direct_get_last_for_subject(subject).await, |e| {
                direct_get_error(&what(), self.timeout, e)
            })
        } else {
            found(
                h.stream.get_last_raw_message_by_subject(subject).await,
                |e| raw_get_error(&what(), self.timeout, e),
            )
        }
    }

    /// The first message of `subject` at or after stream sequence `seq`.
    pub(crate) async fn next_msg(
        &self,
        h: &StreamHandle,
        subject: &str,
        seq: u64,
    ) -> Result<Option<RawMsg>, StoreError> {
        let what = || format!("reading {subject} from sequence {seq}");
        if h.direct_is_coherent() {
            found(
                h.stream
                    .direct_get_next_for_subject(subject, Some(seq))
                    .await,
                |e| direct_get_error(&what(), self.timeout, e),
            )
        } else {
            found(
                h.stream
                    .raw_message_builder()
                    .sequence(seq)
                    .next_by_subject(subject)
                    .send()
                    .await,
                |e| raw_get_error(&what(), self.timeout, e),
            )
        }
    }

    /// The version in the envelope of `m`, a message of the events stream.
    pub(crate) fn event_version(&self, m: &RawMsg) -> Result<Version, aether_core::CodecError> {
        read_event_version(
            &m.payload,
            Origin {
                stream: &self.events.name,
                sequence: m.seq,
            },
        )
    }

    /// Decodes `m`, a message on `actor`'s subject, or says why it is foreign.
    pub(crate) fn judge(&self, actor: &ActorId, m: &RawMsg) -> Result<Event, ForeignReason> {
        decode_event(
            m.headers.as_ref(),
            &m.payload,
            actor,
            Origin {
                stream: &self.events.name,
                sequence: m.seq,
            },
        )
    }

    /// Reports a foreign message of `actor` at `seq` under the store's policy.
    pub(crate) fn foreign(
        &self,
        actor: &ActorId,
        seq: u64,
        reason: ForeignReason,
    ) -> Result<(), StoreError> {
        report_foreign(&self.namespace, actor, seq, reason, self.policy)
    }

    /// The last message of `subject` before stream sequence `before` (a
    /// batched direct get of the last message per subject up to a sequence,
    /// server 2.11+).
    pub(crate) async fn prev_msg(
        &self,
        subject: &str,
        before: u64,
    ) -> Result<Option<RawMsg>, StoreError> {
        if before <= 1 {
            return Ok(None);
        }
        #[derive(Serialize)]
        struct LastUpTo<'a> {
            multi_last: [&'a str; 1],
            up_to_seq: u64,
        }
        let what = || format!("reading {subject} before sequence {before}");
        let payload = serde_json::to_vec(&LastUpTo {
            multi_last: [subject],
            up_to_seq: before - 1,
        })
        .map_err(|e| crate::error::backend(what(), e))?;
        let request = Request::new()
            .payload(Bytes::from(payload))
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(self.direct_get_subject.clone(), request)
            .await
            .map_err(|e| request_error(&what(), self.timeout, e))?;
        if reply.status.is_some() {
            // 204 end of batch or 404: nothing before it.
            return Ok(None);
        }
        let seq = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(names::NATS_SEQUENCE))
            .and_then(|v| v.as_str().parse::<u64>().ok());
        match seq {
            Some(seq) if seq < before => Ok(Some(RawMsg {
                seq,
                headers: reply.headers,
                payload: reply.payload,
            })),
            _ => Err(StoreError::Backend {
                message: format!("{}: a reply without a valid Nats-Sequence", what()),
                source: None,
            }),
        }
    }
}
