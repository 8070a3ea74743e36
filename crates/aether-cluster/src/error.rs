//! [`ClusterError`]: everything the cluster can refuse or fail with, by meaning.
//!
//! Transport failures of the NATS client are mapped onto [`ClusterError::Unavailable`],
//! [`ClusterError::Timeout`] or kept as [`ClusterError::Backend`] with their source, so
//! callers match on what happened rather than on the client's error types.

use std::error::Error as StdError;

/// A `Result` whose error defaults to [`ClusterError`].
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// Why a cluster operation failed or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The control plane (NATS, its KV buckets) cannot be reached right now.
    /// Retrying later may succeed.
    #[error("cluster unavailable: {reason}")]
    Unavailable {
        /// What could not be reached, in words.
        reason: String,
    },
    /// An operation did not finish within its deadline. It may or may not have
    /// taken effect.
    #[error("cluster operation timed out: {operation}")]
    Timeout {
        /// Which operation timed out.
        operation: String,
    },
    /// This node runs with another shard count than the cluster's stored map.
    /// The node refuses to join: shard numbers would mean different actors.
    #[error("incompatible shard count: this node uses {ours}, the cluster uses {theirs}")]
    IncompatibleShardCount {
        /// The shard count this node was configured with.
        ours: u32,
        /// The shard count found in the cluster.
        theirs: u32,
    },
    /// A stored value has a format this release does not understand (written by a
    /// newer release). The node refuses it rather than guess.
    #[error("incompatible format {found}: this release supports up to {supported}")]
    IncompatibleFormat {
        /// The format version found.
        found: u32,
        /// The newest format version this release reads.
        supported: u32,
    },
    /// A name (node id, cluster name, kind) broke its rules.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// Which kind of name ("node id", "cluster name").
        what: &'static str,
        /// The offending name (at most 80 characters of it).
        name: String,
        /// Why it was refused.
        reason: String,
    },
    /// A stored or received value could not be decoded or broke an invariant
    /// (garbage, truncation, a foreign value). Nothing was changed because of it.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was being decoded ("shard map", "member record").
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A shard-map change was refused because it does not fit the current map
    /// (a shard out of range, a move of a shard that is not moving, ...). The
    /// map was not changed.
    #[error("invalid shard map change for shard {shard}: {reason}")]
    InvalidMove {
        /// The shard concerned.
        shard: u32,
        /// Why the change was refused.
        reason: String,
    },
    /// A setting is out of its accepted range (a TTL of zero, a shard count of zero, ...).
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// This node is not (or no longer) the leader for the term it acted under.
    /// Nothing was written.
    #[error("not the leader (term {term})")]
    NotLeader {
        /// The term the caller believed it held.
        term: u64,
    },
    /// The cluster handle is shutting down or has shut down.
    #[error("cluster is shutting down")]
    ShuttingDown,
    /// Any other backend failure, with its source kept for callers that can act on it.
    #[error("cluster backend error: {source}")]
    Backend {
        /// The underlying error.
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
}

impl From<aether_core::NameError> for ClusterError {
    fn from(e: aether_core::NameError) -> Self {
        ClusterError::InvalidName {
            what: e.kind.as_str(),
            name: e.name,
            reason: e.reason,
        }
    }
}

impl ClusterError {
    /// Wraps any backend error as [`ClusterError::Backend`].
    pub fn backend(source: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self::Backend {
            source: source.into(),
        }
    }

    /// Whether retrying the same operation later may succeed
    /// ([`ClusterError::Unavailable`], [`ClusterError::Timeout`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Timeout { .. })
    }

    pub(crate) fn invalid_name(what: &'static str, name: &str, reason: impl Into<String>) -> Self {
        // Keep error messages bounded even for absurdly long input.
        Self::InvalidName {
            what,
            name: name.chars().take(80).collect(),
            reason: reason.into(),
        }
    }
}
