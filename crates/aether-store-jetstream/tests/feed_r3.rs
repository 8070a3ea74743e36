//! The `aether-core` feed conformance suite on R3 streams of a real 3-node
//! `nats-server` cluster.

mod common;

aether_core::feed_conformance_suite!(tokio::test, common::JetStreamFactory::r3().await);
