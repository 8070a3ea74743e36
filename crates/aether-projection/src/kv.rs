//! [`KvCheckpointStore`]: checkpoints in a NATS JetStream key-value bucket
//! (feature `nats`).

use std::time::Duration;

use aether_core::name::encode_token;
use aether_core::store::BoxFuture;
use aether_core::{Checkpoint, CheckpointError, CheckpointStore, Position};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};

use crate::lease::{LeaseError, ProjectionLease, Record};

/// Checkpoints in a JetStream key-value bucket: one key per projection
/// (its name through the injective subject-token encoding), the position as
/// decimal text, the KV revision as the checkpoint's revision. A save is
/// `create` (no checkpoint yet) or `update` with the loaded revision, so the
/// server refuses a save by a runner whose checkpoint moved: two runners of
/// one projection cannot both advance it.
#[derive(Clone)]
pub struct KvCheckpointStore {
    kv: kv::Store,
    timeout: Duration,
}

impl std::fmt::Debug for KvCheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCheckpointStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> CheckpointError {
    CheckpointError::Unavailable {
        message: what.to_owned(),
        source: Some(Box::new(e)),
    }
}

impl KvCheckpointStore {
    /// Opens (creating if needed) the bucket `bucket` with `replicas`
    /// replicas and history 1.
    ///
    /// # Errors
    /// [`CheckpointError::Unavailable`] if the bucket cannot be created or
    /// opened.
    pub async fn open(
        client: async_nats::Client,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, CheckpointError> {
        let js = async_nats::jetstream::new(client);
        let kv = match js.get_key_value(bucket).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.to_owned(),
                    history: 1,
                    num_replicas: replicas,
                    description: "Aether projection checkpoints".to_owned(),
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable("creating the checkpoint bucket", e))?,
        };
        Ok(KvCheckpointStore {
            kv,
            timeout: Duration::from_secs(5),
        })
    }

    /// Bounds each load and save (default 5 s); past it the operation fails
    /// with [`CheckpointError::Unavailable`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn bounded<T, E: std::error::Error + Send + Sync + 'static>(
        &self,
        what: &str,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<Result<T, E>, CheckpointError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| CheckpointError::Unavailable {
                message: format!("{what}: timed out after {:?}", self.timeout),
                source: None,
            })
    }
}

impl CheckpointStore for KvCheckpointStore {
    async fn load(&self, projection: &str) -> Result<Checkpoint, CheckpointError> {
        let key = encode_token(projection);
        let entry = self
            .bounded("loading a checkpoint", self.kv.entry(key))
            .await?
            .map_err(|e| unavailable("loading a checkpoint", e))?;
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
            return Ok(Checkpoint::default());
        };
        let position = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| CheckpointError::Malformed {
                projection: projection.to_owned(),
                message: format!(
                    "{} bytes that are not a decimal position",
                    entry.value.len()
                ),
            })?;
        Ok(Checkpoint {
            position: Position::new(position),
            revision: entry.revision,
        })
    }

    async fn save(
        &self,
        projection: &str,
        expected: Checkpoint,
        position: Position,
    ) -> Result<Checkpoint, CheckpointError> {
        let key = encode_token(projection);
        let value = bytes::Bytes::from(position.get().to_string());
        let conflict = || CheckpointError::Conflict {
            projection: projection.to_owned(),
            expected: expected.revision,
        };
        let revision = if expected.revision == 0 {
            match self
                .bounded("saving a checkpoint", self.kv.create(&key, value))
                .await?
            {
                Ok(r) => r,
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => return Err(conflict()),
                Err(e) => return Err(unavailable("saving a checkpoint", e)),
            }
        } else {
            match self
                .bounded(
                    "saving a checkpoint",
                    self.kv.update(&key, value, expected.revision),
                )
                .await?
            {
                Ok(r) => r,
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    return Err(conflict());
                }
                Err(e) => return Err(unavailable("saving a checkpoint", e)),
            }
        };
        Ok(Checkpoint { position, revision })
    }
}

/// The lease key of `projection`: `_lease.<token>`. Checkpoint keys are bare
/// tokens, which never contain `.`, so the two never meet.
fn lease_key(projection: &str) -> String {
    format!("_lease.{}", encode_token(projection))
}

fn lease_unavailable(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> LeaseError {
    LeaseError::Unavailable {
        message: what.to_owned(),
        source: Some(Box::new(e)),
    }
}

/// Leases in the checkpoint bucket, one key per projection
/// (`_lease.<projection token>`), value `"<expires unix ms> <owner>"`, the
/// KV revision as the token: taking is `create`, or `update` over an expired
/// (or own) record with its revision; renewing is `update` with the token,
/// so a lease that was taken over cannot be renewed.
impl ProjectionLease for KvCheckpointStore {
    fn acquire<'a>(
        &'a self,
        projection: &'a str,
        owner: &'a str,
        ttl: Duration,
        held: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, LeaseError>> {
        Box::pin(async move {
            let key = lease_key(projection);
            let value = bytes::Bytes::from(Record::new(owner, ttl).encode());
            let timed_out = || LeaseError::Unavailable {
                message: format!("lease of {projection}: timed out after {:?}", self.timeout),
                source: None,
            };
            let held_by = |holder: String| LeaseError::Held {
                projection: projection.to_owned(),
                holder,
            };
            let expected = match held {
                Some(token) => Some(token),
                None => {
                    let entry = tokio::time::timeout(self.timeout, self.kv.entry(&key))
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(|e| lease_unavailable("reading a lease", e))?;
                    match entry {
                        Some(e) if e.operation == Operation::Put => {
                            match Record::decode(&e.value) {
                                Some(r) if !r.free_for(owner) => return Err(held_by(r.owner)),
                                _ => Some(e.revision),
                            }
                        }
                        Some(e) => Some(e.revision),
                        None => None,
                    }
                }
            };
            match expected {
                Some(revision) => {
                    let put = self.kv.update(&key, value, revision);
                    match tokio::time::timeout(self.timeout, put)
                        .await
                        .map_err(|_| timed_out())?
                    {
                        Ok(r) => Ok(r),
                        Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                            Err(match held {
                                Some(_) => LeaseError::Lost {
                                    projection: projection.to_owned(),
                                },
                                None => held_by("another runner".to_owned()),
                            })
                        }
                        Err(e) => Err(lease_unavailable("writing a lease", e)),
                    }
                }
                None => {
                    let put = self.kv.create(&key, value);
                    match tokio::time::timeout(self.timeout, put)
                        .await
                        .map_err(|_| timed_out())?
                    {
                        Ok(r) => Ok(r),
                        Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                            Err(held_by("another runner".to_owned()))
                        }
                        Err(e) => Err(lease_unavailable("writing a lease", e)),
                    }
                }
            }
        })
    }

    fn release<'a>(
        &'a self,
        projection: &'a str,
        owner: &'a str,
        held: u64,
    ) -> BoxFuture<'a, Result<(), LeaseError>> {
        Box::pin(async move {
            let expired = Record {
                owner: owner.to_owned(),
                expires_ms: 0,
            };
            let put = self
                .kv
                .update(lease_key(projection), expired.encode().into(), held);
            match tokio::time::timeout(self.timeout, put).await {
                Ok(Ok(_)) => Ok(()),
                // Taken over meanwhile: nothing of ours to give back.
                Ok(Err(e)) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(()),
                Ok(Err(e)) => Err(lease_unavailable("releasing a lease", e)),
                Err(_) => Err(LeaseError::Unavailable {
                    message: format!("releasing a lease: timed out after {:?}", self.timeout),
                    source: None,
                }),
            }
        })
    }
}
