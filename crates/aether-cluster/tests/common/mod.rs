//! Helpers shared by the cluster's NATS tests.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a different subset"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aether_cluster::{ClusterManager, ClusterManagerBuilder, NodeId, ShardMap};
use aether_testkit_nats::connect_options;

/// Member TTL used by the tests.
pub const MEMBER_TTL: Duration = Duration::from_millis(1000);
/// Lease TTL used by the tests.
pub const LEASE_TTL: Duration = Duration::from_millis(1500);
/// Settle delay used by the tests.
pub const SETTLE: Duration = Duration::from_millis(150);
/// Handoff timeout used by the tests.
pub const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);
/// Shards in the tests' clusters (small keeps maps cheap; movement is still measurable).
pub const SHARDS: u32 = 256;
/// A generous bound for things that should happen "soon".
pub const SOON: Duration = Duration::from_secs(20);

pub fn node_id(name: &str) -> NodeId {
    NodeId::new(name).expect("valid node id")
}

/// A client that never reconnects around a proxy.
pub async fn client(url: &str) -> async_nats::Client {
    let servers: Vec<&str> = url.split(',').collect();
    connect_options()
        .ignore_discovered_servers()
        .connect(servers.as_slice())
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {url}: {err}"))
}

/// A builder with the tests' timings.
pub fn builder(client: async_nats::Client, cluster: &str, id: &str) -> ClusterManagerBuilder {
    ClusterManager::builder(client, cluster, node_id(id))
        .member_ttl(MEMBER_TTL)
        .lease_ttl(LEASE_TTL)
        .settle_delay(SETTLE)
        .handoff_timeout(HANDOFF_TIMEOUT)
        .debounce(Duration::from_millis(50))
        .shard_count(SHARDS)
}

/// Starts node `id` of `cluster` on its own connection to `url`.
pub async fn start(url: &str, cluster: &str, id: &str) -> ClusterManager {
    builder(client(url).await, cluster, id)
        .start()
        .await
        .unwrap_or_else(|err| panic!("node {id} cannot start: {err}"))
}

/// The map every node agrees on, if they do: same `(term, epoch)`, nothing moving,
/// every node a member in every view, every node owning a shard, no other owner, and
/// exactly one node acting as leader.
pub fn converged(nodes: &[&ClusterManager]) -> Option<Arc<ShardMap>> {
    let first = nodes.first()?.shard_map()?;
    let expected: BTreeSet<NodeId> = nodes.iter().map(|node| node.node_id().clone()).collect();
    for node in nodes {
        let map = node.shard_map()?;
        if (map.term, map.epoch) != (first.term, first.epoch) || !map.moving.is_empty() {
            return None;
        }
        if !node.is_member() {
            return None;
        }
        let members: BTreeSet<NodeId> = node.members().into_iter().map(|m| m.node_id).collect();
        if members != expected {
            return None;
        }
    }
    let load = first.load();
    let owners: BTreeSet<NodeId> = load.keys().cloned().collect();
    if owners != expected || first.owners.iter().any(Option::is_none) {
        return None;
    }
    if nodes.iter().filter(|node| node.is_leader()).count() != 1 {
        return None;
    }
    Some(first)
}

/// Waits until `nodes` converge (see [`converged`]) and returns their map; panics
/// after `timeout` with every node's state.
pub async fn wait_converged(
    nodes: &[&ClusterManager],
    timeout: Duration,
    what: &str,
) -> Arc<ShardMap> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(map) = converged(nodes) {
            return map;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}\n{}",
            describe(nodes)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Each node's state in one line, for failure messages.
pub fn describe(nodes: &[&ClusterManager]) -> String {
    nodes
        .iter()
        .map(|node| {
            let map = node.shard_map();
            format!(
                "{}: member {} leader {} term {} map {:?} moving {} members {:?}",
                node.node_id(),
                node.is_member(),
                node.is_leader(),
                node.term(),
                map.as_ref().map(|m| (m.term, m.epoch, m.load().len())),
                map.as_ref().map_or(0, |m| m.moving.len()),
                node.members()
                    .iter()
                    .map(|m| m.node_id.to_string())
                    .collect::<Vec<_>>(),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fraction of shards whose owner differs between two maps.
pub fn moved_fraction(before: &ShardMap, after: &ShardMap) -> f64 {
    let moved = before
        .owners
        .iter()
        .zip(&after.owners)
        .filter(|(a, b)| a != b)
        .count();
    moved as f64 / before.owners.len() as f64
}

/// Max load over average load.
pub fn imbalance(map: &ShardMap) -> f64 {
    let load = map.load();
    let max = load.values().copied().max().unwrap_or(0) as f64;
    let avg = map.owners.len() as f64 / load.len().max(1) as f64;
    max / avg
}

/// Percentile `p` (0..=100) of `samples` (sorted here).
pub fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let index = (samples.len() * p).div_ceil(100).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}

/// A metrics recorder that keeps counters by name and labels, installed once per
/// test binary.
#[derive(Default)]
pub struct Counters {
    values: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
}

struct Handle(Arc<AtomicU64>);

impl metrics::CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::SeqCst);
    }
}

fn key_name(key: &metrics::Key) -> String {
    let mut name = key.name().to_owned();
    for label in key.labels() {
        name.push_str(&format!(",{}={}", label.key(), label.value()));
    }
    name
}

impl metrics::Recorder for Counters {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut values = self.values.lock().unwrap();
        let cell = values.entry(key_name(key)).or_default();
        metrics::Counter::from_arc(Arc::new(Handle(Arc::clone(cell))))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

impl Counters {
    /// The process-wide recorder (installed on first use).
    pub fn global() -> &'static Counters {
        static COUNTERS: OnceLock<&'static Counters> = OnceLock::new();
        COUNTERS.get_or_init(|| {
            let counters: &'static Counters = Box::leak(Box::default());
            metrics::set_global_recorder(counters).expect("no other recorder in this test binary");
            counters
        })
    }

    /// Value of the counter `name` with `labels` (`"k=v"`, in order), 0 if never hit.
    pub fn get(&self, name: &str, labels: &[&str]) -> u64 {
        let mut key = name.to_owned();
        for label in labels {
            key.push(',');
            key.push_str(label);
        }
        self.values
            .lock()
            .unwrap()
            .get(&key)
            .map_or(0, |cell| cell.load(Ordering::SeqCst))
    }
}

/// A cluster node whose whole runtime (its tasks and its NATS connection) runs on
/// one thread that the test can freeze, like SIGSTOP on a process.
pub struct PausableNode {
    pub manager: ClusterManager,
    handle: tokio::runtime::Handle,
    resume: Option<std::sync::mpsc::Sender<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PausableNode {
    pub async fn start(
        builder: impl FnOnce(async_nats::Client) -> ClusterManagerBuilder + Send + 'static,
        url: String,
    ) -> Self {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let handle = runtime.handle().clone();
            runtime.block_on(async move {
                let manager = builder(client(&url).await).start().await.expect("start");
                let _ = ready_tx.send((manager, handle));
                let _ = stop_rx.await;
            });
        });
        let (manager, handle) = tokio::time::timeout(SOON, ready_rx)
            .await
            .expect("the pausable node starts")
            .expect("the node thread is alive");
        Self {
            manager,
            handle,
            resume: None,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Freezes the node's runtime; returns once it is frozen.
    pub fn pause(&mut self) {
        let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
        let (frozen_tx, frozen_rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = frozen_tx.send(());
            // Blocks the runtime's only thread until `resume` drops the sender.
            let _ = resume_rx.recv();
        });
        frozen_rx
            .recv_timeout(SOON)
            .expect("the node's runtime picks up the pause");
        self.resume = Some(resume_tx);
    }

    /// Lets the node's runtime run again.
    pub fn resume(&mut self) {
        self.resume = None;
    }
}

impl Drop for PausableNode {
    fn drop(&mut self) {
        self.resume = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
