//! The leader lease: campaign, renew, step down, term.
//!
//! - **Campaign** with `create("leader")`: it succeeds only while the key is absent,
//!   deleted or expired. The revision of the winning create is the **term**; stream
//!   sequences only grow, so a later leader has a larger term.
//! - **Renew** with `update("leader", .., last_revision)` every lease TTL / 3.
//! - **Step down** when a renewal meets `WrongLastRevision`, or when the local
//!   monotonic time since the last successful renewal was *sent* passes the TTL minus
//!   a margin, whichever comes first. The check runs before anything else when a
//!   paused process resumes, and [`ClusterManager::is_leader`](crate::ClusterManager::is_leader) checks the deadline on
//!   every call, so a node frozen past its lease never believes it still leads.
//! - **Act** only after a settle delay, so a deposed leader has stopped first.
//! - Leadership is never decided from a read: only a create or a CAS that succeeded.
//!   A node that sees a term lower than one it has seen (the bucket was deleted and
//!   made again) reports it loudly and does not follow it.

use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use crate::kv::{Bucket, Cas, LEADER_KEY, count_bad_record};
use crate::membership::{sleep_or_stop, stopped};
use crate::{ClusterEvent, Incarnation, NodeId};

/// The value under the leader key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeaderRecord {
    pub(crate) node: NodeId,
    pub(crate) incarnation: Incarnation,
    /// The term, once known (renewals carry it; the winning create cannot).
    #[serde(default)]
    pub(crate) term: Option<u64>,
}

/// Timing of the lease.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseTiming {
    pub(crate) ttl: Duration,
    pub(crate) settle: Duration,
}

impl LeaseTiming {
    /// The margin kept below the TTL before the leader steps down on its own.
    pub(crate) fn margin(&self) -> Duration {
        (self.ttl / 10).max(Duration::from_millis(20))
    }
}

/// A lease this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) term: u64,
    /// Local monotonic deadline: the lease is not relied on past it.
    pub(crate) valid_until: Instant,
    /// Whether the settle delay has passed (only then does the node act).
    pub(crate) acting: bool,
}

/// What this node knows about the lease.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseStatus {
    /// The lease this node holds, if any.
    pub(crate) held: Option<Held>,
    /// The holder and term last seen on the leader key (`None` holder: vacant or
    /// unreadable).
    pub(crate) observed: Option<(Option<NodeId>, u64)>,
    /// The highest term ever seen.
    pub(crate) highest_term: u64,
    /// Revision of the last value seen on the leader key and when it was seen
    /// (`None`: vacant or not seen yet).
    pub(crate) last_put: Option<(u64, Instant)>,
}

impl LeaseStatus {
    /// The term this node may act under right now: it holds the lease, the settle
    /// delay has passed and the local deadline has not.
    pub(crate) fn acting_term(&self) -> Option<u64> {
        self.held
            .filter(|held| held.acting && Instant::now() < held.valid_until)
            .map(|held| held.term)
    }
}

/// Runs the campaign/renew loop until `shutdown`; on shutdown a held lease is
/// released (deleted if still ours) so others campaign at once.
///
/// A campaign is a `create` while the key is vacant. While it is held, the node
/// waits for the key to become vacant (the expiry marker) or for the holder to go
/// silent: when no renewal has been seen for a whole TTL, it takes over with
/// `update(leader, .., last revision seen)`, a CAS that fails if the holder renewed
/// meanwhile. The holder itself stopped acting a margin before its TTL ran out (its
/// deadline runs from when its renewal was sent, before this node saw it), so the
/// takeover never overlaps it; and it saves waiting for the server's expiry timer.
pub(crate) async fn run(
    bucket: Bucket,
    node: NodeId,
    incarnation: watch::Receiver<Option<Incarnation>>,
    timing: LeaseTiming,
    status: watch::Sender<LeaseStatus>,
    vacant: std::sync::Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let retry = timing.ttl / 3;
    let mut seen = status.subscribe();
    // `Some(revision)`: take over from a silent holder whose last revision it is.
    let mut takeover: Option<u64> = None;
    // The revision of the last takeover tried: never tried twice (a watch that
    // stalled would otherwise make this node retry it in a tight loop).
    let mut tried: Option<u64> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Only a member campaigns.
        let current = *incarnation.borrow();
        let Some(current) = current else {
            if sleep_or_stop(retry / 2, &mut shutdown).await {
                return;
            }
            continue;
        };
        let record = LeaderRecord {
            node: node.clone(),
            incarnation: current,
            term: None,
        };
        let Ok(body) = rmp_serde::to_vec_named(&record) else {
            return;
        };
        let sent = Instant::now();
        let attempt = async {
            match takeover.take() {
                Some(revision) => {
                    tried = Some(revision);
                    bucket.update(LEADER_KEY, body.into(), revision).await
                }
                None => bucket.create(LEADER_KEY, body.into()).await,
            }
        };
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(retry, attempt) => outcome,
            () = stopped(&mut shutdown) => return,
        };
        match outcome {
            Ok(Ok(Cas::Written(term))) => {
                let highest = status.borrow().highest_term;
                if term < highest {
                    metrics::counter!("aether_cluster_stale_terms_total").increment(1);
                    tracing::error!(
                        term,
                        highest,
                        "won the lease with a term lower than one already seen: the leader \
                         bucket was deleted and made again; not acting on it"
                    );
                    let _ = bucket.delete(LEADER_KEY, Some(term)).await;
                } else if hold(&bucket, &record, term, sent, timing, &status, &mut shutdown).await
                    == Ended::Shutdown
                {
                    return;
                }
            }
            Ok(Ok(Cas::Conflict)) => {}
            Ok(Err(err)) => tracing::debug!(%err, "campaign failed"),
            Err(_) => tracing::debug!("campaign timed out"),
        }
        // Wait for the key to become vacant, or for its holder to go silent.
        loop {
            let last = seen.borrow_and_update().last_put;
            let Some((revision, at)) = last else {
                // Vacant (or not known yet): campaign, again after `retry` at most.
                tokio::select! {
                    () = vacant.notified() => {}
                    () = tokio::time::sleep(retry) => {}
                    () = stopped(&mut shutdown) => return,
                }
                break;
            };
            let silent_from = at + timing.ttl;
            if Instant::now() >= silent_from {
                if tried != Some(revision) {
                    takeover = Some(revision);
                    break;
                }
                // Tried already: the view of the key is stale. Campaign plainly,
                // at most every `retry`.
                tokio::select! {
                    () = vacant.notified() => {}
                    () = tokio::time::sleep(retry) => {}
                    () = stopped(&mut shutdown) => return,
                }
                break;
            }
            tokio::select! {
                () = vacant.notified() => break,
                () = tokio::time::sleep_until(silent_from) => {}
                changed = seen.changed() => if changed.is_err() { return },
                () = stopped(&mut shutdown) => return,
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    SteppedDown,
    Shutdown,
}

/// Holds the lease won at `term` until it is lost or the node shuts down.
async fn hold(
    bucket: &Bucket,
    record: &LeaderRecord,
    term: u64,
    sent: Instant,
    timing: LeaseTiming,
    status: &watch::Sender<LeaseStatus>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let span = tracing::info_span!("lease", node = %record.node, term);
    let ttl = timing.ttl;
    let margin = timing.margin();
    let renew_every = ttl / 3;
    let mut valid_until = sent + ttl.saturating_sub(margin);
    let settle_until = Instant::now() + timing.settle;
    let mut next_renew = sent + renew_every;
    let mut last_revision = term;
    let mut acting = false;
    status.send_modify(|status| {
        status.held = Some(Held {
            term,
            valid_until,
            acting: false,
        });
        status.highest_term = status.highest_term.max(term);
    });
    tracing::info!(parent: &span, "won the leader lease; settling");
    let renewal = LeaderRecord {
        term: Some(term),
        ..record.clone()
    };
    let Ok(body) = rmp_serde::to_vec_named(&renewal) else {
        return step_down(status, &span, "cannot encode the lease");
    };
    let body = bytes::Bytes::from(body);
    loop {
        let wake = if acting {
            next_renew.min(valid_until)
        } else {
            next_renew.min(valid_until).min(settle_until)
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = stopped(shutdown) => {
                release(bucket, last_revision, status, &span).await;
                return Ended::Shutdown;
            }
        }
        // First thing after any wake-up, including after a pause: the deadline.
        let now = Instant::now();
        if now >= valid_until {
            return step_down(status, &span, "the lease deadline passed without a renewal");
        }
        if !acting && now >= settle_until {
            acting = true;
            status.send_modify(|status| {
                if let Some(held) = status.held.as_mut() {
                    held.acting = true;
                }
            });
            metrics::gauge!("aether_cluster_term").set(term as f64);
            tracing::info!(parent: &span, "acting as leader");
        }
        if now >= next_renew {
            let sent = Instant::now();
            let limit = valid_until.saturating_duration_since(sent);
            let outcome = tokio::select! {
                outcome = tokio::time::timeout(limit, bucket.update(LEADER_KEY, body.clone(), last_revision)) => outcome,
                () = stopped(shutdown) => {
                    release(bucket, last_revision, status, &span).await;
                    return Ended::Shutdown;
                }
            };
            match outcome {
                Ok(Ok(Cas::Written(revision))) => {
                    last_revision = revision;
                    valid_until = sent + ttl.saturating_sub(margin);
                    next_renew = sent + renew_every;
                    status.send_modify(|status| {
                        if let Some(held) = status.held.as_mut() {
                            held.valid_until = valid_until;
                        }
                    });
                }
                Ok(Ok(Cas::Conflict)) => {
                    return step_down(
                        status,
                        &span,
                        "the lease was taken over (wrong last revision)",
                    );
                }
                Ok(Err(err)) => {
                    metrics::counter!("aether_cluster_lease_renewal_failures_total").increment(1);
                    tracing::warn!(parent: &span, %err, "lease renewal failed; retrying");
                    next_renew = Instant::now() + renew_every / 4;
                }
                Err(_) => {
                    metrics::counter!("aether_cluster_lease_renewal_failures_total").increment(1);
                    tracing::warn!(parent: &span, "lease renewal timed out");
                    next_renew = Instant::now();
                }
            }
        }
    }
}

fn step_down(status: &watch::Sender<LeaseStatus>, span: &tracing::Span, why: &str) -> Ended {
    status.send_modify(|status| status.held = None);
    metrics::counter!("aether_cluster_step_downs_total").increment(1);
    tracing::warn!(parent: span, why, "stepped down");
    Ended::SteppedDown
}

/// Gives the lease up at once (only if it is still ours) so others need not wait
/// for it to expire.
async fn release(
    bucket: &Bucket,
    last_revision: u64,
    status: &watch::Sender<LeaseStatus>,
    span: &tracing::Span,
) {
    status.send_modify(|status| status.held = None);
    match bucket.delete(LEADER_KEY, Some(last_revision)).await {
        Ok(_) => tracing::info!(parent: span, "released the leader lease"),
        Err(err) => {
            tracing::warn!(parent: span, %err, "could not release the lease; it expires by itself")
        }
    }
}

/// Follows the leader key: who holds the lease, with which term. Emits
/// [`ClusterEvent::LeaderChanged`], wakes campaigners when the key becomes vacant,
/// and refuses to follow a term lower than one seen.
pub(crate) async fn observe(
    bucket: Bucket,
    status: watch::Sender<LeaseStatus>,
    vacant: std::sync::Arc<Notify>,
    events: broadcast::Sender<ClusterEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let created = tokio::select! {
            watch = bucket.watch_with_history(LEADER_KEY) => watch,
            () = stopped(&mut shutdown) => return,
        };
        let mut watch = match created {
            Ok(watch) => watch,
            Err(err) => {
                tracing::warn!(%err, "cannot watch the leader key; retrying");
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
                () = stopped(&mut shutdown) => return,
            };
            match entry {
                Some(Ok(entry)) => apply(&entry, &status, &vacant, &events),
                Some(Err(err)) => {
                    tracing::warn!(%err, "leader watch failed; watching again");
                    break;
                }
                None => break,
            }
        }
    }
}

fn apply(
    entry: &kv::Entry,
    status: &watch::Sender<LeaseStatus>,
    vacant: &Notify,
    events: &broadcast::Sender<ClusterEvent>,
) {
    if entry.key != LEADER_KEY {
        count_bad_record("leader", &entry.key, &"unexpected key in the leader bucket");
        return;
    }
    match entry.operation {
        kv::Operation::Put => {
            let holder = match rmp_serde::from_slice::<LeaderRecord>(&entry.value) {
                Ok(record) => Some(record),
                Err(err) => {
                    count_bad_record("leader", &entry.key, &format!("not a lease record: {err}"));
                    None
                }
            };
            let term = holder
                .as_ref()
                .and_then(|record| record.term)
                .unwrap_or(entry.revision);
            let node = holder.map(|record| record.node);
            let seen_at = Instant::now();
            status.send_modify(|status| status.last_put = Some((entry.revision, seen_at)));
            let highest = status.borrow().highest_term;
            if term < highest {
                metrics::counter!("aether_cluster_stale_terms_total").increment(1);
                tracing::error!(
                    term,
                    highest,
                    leader = ?node,
                    "saw a leader term lower than one already seen (the leader bucket was \
                     deleted and made again?); not following it"
                );
                return;
            }
            let changed = status.borrow().observed.as_ref() != Some(&(node.clone(), term));
            if changed {
                let new_term = status.borrow().observed.as_ref().map(|(_, t)| *t) != Some(term);
                status.send_modify(|status| {
                    status.observed = Some((node.clone(), term));
                    status.highest_term = status.highest_term.max(term);
                });
                if new_term {
                    metrics::counter!("aether_cluster_leader_changes_total").increment(1);
                    metrics::gauge!("aether_cluster_term").set(term as f64);
                    tracing::info!(leader = ?node, term, "leader changed");
                    let _ = events.send(ClusterEvent::LeaderChanged { leader: node, term });
                }
            }
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            status.send_modify(|status| status.last_put = None);
            let last = status.borrow().observed.clone();
            if let Some((Some(_), term)) = last {
                status.send_modify(|status| status.observed = Some((None, term)));
                tracing::info!(term, "leader lease vacant");
                let _ = events.send(ClusterEvent::LeaderChanged { leader: None, term });
            }
            vacant.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: u64, operation: kv::Operation, value: &[u8]) -> kv::Entry {
        kv::Entry {
            bucket: "b".to_owned(),
            key: LEADER_KEY.to_owned(),
            value: bytes::Bytes::copy_from_slice(value),
            revision,
            delta: 0,
            created: time::OffsetDateTime::UNIX_EPOCH,
            operation,
            seen_current: true,
        }
    }

    fn record(node: &str, term: Option<u64>) -> Vec<u8> {
        rmp_serde::to_vec_named(&LeaderRecord {
            node: NodeId::new(node).unwrap(),
            incarnation: Incarnation::new(),
            term,
        })
        .unwrap()
    }

    #[test]
    fn follows_higher_terms_only_and_reports_vacancy() {
        let status = watch::Sender::new(LeaseStatus::default());
        let vacant = Notify::new();
        let (events, mut rx) = broadcast::channel(16);
        // A create: the term is its revision.
        apply(
            &entry(5, kv::Operation::Put, &record("a", None)),
            &status,
            &vacant,
            &events,
        );
        assert_eq!(
            status.borrow().observed,
            Some((Some(NodeId::new("a").unwrap()), 5))
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            ClusterEvent::LeaderChanged {
                leader: Some(NodeId::new("a").unwrap()),
                term: 5
            }
        );
        // A renewal carries its term: same term, no event.
        apply(
            &entry(8, kv::Operation::Put, &record("a", Some(5))),
            &status,
            &vacant,
            &events,
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(
            status.borrow().last_put.map(|(revision, _)| revision),
            Some(8)
        );
        // A lower term (the bucket was made again) is not followed.
        apply(
            &entry(2, kv::Operation::Put, &record("b", None)),
            &status,
            &vacant,
            &events,
        );
        assert_eq!(
            status.borrow().observed,
            Some((Some(NodeId::new("a").unwrap()), 5))
        );
        assert!(rx.try_recv().is_err());
        // Expiry: vacant, announced, campaigners woken.
        apply(
            &entry(9, kv::Operation::Purge, b""),
            &status,
            &vacant,
            &events,
        );
        assert_eq!(
            rx.try_recv().unwrap(),
            ClusterEvent::LeaderChanged {
                leader: None,
                term: 5
            }
        );
        assert!(status.borrow().last_put.is_none());
        // The permit is stored: the next wait returns at once.
        let woken = futures::FutureExt::now_or_never(vacant.notified());
        assert!(woken.is_some());
        // Garbage under the key: held by nobody known, at the revision's term.
        apply(
            &entry(10, kv::Operation::Put, b"garbage"),
            &status,
            &vacant,
            &events,
        );
        assert_eq!(status.borrow().observed, Some((None, 10)));
    }

    #[test]
    fn acting_term_needs_the_settle_and_the_deadline() {
        let mut status = LeaseStatus::default();
        assert_eq!(status.acting_term(), None);
        let later = Instant::now() + Duration::from_secs(60);
        status.held = Some(Held {
            term: 3,
            valid_until: later,
            acting: false,
        });
        assert_eq!(status.acting_term(), None, "settling");
        status.held = Some(Held {
            term: 3,
            valid_until: later,
            acting: true,
        });
        assert_eq!(status.acting_term(), Some(3));
        status.held = Some(Held {
            term: 3,
            valid_until: Instant::now(),
            acting: true,
        });
        assert_eq!(status.acting_term(), None, "past the deadline");
    }
}
