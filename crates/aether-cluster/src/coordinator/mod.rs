//! The shard map on NATS: every node follows it, the leader writes it.
//!
//! - **Following** (every node): a watch on the map bucket keeps the newest map by
//!   `(term, epoch)` and ignores any older one, and collects handoff
//!   acknowledgements (`handoff.<shard>.<epoch>`).
//! - **Releasing** (every node): when the newest map marks a shard *moving* from this
//!   node, the node's handoff handler is told to release it; when it returns, the
//!   node acknowledges under `handoff.<shard>.<epoch>` (with no handler it
//!   acknowledges at once).
//! - **Leading** (the node acting under the lease): on a membership change
//!   (debounced), a new term, an acknowledgement or a handoff timeout, the leader
//!   recomputes the map with [`place`](crate::place) (through the pure step of
//!   the crate's `next_map` module) and CAS-writes it
//!   (`update(map, .., last_revision)`). A move is two epochs: first the shard is
//!   marked moving from A to B; once A acknowledges (or A is dead, or silent past the
//!   handoff timeout) B is published as owner. A new leader first rewrites the map
//!   under its own term, which fences a deposed leader's later CAS.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc, watch};

use crate::kv::{
    Bucket, Cas, HANDOFF_ACK_TTL, HANDOFF_PREFIX, MAP_KEY, count_bad_record, handoff_key,
    parse_handoff_key,
};
use crate::leader::LeaseStatus;
use crate::membership::{MemberView, sleep_or_stop, stopped};
use crate::next_map::{HandoffAck, Mark, next_map};
use crate::{ClusterEvent, Member, NodeId, ShardId, ShardMap};

/// A request to release a shard: the node must stop taking new commands for it,
/// finish the one in flight, passivate its actors, and then return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffRequest {
    /// The shard to release.
    pub shard: ShardId,
    /// The map epoch in which the move was seen.
    pub epoch: u64,
    /// The node that takes the shard over.
    pub to: NodeId,
}

/// What a node runs to release a shard (see [`HandoffRequest`]).
pub(crate) type Handler = Arc<dyn Fn(HandoffRequest) -> BoxFuture<'static, ()> + Send + Sync>;

/// One write the leader is about to make, reported to the audit hook
/// ([`ClusterManagerBuilder::on_leader_action`](crate::ClusterManagerBuilder::on_leader_action)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAction {
    /// The node acting as leader.
    pub node: NodeId,
    /// The term it acts under.
    pub term: u64,
    /// The epoch of the map it writes.
    pub epoch: u64,
    /// When the node decided to write (local monotonic clock).
    pub at: std::time::Instant,
}

/// The audit hook.
pub(crate) type AuditHook = Arc<dyn Fn(&LeaderAction) + Send + Sync>;

/// What this node knows about the shard map.
#[derive(Debug, Clone, Default)]
pub(crate) struct MapState {
    /// The newest map seen, by `(term, epoch)`.
    pub(crate) newest: Option<Arc<ShardMap>>,
    /// Revision of the last entry of the map key (0: none): the leader's CAS base.
    pub(crate) revision: u64,
    /// Handoff acknowledgements by `(shard, epoch)`.
    pub(crate) acks: BTreeMap<(u32, u64), HandoffAck>,
}

/// Accepts `map` if it is newer than the newest one; returns whether it was.
fn accept(
    state: &watch::Sender<MapState>,
    map: ShardMap,
    revision: u64,
    local: &NodeId,
    events: &broadcast::Sender<ClusterEvent>,
) -> bool {
    let mut accepted = false;
    let (term, epoch) = (map.term, map.epoch);
    let owned = map.shards_of(local).len();
    state.send_modify(|state| {
        state.revision = state.revision.max(revision);
        if state
            .newest
            .as_ref()
            .is_none_or(|newest| map.is_newer_than(newest))
        {
            // Acknowledgements of shards no longer moving are of no use.
            state
                .acks
                .retain(|(shard, _), _| map.moving.contains_key(shard));
            state.newest = Some(Arc::new(map));
            accepted = true;
        }
    });
    if accepted {
        let span = tracing::info_span!("shard_map", node = %local, term, epoch);
        tracing::info!(parent: &span, owned, "shard map changed");
        metrics::gauge!("aether_cluster_map_epoch", "node" => local.as_str().to_owned())
            .set(epoch as f64);
        metrics::gauge!("aether_cluster_shards_owned", "node" => local.as_str().to_owned())
            .set(owned as f64);
        let _ = events.send(ClusterEvent::ShardMapChanged { term, epoch });
    }
    accepted
}

/// Follows the map bucket until `shutdown`.
///
/// The watch is the fast path. Every `resync` the map key is also read
/// directly and applied if it is newer: after the NATS server a node was
/// connected to dies, a watch can stay open yet deliver nothing, and a node
/// must never keep acting on a stale map because of it.
pub(crate) async fn follow(
    bucket: Bucket,
    local: NodeId,
    shard_count: u32,
    resync: Duration,
    state: watch::Sender<MapState>,
    events: broadcast::Sender<ClusterEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    let mut tick = tokio::time::interval(resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let created = tokio::select! {
            watch = bucket.watch_with_history(">") => watch,
            () = stopped(&mut shutdown) => return,
        };
        let mut watch = match created {
            Ok(watch) => watch,
            Err(err) => {
                tracing::warn!(%err, "cannot watch the map bucket; retrying");
                if sleep_or_stop(backoff, &mut shutdown).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        loop {
            let entry = tokio::select! {
                entry = watch.next() => entry,
                _ = tick.tick() => {
                    resync_map(&bucket, resync, &local, shard_count, &state, &events).await;
                    continue;
                }
                () = stopped(&mut shutdown) => return,
            };
            match entry {
                Some(Ok(entry)) => apply(&entry, &local, shard_count, &state, &events),
                Some(Err(err)) => {
                    tracing::warn!(%err, "map watch failed; watching again");
                    break;
                }
                None => break,
            }
        }
    }
}

/// Reads the map key directly and applies it (an older map is ignored).
async fn resync_map(
    bucket: &Bucket,
    wait: Duration,
    local: &NodeId,
    shard_count: u32,
    state: &watch::Sender<MapState>,
    events: &broadcast::Sender<ClusterEvent>,
) {
    let newest =
        |state: &watch::Sender<MapState>| state.borrow().newest.as_ref().map(|m| (m.term, m.epoch));
    match tokio::time::timeout(wait, bucket.entry(MAP_KEY)).await {
        Ok(Ok(Some(entry))) => {
            let before = newest(state);
            apply(&entry, local, shard_count, state, events);
            if newest(state) != before {
                metrics::counter!("aether_cluster_map_resyncs_total").increment(1);
                tracing::info!(node = %local, "the map watch had missed a newer map; resynced");
            }
        }
        Ok(Ok(None)) => {}
        Ok(Err(err)) => tracing::debug!(%err, "cannot read the map; resyncing later"),
        Err(_) => tracing::debug!("reading the map timed out; resyncing later"),
    }
}

/// Applies one entry of the map bucket.
fn apply(
    entry: &kv::Entry,
    local: &NodeId,
    shard_count: u32,
    state: &watch::Sender<MapState>,
    events: &broadcast::Sender<ClusterEvent>,
) {
    if entry.key == MAP_KEY {
        if entry.operation != kv::Operation::Put {
            state.send_modify(|state| state.revision = state.revision.max(entry.revision));
            return;
        }
        match ShardMap::decode(&entry.value) {
            Ok(map) if map.shard_count != shard_count => {
                state.send_modify(|state| state.revision = state.revision.max(entry.revision));
                count_bad_record(
                    "map",
                    &entry.key,
                    &format!(
                        "a map for {} shards, this node has {shard_count}",
                        map.shard_count
                    ),
                );
            }
            Ok(map) if map.owners.len() != shard_count as usize => {
                state.send_modify(|state| state.revision = state.revision.max(entry.revision));
                count_bad_record("map", &entry.key, &"owners do not match the shard count");
            }
            Ok(map) => {
                accept(state, map, entry.revision, local, events);
            }
            Err(err) => {
                state.send_modify(|state| state.revision = state.revision.max(entry.revision));
                count_bad_record("map", &entry.key, &err);
            }
        }
    } else if entry.key.starts_with(HANDOFF_PREFIX) {
        if entry.operation != kv::Operation::Put {
            return;
        }
        let Some((shard, epoch)) = parse_handoff_key(&entry.key) else {
            count_bad_record("map", &entry.key, &"not a handoff key");
            return;
        };
        match rmp_serde::from_slice::<HandoffAck>(&entry.value) {
            Ok(ack) => state.send_modify(|state| {
                // Only moves still in progress need acknowledgements.
                let moving = state
                    .newest
                    .as_ref()
                    .is_none_or(|map| map.moving.contains_key(&shard));
                if moving {
                    state.acks.insert((shard, epoch), ack);
                }
            }),
            Err(err) => count_bad_record("map", &entry.key, &format!("not a handoff ack: {err}")),
        }
    } else {
        count_bad_record("map", &entry.key, &"unexpected key in the map bucket");
    }
}

/// Releases the shards the newest map moves away from this node, and acknowledges
/// each once released. Runs until `shutdown`.
pub(crate) async fn release(
    bucket: Bucket,
    local: NodeId,
    mut map: watch::Receiver<MapState>,
    view: watch::Receiver<MemberView>,
    handler: Arc<RwLock<Option<Handler>>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Shards being released (or released), with the node they go to.
    let mut releasing: HashMap<u32, NodeId> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u32, NodeId)>();
    loop {
        tokio::select! {
            changed = map.changed() => if changed.is_err() { return },
            Some((shard, to)) = done_rx.recv() => {
                acknowledge(&bucket, &local, &map, &view, shard, to);
            }
            () = stopped(&mut shutdown) => return,
        }
        let Some(newest) = map.borrow_and_update().newest.clone() else {
            continue;
        };
        releasing.retain(|shard, to| {
            newest
                .moving
                .get(shard)
                .is_some_and(|mv| mv.from == local && mv.to == *to)
        });
        for (&shard, mv) in &newest.moving {
            if mv.from != local || releasing.get(&shard) == Some(&mv.to) {
                continue;
            }
            releasing.insert(shard, mv.to.clone());
            let request = HandoffRequest {
                shard: ShardId::new(shard),
                epoch: newest.epoch,
                to: mv.to.clone(),
            };
            let handler = handler.read().ok().and_then(|handler| handler.clone());
            let done = done_tx.clone();
            tracing::debug!(shard, epoch = newest.epoch, to = %mv.to, "releasing shard");
            tokio::spawn(async move {
                if let Some(handler) = handler {
                    handler(request.clone()).await;
                }
                let _ = done.send((request.shard.get(), request.to));
            });
        }
    }
}

/// Writes the acknowledgement of `shard` if the newest map still moves it from this
/// node to `to`.
fn acknowledge(
    bucket: &Bucket,
    local: &NodeId,
    map: &watch::Receiver<MapState>,
    view: &watch::Receiver<MemberView>,
    shard: u32,
    to: NodeId,
) {
    let Some(newest) = map.borrow().newest.clone() else {
        return;
    };
    if !newest
        .moving
        .get(&shard)
        .is_some_and(|mv| mv.from == *local && mv.to == to)
    {
        return;
    }
    let Some(me) = view.borrow().me.clone() else {
        return;
    };
    let ack = HandoffAck {
        from: local.clone(),
        to,
        incarnation: me.incarnation,
    };
    let Ok(body) = rmp_serde::to_vec_named(&ack) else {
        return;
    };
    let bucket = bucket.clone();
    let key = handoff_key(shard, newest.epoch);
    tokio::spawn(async move {
        match bucket
            .create_with_ttl(&key, body.into(), HANDOFF_ACK_TTL)
            .await
        {
            Ok(_) => tracing::debug!(key, "acknowledged handoff"),
            Err(err) => tracing::warn!(key, %err, "cannot acknowledge a handoff"),
        }
    });
}

/// The leader side: recomputes and writes the map while this node acts as leader.
pub(crate) struct Leading {
    pub(crate) bucket: Bucket,
    pub(crate) local: NodeId,
    pub(crate) shard_count: u32,
    pub(crate) handoff_timeout: Duration,
    pub(crate) debounce: Duration,
    pub(crate) view: watch::Receiver<MemberView>,
    pub(crate) lease: watch::Receiver<LeaseStatus>,
    pub(crate) map: watch::Sender<MapState>,
    pub(crate) events: broadcast::Sender<ClusterEvent>,
    pub(crate) audit: Option<AuditHook>,
}

impl Leading {
    /// Runs until `shutdown`.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut map_rx = self.map.subscribe();
        let mut marks: HashMap<u32, Mark> = HashMap::new();
        let mut term_seen: Option<u64> = None;
        let tick =
            (self.handoff_timeout / 4).clamp(Duration::from_millis(20), Duration::from_millis(250));
        loop {
            let mut burst = false;
            tokio::select! {
                changed = self.view.changed() => {
                    if changed.is_err() { return }
                    burst = true;
                }
                changed = self.lease.changed() => if changed.is_err() { return },
                changed = map_rx.changed() => {
                    if changed.is_err() { return }
                    burst = true;
                }
                () = tokio::time::sleep(tick) => {}
                () = stopped(&mut shutdown) => return,
            }
            // Debounce: let a burst of joins and leaves, or of handoff
            // acknowledgements, settle into one map.
            if burst && sleep_or_stop(self.debounce, &mut shutdown).await {
                return;
            }
            self.view.borrow_and_update();
            self.lease.borrow_and_update();
            map_rx.borrow_and_update();
            self.step(&mut marks, &mut term_seen).await;
        }
    }

    async fn step(&self, marks: &mut HashMap<u32, Mark>, term_seen: &mut Option<u64>) {
        let Some(term) = self.lease.borrow().acting_term() else {
            marks.clear();
            *term_seen = None;
            return;
        };
        let view = self.view.borrow().clone();
        if !view.claiming() {
            return;
        }
        let state = self.map.borrow().clone();
        if state
            .newest
            .as_ref()
            .is_some_and(|current| current.term > term)
        {
            // A newer leader already wrote; this lease is about to be lost.
            return;
        }
        let now = Instant::now();
        if *term_seen != Some(term) {
            // A new term: moves in the map are taken over, timed from now.
            marks.clear();
            if let Some(current) = &state.newest {
                for &shard in current.moving.keys() {
                    marks.insert(
                        shard,
                        Mark {
                            since: now,
                            epoch: 0,
                        },
                    );
                }
            }
            *term_seen = Some(term);
        }
        let members: Vec<Member> = view
            .members
            .values()
            .map(|info| Member {
                node: info.node_id.clone(),
                weight: info.capacity.max(1),
            })
            .collect();
        if members.is_empty() {
            return;
        }
        let Some(next) = next_map(
            state.newest.as_deref(),
            &state.acks,
            &members,
            self.shard_count,
            term,
            marks,
            self.handoff_timeout,
            now,
        ) else {
            return;
        };
        let action = LeaderAction {
            node: self.local.clone(),
            term,
            epoch: next.epoch,
            at: Instant::now(),
        };
        // Last check before the write: still acting under this term.
        if self.lease.borrow().acting_term() != Some(term) {
            return;
        }
        if let Some(audit) = &self.audit {
            audit(&action);
        }
        let span = tracing::info_span!("map_write", node = %self.local, term, epoch = next.epoch);
        let body = next.encode();
        let written = if state.revision == 0 {
            self.bucket.create(MAP_KEY, body.into()).await
        } else {
            self.bucket
                .update(MAP_KEY, body.into(), state.revision)
                .await
        };
        match written {
            Ok(Cas::Written(revision)) => {
                tracing::info!(parent: &span, moving = next.moving.len(), "wrote the shard map");
                let after = Instant::now();
                for &shard in next.moving.keys() {
                    marks.entry(shard).or_insert(Mark {
                        since: after,
                        epoch: next.epoch,
                    });
                }
                accept(&self.map, next, revision, &self.local, &self.events);
            }
            Ok(Cas::Conflict) => {
                tracing::debug!(parent: &span, "the map changed under this write; recomputing");
            }
            Err(err) => tracing::warn!(parent: &span, %err, "cannot write the shard map"),
        }
    }
}
