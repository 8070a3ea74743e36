//! The leader side: recompute the shard map (debounced) and run two-step handoffs.
