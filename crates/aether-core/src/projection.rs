//! Read models built from the namespace feed: the [`Projection`] and
//! [`CheckpointStore`] contracts (runtime-free). The runner that drives them
//! lives in the `aether-projection` crate.
//!
//! # Delivery rule
//!
//! A runner reads the feed ([`crate::EventFeed`]) from the checkpoint it
//! loaded, hands every event to [`Projection::handle`] in commit order, and
//! every so often calls [`Projection::commit`] and then saves the position
//! of the last handled event in the [`CheckpointStore`].
//!
//! * **At least once** (a separate checkpoint store): a crash between a
//!   commit and the checkpoint save hands the events since the last saved
//!   checkpoint to the handler again. Make the handler idempotent with the
//!   item's [`Position`] (e.g. keep, per row, the position of the last
//!   event applied and ignore older ones).
//! * **Exactly once** (the read model keeps its own checkpoint): the
//!   projection stages its changes in `handle` and writes them together with
//!   the position in one transaction in `commit`, and the read model itself is
//!   the [`CheckpointStore`] (its `load` returns the position it committed).
//!   A crash loses only uncommitted staging, which is read again.
//!
//! # Fencing
//!
//! A checkpoint store saves with compare-and-set against the revision it
//! loaded: two runners of one projection cannot both advance it. The one
//! whose save is refused ([`CheckpointError::Conflict`]) stops.

use std::future::Future;

use crate::error::BoxError;
use crate::feed::{FeedFilter, FeedItem, Position};

/// A stored checkpoint: the position of the last event a projection has
/// committed, and the store's revision of it (for compare-and-set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The position of the last committed event ([`Position::ZERO`]: none).
    pub position: Position,
    /// The store's revision of this checkpoint; `0` when none is stored.
    pub revision: u64,
}

/// Errors of a [`CheckpointStore`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The checkpoint changed since it was loaded (another runner of the same
    /// projection advanced it, or a rebuild reset it). Nothing was saved.
    #[error("checkpoint of projection {projection} moved: expected revision {expected}")]
    Conflict {
        /// The projection.
        projection: String,
        /// The revision the save expected.
        expected: u64,
    },
    /// The store cannot be reached; a retry may succeed.
    #[error("checkpoint store unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A stored checkpoint could not be read (not written by Aether).
    #[error("stored checkpoint of projection {projection} is malformed: {message}")]
    Malformed {
        /// The projection.
        projection: String,
        /// What is wrong.
        message: String,
    },
}

/// Where a projection's checkpoint is kept. Saves are compare-and-set, so
/// two runners of one projection cannot both advance it.
pub trait CheckpointStore: Send + Sync {
    /// The checkpoint of `projection`; [`Checkpoint::default`] (position 0,
    /// revision 0) when none is stored.
    ///
    /// # Errors
    /// [`CheckpointError::Unavailable`], [`CheckpointError::Malformed`].
    fn load(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Checkpoint, CheckpointError>> + Send;

    /// Stores `position` for `projection` if the stored checkpoint still has
    /// `expected.revision`, and returns the new checkpoint.
    ///
    /// # Errors
    /// [`CheckpointError::Conflict`] if the checkpoint changed since
    /// `expected` was loaded (nothing is saved);
    /// [`CheckpointError::Unavailable`] (the save may or may not have
    /// happened: load again).
    fn save(
        &self,
        projection: &str,
        expected: Checkpoint,
        position: Position,
    ) -> impl Future<Output = Result<Checkpoint, CheckpointError>> + Send;
}

/// Errors a projection's own code returns.
pub type ProjectionError = BoxError;

/// A read model fed by the namespace feed (see the [module docs](self) for
/// the delivery rule).
pub trait Projection: Send {
    /// The projection's name: the key of its checkpoint and the
    /// `projection` label of its metrics. Stable across restarts.
    fn name(&self) -> &str;

    /// Which events the projection reads (all by default).
    fn filter(&self) -> FeedFilter {
        FeedFilter::all()
    }

    /// Handles one event at its position. Called in commit order; after a
    /// crash, events since the last saved checkpoint are handled again.
    ///
    /// # Errors
    /// Any error stops the runner before the event's position is committed.
    fn handle(
        &mut self,
        item: &FeedItem,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Makes the changes of the events handled so far durable, up to
    /// `position`; called before the runner saves `position` as the
    /// checkpoint. The default does nothing (a handler that writes as it
    /// goes).
    ///
    /// # Errors
    /// Any error stops the runner; the checkpoint is not saved.
    fn commit(
        &mut self,
        position: Position,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        let _ = position;
        async { Ok(()) }
    }

    /// Clears the read model before a rebuild from position 0. The default
    /// does nothing (a read model that is rebuilt by overwriting).
    ///
    /// # Errors
    /// Any error stops the rebuild.
    fn reset(&mut self) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async { Ok(()) }
    }
}
