//! A cluster of `nats-server` processes with JetStream: [`NatsCluster`].

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::server::{ClusterSpec, LaunchError, NatsServer, NatsServerBuilder};
use crate::{monitor, unique_name};

/// How long a cluster may take to form (or to heal after a restart) before the harness panics.
pub const DEFAULT_CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// How many times a cluster start is retried when a pre-picked route port was taken.
const START_ATTEMPTS: usize = 3;

/// Configures and starts a [`NatsCluster`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct NatsClusterBuilder {
    nodes: usize,
    name: Option<String>,
    /// The settings every node shares (configuration texts); name, startup
    /// timeout and routes are set per node in [`Self::start`].
    node: NatsServerBuilder,
    timeout: Duration,
}

impl Default for NatsClusterBuilder {
    fn default() -> Self {
        Self {
            nodes: 3,
            name: None,
            node: NatsServerBuilder::default(),
            timeout: DEFAULT_CLUSTER_TIMEOUT,
        }
    }
}

impl NatsClusterBuilder {
    /// Number of nodes (default 3).
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Cluster name; by default a unique `cluster-<id>`. Node `i` is named `<name>-n<i>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Raw top-level configuration for every node (see [`NatsServerBuilder::config`]).
    pub fn config(mut self, text: impl AsRef<str>) -> Self {
        self.node = self.node.config(text);
        self
    }

    /// Raw configuration inside every node's `jetstream { .. }` block.
    pub fn jetstream_config(mut self, text: impl AsRef<str>) -> Self {
        self.node = self.node.jetstream_config(text);
        self
    }

    /// How long forming (and healing after [`NatsCluster::restart`]) may take.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts every node and waits until the cluster is healthy (see
    /// [`NatsCluster::wait_healthy`]): after this, an R`n` stream can be created.
    ///
    /// # Panics
    ///
    /// When `nodes` is 0, a node fails to start, or the cluster does not form in time.
    pub async fn start(self) -> NatsCluster {
        assert!(self.nodes > 0, "a NatsCluster needs at least one node");
        let name = self.name.clone().unwrap_or_else(|| unique_name("cluster"));
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            // Route ports must be known before any node starts (each node lists the others).
            // They are picked by binding 127.0.0.1:0 and released just before the servers
            // bind them; should another process grab one meanwhile, the node exits with
            // "address already in use" and the whole start is retried with fresh ports.
            let ports = free_ports(self.nodes);
            let mut nodes = Vec::with_capacity(self.nodes);
            let mut retry = None;
            for (i, port) in ports.iter().enumerate() {
                let mut builder = self
                    .node
                    .clone()
                    .name(format!("{name}-n{i}"))
                    .startup_timeout(self.timeout);
                builder.cluster = Some(ClusterSpec {
                    name: name.clone(),
                    port: *port,
                    routes: ports
                        .iter()
                        .copied()
                        .filter(|other| other != port)
                        .collect(),
                });
                match builder.launch().await {
                    Ok(node) => nodes.push(node),
                    Err(LaunchError::AddrInUse(message)) => {
                        retry = Some(message);
                        break;
                    }
                    Err(LaunchError::Other(message)) => panic!("{message}"),
                }
            }
            match retry {
                Some(message) => last_error = message,
                None => {
                    let cluster = NatsCluster {
                        name,
                        nodes,
                        timeout: self.timeout,
                    };
                    cluster.wait_healthy().await;
                    return cluster;
                }
            }
        }
        panic!("could not start cluster {name} after {START_ATTEMPTS} attempts: {last_error}");
    }
}

/// Picks `count` distinct free loopback ports (all bound at once, then released).
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap_or_else(|err| panic!("cannot bind a free loopback port: {err}"))
        })
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .unwrap_or_else(|err| panic!("cannot read a local address: {err}"))
                .port()
        })
        .collect()
}

/// A JetStream cluster of real `nats-server` processes on loopback.
///
/// Every node has its own temporary store directory, a unique server name
/// (`<cluster>-n<i>`), a kernel-chosen client port and a route port; all nodes route
/// to each other. Dropping the cluster kills every node and removes their directories.
#[derive(Debug)]
pub struct NatsCluster {
    name: String,
    nodes: Vec<NatsServer>,
    timeout: Duration,
}

impl NatsCluster {
    /// Starts a cluster of `nodes` nodes with default settings (3 is typical).
    pub async fn start(nodes: usize) -> Self {
        Self::builder().nodes(nodes).start().await
    }

    /// A builder for a cluster with non-default settings.
    pub fn builder() -> NatsClusterBuilder {
        NatsClusterBuilder::default()
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Client URLs of all nodes joined with commas (`nats://127.0.0.1:p0,nats://...`), for
    /// [`connect`](crate::connect) and tools that take a server list.
    ///
    /// `async_nats::connect` does not split a comma-joined string: pass it
    /// [`Self::node_urls`] instead.
    pub fn urls(&self) -> String {
        self.node_urls().join(",")
    }

    /// Client URL of each node, in node order; `async_nats::connect(cluster.node_urls())`
    /// and `ConnectOptions::connect` accept it as is.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Node `index`.
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    pub fn node(&self, index: usize) -> &NatsServer {
        self.nodes.get(index).unwrap_or_else(|| {
            panic!(
                "cluster {} has {} nodes, there is no node {index}",
                self.name,
                self.nodes.len()
            )
        })
    }

    /// All nodes, in order.
    pub fn nodes(&self) -> &[NatsServer] {
        &self.nodes
    }

    /// Index of the node with server name `name` (e.g. a stream leader's name from
    /// stream info).
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name() == name)
    }

    /// Kills node `index` with SIGKILL (see [`NatsServer::kill`]). Does not wait for
    /// the rest of the cluster to notice.
    pub fn kill(&self, index: usize) {
        self.node(index).kill();
    }

    /// Restarts node `index` (same ports, same store) and waits until the cluster is
    /// healthy again (see [`Self::wait_healthy`]).
    ///
    /// That needs a quorum of running nodes; after killing most of them, restart them
    /// with `node(i).restart()` and then call [`Self::wait_healthy`].
    pub async fn restart(&self, index: usize) {
        self.node(index).restart().await;
        self.wait_healthy().await;
    }

    /// Pauses node `index` (SIGSTOP, see [`NatsServer::pause`]).
    pub fn pause(&self, index: usize) {
        self.node(index).pause();
    }

    /// Resumes node `index` (SIGCONT). Does not wait for the cluster to heal; call
    /// [`Self::wait_healthy`] for that.
    pub fn resume(&self, index: usize) {
        self.node(index).resume();
    }

    /// Index of the JetStream meta leader as seen by the first running, unpaused node.
    pub async fn meta_leader(&self) -> Option<usize> {
        for node in self.live_nodes() {
            if let Ok(jsz) = monitor::get_json(node.monitor_port(), "/jsz").await {
                return meta_leader_name(&jsz).and_then(|name| self.node_index(name));
            }
        }
        None
    }

    /// Waits until the running, unpaused nodes form a healthy cluster:
    /// every one answers `/healthz` OK, has routes to all the others, and names the same
    /// JetStream meta leader, which reports every other one as current.
    ///
    /// # Panics
    ///
    /// When that does not happen within the cluster timeout (default
    /// [`DEFAULT_CLUSTER_TIMEOUT`]); the message says what was still missing.
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            let problem = match self.health_problem().await {
                None => return,
                Some(problem) => problem,
            };
            if Instant::now() >= deadline {
                panic!(
                    "cluster {} not healthy within {:?}: {problem}",
                    self.name, self.timeout
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
    }

    fn live_nodes(&self) -> impl Iterator<Item = &NatsServer> {
        self.nodes
            .iter()
            .filter(|node| node.is_running() && !node.is_paused())
    }

    /// `None` when healthy, else what is missing.
    async fn health_problem(&self) -> Option<String> {
        let live: Vec<&NatsServer> = self.live_nodes().collect();
        if live.is_empty() {
            return Some("no node is running".to_owned());
        }
        let mut leaders = BTreeSet::new();
        let mut jsz_by_node = Vec::with_capacity(live.len());
        for node in &live {
            let port = node.monitor_port();
            if let Err(err) = monitor::healthz(port).await {
                return Some(format!("{}: {err}", node.name()));
            }
            let routez = match monitor::get_json(port, "/routez").await {
                Ok(routez) => routez,
                Err(err) => return Some(format!("{}: {err}", node.name())),
            };
            let remotes: BTreeSet<&str> = routez["routes"]
                .as_array()
                .map(|routes| {
                    routes
                        .iter()
                        .filter_map(|route| route["remote_name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(missing) = live
                .iter()
                .find(|other| other.name() != node.name() && !remotes.contains(other.name()))
            {
                return Some(format!(
                    "{} has no route to {} yet",
                    node.name(),
                    missing.name()
                ));
            }
            let jsz = match monitor::get_json(port, "/jsz").await {
                Ok(jsz) => jsz,
                Err(err) => return Some(format!("{}: {err}", node.name())),
            };
            match meta_leader_name(&jsz) {
                Some(leader) => leaders.insert(leader.to_owned()),
                None => {
                    return Some(format!(
                        "{} knows no JetStream meta leader yet",
                        node.name()
                    ));
                }
            };
            jsz_by_node.push((node.name(), jsz));
        }
        if leaders.len() > 1 {
            return Some(format!("nodes disagree on the meta leader: {leaders:?}"));
        }
        let leader = leaders.pop_first()?;
        let Some((_, leader_jsz)) = jsz_by_node.iter().find(|(name, _)| *name == leader) else {
            return Some(format!("meta leader {leader} is not a running node"));
        };
        let replicas = leader_jsz["meta_cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for node in &live {
            if node.name() == leader {
                continue;
            }
            let current = replicas.iter().any(|replica| {
                replica["name"] == node.name() && replica["current"] == Value::Bool(true)
            });
            if !current {
                return Some(format!(
                    "meta leader {leader} does not report {} as current yet",
                    node.name()
                ));
            }
        }
        // Agreement on the meta leader is not yet enough: the leader places
        // replicas only on peers whose JetStream statistics it has received.
        // Placing a probe stream on every live node is the condition tests
        // need (otherwise the first R3 stream may fail with "no suitable
        // peers for placement"). Only checked with every node up: while a
        // node is paused or killed the leader may still count it as a peer
        // until its heartbeats time out.
        if live.len() < self.nodes.len() {
            return None;
        }
        let leader_node = live.iter().find(|node| node.name() == leader)?;
        if let Err(err) = place_probe_stream(leader_node, live.len()).await {
            return Some(format!("cannot place an R{} stream yet: {err}", live.len()));
        }
        None
    }
}

/// Creates and deletes an in-memory stream with `replicas` replicas through
/// `node`.
async fn place_probe_stream(node: &NatsServer, replicas: usize) -> Result<(), String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(node.url())
        .await
        .map_err(|e| format!("connect to {}: {e}", node.name()))?;
    let js = async_nats::jetstream::new(client);
    let name = unique_name("HARNESS_PROBE").replace('-', "_");
    js.create_stream(async_nats::jetstream::stream::Config {
        subjects: vec![format!("_harness.probe.{name}")],
        name: name.clone(),
        num_replicas: replicas,
        storage: async_nats::jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.delete_stream(&name).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn meta_leader_name(jsz: &Value) -> Option<&str> {
    jsz["meta_cluster"]["leader"]
        .as_str()
        .filter(|leader| !leader.is_empty())
}
