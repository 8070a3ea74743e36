//! `KvCheckpointStore` on an R3 bucket of a real 3-node `nats-server`
//! cluster: checkpoints keep advancing with compare-and-set after the
//! bucket's stream leader is killed, a stale save is still refused, and an
//! independent raw reader sees the last acknowledged checkpoint.

use std::time::Duration;

use aether_core::{Checkpoint, CheckpointError, CheckpointStore, Position};
use aether_projection::KvCheckpointStore;
use aether_testkit_nats::{NatsCluster, connect, unique_name, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

/// Saves `position` over `cp`, retrying through a fail-over. A retry whose
/// earlier attempt was applied but not acknowledged meets a conflict; the
/// save counts as done when the stored checkpoint is then `position`.
async fn save_through(kv: &KvCheckpointStore, cp: Checkpoint, position: Position) -> Checkpoint {
    wait_for(
        DEADLINE,
        format!("saving checkpoint {position}"),
        async || match kv.save("p", cp, position).await {
            Ok(saved) => Ok(saved),
            Err(CheckpointError::Conflict { .. }) => {
                let stored = kv.load("p").await?;
                if stored.position == position && stored.revision > cp.revision {
                    Ok(stored)
                } else {
                    Err(CheckpointError::Conflict {
                        projection: "p".into(),
                        expected: cp.revision,
                    })
                }
            }
            Err(e) => Err(e),
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_checkpoints_survive_a_killed_stream_leader() {
    let cluster = NatsCluster::start(3).await;
    let bucket = unique_name("CPR3");
    let kv = KvCheckpointStore::open(connect(&cluster.urls()).await, &bucket, 3)
        .await
        .expect("R3 bucket")
        .timeout(Duration::from_secs(2));

    let mut cp = kv.load("p").await.expect("load");
    assert_eq!(cp, Checkpoint::default());
    for i in 1..=5 {
        cp = save_through(&kv, cp, Position::new(i)).await;
    }
    let before_kill = cp;

    // Kill the node leading the bucket's stream.
    let raw = async_nats::jetstream::new(connect(&cluster.urls()).await);
    let mut stream = raw
        .get_stream(format!("KV_{bucket}"))
        .await
        .expect("the bucket's stream");
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);
    let leader = info
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a stream leader");
    let leader = cluster.node_index(&leader).expect("a node of the cluster");
    cluster.kill(leader);

    for i in 6..=10 {
        cp = save_through(&kv, cp, Position::new(i)).await;
    }
    assert_eq!(cp.position, Position::new(10));

    // A runner still holding the checkpoint from before the kill is fenced.
    let stale = wait_for(DEADLINE, "a stale save is answered", async || {
        match kv.save("p", before_kill, Position::new(99)).await {
            Err(CheckpointError::Unavailable { message, .. }) => Err(message),
            other => Ok(other),
        }
    })
    .await;
    assert!(
        matches!(stale, Err(CheckpointError::Conflict { .. })),
        "{stale:?}"
    );

    // An independent raw reader sees the last acknowledged checkpoint.
    let store = raw.get_key_value(&bucket).await.expect("bucket");
    let entry = wait_for(DEADLINE, "a raw read of the checkpoint", async || {
        store.entry("p").await
    })
    .await
    .expect("a checkpoint");
    assert_eq!(std::str::from_utf8(&entry.value).unwrap(), "10");
    assert_eq!(entry.revision, cp.revision);
}
