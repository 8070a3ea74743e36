//! Membership: heartbeats into the members bucket and the live view from it.
//!
//! Each node `put`s `members.<encoded node id>` every member TTL / 3 with its
//! [`NodeInfo`] (MessagePack). The bucket's `max_age` is the member TTL, so a node
//! that stops heartbeating disappears by itself, and the limit marker its expiry
//! leaves tells every watcher at once. The view is built from a
//! `watch_with_history` on `members.>`, reconciled with `keys()` every TTL so a
//! delete missed during a reconnect cannot strand a member.
//!
//! A node whose last successful heartbeat was *sent* more than the TTL minus a
//! margin ago stops claiming membership locally ([`ClusterManager::is_member`](crate::ClusterManager::is_member)
//! turns false): the other nodes may already have dropped it, and it must not act on a
//! view it cannot refresh. When a heartbeat succeeds again it rejoins with a new
//! [`Incarnation`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use time::OffsetDateTime;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::kv::{Bucket, MEMBER_PREFIX, count_bad_record, member_key};
use crate::{ClusterEvent, Incarnation, NodeId, NodeInfo};

/// What this node knows about the membership.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberView {
    /// Live members as the members bucket shows them (this node included while its
    /// heartbeats land).
    pub(crate) members: Arc<BTreeMap<NodeId, NodeInfo>>,
    /// This node's record while it claims membership: its last heartbeat was sent
    /// less than the TTL minus a margin ago and succeeded.
    pub(crate) me: Option<NodeInfo>,
}

impl MemberView {
    /// Whether this node currently claims membership.
    pub(crate) fn claiming(&self) -> bool {
        self.me.is_some()
    }
}

/// What a node announces about itself, apart from the incarnation and start time.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) node_id: NodeId,
    pub(crate) subject: String,
    pub(crate) kinds: Vec<String>,
    pub(crate) capacity: u32,
    pub(crate) version: String,
}

impl Profile {
    fn info(&self, incarnation: Incarnation, started_at: OffsetDateTime) -> NodeInfo {
        NodeInfo {
            node_id: self.node_id.clone(),
            incarnation,
            subject: self.subject.clone(),
            kinds: self.kinds.clone(),
            capacity: self.capacity,
            version: self.version.clone(),
            started_at,
        }
    }
}

/// The margin kept below the TTL: a node stops claiming membership this long
/// before its record can have expired on the server.
pub(crate) fn claim_margin(ttl: Duration) -> Duration {
    (ttl / 10).max(Duration::from_millis(20))
}

/// Puts this node's record every `ttl / 3` until `shutdown` turns true.
///
/// Returns when shut down; it never gives up on errors (each failed heartbeat is
/// counted and logged).
pub(crate) async fn heartbeat(
    bucket: Bucket,
    profile: Profile,
    first: Incarnation,
    ttl: Duration,
    view: watch::Sender<MemberView>,
    events: broadcast::Sender<ClusterEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let key = member_key(&profile.node_id);
    let node = profile.node_id.as_str().to_owned();
    let interval = ttl / 3;
    let margin = claim_margin(ttl);
    let mut info = profile.info(first, OffsetDateTime::now_utc());
    // While claiming: the instant the claim lapses unless a heartbeat lands first.
    let mut claim_until: Option<Instant> = None;
    loop {
        let sent = Instant::now();
        let body = match rmp_serde::to_vec_named(&info) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(%err, "cannot encode this node's record; not heartbeating");
                return;
            }
        };
        // A put must not outlive the claim: bound it by the claim's end (or the TTL).
        let limit = claim_until.map_or(ttl, |until| until.saturating_duration_since(sent));
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(limit.max(Duration::from_millis(10)), bucket.put(&key, body.into())) => outcome,
            () = stopped(&mut shutdown) => return,
        };
        let landed = matches!(outcome, Ok(Ok(_)));
        match outcome {
            Ok(Ok(_revision)) => {
                if claim_until.is_none() {
                    tracing::info!(node, incarnation = %info.incarnation, "joined the cluster");
                    let me = info.clone();
                    view.send_modify(|view| view.me = Some(me));
                }
                claim_until = Some(sent + ttl.saturating_sub(margin));
            }
            Ok(Err(err)) => {
                metrics::counter!("aether_cluster_heartbeat_failures_total").increment(1);
                tracing::warn!(node, %err, "heartbeat failed");
            }
            Err(_) => {
                metrics::counter!("aether_cluster_heartbeat_failures_total").increment(1);
                tracing::warn!(node, "heartbeat timed out");
            }
        }
        // After a failure (or while not a member) retry sooner than the interval.
        let pause = if landed {
            interval
        } else {
            (interval / 3).max(Duration::from_millis(10))
        };
        let next = match claim_until {
            Some(until) => (sent + pause).min(until),
            None => sent + pause,
        };
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = stopped(&mut shutdown) => return,
        }
        if claim_until.is_some_and(|until| Instant::now() >= until) {
            claim_until = None;
            tracing::warn!(
                node,
                incarnation = %info.incarnation,
                "no heartbeat landed within the member TTL: no longer claiming membership"
            );
            let old = info.incarnation;
            view.send_modify(|view| view.me = None);
            let _ = events.send(ClusterEvent::MemberLeft {
                node: profile.node_id.clone(),
                incarnation: old,
            });
            // Others may have seen this incarnation leave: come back as a new one.
            info = profile.info(Incarnation::new(), OffsetDateTime::now_utc());
        }
    }
}

/// The live view: applies watch entries, reconciles with `keys()` every `ttl`.
pub(crate) struct ViewKeeper {
    bucket: Bucket,
    ttl: Duration,
    view: watch::Sender<MemberView>,
    events: broadcast::Sender<ClusterEvent>,
    /// Per key: last applied revision and when this node saw it.
    seen: HashMap<String, (u64, Instant)>,
    local: NodeId,
}

impl ViewKeeper {
    pub(crate) fn new(
        bucket: Bucket,
        ttl: Duration,
        view: watch::Sender<MemberView>,
        events: broadcast::Sender<ClusterEvent>,
        local: NodeId,
    ) -> Self {
        Self {
            bucket,
            ttl,
            view,
            events,
            seen: HashMap::new(),
            local,
        }
    }

    /// Runs until `shutdown` turns true. Watch failures are retried with a back-off.
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let filter = format!("{MEMBER_PREFIX}>");
            let created = tokio::select! {
                watch = self.bucket.watch_with_history(&filter) => watch,
                () = stopped(&mut shutdown) => return,
            };
            let mut watch = match created {
                Ok(watch) => watch,
                Err(err) => {
                    tracing::warn!(%err, "cannot watch the members bucket; retrying");
                    if sleep_or_stop(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.ttl);
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            let mut reconcile = tokio::time::interval(self.ttl);
            reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            reconcile.tick().await;
            loop {
                tokio::select! {
                    entry = watch.next() => match entry {
                        Some(Ok(entry)) => self.apply(entry),
                        Some(Err(err)) => {
                            tracing::warn!(%err, "members watch failed; watching again");
                            break;
                        }
                        None => break,
                    },
                    _ = reconcile.tick() => self.reconcile().await,
                    () = stopped(&mut shutdown) => return,
                }
            }
        }
    }

    fn apply(&mut self, entry: kv::Entry) {
        let Some(token) = entry.key.strip_prefix(MEMBER_PREFIX) else {
            count_bad_record("members", &entry.key, &"not a member key");
            return;
        };
        if let Some((revision, _)) = self.seen.get(&entry.key)
            && *revision > entry.revision
        {
            return;
        }
        match entry.operation {
            kv::Operation::Put => {
                let info = match decode_member(token, &entry.value) {
                    Ok(info) => info,
                    Err(why) => {
                        count_bad_record("members", &entry.key, &why);
                        return;
                    }
                };
                self.seen
                    .insert(entry.key.clone(), (entry.revision, Instant::now()));
                self.upsert(info);
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                self.seen.remove(&entry.key);
                self.remove_token(token);
            }
        }
    }

    fn upsert(&mut self, info: NodeInfo) {
        let previous = self.view.borrow().members.get(&info.node_id).cloned();
        match previous {
            Some(previous) if previous.incarnation == info.incarnation => {
                if previous != info {
                    self.replace(info);
                }
            }
            Some(previous) => {
                let _ = self.events.send(ClusterEvent::MemberLeft {
                    node: previous.node_id.clone(),
                    incarnation: previous.incarnation,
                });
                tracing::info!(node = %info.node_id, incarnation = %info.incarnation, "member restarted");
                self.replace(info.clone());
                let _ = self.events.send(ClusterEvent::MemberJoined(info));
            }
            None => {
                tracing::info!(node = %info.node_id, incarnation = %info.incarnation, "member joined");
                self.replace(info.clone());
                let _ = self.events.send(ClusterEvent::MemberJoined(info));
            }
        }
    }

    fn replace(&self, info: NodeInfo) {
        self.view.send_modify(|view| {
            let mut members = (*view.members).clone();
            members.insert(info.node_id.clone(), info);
            view.members = Arc::new(members);
        });
        self.gauge();
    }

    fn remove_token(&mut self, token: &str) {
        let found = self
            .view
            .borrow()
            .members
            .values()
            .find(|info| aether_core::name::encode_token(info.node_id.as_str()) == token)
            .cloned();
        if let Some(info) = found {
            tracing::info!(node = %info.node_id, incarnation = %info.incarnation, "member left");
            self.view.send_modify(|view| {
                let mut members = (*view.members).clone();
                members.remove(&info.node_id);
                view.members = Arc::new(members);
            });
            self.gauge();
            let _ = self.events.send(ClusterEvent::MemberLeft {
                node: info.node_id,
                incarnation: info.incarnation,
            });
        }
    }

    /// Drops members whose key is gone and who have not been heard of for a TTL;
    /// adds keys the watch did not deliver.
    async fn reconcile(&mut self) {
        let keys = match tokio::time::timeout(self.ttl, self.bucket.keys()).await {
            Ok(Ok(keys)) => keys,
            Ok(Err(err)) => {
                tracing::debug!(%err, "cannot list member keys; reconciling later");
                return;
            }
            Err(_) => return,
        };
        let listed: std::collections::HashSet<&str> = keys.iter().map(String::as_str).collect();
        let now = Instant::now();
        let stale: Vec<String> = self
            .seen
            .iter()
            .filter(|(key, (_, at))| {
                !listed.contains(key.as_str()) && now.duration_since(*at) >= self.ttl
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.seen.remove(&key);
            if let Some(token) = key.strip_prefix(MEMBER_PREFIX) {
                self.remove_token(token);
            }
        }
        for key in keys {
            if self.seen.contains_key(&key) {
                continue;
            }
            match self.bucket.entry(&key).await {
                Ok(Some(entry)) => self.apply(entry),
                Ok(None) => {}
                Err(err) => tracing::debug!(%err, key, "cannot read a member key"),
            }
        }
    }

    fn gauge(&self) {
        let count = self.view.borrow().members.len();
        metrics::gauge!("aether_cluster_members", "node" => self.local.as_str().to_owned())
            .set(count as f64);
    }
}

/// Decodes a member record and checks it belongs under `token`.
pub(crate) fn decode_member(token: &str, value: &[u8]) -> Result<NodeInfo, String> {
    let info: NodeInfo =
        rmp_serde::from_slice(value).map_err(|err| format!("not a member record: {err}"))?;
    if aether_core::name::encode_token(info.node_id.as_str()) != token {
        return Err(format!(
            "record of node {} stored under another node's key",
            info.node_id
        ));
    }
    if info.capacity == 0 {
        return Err(format!("node {} announces capacity 0", info.node_id));
    }
    Ok(info)
}

/// Sleeps for `duration`; returns `true` if `shutdown` turned true first.
pub(crate) async fn sleep_or_stop(
    duration: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = stopped(shutdown) => true,
    }
}

/// Completes when `shutdown` turns true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: &str, capacity: u32) -> NodeInfo {
        NodeInfo {
            node_id: NodeId::new(node).unwrap(),
            incarnation: Incarnation::new(),
            subject: "s".to_owned(),
            kinds: Vec::new(),
            capacity,
            version: "0".to_owned(),
            started_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn member_records_are_checked_against_their_key() {
        let good = rmp_serde::to_vec_named(&info("a.b", 1)).unwrap();
        let token = aether_core::name::encode_token("a.b");
        assert_eq!(
            decode_member(&token, &good).unwrap().node_id.as_str(),
            "a.b"
        );
        // Someone else's record under this key, garbage, a zero capacity.
        assert!(decode_member("a_5Fb", &good).is_err());
        assert!(decode_member(&token, b"garbage").is_err());
        let zero = rmp_serde::to_vec_named(&info("a.b", 0)).unwrap();
        assert!(decode_member(&token, &zero).is_err());
    }

    #[test]
    fn the_claim_ends_a_margin_before_the_ttl() {
        let ttl = Duration::from_secs(3);
        assert!(claim_margin(ttl) > Duration::ZERO);
        assert!(claim_margin(ttl) < ttl / 3);
    }
}
