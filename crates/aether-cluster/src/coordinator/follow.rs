//! Following the map bucket (every node): the newest map by `(term, epoch)`, and
//! the handoff acknowledgements.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use super::{MapState, accept};
use crate::kv::{Bucket, HANDOFF_PREFIX, MAP_KEY, count_bad_record, parse_handoff_key};
use crate::membership::{sleep_or_stop, stopped};
use crate::next_map::HandoffAck;
use crate::{ClusterEvent, NodeId, ShardMap};

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
