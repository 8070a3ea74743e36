//! [`ProjectionLease`]: who may run a projection, so that of two runners
//! started at once only one handles events.
//!
//! The checkpoint's compare-and-set already stops a second runner from
//! *advancing* the checkpoint, but only at its first save, after it handled a
//! batch. A lease stops it *before handling*: a runner with a lease
//! ([`ProjectionRunner::lease`](crate::ProjectionRunner::lease)) takes it
//! before it loads the checkpoint, renews it while it runs (at a third of its
//! time to live, and always before handling an event once the renewal is
//! due), stops when a renewal fails, and gives it back when it stops. A
//! runner that finds the lease held by another, unexpired, fails at once with
//! [`LeaseError::Held`] without handling anything.
//!
//! Expiry is judged with the wall clock of the runner that wants the lease:
//! a holder whose process died is replaced once its last renewal's time to
//! live has passed. Clocks that differ by more than the time to live can let
//! two runners overlap; the checkpoint compare-and-set still stops the older
//! one at its next save.

use std::time::Duration;

use aether_core::store::BoxFuture;

/// Why a lease could not be taken or kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another runner holds the lease and it has not expired.
    #[error("the lease on projection {projection} is held by {holder}")]
    Held {
        /// The projection.
        projection: String,
        /// The holder's owner id.
        holder: String,
    },
    /// The lease this runner held was taken over (it expired before this
    /// runner renewed it): the runner must stop.
    #[error("the lease on projection {projection} was lost")]
    Lost {
        /// The projection.
        projection: String,
    },
    /// The lease store could not be reached or answered with an error.
    #[error("lease store unavailable: {message}")]
    Unavailable {
        /// What was being done.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<aether_core::BoxError>,
    },
}

/// A store of projection leases with compare-and-set (implemented by
/// [`MemoryLease`] and, feature `nats`, `KvCheckpointStore`).
///
/// Expiry is judged with the wall clock of the runner that wants the lease:
/// a holder whose process died is replaced once its last renewal's time to
/// live has passed. Clocks that differ by more than the time to live can let
/// two runners overlap; the checkpoint compare-and-set still stops the older
/// one at its next save.
///
/// Object safe: the runner keeps it as `Arc<dyn ProjectionLease>`.
pub trait ProjectionLease: Send + Sync + 'static {
    /// Takes (`held` is `None`) or renews (`held` is the token of the last
    /// successful call) the lease on `projection` for `owner` for `ttl` from
    /// now, and returns the new token.
    ///
    /// # Errors
    /// [`LeaseError::Held`] when another owner holds an unexpired lease (on
    /// taking); [`LeaseError::Lost`] when the lease changed since `held` (on
    /// renewing); [`LeaseError::Unavailable`] when the store fails.
    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        owner: &'a str,
        ttl: Duration,
        held: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, LeaseError>>;

    /// Gives the lease back (it expires at once), if it is still the one
    /// `held` names; otherwise does nothing.
    ///
    /// # Errors
    /// [`LeaseError::Unavailable`] when the store fails (the lease then
    /// expires by itself).
    fn release<'a>(
        &'a self,
        projection: &'a str,
        owner: &'a str,
        held: u64,
    ) -> BoxFuture<'a, Result<(), LeaseError>>;
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub(crate) fn now_ms() -> u64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    u64::try_from(nanos).unwrap_or(0)
}

/// A lease record: its holder and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) owner: String,
    pub(crate) expires_ms: u64,
}

impl Record {
    pub(crate) fn new(owner: &str, ttl: Duration) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        Record {
            owner: owner.to_owned(),
            expires_ms: now_ms().saturating_add(ttl_ms),
        }
    }

    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "the KV lease uses it")
    )]
    /// `"<expires_ms> <owner>"`.
    pub(crate) fn encode(&self) -> String {
        format!("{} {}", self.expires_ms, self.owner)
    }

    #[cfg_attr(
        not(feature = "nats"),
        expect(dead_code, reason = "the KV lease uses it")
    )]
    /// The record in `bytes`, or `None` when they are not one (treated as
    /// an expired lease).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (expires, owner) = text.split_once(' ')?;
        Some(Record {
            owner: owner.to_owned(),
            expires_ms: expires.parse().ok()?,
        })
    }

    /// Whether `owner` may take this lease now.
    pub(crate) fn free_for(&self, owner: &str) -> bool {
        self.owner == owner || self.expires_ms <= now_ms()
    }
}

/// Leases in process memory (clones share them): for runners in one process
/// and for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryLease {
    leases: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (Record, u64)>>>,
}

impl MemoryLease {
    /// No leases held.
    pub fn new() -> Self {
        Self::default()
    }
}

impl ProjectionLease for MemoryLease {
    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        owner: &'a str,
        ttl: Duration,
        held: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, LeaseError>> {
        Box::pin(async move {
            let mut map = self
                .leases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let current = map.get(projection).cloned();
            let next = match (held, current) {
                (Some(token), Some((_, rev))) if rev == token => rev + 1,
                (Some(_), _) => {
                    return Err(LeaseError::Lost {
                        projection: projection.to_owned(),
                    });
                }
                (None, None) => 1,
                (None, Some((record, rev))) if record.free_for(owner) => rev + 1,
                (None, Some((record, _))) => {
                    return Err(LeaseError::Held {
                        projection: projection.to_owned(),
                        holder: record.owner,
                    });
                }
            };
            map.insert(projection.to_owned(), (Record::new(owner, ttl), next));
            Ok(next)
        })
    }

    fn release<'a>(
        &'a self,
        projection: &'a str,
        _owner: &'a str,
        held: u64,
    ) -> BoxFuture<'a, Result<(), LeaseError>> {
        Box::pin(async move {
            let mut map = self
                .leases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.get(projection).is_some_and(|(_, rev)| *rev == held) {
                map.remove(projection);
            }
            Ok(())
        })
    }
}
