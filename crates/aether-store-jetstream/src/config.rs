//! Opening a store: the builder, stream layout and validation, and the server
//! version check.

use std::collections::BTreeSet;
use std::time::Duration;

use aether_core::{InvalidInput, NameError, NameKind, Namespace, StoreError, TrustPolicy};
use async_nats::Client;
use async_nats::jetstream::{self, stream};

use crate::envelope::EnvelopeFormat;
use crate::error::{IncompatibleStream, create_stream_error, get_stream_error, is_name_in_use};
use crate::store::JetStreamEventStore;
use crate::version::ServerVersion;

/// What the builder hands the store once the server is checked and both
/// streams exist and are valid: plain settings, no store internals.
pub(crate) struct Opened {
    /// The builder as it was when `open` began.
    pub(crate) settings: JetStreamStoreBuilder,
    pub(crate) client: Client,
    pub(crate) namespace: Namespace,
    pub(crate) events: stream::Stream,
    /// `<prefix>.<ns>.events`.
    pub(crate) events_subject: String,
    pub(crate) snapshots: stream::Stream,
    /// `<prefix>.<ns>.snapshots`.
    pub(crate) snapshots_subject: String,
    pub(crate) api_prefix: String,
    pub(crate) max_payload: usize,
    pub(crate) timeout: Duration,
    pub(crate) read_batch: usize,
    pub(crate) cache_capacity: usize,
    pub(crate) policy: TrustPolicy,
    pub(crate) format: EnvelopeFormat,
}

/// Where the streams keep their messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Storage {
    /// On disk (the default): survives server restarts.
    #[default]
    File,
    /// In memory: fast, lost when the server (or every replica) restarts.
    Memory,
}

impl Storage {
    fn to_nats(self) -> stream::StorageType {
        match self {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        }
    }
}

/// The oldest nats-server this store works with (atomic batch publish).
/// The same as [`ServerVersion::MIN_SUPPORTED`], as a tuple.
pub const MIN_SERVER_VERSION: (u32, u32, u32) = (
    ServerVersion::MIN_SUPPORTED.major,
    ServerVersion::MIN_SUPPORTED.minor,
    ServerVersion::MIN_SUPPORTED.patch,
);

/// Longest stream name accepted (it becomes a directory name on the server).
const MAX_STREAM_NAME: usize = 255;

/// Builds a [`JetStreamEventStore`]; see [`JetStreamEventStore::builder`].
///
/// Every setting has a default: namespace `default`, subject prefix `aether`,
/// file storage, one replica, a 2-minute duplicate window, a
/// [`DEFAULT_TIMEOUT`] request timeout, streams created when missing, foreign
/// messages skipped ([`TrustPolicy::SkipForeign`]).
#[derive(Debug, Clone)]
#[must_use]
pub struct JetStreamStoreBuilder {
    client: Client,
    namespace: Namespace,
    prefix: String,
    events_stream: Option<String>,
    snapshots_stream: Option<String>,
    storage: Storage,
    replicas: usize,
    duplicate_window: Duration,
    timeout: Duration,
    cache_capacity: usize,
    read_batch: usize,
    create_streams: bool,
    api_prefix: String,
    policy: TrustPolicy,
    format: EnvelopeFormat,
}

/// The default timeout of each request to the server: 5 s.
///
/// It bounds how long an operation waits for a server that neither answers
/// nor drops the connection (a frozen process, a network partition). It is
/// not what an append in flight waits when the connection is known to be
/// lost (a crashed server, a reset connection): that fails at once with
/// [`StoreError::Unavailable`]. On loopback, R1 and R3 appends take about
/// 0.2-1 ms and a 1000-event batch a few ms, and an R3 stream answers within
/// a second of losing its leader (no responders or a refusal, retried inside
/// the store), so 5 s leaves a wide margin over any answer a live server gives
/// while halving the wait of the former 10 s on a dead one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

impl JetStreamStoreBuilder {
    pub(crate) fn new(client: Client) -> Self {
        JetStreamStoreBuilder {
            client,
            namespace: Namespace::default(),
            prefix: "aether".to_owned(),
            events_stream: None,
            snapshots_stream: None,
            storage: Storage::File,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            timeout: DEFAULT_TIMEOUT,
            cache_capacity: 100_000,
            read_batch: 1000,
            create_streams: true,
            api_prefix: "$JS.API".to_owned(),
            policy: TrustPolicy::default(),
            format: EnvelopeFormat::default(),
        }
    }

    /// What the store does with a message on an actor's subject that is not a
    /// valid part of the actor's history (garbage, another program's
    /// MessagePack, an envelope of another actor or without `Nats-Msg-Id`, a
    /// repeated, backward or skipped version) and with a snapshot ahead of the
    /// events. [`TrustPolicy::SkipForeign`] (the default) skips, logs and
    /// counts it (`aether_foreign_messages_total`) and the actor keeps
    /// working; [`TrustPolicy::Strict`] fails the operation that meets it with
    /// [`StoreError::Corrupt`]. See [`aether_core::trust`].
    pub fn trust_policy(mut self, policy: TrustPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The envelope format events and snapshots are written in (default
    /// [`EnvelopeFormat::V2`]); both formats are always read. Set
    /// [`EnvelopeFormat::V1`] while processes that read only format 1 still
    /// read the same streams.
    pub fn envelope_format(mut self, format: EnvelopeFormat) -> Self {
        self.format = format;
        self
    }

    /// The namespace the store reads and writes (default `default`).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// The first subject token and (upper-cased) stream-name prefix
    /// (default `aether`): events go to `<prefix>.<ns>.events.<actor>` in
    /// stream `<PREFIX>_EVENTS_<ns>`. One token of `A-Z a-z 0-9 _ -`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Overrides the events stream's name (the seeds' `stream_name`); the
    /// snapshots stream is then `<name>_SNAPSHOTS` unless set too.
    pub fn events_stream(mut self, name: impl Into<String>) -> Self {
        self.events_stream = Some(name.into());
        self
    }

    /// Overrides the snapshots stream's name.
    pub fn snapshots_stream(mut self, name: impl Into<String>) -> Self {
        self.snapshots_stream = Some(name.into());
        self
    }

    /// File (default) or memory storage for newly created streams; an
    /// existing stream must match.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Replicas of newly created streams (1, 3 or 5; default 1); an existing
    /// stream must match.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The server's duplicate-detection window for event ids (default 2 min):
    /// a retry within it is recognised by `Nats-Msg-Id` as well as by the
    /// store's own read-back.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Timeout of each request to the server (default [`DEFAULT_TIMEOUT`],
    /// 5 s), and how long `open` waits for a client that has not connected
    /// yet. A read interrupted by a transient failure resumes for up to this
    /// long too.
    ///
    /// How fast a *frozen* server (one that keeps the TCP connection open but
    /// answers nothing) is noticed depends on the client's ping interval
    /// (`async_nats::ConnectOptions::ping_interval`, 60 s by default): the
    /// client declares the connection dead after two unanswered pings, so
    /// until then every request waits out this timeout. Measured here with a
    /// paused server: about 2-3 min of time-outs with the default interval, a
    /// few seconds with a 1-2 s one, at the cost of one small PING per interval
    /// per connection.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Actors whose latest version and stream sequence are cached (default
    /// 100 000; 0 disables the cache). When full, the cache is cleared.
    pub fn cache_capacity(mut self, actors: usize) -> Self {
        self.cache_capacity = actors;
        self
    }

    /// Events fetched per batched direct-get request by reads (default 1000).
    pub fn read_batch(mut self, events: usize) -> Self {
        self.read_batch = events.clamp(1, 10_000);
        self
    }

    /// Whether `open` creates missing streams (default `true`). With `false`
    /// the streams must exist (created by operations tooling) and are only
    /// validated.
    pub fn create_streams(mut self, create: bool) -> Self {
        self.create_streams = create;
        self
    }

    /// The JetStream API prefix (default `$JS.API`; `$JS.<domain>.API` for a
    /// JetStream domain).
    pub fn api_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.api_prefix = prefix.into();
        self
    }

    /// Forgets explicit stream names: the streams are named from the prefix
    /// and the namespace.
    pub(crate) fn default_stream_names(mut self) -> Self {
        self.events_stream = None;
        self.snapshots_stream = None;
        self
    }

    /// Checks the server, creates or validates both streams and returns the store.
    ///
    /// # Errors
    /// * [`StoreError::Unsupported`] if the server is older than 2.12, has no
    ///   JetStream or no headers;
    /// * [`StoreError::InvalidInput`] / [`StoreError::InvalidName`] for a bad
    ///   prefix, stream name or a namespace too long to name a stream;
    /// * [`StoreError::Backend`] with an [`IncompatibleStream`] source if a
    ///   stream exists with a configuration the store cannot use, or is
    ///   missing and `create_streams(false)`;
    /// * [`StoreError::Unavailable`] / [`StoreError::Timeout`] when the
    ///   server cannot be reached, including a client built with
    ///   `retry_on_initial_connect` that has not connected within the
    ///   request timeout ("not connected yet"; transient).
    pub async fn open(self) -> Result<JetStreamEventStore, StoreError> {
        let settings = self.clone();
        let info = self.connected_server_info().await?;
        check_server(&info)?;
        validate_token("prefix", &self.prefix, 64)?;
        let ns = self.namespace.encoded();
        let upper = self.prefix.to_ascii_uppercase();
        let events_name = self
            .events_stream
            .clone()
            .unwrap_or_else(|| format!("{upper}_EVENTS_{ns}"));
        let snapshots_name = match (&self.snapshots_stream, &self.events_stream) {
            (Some(s), _) => s.clone(),
            (None, Some(e)) => format!("{e}_SNAPSHOTS"),
            (None, None) => format!("{upper}_SNAPSHOTS_{ns}"),
        };
        for name in [&events_name, &snapshots_name] {
            validate_stream_name(name, &self.namespace)?;
        }
        if !matches!(self.replicas, 1..=5) {
            return Err(InvalidInput::Other(format!(
                "replicas must be 1 to 5, not {}",
                self.replicas
            ))
            .into());
        }
        let events_subject = format!("{}.{ns}.events", self.prefix);
        let snapshots_subject = format!("{}.{ns}.snapshots", self.prefix);

        let js = jetstream::ContextBuilder::new()
            .timeout(self.timeout)
            .api_prefix(self.api_prefix.clone())
            .build(self.client.clone());

        let events_cfg = stream::Config {
            name: events_name.clone(),
            description: Some(format!("Aether events of namespace {}", self.namespace)),
            subjects: vec![format!("{events_subject}.*")],
            storage: self.storage.to_nats(),
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            allow_direct: true,
            allow_atomic_publish: true,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        };
        let snapshots_cfg = stream::Config {
            name: snapshots_name.clone(),
            description: Some(format!("Aether snapshots of namespace {}", self.namespace)),
            subjects: vec![format!("{snapshots_subject}.*")],
            storage: self.storage.to_nats(),
            num_replicas: self.replicas,
            max_messages_per_subject: 1,
            allow_direct: true,
            ..Default::default()
        };
        let events = self.ensure_stream(&js, events_cfg, Kind::Events).await?;
        let snapshots = self
            .ensure_stream(&js, snapshots_cfg, Kind::Snapshots)
            .await?;

        let store = JetStreamEventStore::from_opened(Opened {
            settings,
            client: self.client,
            namespace: self.namespace,
            events,
            events_subject,
            snapshots,
            snapshots_subject,
            api_prefix: self.api_prefix,
            max_payload: info.max_payload,
            timeout: self.timeout,
            read_batch: self.read_batch,
            cache_capacity: self.cache_capacity,
            policy: self.policy,
            format: self.format,
        });
        tracing::debug!(
            namespace = %aether_core::EventStore::namespace(&store),
            events = %store.events_stream_name(),
            snapshots = %store.snapshots_stream_name(),
            server = %info.version,
            "opened JetStream event store"
        );
        Ok(store)
    }

    /// The server's INFO, waiting (up to the request timeout) for a client
    /// that has not connected yet: before its first connection a client
    /// built with `retry_on_initial_connect` knows nothing of the server.
    async fn connected_server_info(&self) -> Result<async_nats::ServerInfo, StoreError> {
        use async_nats::connection::State;
        let not_yet = |detail: &str| StoreError::Unavailable {
            message: format!(
                "opening the JetStream store: the NATS client is not connected yet ({detail}); retry when it is"
            ),
            source: None,
        };
        if self.client.connection_state() != State::Connected {
            // A flush is answered only once a connection is up.
            match tokio::time::timeout(self.timeout, self.client.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(StoreError::unavailable(
                        "opening the JetStream store: the NATS client is not connected",
                        e,
                    ));
                }
                Err(_) => return Err(not_yet(&format!("waited {:?}", self.timeout))),
            }
        }
        let info = self.client.server_info();
        if info.version.is_empty() {
            return Err(not_yet("no INFO received from the server"));
        }
        Ok(info)
    }

    async fn ensure_stream(
        &self,
        js: &jetstream::Context,
        want: stream::Config,
        kind: Kind,
    ) -> Result<stream::Stream, StoreError> {
        let what = format!("opening stream {}", want.name);
        match js.get_stream(&want.name).await {
            Ok(s) => {
                validate(&want, &s.cached_info().config, kind)?;
                return Ok(s);
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(get_stream_error(&what, e)),
        }
        if !self.create_streams {
            return Err(crate::error::backend(
                what,
                IncompatibleStream {
                    stream: want.name.clone(),
                    problems: vec!["the stream does not exist and create_streams is off".into()],
                },
            ));
        }
        match js.create_stream(want.clone()).await {
            Ok(s) => {
                tracing::info!(stream = %want.name, replicas = want.num_replicas, "created stream");
                validate(&want, &s.cached_info().config, kind)?;
                Ok(s)
            }
            // Created concurrently by another store with another config.
            Err(e) if is_name_in_use(&e) => {
                let s = js
                    .get_stream(&want.name)
                    .await
                    .map_err(|e| get_stream_error(&what, e))?;
                validate(&want, &s.cached_info().config, kind)?;
                Ok(s)
            }
            Err(e) => Err(create_stream_error(&what, e)),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Events,
    Snapshots,
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(api)
        if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// Compares an existing stream's configuration with what the store needs.
fn validate(want: &stream::Config, have: &stream::Config, kind: Kind) -> Result<(), StoreError> {
    let mut problems = Vec::new();
    let want_subjects: BTreeSet<_> = want.subjects.iter().collect();
    let have_subjects: BTreeSet<_> = have.subjects.iter().collect();
    if want_subjects != have_subjects {
        problems.push(format!(
            "subjects are {:?}, need {:?}",
            have.subjects, want.subjects
        ));
    }
    if have.retention != stream::RetentionPolicy::Limits {
        problems.push(format!("retention is {:?}, need limits", have.retention));
    }
    if have.storage != want.storage {
        problems.push(format!(
            "storage is {:?}, configured {:?}",
            have.storage, want.storage
        ));
    }
    if have.num_replicas != want.num_replicas {
        problems.push(format!(
            "replicas are {}, configured {}",
            have.num_replicas, want.num_replicas
        ));
    }
    if !have.allow_direct {
        problems.push("allow_direct is false, need true".into());
    }
    if have.sealed || have.mirror.is_some() {
        problems.push("the stream is sealed or a mirror".into());
    }
    match kind {
        Kind::Events => {
            if !have.allow_atomic_publish {
                problems.push("allow_atomic is false, need true (atomic batch append)".into());
            }
            if !have.deny_delete || !have.deny_purge {
                problems
                    .push("deny_delete and deny_purge must be true (events are immutable)".into());
            }
            if have.max_messages_per_subject > 0
                || have.max_messages > 0
                || have.max_bytes > 0
                || !have.max_age.is_zero()
            {
                problems.push("limits (max_msgs, max_msgs_per_subject, max_bytes, max_age) would discard events".into());
            }
            if have.duplicate_window != want.duplicate_window {
                tracing::warn!(
                    stream = %have.name,
                    have = ?have.duplicate_window,
                    configured = ?want.duplicate_window,
                    "the events stream's duplicate window differs from the configured one"
                );
            }
        }
        Kind::Snapshots => {
            if have.max_messages_per_subject != 1 {
                problems.push(format!(
                    "max_msgs_per_subject is {}, need 1 (one snapshot per actor)",
                    have.max_messages_per_subject
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let e = IncompatibleStream {
            stream: have.name.clone(),
            problems,
        };
        Err(crate::error::backend(e.to_string(), e))
    }
}

fn check_server(info: &async_nats::ServerInfo) -> Result<(), StoreError> {
    let min = ServerVersion::MIN_SUPPORTED;
    match ServerVersion::parse(&info.version) {
        Some(v) if v >= min => {}
        _ => {
            return Err(StoreError::Unsupported(format!(
                "nats-server {} at {}:{} is too old: aether-store-jetstream needs nats-server {min} or newer (atomic batch publish)",
                if info.version.is_empty() {
                    "(unknown version)"
                } else {
                    &info.version
                },
                info.host,
                info.port
            )));
        }
    }
    if !info.headers {
        return Err(StoreError::Unsupported(format!(
            "nats-server {} does not support headers, which the store needs",
            info.version
        )));
    }
    if !info.jetstream {
        return Err(StoreError::Unsupported(format!(
            "JetStream is not enabled on nats-server {} at {}:{} (start it with -js)",
            info.server_name, info.host, info.port
        )));
    }
    Ok(())
}

fn validate_token(what: &str, token: &str, max: usize) -> Result<(), StoreError> {
    if token.is_empty()
        || token.len() > max
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(InvalidInput::Other(format!(
            "{what} {:?} must be 1-{max} characters of A-Z a-z 0-9 _ -",
            token.chars().take(80).collect::<String>()
        ))
        .into());
    }
    Ok(())
}

fn validate_stream_name(name: &str, ns: &Namespace) -> Result<(), StoreError> {
    validate_token("stream name", name, usize::MAX)?;
    if name.len() > MAX_STREAM_NAME {
        return Err(NameError {
            kind: NameKind::Namespace,
            name: ns.as_str().chars().take(80).collect(),
            reason: format!(
                "the stream name {}… would be {} bytes, the limit is {MAX_STREAM_NAME}; use a shorter namespace or prefix",
                &name[..32],
                name.len()
            ),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_servers_are_refused_with_both_versions_named() {
        let mut info = async_nats::ServerInfo {
            version: "2.9.10".into(),
            headers: true,
            jetstream: true,
            ..Default::default()
        };
        match check_server(&info) {
            Err(StoreError::Unsupported(m)) => {
                assert!(m.contains("2.9.10") && m.contains("2.12.0"), "{m}");
            }
            other => panic!("expected Unsupported, got {other:?}"),
        }
        info.version = "2.12.0".into();
        assert!(check_server(&info).is_ok());
        info.jetstream = false;
        assert!(matches!(
            check_server(&info),
            Err(StoreError::Unsupported(_))
        ));
        info.jetstream = true;
        info.version = String::new();
        assert!(matches!(
            check_server(&info),
            Err(StoreError::Unsupported(_))
        ));
    }

    #[test]
    fn stream_names_are_checked() {
        let ns = Namespace::default();
        assert!(validate_stream_name("AETHER_EVENTS_x", &ns).is_ok());
        assert!(validate_stream_name("a.b", &ns).is_err());
        assert!(validate_stream_name("a b", &ns).is_err());
        assert!(validate_stream_name(&"x".repeat(256), &ns).is_err());
        assert!(validate_token("prefix", "aether", 64).is_ok());
        assert!(validate_token("prefix", "a.b", 64).is_err());
        assert!(validate_token("prefix", "", 64).is_err());
    }
}
