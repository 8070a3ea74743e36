//! Aether's test harness for NATS: it runs **real** `nats-server` processes.
//!
//! Every NATS test of the project builds on it: a single server ([`NatsServer`]), a
//! JetStream cluster ([`NatsCluster`]), a TCP proxy that cuts connections
//! ([`TcpProxy`]), and helpers to connect ([`connect`]), to wait for a condition instead
//! of sleeping ([`wait_until`], [`wait_for`]) and to name things uniquely ([`unique_name`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use aether_testkit_nats::{NatsServer, connect, unique_name, wait_until};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let server = NatsServer::start().await; // JetStream on, free port, temp store
//! let client = connect(&server.url()).await;
//! let js = async_nats::jetstream::new(client.clone());
//! let stream = unique_name("orders");
//! js.create_stream(async_nats::jetstream::stream::Config {
//!     name: stream.clone(),
//!     subjects: vec![format!("{stream}.>")],
//!     ..Default::default()
//! })
//! .await
//! .unwrap();
//! js.publish(format!("{stream}.1"), "hello".into()).await.unwrap().await.unwrap();
//!
//! server.restart().await; // SIGKILL, then the same port and store
//! wait_until(Duration::from_secs(10), "the client reconnects", async || {
//!     client.connection_state() == async_nats::connection::State::Connected
//! })
//! .await;
//! # }
//! ```
//!
//! Faults in a cluster and on a connection:
//!
//! ```no_run
//! use std::time::Duration;
//! use aether_testkit_nats::{NatsCluster, NatsServer, TcpProxy, connect, wait_for};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let cluster = NatsCluster::start(3).await; // formed, with a JetStream meta leader
//! let js = async_nats::jetstream::new(connect(&cluster.urls()).await);
//! // ... create an R3 stream ...
//! cluster.kill(0);
//! // Retry until the stream has elected a new leader (4-9 s on nats-server).
//! wait_for(Duration::from_secs(45), "a publish is acked", async || {
//!     js.publish("orders.1", "x".into()).await?.await
//! })
//! .await;
//! cluster.restart(0).await; // waits until the cluster is healthy again
//!
//! let server = NatsServer::start().await;
//! let proxy = TcpProxy::start(server.addr()).await;
//! let client = connect(&proxy.url()).await;
//! proxy.cut().await; // the client's connection is gone
//! proxy.restore(); // the client reconnects
//! # drop(client);
//! # }
//! ```
//!
//! # Finding `nats-server`
//!
//! [`nats_server_binary`] looks, once per process, at `$NATS_SERVER_BIN`, then at the
//! path `cargo xtask nats-server` provisions (`target/nats-server/2.15.1/bin/nats-server`
//! under the workspace root), then at `PATH`, and requires version >= [`MIN_VERSION`].
//! Without a usable binary it panics and says how to get one; tests never skip.
//!
//! # Ports and readiness
//!
//! Servers bind 127.0.0.1 only. A server starts with `-p -1 -m -1` (the kernel picks free
//! client and monitoring ports, so there is no race with parallel tests) and the
//! harness reads the ports from the server log (`-l`), waiting for "Server is ready"
//! and then for `/healthz` to answer OK. Restarts reuse the client port (retrying until
//! the deadline if another process holds it meanwhile). Cluster route
//! ports must be known up front: they are picked by binding port 0 and released just
//! before use, and a start that loses that race is retried with new ports. No fixed
//! sleeps anywhere: everything polls a condition with a deadline.
//!
//! # Debugging
//!
//! When a test panics, every server dropped during the unwinding prints the tail of
//! its log. Set `AETHER_NATS_KEEP_DIR=1` to keep the servers' directories (config,
//! log, store). Servers are killed when their handle is dropped; a test process
//! killed with SIGKILL (e.g. by a test-runner timeout) leaves its servers running.

#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]

mod binary;
mod cluster;
mod monitor;
mod proxy;
mod server;

use std::fmt::Display;
use std::time::{Duration, Instant};

pub use crate::binary::{
    BinarySource, MIN_VERSION, NATS_SERVER_BIN_ENV, NatsServerBinary, PINNED_VERSION,
    ServerVersion, nats_server_binary, provisioned_path, workspace_root,
};
pub use crate::cluster::{DEFAULT_CLUSTER_TIMEOUT, NatsCluster, NatsClusterBuilder};
pub use crate::proxy::TcpProxy;
pub use crate::server::{DEFAULT_STARTUP_TIMEOUT, KEEP_DIR_ENV, NatsServer, NatsServerBuilder};

/// Client options for tests: a name, a 10 s connection timeout, and fast reconnects
/// (at most 250 ms between attempts, unlimited attempts) so tests that restart a server
/// or cut a connection do not wait for the default back-off of up to 4 s.
pub fn connect_options() -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .name("aether-testkit")
        .connection_timeout(Duration::from_secs(10))
        .reconnect_delay_callback(|attempts| {
            let attempts = u64::try_from(attempts).unwrap_or(u64::MAX);
            Duration::from_millis(attempts.saturating_sub(1).saturating_mul(25).min(250))
        })
}

/// Connects to `url` with [`connect_options`]. `url` may list several servers joined by
/// commas, like [`NatsCluster::urls`] (`async_nats::connect` itself does not split such
/// a list; give it [`NatsCluster::node_urls`] instead).
///
/// # Panics
///
/// When the connection fails.
pub async fn connect(url: &str) -> async_nats::Client {
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|server| !server.is_empty())
        .collect();
    connect_options()
        .connect(servers.as_slice())
        .await
        .unwrap_or_else(|err| panic!("cannot connect to NATS at {url}: {err}"))
}

/// A name unique to this call, `<prefix>-<12 hex digits>`, valid as a stream, bucket,
/// consumer or subject token, so tests sharing a server do not collide.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Polls `condition` until it returns `true`, with a short back-off (5 ms doubling to
/// 100 ms). Use it instead of sleeping.
///
/// `condition` is an async closure (`async || ..`); it may borrow from the test, even
/// mutably (a subscriber, a stream handle). Inside a task that must be `Send`
/// (`tokio::spawn`), today's compiler cannot prove an `async ||` closure's future
/// `Send`; write `move || { let x = x.clone(); async move { .. } }` there.
///
/// Each call of `condition` is also bounded by the deadline, so a hanging condition
/// cannot hang the test.
///
/// # Panics
///
/// When `timeout` passes first; the message names `what` was awaited.
pub async fn wait_until<F>(timeout: Duration, what: impl Display, mut condition: F)
where
    F: AsyncFnMut() -> bool,
{
    let mut poll = Poll::new(timeout);
    loop {
        let last = match tokio::time::timeout(poll.remaining(), condition()).await {
            Ok(true) => return,
            Ok(false) => "the condition was false".to_owned(),
            Err(_) => "the last check was still running at the deadline".to_owned(),
        };
        poll.next(&what, &last).await;
    }
}

/// Deadline and back-off shared by [`wait_until`] and [`wait_for`].
struct Poll {
    started: Instant,
    deadline: Instant,
    backoff: Duration,
    attempts: u32,
}

impl Poll {
    fn new(timeout: Duration) -> Self {
        let started = Instant::now();
        Self {
            started,
            deadline: started + timeout,
            backoff: Duration::from_millis(5),
            attempts: 0,
        }
    }

    fn remaining(&mut self) -> Duration {
        self.attempts += 1;
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps before the next attempt, or panics when the deadline has passed.
    async fn next(&mut self, what: &impl Display, last: &str) {
        let now = Instant::now();
        if now >= self.deadline {
            panic!(
                "timed out after {:?} ({} attempts) waiting for: {what}; last outcome: {last}",
                now - self.started,
                self.attempts
            );
        }
        tokio::time::sleep(self.backoff.min(self.deadline - now)).await;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(100));
    }
}

/// Calls `attempt` until it returns `Ok`, and returns that value, with the same
/// back-off as [`wait_until`]. Handy to retry an operation during fail-over, e.g. a
/// publish while a stream elects a new leader.
///
/// # Panics
///
/// When `timeout` passes first; the message names `what` and shows the last error.
pub async fn wait_for<T, E, F>(timeout: Duration, what: impl Display, mut attempt: F) -> T
where
    E: std::fmt::Debug,
    F: AsyncFnMut() -> Result<T, E>,
{
    let mut poll = Poll::new(timeout);
    loop {
        let last = match tokio::time::timeout(poll.remaining(), attempt()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(err)) => format!("{err:?}"),
            Err(_) => "the last attempt was still running at the deadline".to_owned(),
        };
        poll.next(&what, &last).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<NatsServer>();
        assert_send_sync::<NatsCluster>();
        assert_send_sync::<TcpProxy>();
    }

    #[test]
    fn unique_names_differ() {
        let a = unique_name("orders");
        let b = unique_name("orders");
        assert_ne!(a, b);
        assert!(a.starts_with("orders-"));
        assert_eq!(a.len(), "orders-".len() + 12);
    }

    #[tokio::test]
    async fn wait_for_returns_value_and_panics_with_context() {
        let mut calls = 0;
        let value = wait_for(Duration::from_secs(5), "third call", async || {
            calls += 1;
            if calls >= 3 {
                Ok(calls)
            } else {
                Err("not yet")
            }
        })
        .await;
        assert_eq!(value, 3);

        // Usable in spawned (Send) tasks, with a capturing async closure.
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let outcome = tokio::spawn(async move {
            wait_until(Duration::from_millis(50), "never", move || {
                let flag = std::sync::Arc::clone(&flag);
                async move { flag.load(std::sync::atomic::Ordering::SeqCst) }
            })
            .await;
        })
        .await;
        let panic = outcome.expect_err("must panic").into_panic();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("waiting for: never"), "{message}");
    }
}
