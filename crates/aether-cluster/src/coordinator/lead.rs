//! Leading (the node acting under the lease): recomputes the map with
//! [`next_map`] and CAS-writes it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};

use super::{AuditHook, LeaderAction, MapState, accept};
use crate::kv::{Bucket, Cas, MAP_KEY};
use crate::leader::LeaseStatus;
use crate::membership::{MemberView, sleep_or_stop, stopped};
use crate::next_map::{Mark, next_map};
use crate::{ClusterEvent, Member, NodeId};

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
