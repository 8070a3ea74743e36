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

use std::sync::{Arc, Weak};

use aether_core::testkit::{ForeignRecord, StoreFactory};
use aether_core::{ActorId, Namespace, TrustPolicy};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsCluster, NatsServer, connect};
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

impl StoreFactory for JetStreamFactory {
    type Store = JetStreamEventStore;

    async fn open_with_policy(
        &self,
        namespace: Namespace,
        policy: TrustPolicy,
    ) -> JetStreamEventStore {
        // The store does not take a trust policy yet; the strict rules fail
        // until it does.
        let _ = policy;
        JetStreamEventStore::builder(self.client.clone())
            .namespace(namespace)
            .replicas(self.replicas)
            .open()
            .await
            .expect("open the JetStream store")
    }

    async fn inject_foreign(
        &self,
        store: &JetStreamEventStore,
        actor: &ActorId,
        record: ForeignRecord,
    ) {
        let _ = (store, actor, record);
        panic!("inject_foreign is not implemented for the JetStream store yet");
    }

    fn max_event_size(&self) -> usize {
        self.client.server_info().max_payload
    }
}
