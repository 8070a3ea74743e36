//! `ClusterManager`: one handle starting membership, the lease and the shard map; embedded single-node mode.
