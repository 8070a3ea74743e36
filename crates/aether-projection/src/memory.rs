//! [`MemoryCheckpointStore`]: checkpoints in process memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use aether_core::{Checkpoint, CheckpointError, CheckpointStore, Position};

/// Checkpoints in memory, with compare-and-set saves (the revision counts
/// the saves of each projection). Clones share the checkpoints. Nothing is
/// persisted: for a read model that lives as long as the process (or for
/// tests).
#[derive(Debug, Clone, Default)]
pub struct MemoryCheckpointStore {
    checkpoints: Arc<Mutex<HashMap<String, Checkpoint>>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    async fn load(&self, projection: &str) -> Result<Checkpoint, CheckpointError> {
        Ok(self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(projection)
            .copied()
            .unwrap_or_default())
    }

    async fn save(
        &self,
        projection: &str,
        expected: Checkpoint,
        position: Position,
    ) -> Result<Checkpoint, CheckpointError> {
        let mut map = self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = map.get(projection).copied().unwrap_or_default();
        if current.revision != expected.revision {
            return Err(CheckpointError::Conflict {
                projection: projection.to_owned(),
                expected: expected.revision,
            });
        }
        let saved = Checkpoint {
            position,
            revision: current.revision + 1,
        };
        map.insert(projection.to_owned(), saved);
        Ok(saved)
    }
}
