//! [`ClusterManager`]: one handle on membership, the leader lease and the shard map.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use aether_cluster::{ClusterManager, NodeId, ShardId};
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let node = ClusterManager::builder(client, "shop", NodeId::new("node-1")?)
//!     .member_ttl(Duration::from_secs(3))
//!     .lease_ttl(Duration::from_secs(5))
//!     .kinds(["account"])
//!     .start()
//!     .await?;
//! let events = node.events(); // joins, leaves, leader and map changes
//! println!("leader: {}, owns {} shards", node.is_leader(), node.owned_shards().len());
//! println!("shard 17 is on {:?}", node.owner_of(ShardId::new(17)));
//! node.shutdown().await?; // leaves at once instead of after the member TTL
//! # Ok(()) }
//! ```
//!
//! Embedded, with no NATS, behind the same API:
//!
//! ```
//! use aether_cluster::{ClusterManager, NodeId};
//!
//! let node = ClusterManager::single_node(NodeId::new("solo")?);
//! assert!(node.is_leader());
//! assert_eq!(node.owned_shards().len(), 1024);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Timing
//!
//! | setting | default | a node that stops is … | shorter costs |
//! |---|---|---|---|
//! | member TTL | 3 s | out of every view within the TTL (+ the server's expiry tick, ≤ 0.25 s) | more heartbeats (TTL / 3), false departures on a slow link |
//! | lease TTL | 5 s | replaced as leader within TTL + settle | more renewals (TTL / 3), step-downs on a slow link |
//! | settle delay | lease TTL / 10 | — | less room for clock-rate drift between nodes |
//! | handoff timeout | 10 s | — (a live but silent owner loses a moving shard after it) | drains cut short |
//!
//! The buckets are made by the first node; later nodes use the TTLs stored in
//! them ([`ClusterManager::ttls`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::FutureExt;
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::coordinator::{
    self, AuditHook, Handler, HandoffRequest, LeaderAction, Leading, MapState,
};
use crate::error::ClusterError;
use crate::kv::{BucketNames, BucketSettings, Buckets, DEFAULT_PREFIX, MAP_KEY, member_key};
use crate::leader::{self, LeaseStatus, LeaseTiming};
use crate::membership::{self, MemberView, Profile, ViewKeeper, stopped};
use aether_actor::{ClusterNode, Placement, Release, ShardDirectory, node_subject};
use futures::future::BoxFuture;

use crate::{ClusterEvent, Incarnation, Member, Move, NodeId, NodeInfo, ShardId, ShardMap, place};

/// Default number of shards of a cluster.
pub const DEFAULT_SHARD_COUNT: u32 = 1024;
/// Default member TTL: a node that stops heartbeating leaves the view this long
/// after its last heartbeat.
pub const DEFAULT_MEMBER_TTL: Duration = Duration::from_secs(3);
/// Default lease TTL: a leader that stops renewing is replaced this long after its
/// last renewal (plus the settle delay).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// Default handoff timeout: a shard whose old owner has not released it by then is
/// assigned anyway (the store's expected-version check still fences the old owner).
pub const DEFAULT_HANDOFF_TIMEOUT: Duration = Duration::from_secs(10);

/// Capacity of the [`ClusterManager::events`] channel; a receiver that falls further
/// behind gets `RecvError::Lagged` and should re-read the state.
pub const EVENT_CAPACITY: usize = 1024;

/// Builds a [`ClusterManager`] on NATS; see [`ClusterManager::builder`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct ClusterManagerBuilder {
    client: async_nats::Client,
    cluster: String,
    node_id: NodeId,
    prefix: String,
    member_ttl: Duration,
    lease_ttl: Duration,
    settle: Option<Duration>,
    shard_count: u32,
    capacity: u32,
    kinds: Vec<String>,
    subject_prefix: String,
    handoff_timeout: Duration,
    debounce: Option<Duration>,
    replicas: usize,
    audit: Option<AuditHook>,
    handler: Option<Handler>,
}

impl std::fmt::Debug for ClusterManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManagerBuilder")
            .field("cluster", &self.cluster)
            .field("node_id", &self.node_id)
            .field("prefix", &self.prefix)
            .field("member_ttl", &self.member_ttl)
            .field("lease_ttl", &self.lease_ttl)
            .field("shard_count", &self.shard_count)
            .field("capacity", &self.capacity)
            .field("kinds", &self.kinds)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl ClusterManagerBuilder {
    /// Prefix of the bucket names (default `AETHER`; `[A-Za-z0-9_-]+`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Member TTL (default 3 s): heartbeats go every TTL / 3; a node that stops
    /// leaves every view within the TTL. Shorter detects failures sooner and costs
    /// more heartbeats and more false departures on a slow network. The bucket is
    /// made by the first node: later nodes adopt the TTL it holds.
    pub fn member_ttl(mut self, ttl: Duration) -> Self {
        self.member_ttl = ttl;
        self
    }

    /// Lease TTL (default 5 s): the leader renews every TTL / 3, and a leader that
    /// stops is replaced within the TTL plus the settle delay.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Settle delay (default lease TTL / 10): a new leader waits this long before it
    /// acts, so a deposed leader has stopped first.
    pub fn settle_delay(mut self, settle: Duration) -> Self {
        self.settle = Some(settle);
        self
    }

    /// Number of shards (default 1024). Fixed per cluster: a node with another
    /// count refuses to join.
    pub fn shard_count(mut self, shard_count: u32) -> Self {
        self.shard_count = shard_count;
        self
    }

    /// Capacity weight of this node (default 1; 0 is taken as 1): a node of weight 2
    /// gets about twice the shards of a node of weight 1.
    pub fn capacity(mut self, capacity: u32) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Actor kinds this node hosts (announced in its member record).
    pub fn kinds<I, S>(mut self, kinds: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// The first tokens of the subject this node's actor system answers on
    /// (default `aether`; checked by `start` with
    /// [`aether_core::name::validate_subject_prefix`]). The node announces
    /// `<subject prefix>.rt.<encoded cluster>.<encoded node id>`
    /// ([`aether_actor::node_subject`]) in its member record, and an actor
    /// system joined with `ActorSystemBuilder::cluster` serves exactly that
    /// subject.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// Handoff timeout (default 10 s): past it a moving shard is assigned to its new
    /// owner even without the old owner's acknowledgement.
    pub fn handoff_timeout(mut self, timeout: Duration) -> Self {
        self.handoff_timeout = timeout;
        self
    }

    /// How long the leader waits after a membership change before it recomputes the
    /// map (default member TTL / 10), so a burst of changes gives one map.
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = Some(debounce);
        self
    }

    /// Replicas of the buckets (default 1; use 3 on a 3-node NATS cluster).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// An audit hook called right before every map write this node makes as
    /// leader, with the term it acts under. It runs on the leader's task: keep it
    /// short.
    pub fn on_leader_action(
        mut self,
        hook: impl Fn(&LeaderAction) + Send + Sync + 'static,
    ) -> Self {
        self.audit = Some(Arc::new(hook));
        self
    }

    /// The handoff handler (see [`ClusterManager::set_handoff_handler`]).
    pub fn handoff_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(HandoffRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handler = Some(boxed_handler(handler));
        self
    }

    /// Opens the buckets (creating them if needed), checks the stored map is
    /// compatible, then joins: starts heartbeats, the view, the lease campaign, the
    /// map follower and the leader side. Must run inside a tokio runtime; every task
    /// runs there.
    ///
    /// Returns once this node's first heartbeat has landed or the member TTL has
    /// passed (it keeps trying in the background).
    ///
    /// # Errors
    ///
    /// - [`ClusterError::InvalidName`]: a bad prefix or cluster name.
    /// - [`ClusterError::InvalidConfig`]: a zero TTL, handoff timeout or shard count.
    /// - [`ClusterError::IncompatibleShardCount`]: the cluster's map has another
    ///   shard count.
    /// - [`ClusterError::IncompatibleFormat`]: the cluster's map has a newer format.
    /// - [`ClusterError::Backend`] / [`ClusterError::Timeout`]: the buckets cannot be
    ///   made or read (no JetStream, server down, …).
    pub async fn start(self) -> Result<ClusterManager, ClusterError> {
        if self.shard_count == 0
            || self.member_ttl.is_zero()
            || self.lease_ttl.is_zero()
            || self.handoff_timeout.is_zero()
        {
            return Err(ClusterError::InvalidConfig {
                reason: "shard count, TTLs and the handoff timeout must be above zero".to_owned(),
            });
        }
        aether_core::name::validate_subject_prefix(&self.subject_prefix)?;
        let names = BucketNames::new(&self.prefix, &self.cluster)?;
        let js = async_nats::jetstream::new(self.client.clone());
        let buckets = Buckets::open(
            &js,
            &BucketSettings {
                names,
                replicas: self.replicas,
                member_ttl: self.member_ttl,
                lease_ttl: self.lease_ttl,
            },
        )
        .await?;
        // Refuse to join a cluster this node cannot take part in. A read is fine
        // here: it decides compatibility, never leadership.
        if let Some(entry) = buckets.map.entry(MAP_KEY).await?
            && entry.operation == async_nats::jetstream::kv::Operation::Put
        {
            match ShardMap::decode(&entry.value) {
                Ok(map) if map.shard_count != self.shard_count => {
                    return Err(ClusterError::IncompatibleShardCount {
                        ours: self.shard_count,
                        theirs: map.shard_count,
                    });
                }
                Ok(_) => {}
                Err(err @ ClusterError::IncompatibleFormat { .. }) => return Err(err),
                // Garbage: ignored (and counted); the leader overwrites it.
                Err(err) => crate::kv::count_bad_record("map", MAP_KEY, &err),
            }
        }
        // The TTLs in force are those of the buckets (the first node's).
        let member_ttl = nonzero_or(buckets.members.max_age, self.member_ttl);
        let lease_ttl = nonzero_or(buckets.leader.max_age, self.lease_ttl);
        let settle = self.settle.unwrap_or(lease_ttl / 10);
        let debounce = self.debounce.unwrap_or(member_ttl / 10);
        let subject = node_subject(&self.subject_prefix, &self.cluster, &self.node_id);
        let profile = Profile {
            node_id: self.node_id.clone(),
            subject,
            kinds: self.kinds.clone(),
            capacity: self.capacity,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };

        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (shutdown_tx, shutdown) = watch::channel(false);
        let view = watch::Sender::new(MemberView::default());
        let lease = watch::Sender::new(LeaseStatus::default());
        let map = watch::Sender::new(MapState::default());
        let handler = Arc::new(RwLock::new(self.handler));
        let vacant = Arc::new(Notify::new());
        let (incarnation_tx, incarnation_rx) = watch::channel(None::<Incarnation>);

        let mut tasks = Vec::new();
        // Keep the lease campaign's incarnation in step with the membership claim.
        {
            let mut view_rx = view.subscribe();
            let mut stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let current = view_rx
                        .borrow_and_update()
                        .me
                        .as_ref()
                        .map(|me| me.incarnation);
                    incarnation_tx.send_replace(current);
                    tokio::select! {
                        changed = view_rx.changed() => if changed.is_err() { return },
                        () = stopped(&mut stop) => return,
                    }
                }
            }));
        }
        tasks.push(tokio::spawn(coordinator::follow(
            buckets.map.clone(),
            self.node_id.clone(),
            self.shard_count,
            member_ttl,
            map.clone(),
            events.clone(),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(
            ViewKeeper::new(
                buckets.members.clone(),
                member_ttl,
                view.clone(),
                events.clone(),
                self.node_id.clone(),
            )
            .run(shutdown.clone()),
        ));
        let heartbeat = tokio::spawn(membership::heartbeat(
            buckets.members.clone(),
            profile,
            Incarnation::new(),
            member_ttl,
            view.clone(),
            events.clone(),
            shutdown.clone(),
        ));
        tasks.push(tokio::spawn(leader::observe(
            buckets.leader.clone(),
            lease.clone(),
            Arc::clone(&vacant),
            events.clone(),
            shutdown.clone(),
        )));
        let campaign = tokio::spawn(leader::run(
            buckets.leader.clone(),
            self.node_id.clone(),
            incarnation_rx,
            LeaseTiming {
                ttl: lease_ttl,
                settle,
            },
            lease.clone(),
            vacant,
            shutdown.clone(),
        ));
        tasks.push(tokio::spawn(coordinator::release(
            buckets.map.clone(),
            self.node_id.clone(),
            map.subscribe(),
            view.subscribe(),
            Arc::clone(&handler),
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(
            Leading {
                bucket: buckets.map.clone(),
                local: self.node_id.clone(),
                shard_count: self.shard_count,
                handoff_timeout: self.handoff_timeout,
                debounce,
                view: view.subscribe(),
                lease: lease.subscribe(),
                map: map.clone(),
                events: events.clone(),
                audit: self.audit,
            }
            .run(shutdown.clone()),
        ));

        let manager = ClusterManager {
            inner: Arc::new(Inner {
                node_id: self.node_id,
                shard_count: self.shard_count,
                events,
                view: view.subscribe(),
                lease: lease.subscribe(),
                map: map.subscribe(),
                handler,
                nats: Some(Nats {
                    client: self.client.clone(),
                    cluster: self.cluster.clone(),
                    subject_prefix: self.subject_prefix.clone(),
                    kinds: self.kinds.clone(),
                    buckets,
                    shutdown: shutdown_tx,
                    heartbeat: std::sync::Mutex::new(Some(heartbeat)),
                    campaign: std::sync::Mutex::new(Some(campaign)),
                    tasks: std::sync::Mutex::new(tasks),
                    member_ttl,
                    lease_ttl,
                }),
                single: None,
            }),
        };
        // Wait (bounded) for the first heartbeat so `members()` includes this node.
        let mut view_rx = view.subscribe();
        let _ = tokio::time::timeout(member_ttl, view_rx.wait_for(MemberView::claiming)).await;
        Ok(manager)
    }
}

fn nonzero_or(value: Duration, fallback: Duration) -> Duration {
    if value.is_zero() { fallback } else { value }
}

fn boxed_handler<F, Fut>(handler: F) -> Handler
where
    F: Fn(HandoffRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Arc::new(move |request| handler(request).boxed())
}

/// A node of an Aether cluster: membership, leader lease and shard map.
///
/// On NATS ([`ClusterManager::builder`]) it heartbeats into a members bucket,
/// campaigns for a leader lease, follows the shard map, releases shards the map
/// moves away from it, and — while it holds the lease — computes and writes the map.
/// Embedded ([`ClusterManager::single_node`]) it is the only member and owns every
/// shard, behind the same API.
///
/// Cloning gives another handle on the same node. When the last handle is dropped
/// without [`shutdown`](Self::shutdown), every task stops at once with no goodbye:
/// the node's member key and lease expire by their TTLs, as after a crash.
///
/// All getters read local state (no network round trip) and never block.
#[derive(Clone)]
pub struct ClusterManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterManager")
            .field("node_id", &self.inner.node_id)
            .field("shard_count", &self.inner.shard_count)
            .field("embedded", &self.inner.single.is_some())
            .finish_non_exhaustive()
    }
}

struct Inner {
    node_id: NodeId,
    shard_count: u32,
    events: broadcast::Sender<ClusterEvent>,
    view: watch::Receiver<MemberView>,
    lease: watch::Receiver<LeaseStatus>,
    map: watch::Receiver<MapState>,
    handler: Arc<RwLock<Option<Handler>>>,
    nats: Option<Nats>,
    single: Option<Single>,
}

struct Nats {
    client: async_nats::Client,
    cluster: String,
    subject_prefix: String,
    kinds: Vec<String>,
    buckets: Buckets,
    shutdown: watch::Sender<bool>,
    heartbeat: std::sync::Mutex<Option<JoinHandle<()>>>,
    campaign: std::sync::Mutex<Option<JoinHandle<()>>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    member_ttl: Duration,
    lease_ttl: Duration,
}

struct Single {
    info: NodeInfo,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // No goodbye: abort every task before the shutdown sender goes (a task that
        // saw it would release the lease or stop heartbeats gracefully).
        if let Some(nats) = &self.nats {
            for slot in [&nats.heartbeat, &nats.campaign] {
                if let Ok(mut slot) = slot.lock()
                    && let Some(task) = slot.take()
                {
                    task.abort();
                }
            }
            if let Ok(mut tasks) = nats.tasks.lock() {
                for task in tasks.drain(..) {
                    task.abort();
                }
            }
        }
    }
}

impl ClusterManager {
    /// A builder for a node of cluster `cluster_name` on NATS (any text of 1 to 64
    /// bytes; it is encoded into the bucket names).
    pub fn builder(
        client: async_nats::Client,
        cluster_name: impl Into<String>,
        node_id: NodeId,
    ) -> ClusterManagerBuilder {
        ClusterManagerBuilder {
            client,
            cluster: cluster_name.into(),
            node_id,
            prefix: DEFAULT_PREFIX.to_owned(),
            member_ttl: DEFAULT_MEMBER_TTL,
            lease_ttl: DEFAULT_LEASE_TTL,
            settle: None,
            shard_count: DEFAULT_SHARD_COUNT,
            capacity: 1,
            kinds: Vec::new(),
            subject_prefix: "aether".to_owned(),
            handoff_timeout: DEFAULT_HANDOFF_TIMEOUT,
            debounce: None,
            replicas: 1,
            audit: None,
            handler: None,
        }
    }

    /// An embedded cluster of one node, with no NATS: it is the leader (term 1), the
    /// only member, and owns all [`DEFAULT_SHARD_COUNT`] shards (map epoch 1).
    pub fn single_node(node_id: NodeId) -> Self {
        Self::single_node_with_shards(node_id, DEFAULT_SHARD_COUNT)
    }

    /// [`single_node`](Self::single_node) with `shard_count` shards (0 is taken as 1).
    pub fn single_node_with_shards(node_id: NodeId, shard_count: u32) -> Self {
        let shard_count = shard_count.max(1);
        let info = NodeInfo {
            node_id: node_id.clone(),
            incarnation: Incarnation::new(),
            subject: String::new(),
            kinds: Vec::new(),
            capacity: 1,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: OffsetDateTime::now_utc(),
        };
        let owners = place(
            None,
            &[Member {
                node: node_id.clone(),
                weight: 1,
            }],
            shard_count,
        );
        let map = Arc::new(ShardMap {
            term: 1,
            epoch: 1,
            shard_count,
            owners,
            moving: BTreeMap::new(),
        });
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let members = Arc::new(BTreeMap::from([(node_id.clone(), info.clone())]));
        let view = watch::Sender::new(MemberView {
            members,
            me: Some(info.clone()),
        });
        let lease = watch::Sender::new(LeaseStatus::default());
        let state = watch::Sender::new(MapState {
            newest: Some(map),
            revision: 0,
            acks: BTreeMap::new(),
        });
        Self {
            inner: Arc::new(Inner {
                node_id,
                shard_count,
                events,
                view: view.subscribe(),
                lease: lease.subscribe(),
                map: state.subscribe(),
                handler: Arc::new(RwLock::new(None)),
                nats: None,
                single: Some(Single { info }),
            }),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.inner.node_id
    }

    /// The cluster's shard count.
    pub fn shard_count(&self) -> u32 {
        self.inner.shard_count
    }

    /// Whether this node acts as leader right now: it holds the lease, its settle
    /// delay has passed, and its local deadline has not (checked on every call, so a
    /// node paused past its lease answers `false` as soon as it runs again).
    /// Always `true` for an embedded node.
    pub fn is_leader(&self) -> bool {
        if self.inner.single.is_some() {
            return true;
        }
        self.inner.lease.borrow().acting_term().is_some()
    }

    /// The term this node acts under as leader, or else the highest term it has
    /// seen (0: none yet). Embedded: 1.
    pub fn term(&self) -> u64 {
        if self.inner.single.is_some() {
            return 1;
        }
        let status = self.inner.lease.borrow();
        status.acting_term().unwrap_or(status.highest_term)
    }

    /// The leader as last seen on the lease (`None`: vacant or unknown). Embedded:
    /// this node.
    pub fn leader(&self) -> Option<NodeId> {
        if self.inner.single.is_some() {
            return Some(self.inner.node_id.clone());
        }
        self.inner
            .lease
            .borrow()
            .observed
            .as_ref()
            .and_then(|(node, _)| node.clone())
    }

    /// Whether this node claims membership: its last heartbeat landed less than the
    /// member TTL (minus a margin) ago. While it does not,
    /// [`owned_shards`](Self::owned_shards) is empty.
    pub fn is_member(&self) -> bool {
        self.inner.view.borrow().claiming()
    }

    /// This node's current incarnation (a new one after each start, and after it
    /// lost and regained membership).
    pub fn incarnation(&self) -> Option<Incarnation> {
        if let Some(single) = &self.inner.single {
            return Some(single.info.incarnation);
        }
        self.inner
            .view
            .borrow()
            .me
            .as_ref()
            .map(|me| me.incarnation)
    }

    /// Live members, ordered by node id, as this node's view shows them.
    pub fn members(&self) -> Vec<NodeInfo> {
        self.inner.view.borrow().members.values().cloned().collect()
    }

    /// The newest shard map this node has seen (by term, then epoch), if any.
    pub fn shard_map(&self) -> Option<Arc<ShardMap>> {
        self.inner.map.borrow().newest.clone()
    }

    /// The owner of `shard` in the newest map (`None`: no map yet, or the shard is
    /// unassigned or out of range). While a shard moves, this is still the old owner.
    pub fn owner_of(&self, shard: ShardId) -> Option<NodeId> {
        self.inner
            .map
            .borrow()
            .newest
            .as_ref()
            .and_then(|map| map.owner(shard).cloned())
    }

    /// Shards this node owns in the newest map, in order — moving ones included
    /// (see [`moving_shards`](Self::moving_shards)). Empty while the node does not
    /// claim membership.
    pub fn owned_shards(&self) -> Vec<ShardId> {
        if !self.is_member() {
            return Vec::new();
        }
        self.inner
            .map
            .borrow()
            .newest
            .as_ref()
            .map(|map| map.shards_of(&self.inner.node_id))
            .unwrap_or_default()
    }

    /// Shards moving in the newest map, with where from and where to.
    pub fn moving_shards(&self) -> Vec<(ShardId, Move)> {
        self.inner
            .map
            .borrow()
            .newest
            .as_ref()
            .map(|map| {
                map.moving
                    .iter()
                    .map(|(&shard, mv)| (ShardId::new(shard), mv.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A receiver of cluster events from now on: members joining and leaving,
    /// leader changes, map changes. Bounded ([`EVENT_CAPACITY`]): a receiver that
    /// falls behind gets `Lagged` and should re-read the state. An embedded node
    /// sends none.
    pub fn events(&self) -> broadcast::Receiver<ClusterEvent> {
        self.inner.events.subscribe()
    }

    /// Waits until the newest map satisfies `condition` (checked at once, then on
    /// every change) and returns it.
    ///
    /// # Errors
    ///
    /// [`ClusterError::ShuttingDown`] when the node stops first.
    pub async fn wait_for_map(
        &self,
        mut condition: impl FnMut(&ShardMap) -> bool,
    ) -> Result<Arc<ShardMap>, ClusterError> {
        let mut map = self.inner.map.clone();
        let state = map
            .wait_for(|state| state.newest.as_deref().is_some_and(&mut condition))
            .await
            .map_err(|_| ClusterError::ShuttingDown)?;
        state.newest.clone().ok_or(ClusterError::ShuttingDown)
    }

    /// Waits until this node is ready to route: it holds a shard map written
    /// under the current leader's term (not one left by an earlier leader or
    /// an earlier run of the cluster) that places every live member of its
    /// view, and it claims membership itself. Returns that map. An embedded
    /// node is ready at once.
    ///
    /// Wrap it in a timeout: with no leader (no quorum of NATS servers) it
    /// waits for as long as that lasts.
    ///
    /// # Errors
    ///
    /// [`ClusterError::ShuttingDown`] when the node stops first.
    pub async fn ready(&self) -> Result<Arc<ShardMap>, ClusterError> {
        let mut lease = self.inner.lease.clone();
        let mut map = self.inner.map.clone();
        let mut view = self.inner.view.clone();
        loop {
            if let Some(ready) = self.ready_map() {
                return Ok(ready);
            }
            tokio::select! {
                changed = lease.changed() => changed.map_err(|_| ClusterError::ShuttingDown)?,
                changed = map.changed() => changed.map_err(|_| ClusterError::ShuttingDown)?,
                changed = view.changed() => changed.map_err(|_| ClusterError::ShuttingDown)?,
            }
        }
    }

    /// The newest map if it satisfies [`ready`](Self::ready)'s condition now.
    fn ready_map(&self) -> Option<Arc<ShardMap>> {
        let map = self.shard_map()?;
        if self.inner.single.is_some() {
            return Some(map);
        }
        let term = match self.inner.lease.borrow().observed {
            Some((Some(_), term)) => term,
            _ => return None,
        };
        let view = self.inner.view.borrow();
        if map.term != term || !view.claiming() {
            return None;
        }
        let owners: std::collections::BTreeSet<&NodeId> = map.owners.iter().flatten().collect();
        // This node counts even before its own view shows its record.
        let mut members: std::collections::BTreeSet<&NodeId> = view.members.keys().collect();
        members.insert(self.node_id());
        let placed = members.iter().filter(|m| owners.contains(*m)).count();
        let needed = members.len().min(map.owners.len());
        (placed >= needed).then(|| map.clone())
    }

    /// Sets what this node runs to release a shard the map moves away from it: the
    /// future should stop new commands for the shard, finish the one in flight and
    /// passivate its actors; when it completes, the node acknowledges and the leader
    /// publishes the new owner. With no handler, the node acknowledges at once. A
    /// handler that takes longer than the handoff timeout is overtaken: the shard is
    /// assigned anyway.
    ///
    /// An actor system joined with `ActorSystemBuilder::cluster(&node)` installs
    /// the release of its actors itself; this replaces every handler set so far,
    /// that one included, so call it before joining systems to the node.
    pub fn set_handoff_handler<F, Fut>(&self, handler: F)
    where
        F: Fn(HandoffRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if let Ok(mut slot) = self.inner.handler.write() {
            *slot = Some(boxed_handler(handler));
        }
    }

    /// The member TTL and lease TTL in force (those of the buckets). Embedded: zero.
    pub fn ttls(&self) -> (Duration, Duration) {
        self.inner
            .nats
            .as_ref()
            .map_or((Duration::ZERO, Duration::ZERO), |nats| {
                (nats.member_ttl, nats.lease_ttl)
            })
    }

    /// Leaves the cluster gracefully: releases the lease if this node holds it (so
    /// another node campaigns at once), deletes its member key (so every view drops
    /// it at once), and stops every task. Other handles on this node see it stopped.
    ///
    /// The leader then assigns this node's shards to the others at once, without a
    /// handoff (the node is gone): an actor host should passivate its actors before
    /// calling this.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Backend`] / [`ClusterError::Timeout`] when the member key
    /// cannot be deleted; the node is stopped anyway and its key expires by its TTL.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        let Some(nats) = &self.inner.nats else {
            return Ok(());
        };
        let _ = nats.shutdown.send(true);
        // The campaign task releases a held lease when told to stop.
        let campaign = nats.campaign.lock().ok().and_then(|mut slot| slot.take());
        if let Some(campaign) = campaign {
            let _ = tokio::time::timeout(nats.lease_ttl, campaign).await;
        }
        let heartbeat = nats.heartbeat.lock().ok().and_then(|mut slot| slot.take());
        if let Some(heartbeat) = heartbeat {
            let _ = heartbeat.await;
        }
        let deleted = tokio::time::timeout(
            nats.member_ttl,
            nats.buckets
                .members
                .delete(&member_key(&self.inner.node_id), None),
        )
        .await;
        if let Ok(mut tasks) = nats.tasks.lock() {
            for task in tasks.drain(..) {
                task.abort();
            }
        }
        tracing::info!(node = %self.inner.node_id, "left the cluster");
        match deleted {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ClusterError::Timeout {
                operation: "delete the member key".to_owned(),
            }),
        }
    }
}

/// The cluster's shard map as the actor runtime sees it: a shard is `Local`
/// when this node owns it in the newest map *and* claims membership,
/// `Moving` while a handoff runs, `Remote` when another node owns it,
/// `Unassigned` otherwise (no map yet, no owner, or this node lost its
/// membership and must not act on its view).
impl ShardDirectory for ClusterManager {
    fn local_node(&self) -> &NodeId {
        self.node_id()
    }

    fn shard_count(&self) -> u32 {
        ClusterManager::shard_count(self)
    }

    fn placement(&self, shard: ShardId) -> Placement {
        let Some(map) = self.shard_map() else {
            return Placement::Unassigned;
        };
        if map.moving(shard).is_some() {
            return Placement::Moving;
        }
        match map.owner(shard) {
            None => Placement::Unassigned,
            Some(owner) if owner == self.node_id() => {
                if self.is_member() {
                    Placement::Local
                } else {
                    Placement::Unassigned
                }
            }
            Some(owner) => Placement::Remote(owner.clone()),
        }
    }

    fn epoch(&self) -> u64 {
        self.shard_map().map_or(0, |m| m.epoch)
    }

    fn changed(&self) -> BoxFuture<'static, ()> {
        let manager = self.clone();
        let seen = self.shard_map().map(|m| (m.term, m.epoch));
        Box::pin(async move {
            let _ = manager
                .wait_for_map(|m| Some((m.term, m.epoch)) != seen)
                .await;
        })
    }
}

/// A node on NATS joins an actor system in one call
/// (`ActorSystem::builder(store).cluster(&node)`): placements from the
/// shard map, requests on the subject the node announced, and the release
/// of a shard's actors before its handoff is acknowledged. An embedded node
/// has no client: its system hosts every shard locally.
impl ClusterNode for ClusterManager {
    fn directory(&self) -> Arc<dyn ShardDirectory> {
        Arc::new(self.clone())
    }

    fn client(&self) -> Option<async_nats::Client> {
        self.inner.nats.as_ref().map(|n| n.client.clone())
    }

    fn subject_of(&self, node: &NodeId) -> String {
        self.inner.nats.as_ref().map_or_else(String::new, |n| {
            node_subject(&n.subject_prefix, &n.cluster, node)
        })
    }

    fn kinds(&self) -> Vec<String> {
        self.inner
            .nats
            .as_ref()
            .map(|n| n.kinds.clone())
            .unwrap_or_default()
    }

    fn on_release(&self, release: Release) {
        let Ok(mut slot) = self.inner.handler.write() else {
            return;
        };
        let earlier = slot.take();
        *slot = Some(Arc::new(move |request: HandoffRequest| {
            let shard = request.shard;
            let earlier = earlier.as_ref().map(|h| h(request));
            let ours = release(shard);
            Box::pin(async move {
                match earlier {
                    Some(earlier) => {
                        futures::future::join(earlier, ours).await;
                    }
                    None => ours.await,
                }
            })
        }));
    }
}
