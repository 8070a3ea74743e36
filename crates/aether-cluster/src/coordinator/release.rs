//! Releasing shards (every node): a shard the newest map moves away from this node
//! is handed to the node's handoff handler, then acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, watch};

use super::{Handler, HandoffRequest, MapState};
use crate::kv::{Bucket, HANDOFF_ACK_TTL, handoff_key};
use crate::membership::{MemberView, stopped};
use crate::next_map::HandoffAck;
use crate::{NodeId, ShardId};

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
