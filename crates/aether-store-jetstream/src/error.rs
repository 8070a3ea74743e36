//! How async-nats failures become [`StoreError`]s, and the crate's own error
//! types kept as their sources.

use std::time::Duration;

use aether_core::{BoxError, StoreError};
use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::stream::{DirectGetErrorKind, LastRawMessageErrorKind};
use async_nats::{RequestErrorKind, StatusCode};
use serde::Deserialize;

/// An existing stream whose configuration the store cannot work with (kept as
/// the source of a [`StoreError::Backend`] from `open`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {stream} exists with a configuration Aether cannot use: {}", problems.join("; "))]
pub struct IncompatibleStream {
    /// The stream's name.
    pub stream: String,
    /// Every mismatch found, e.g. `allow_atomic is false, need true`.
    pub problems: Vec<String>,
}

/// An error answer of the JetStream API (kept as the source of the
/// [`StoreError`] it maps to).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, thiserror::Error)]
#[error("JetStream error {err_code} (status {code}): {description}")]
pub struct ApiError {
    /// HTTP-like status code.
    #[serde(default)]
    pub code: u16,
    /// JetStream error code (e.g. 10071, wrong last sequence).
    #[serde(default)]
    pub err_code: u64,
    /// The server's description.
    #[serde(default)]
    pub description: String,
}

impl ApiError {
    fn from_js(api: &async_nats::jetstream::Error) -> Self {
        ApiError {
            code: u16::try_from(api.code()).unwrap_or(0),
            err_code: api.error_code().0,
            description: api.to_string(),
        }
    }
}

/// JetStream error codes the store reacts to.
pub(crate) mod codes {
    pub(crate) const NO_SUITABLE_PEERS: u64 = 10005;
    pub(crate) const WRONG_LAST_MSG_ID: u64 = 10070;
    pub(crate) const WRONG_LAST_SEQUENCE: u64 = 10071;
    pub(crate) const CLUSTER_NOT_AVAILABLE: u64 = 10008;
    pub(crate) const MESSAGE_EXCEEDS_MAXIMUM: u64 = 10054;
    pub(crate) const STREAM_NOT_FOUND: u64 = 10059;
    pub(crate) const STREAM_NAME_EXIST: u64 = 10058;
    pub(crate) const DUPLICATE_MESSAGE_CONFLICT: u64 = 10158;
    pub(crate) const EXPECTED_LAST_SEQ_NOT_READY: u64 = 10163;
    pub(crate) const WRONG_LAST_SEQUENCE_IN_FLIGHT: u64 = 10164;
    pub(crate) const TOO_MANY_REQUESTS: u64 = 10167;
    pub(crate) const ATOMIC_DISABLED: u64 = 10174;
    pub(crate) const ATOMIC_INCOMPLETE_BATCH: u64 = 10176;
    pub(crate) const ATOMIC_UNSUPPORTED_HEADER: u64 = 10177;
    pub(crate) const ATOMIC_TOO_LARGE_BATCH: u64 = 10199;
    pub(crate) const ATOMIC_DUPLICATE_MESSAGE: u64 = 10201;
    pub(crate) const MEMBER_CHANGE_IN_FLIGHT: u64 = 10202;
}

/// What a refused publish means for the append that sent it.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The expected sequence did not hold, or the message id was seen: read
    /// back and decide between "already stored" and a version conflict.
    Conflict(ApiError),
    /// A transient refusal: nothing was stored, the same publish may be sent again.
    Retry(ApiError),
    /// A final error.
    Fatal(StoreError),
}

impl Refusal {
    pub(crate) fn classify(e: ApiError, what: &str) -> Self {
        match e.err_code {
            codes::WRONG_LAST_SEQUENCE
            | codes::WRONG_LAST_SEQUENCE_IN_FLIGHT
            | codes::WRONG_LAST_MSG_ID
            | codes::DUPLICATE_MESSAGE_CONFLICT
            | codes::ATOMIC_DUPLICATE_MESSAGE => Refusal::Conflict(e),
            codes::EXPECTED_LAST_SEQ_NOT_READY
            | codes::ATOMIC_INCOMPLETE_BATCH
            | codes::TOO_MANY_REQUESTS
            | codes::CLUSTER_NOT_AVAILABLE
            | codes::MEMBER_CHANGE_IN_FLIGHT => Refusal::Retry(e),
            _ => Refusal::Fatal(api_error(what, e)),
        }
    }
}

/// Maps a JetStream API error answer onto a [`StoreError`].
pub(crate) fn api_error(what: &str, e: ApiError) -> StoreError {
    match e.err_code {
        codes::ATOMIC_DISABLED | codes::ATOMIC_UNSUPPORTED_HEADER => StoreError::Unsupported(
            format!("{what}: {e} (does the stream allow atomic publish?)"),
        ),
        codes::MESSAGE_EXCEEDS_MAXIMUM | codes::ATOMIC_TOO_LARGE_BATCH => StoreError::backend(
            format!("{what}: the server refused the size of the message or batch"),
            e,
        ),
        codes::STREAM_NOT_FOUND => StoreError::unavailable(format!("{what}: stream not found"), e),
        // Too few JetStream peers are up (or known yet) to place the
        // replicas: a cluster that is forming or has lost nodes.
        codes::NO_SUITABLE_PEERS
        | codes::CLUSTER_NOT_AVAILABLE
        | codes::TOO_MANY_REQUESTS
        | codes::EXPECTED_LAST_SEQ_NOT_READY
        | codes::ATOMIC_INCOMPLETE_BATCH
        | codes::MEMBER_CHANGE_IN_FLIGHT => StoreError::unavailable(what.to_owned(), e),
        _ if e.code == 503 => StoreError::unavailable(what.to_owned(), e),
        _ => StoreError::backend(what.to_owned(), e),
    }
}

/// Maps a failed core request.
pub(crate) fn request_error(
    what: &str,
    timeout: Duration,
    e: async_nats::RequestError,
) -> StoreError {
    match e.kind() {
        RequestErrorKind::TimedOut => {
            StoreError::Timeout(format!("{what}: no reply within {timeout:?}"))
        }
        RequestErrorKind::NoResponders => StoreError::unavailable(
            format!(
                "{what}: no responders (stream offline, JetStream disabled, or a leader election in progress)"
            ),
            e,
        ),
        RequestErrorKind::MaxPayloadExceeded => {
            StoreError::backend(format!("{what}: message over max_payload"), e)
        }
        RequestErrorKind::InvalidSubject => {
            StoreError::backend(format!("{what}: invalid subject"), e)
        }
        RequestErrorKind::Other => StoreError::unavailable(format!("{what}: connection failed"), e),
    }
}

/// Maps a failed fire-and-forget publish (the first messages of a batch).
pub(crate) fn publish_error(what: &str, e: async_nats::PublishError) -> StoreError {
    StoreError::unavailable(format!("{what}: could not send"), e)
}

/// Maps a failed subscribe.
pub(crate) fn subscribe_error(what: &str, e: async_nats::SubscribeError) -> StoreError {
    StoreError::unavailable(format!("{what}: could not subscribe"), e)
}

/// Whether a boxed async-nats source is (or wraps) a timeout.
fn is_timeout(source: Option<&(dyn std::error::Error + 'static)>) -> bool {
    let mut cur = source;
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<async_nats::RequestError>() {
            return r.kind() == RequestErrorKind::TimedOut;
        }
        if let Some(r) = e.downcast_ref::<async_nats::jetstream::context::RequestError>() {
            return r.kind() == async_nats::jetstream::context::RequestErrorKind::TimedOut;
        }
        cur = e.source();
    }
    false
}

/// Maps a failed direct get (`None` for "no such message").
pub(crate) fn direct_get_error(
    what: &str,
    timeout: Duration,
    e: async_nats::jetstream::stream::DirectGetError,
) -> Option<StoreError> {
    match e.kind() {
        DirectGetErrorKind::NotFound => None,
        DirectGetErrorKind::TimedOut => Some(StoreError::Timeout(format!(
            "{what}: no reply within {timeout:?}"
        ))),
        DirectGetErrorKind::Request => {
            let timed_out = is_timeout(std::error::Error::source(&e));
            Some(if timed_out {
                StoreError::Timeout(format!("{what}: no reply within {timeout:?}"))
            } else {
                StoreError::unavailable(format!("{what}: request failed"), e)
            })
        }
        DirectGetErrorKind::ErrorResponse(status, _) if status == StatusCode::NO_RESPONDERS => {
            Some(StoreError::unavailable(
                format!("{what}: no responders (is allow_direct set?)"),
                e,
            ))
        }
        _ => Some(StoreError::backend(what.to_owned(), e)),
    }
}

/// Maps a failed leader (`STREAM.MSG.GET`) read (`None` for "no such message").
pub(crate) fn raw_get_error(
    what: &str,
    timeout: Duration,
    e: async_nats::jetstream::stream::LastRawMessageError,
) -> Option<StoreError> {
    match e.kind() {
        LastRawMessageErrorKind::NoMessageFound => None,
        LastRawMessageErrorKind::JetStream(api) => Some(api_error(what, ApiError::from_js(&api))),
        _ if is_timeout(std::error::Error::source(&e)) => Some(StoreError::Timeout(format!(
            "{what}: no reply within {timeout:?}"
        ))),
        _ => Some(StoreError::unavailable(
            format!("{what}: request failed"),
            e,
        )),
    }
}

/// Maps a failed stream lookup.
pub(crate) fn get_stream_error(
    what: &str,
    e: async_nats::jetstream::context::GetStreamError,
) -> StoreError {
    match e.kind() {
        GetStreamErrorKind::JetStream(api) => api_error(what, ApiError::from_js(&api)),
        GetStreamErrorKind::Request => {
            StoreError::unavailable(format!("{what}: request failed"), e)
        }
        _ => StoreError::backend(what.to_owned(), e),
    }
}

/// Maps a failed stream creation.
pub(crate) fn create_stream_error(
    what: &str,
    e: async_nats::jetstream::context::CreateStreamError,
) -> StoreError {
    match e.kind() {
        CreateStreamErrorKind::JetStream(api) => api_error(what, ApiError::from_js(&api)),
        CreateStreamErrorKind::TimedOut => StoreError::Timeout(what.to_owned()),
        CreateStreamErrorKind::JetStreamUnavailable => {
            StoreError::unavailable(format!("{what}: JetStream unavailable"), e)
        }
        _ => StoreError::backend(what.to_owned(), e),
    }
}

/// Whether a create error says the stream already exists with another config.
pub(crate) fn is_name_in_use(e: &async_nats::jetstream::context::CreateStreamError) -> bool {
    matches!(e.kind(), CreateStreamErrorKind::JetStream(api) if api.error_code().0 == codes::STREAM_NAME_EXIST)
}

/// Wraps any error as the source of a [`StoreError::Backend`].
pub(crate) fn backend(message: impl Into<String>, source: impl Into<BoxError>) -> StoreError {
    StoreError::backend(message, source)
}
