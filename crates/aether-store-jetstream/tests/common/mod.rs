//! Shared helpers of the JetStream store's integration tests.
//!
//! A test binary shares one server (or one cluster) among the tests that run
//! at the same time: each test holds an `Arc`, the last one to finish drops it
//! and so kills the processes (a `static` holding the server itself would
//! never be dropped and would leak the processes).

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use aether_core::testkit::conformance::sized_event;
use aether_core::testkit::{ForeignRecord, StoreFactory};
use aether_core::{ActorId, ActorSnapshot, Event, Namespace, TrustPolicy};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsCluster, NatsServer, connect};
use async_nats::HeaderMap;
use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

static SERVER: Mutex<Weak<NatsServer>> = Mutex::const_new(Weak::new());
static CLUSTER: Mutex<Weak<NatsCluster>> = Mutex::const_new(Weak::new());

/// The server shared by the tests running now (started if none is).
pub async fn shared_server() -> Arc<NatsServer> {
    let mut slot = SERVER.lock().await;
    if let Some(s) = slot.upgrade() {
        return s;
    }
    let s = Arc::new(NatsServer::start().await);
    *slot = Arc::downgrade(&s);
    s
}

/// The 3-node cluster shared by the tests running now (started if none is).
pub async fn shared_cluster() -> Arc<NatsCluster> {
    let mut slot = CLUSTER.lock().await;
    if let Some(c) = slot.upgrade() {
        return c;
    }
    let c = Arc::new(NatsCluster::start(3).await);
    *slot = Arc::downgrade(&c);
    c
}

/// Keeps the server alive as long as the factory (and so the test) lives.
pub enum Backend {
    Server(Arc<NatsServer>),
    Cluster(Arc<NatsCluster>),
}

/// Opens one store per namespace on a shared server or cluster.
pub struct JetStreamFactory {
    pub backend: Backend,
    pub client: async_nats::Client,
    pub replicas: usize,
}

impl JetStreamFactory {
    /// R1 streams on a single server.
    pub async fn r1() -> Self {
        let server = shared_server().await;
        let client = connect(&server.url()).await;
        JetStreamFactory {
            backend: Backend::Server(server),
            client,
            replicas: 1,
        }
    }

    /// R3 streams on the 3-node cluster.
    pub async fn r3() -> Self {
        let cluster = shared_cluster().await;
        let client = connect(&cluster.urls()).await;
        JetStreamFactory {
            backend: Backend::Cluster(cluster),
            client,
            replicas: 3,
        }
    }
}

/// Serializes bytes as MessagePack `bin`.
struct Bin<'a>(&'a [u8]);

impl Serialize for Bin<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The documented event envelope, written independently of the store (as
/// another program would): `{aether, type, actor, version, ts, data}`.
pub fn forged_envelope(e: &Event) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        aether: u8,
        #[serde(rename = "type")]
        event_type: &'a str,
        actor: &'a str,
        version: u64,
        ts: String,
        meta: BTreeMap<String, String>,
        data: Bin<'a>,
    }
    rmp_serde::to_vec_named(&Envelope {
        aether: 1,
        event_type: &e.event_type,
        actor: e.actor_id.as_str(),
        version: e.version.get(),
        ts: e.timestamp.format(&Rfc3339).expect("timestamp"),
        meta: e.metadata.custom.clone(),
        data: Bin(&e.data),
    })
    .expect("encode a forged envelope")
}

/// The documented snapshot envelope `{aether, version, ts, schema, state}`.
pub fn forged_snapshot(s: &ActorSnapshot) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        aether: u8,
        version: u64,
        ts: String,
        schema: u32,
        state: Bin<'a>,
    }
    rmp_serde::to_vec_named(&Envelope {
        aether: 1,
        version: s.version.get(),
        ts: s.timestamp.format(&Rfc3339).expect("timestamp"),
        schema: s.schema_version,
        state: Bin(&s.state),
    })
    .expect("encode a forged snapshot")
}

/// Publishes `payload` (with `headers`) on `subject` with a plain JetStream
/// publish, bypassing the store, and waits for the acknowledgement.
pub async fn raw_publish(
    client: &async_nats::Client,
    subject: String,
    headers: HeaderMap,
    payload: Vec<u8>,
) -> u64 {
    let js = async_nats::jetstream::new(client.clone());
    js.publish_with_headers(subject.clone(), headers, payload.into())
        .await
        .unwrap_or_else(|e| panic!("raw publish to {subject}: {e}"))
        .await
        .unwrap_or_else(|e| panic!("raw publish to {subject}: no ack: {e}"))
        .sequence
}

impl StoreFactory for JetStreamFactory {
    type Store = JetStreamEventStore;

    async fn open_with_policy(
        &self,
        namespace: Namespace,
        policy: TrustPolicy,
    ) -> JetStreamEventStore {
        JetStreamEventStore::builder(self.client.clone())
            .namespace(namespace)
            .replicas(self.replicas)
            .trust_policy(policy)
            .open()
            .await
            .expect("open the JetStream store")
    }

    /// Raw JetStream publishes on the actor's subject (or its snapshot
    /// subject), as any client allowed to publish there could.
    async fn inject_foreign(
        &self,
        store: &JetStreamEventStore,
        actor: &ActorId,
        record: ForeignRecord,
    ) {
        match record {
            ForeignRecord::Garbage(bytes) => {
                raw_publish(
                    &self.client,
                    store.event_subject(actor),
                    HeaderMap::new(),
                    bytes,
                )
                .await;
            }
            ForeignRecord::Forged(e) => {
                let mut h = HeaderMap::new();
                h.insert("Nats-Msg-Id", e.id.to_string().as_str());
                raw_publish(
                    &self.client,
                    store.event_subject(actor),
                    h,
                    forged_envelope(&e),
                )
                .await;
            }
            ForeignRecord::SnapshotAhead(s) => {
                raw_publish(
                    &self.client,
                    store.snapshot_subject(actor),
                    HeaderMap::new(),
                    forged_snapshot(&s),
                )
                .await;
            }
            other => panic!("no way to inject {other:?} on JetStream"),
        }
    }

    /// The largest payload of `sized_event` whose stored size (envelope and
    /// headers) fits the server's `max_payload`.
    fn max_event_size(&self) -> usize {
        let max = self.client.server_info().max_payload;
        let fits = |len: usize| {
            JetStreamEventStore::stored_size(&sized_event(1, len)).expect("size of an event") <= max
        };
        let (mut lo, mut hi) = (0usize, max);
        assert!(fits(lo), "an empty event must fit max_payload {max}");
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }
}

/// One message of an actor's subject as an independent raw reader sees it.
#[derive(Debug, Clone)]
pub struct RawMessage {
    pub seq: u64,
    /// The `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    /// The envelope's `version`, if the payload is an envelope.
    pub version: Option<u64>,
    /// The envelope's causation id (`cause`), if any.
    pub cause: Option<String>,
    pub payload: Vec<u8>,
}

impl RawMessage {
    /// The event id part of the message id (`<event id>.<actor scope>`).
    pub fn event_id(&self) -> Option<&str> {
        self.msg_id
            .as_deref()
            .map(|id| id.split_once('.').map_or(id, |(id, _)| id))
    }
}

/// Every message on `subject` of `stream`, in stream order, read with plain
/// async-nats direct gets (not through the store under test).
pub async fn raw_messages(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
) -> Vec<RawMessage> {
    #[derive(serde::Deserialize)]
    struct Version {
        version: u64,
        #[serde(default)]
        cause: Option<String>,
    }
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(stream).await.expect("stream");
    let mut out = Vec::new();
    let mut seq = 1;
    loop {
        match stream.direct_get_next_for_subject(subject, Some(seq)).await {
            Ok(m) => {
                seq = m.sequence + 1;
                let envelope = rmp_serde::from_slice::<Version>(&m.payload)
                    .ok()
                    .or_else(|| {
                        // Format 2: [2, type, actor, version, ts, schema, corr, cause, meta, data].
                        type Positional = (
                            u8,
                            serde::de::IgnoredAny,
                            serde::de::IgnoredAny,
                            u64,
                            serde::de::IgnoredAny,
                            serde::de::IgnoredAny,
                            serde::de::IgnoredAny,
                            Option<String>,
                            serde::de::IgnoredAny,
                            serde::de::IgnoredAny,
                        );
                        let p = rmp_serde::from_slice::<Positional>(&m.payload).ok()?;
                        (p.0 == 2).then_some(Version {
                            version: p.3,
                            cause: p.7,
                        })
                    });
                out.push(RawMessage {
                    seq: m.sequence,
                    msg_id: m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
                    version: envelope.as_ref().map(|v| v.version),
                    cause: envelope.and_then(|v| v.cause),
                    payload: m.payload.to_vec(),
                });
            }
            Err(e) if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound => {
                return out;
            }
            Err(e) => panic!("raw read of {subject}: {e}"),
        }
    }
}
