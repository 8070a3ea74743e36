//! The trust boundary: which stored records belong to an actor's history.
//!
//! A backend stores records where other programs may also write (a NATS
//! subject any permitted client can publish on, a test hook in memory). A
//! record on an actor's log is part of that actor's history only if it is a
//! valid Aether envelope **for that actor** whose version is **the previous
//! valid version + 1**. Anything else is *foreign*: garbage bytes, a foreign
//! MessagePack map, an envelope without an event id, an envelope naming
//! another actor, a repeated, backward or skipped version, version 0.
//!
//! Every store applies one rule, chosen by [`TrustPolicy`]:
//!
//! * [`TrustPolicy::SkipForeign`] (the default): reads skip foreign records,
//!   and a writer appends after the last *valid* version, so the actor keeps
//!   working. Each foreign record met is logged (`tracing::warn`) and counted
//!   in `aether_foreign_messages_total{namespace, reason}`.
//! * [`TrustPolicy::Strict`]: the first foreign record met fails the
//!   operation with [`StoreError::Corrupt`].
//!
//! Either way, a read never returns a history with a gap, a repeat or a
//! backward version as `Ok`. A snapshot that claims a version beyond the
//! stored events is foreign too ([`ForeignReason::SnapshotAhead`]): it is
//! ignored and the actor replays its events.
//!
//! Backends follow the rule with a [`HistoryGuard`] while they read, and
//! report records they cannot decode at all with [`HistoryGuard::reject`] or
//! [`report_foreign`].

use crate::error::StoreError;
use crate::event::Event;
use crate::name::{ActorId, Namespace};
use crate::version::Version;

/// What a store does with a record that is not a valid part of an actor's
/// history (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustPolicy {
    /// Skip it (log and count it); reads and appends go on as if it were not
    /// there. The default: one stray message must not block an actor.
    #[default]
    SkipForeign,
    /// Fail the read or append that meets it with [`StoreError::Corrupt`].
    Strict,
}

/// Why a stored record is not a valid part of an actor's history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForeignReason {
    /// Not an Aether envelope: garbage bytes, foreign MessagePack, bad headers.
    #[error("not an Aether envelope: {0}")]
    NotAnEnvelope(String),
    /// An envelope without an event id (no `Nats-Msg-Id` on JetStream).
    #[error("envelope without an event id")]
    MissingEventId,
    /// An envelope naming another actor.
    #[error("envelope of actor {found:?}")]
    WrongActor {
        /// The actor the envelope names.
        found: String,
    },
    /// A version that does not follow the previous valid one: a repeat, a
    /// backward version, a gap or version 0. When no version can follow
    /// (the previous one is `u64::MAX`), `expected` is that previous version.
    #[error("version {found} where {expected} was expected")]
    OutOfOrder {
        /// The version that would have been valid.
        expected: Version,
        /// The version the record carries.
        found: Version,
    },
    /// A snapshot that claims a version beyond the stored events.
    #[error("snapshot at version {snapshot} but the latest stored version is {latest}")]
    SnapshotAhead {
        /// The version the snapshot claims.
        snapshot: Version,
        /// The latest valid stored version.
        latest: Version,
    },
    /// A snapshot whose bytes or schema cannot be used.
    #[error("unusable snapshot: {0}")]
    SnapshotUndecodable(String),
}

impl ForeignReason {
    /// A stable, low-cardinality label for metrics: `not_envelope`,
    /// `missing_id`, `wrong_actor`, `out_of_order`, `snapshot_ahead`,
    /// `snapshot_undecodable`.
    pub fn label(&self) -> &'static str {
        match self {
            ForeignReason::NotAnEnvelope(_) => "not_envelope",
            ForeignReason::MissingEventId => "missing_id",
            ForeignReason::WrongActor { .. } => "wrong_actor",
            ForeignReason::OutOfOrder { .. } => "out_of_order",
            ForeignReason::SnapshotAhead { .. } => "snapshot_ahead",
            ForeignReason::SnapshotUndecodable(_) => "snapshot_undecodable",
        }
    }
}

/// Reports a foreign record of `actor` at backend `position` (stream sequence
/// on JetStream, log index in memory): counts it in
/// `aether_foreign_messages_total{namespace, reason}` and logs it
/// (`tracing::warn`), under either policy.
///
/// # Errors
/// Under [`TrustPolicy::Strict`], [`StoreError::Corrupt`] naming the record.
/// Under [`TrustPolicy::SkipForeign`] it returns `Ok(())` and the caller skips
/// the record.
pub fn report_foreign(
    namespace: &Namespace,
    actor: &ActorId,
    position: u64,
    reason: ForeignReason,
    policy: TrustPolicy,
) -> Result<(), StoreError> {
    metrics::counter!(
        "aether_foreign_messages_total",
        "namespace" => namespace.as_str().to_owned(),
        "reason" => reason.label(),
    )
    .increment(1);
    match policy {
        TrustPolicy::SkipForeign => {
            tracing::warn!(
                namespace = %namespace,
                actor = %actor,
                position,
                reason = %reason,
                "skipping a record that is not part of the actor's history"
            );
            Ok(())
        }
        TrustPolicy::Strict => {
            tracing::warn!(
                namespace = %namespace,
                actor = %actor,
                position,
                reason = %reason,
                "refusing a history that holds a foreign record"
            );
            Err(StoreError::Corrupt {
                actor: actor.clone(),
                position,
                reason,
            })
        }
    }
}

/// Follows one actor's history while it is read: admits an event only if it
/// names the actor and carries the version after the last one admitted;
/// every other record is reported through [`report_foreign`].
///
/// ```
/// use aether_core::{ActorId, Event, HistoryGuard, Namespace, TrustPolicy, Version};
///
/// let ns = Namespace::default();
/// let actor = ActorId::new("a")?;
/// let mut guard = HistoryGuard::new(&ns, &actor, Version::ZERO, TrustPolicy::SkipForeign);
/// let v1 = Event::new(actor.clone(), Version::FIRST, "E", &1)?;
/// assert!(guard.admit(10, &v1)?);
/// assert!(!guard.admit(11, &v1)?); // a repeated v1 is skipped
/// assert_eq!(guard.last_version(), Version::FIRST);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct HistoryGuard {
    namespace: Namespace,
    actor: ActorId,
    last: Version,
    policy: TrustPolicy,
    foreign: u64,
}

impl HistoryGuard {
    /// A guard for `actor`'s history read after `last_valid` (the version of
    /// the last valid event before the first record the caller will show it;
    /// [`Version::ZERO`] when reading from the start).
    pub fn new(
        namespace: &Namespace,
        actor: &ActorId,
        last_valid: Version,
        policy: TrustPolicy,
    ) -> Self {
        HistoryGuard {
            namespace: namespace.clone(),
            actor: actor.clone(),
            last: last_valid,
            policy,
            foreign: 0,
        }
    }

    /// Judges the decoded record at backend `position`.
    ///
    /// Returns `Ok(true)` if it is the next event of the history (deliver
    /// it; the guard advances), `Ok(false)` if it is foreign (skipped and
    /// counted).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a foreign record under [`TrustPolicy::Strict`].
    pub fn admit(&mut self, position: u64, event: &Event) -> Result<bool, StoreError> {
        if event.actor_id != self.actor {
            self.reject(
                position,
                ForeignReason::WrongActor {
                    found: event.actor_id.as_str().to_owned(),
                },
            )?;
            return Ok(false);
        }
        match self.last.next() {
            Some(next) if event.version == next => {
                self.last = next;
                Ok(true)
            }
            expected => {
                self.reject(
                    position,
                    ForeignReason::OutOfOrder {
                        expected: expected.unwrap_or(self.last),
                        found: event.version,
                    },
                )?;
                Ok(false)
            }
        }
    }

    /// Reports a record at `position` that could not even be decoded into an
    /// [`Event`] (garbage, a foreign map, a missing id).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] under [`TrustPolicy::Strict`].
    pub fn reject(&mut self, position: u64, reason: ForeignReason) -> Result<(), StoreError> {
        self.foreign += 1;
        report_foreign(&self.namespace, &self.actor, position, reason, self.policy)
    }

    /// The version of the last event admitted (or the starting version).
    pub fn last_version(&self) -> Version {
        self.last
    }

    /// How many foreign records this guard has met.
    pub fn foreign_count(&self) -> u64 {
        self.foreign
    }

    /// The policy the guard applies.
    pub fn policy(&self) -> TrustPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str, v: u64) -> Event {
        Event::new(ActorId::new(actor).unwrap(), Version::new(v), "E", &v).unwrap()
    }

    #[test]
    fn admits_only_the_next_version_of_the_actor() {
        let ns = Namespace::default();
        let a = ActorId::new("a").unwrap();
        let mut g = HistoryGuard::new(&ns, &a, Version::ZERO, TrustPolicy::SkipForeign);
        assert!(g.admit(1, &event("a", 1)).unwrap());
        assert!(!g.admit(2, &event("a", 0)).unwrap(), "version 0");
        assert!(!g.admit(3, &event("a", 1)).unwrap(), "repeat");
        assert!(!g.admit(4, &event("b", 2)).unwrap(), "wrong actor");
        assert!(!g.admit(5, &event("a", 3)).unwrap(), "gap");
        assert!(g.admit(6, &event("a", 2)).unwrap());
        g.reject(7, ForeignReason::NotAnEnvelope("junk".into()))
            .unwrap();
        assert!(g.admit(8, &event("a", 3)).unwrap());
        assert_eq!(g.last_version(), Version::new(3));
        assert_eq!(g.foreign_count(), 5);
    }

    #[test]
    fn strict_names_the_record() {
        let ns = Namespace::default();
        let a = ActorId::new("a").unwrap();
        let mut g = HistoryGuard::new(&ns, &a, Version::FIRST, TrustPolicy::Strict);
        match g.admit(42, &event("a", 1)) {
            Err(StoreError::Corrupt {
                actor,
                position,
                reason,
            }) => {
                assert_eq!(actor, a);
                assert_eq!(position, 42);
                assert_eq!(
                    reason,
                    ForeignReason::OutOfOrder {
                        expected: Version::new(2),
                        found: Version::FIRST
                    }
                );
                assert_eq!(reason.label(), "out_of_order");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(g.last_version(), Version::FIRST);
        assert!(g.admit(43, &event("a", 2)).unwrap());
    }

    #[test]
    fn nothing_follows_the_last_version() {
        let ns = Namespace::default();
        let a = ActorId::new("a").unwrap();
        let mut g = HistoryGuard::new(&ns, &a, Version::new(u64::MAX), TrustPolicy::SkipForeign);
        assert!(!g.admit(1, &event("a", u64::MAX)).unwrap());
        assert!(!g.admit(2, &event("a", 0)).unwrap());
        assert_eq!(g.last_version(), Version::new(u64::MAX));
    }
}
