//! The `aether-core` feed conformance suite on R1 streams of one real
//! `nats-server`.

mod common;

aether_core::feed_conformance_suite!(tokio::test, common::JetStreamFactory::r1().await);
