//! `aether cluster status` against a real server with three `ClusterManager`
//! nodes started here, and the error for a cluster that does not exist.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use aether_cluster::{ClusterManager, NodeId};
use aether_testkit_nats::{NatsServer, connect, unique_name, wait_until};
use common::*;

const SHARDS: u32 = 64;
const SOON: Duration = Duration::from_secs(30);

async fn start_node(url: &str, cluster: &str, id: &str) -> ClusterManager {
    ClusterManager::builder(connect(url).await, cluster, NodeId::new(id).unwrap())
        .member_ttl(Duration::from_secs(4))
        .lease_ttl(Duration::from_secs(4))
        .shard_count(SHARDS)
        .kinds(["cart"])
        .start()
        .await
        .unwrap_or_else(|e| panic!("node {id} starts: {e}"))
}

/// `(leader, term, map epoch, map term)` once every node sees every node as a
/// member, one leader acts, and the map gives every node shards with nothing
/// moving; `None` before.
fn settled(nodes: &[ClusterManager]) -> Option<(String, u64, u64, u64)> {
    let ids: BTreeSet<String> = nodes.iter().map(|n| n.node_id().to_string()).collect();
    let map = nodes[0].shard_map()?;
    for node in nodes {
        let seen: BTreeSet<String> = node
            .members()
            .iter()
            .map(|m| m.node_id.to_string())
            .collect();
        let theirs = node.shard_map()?;
        if seen != ids || (theirs.term, theirs.epoch) != (map.term, map.epoch) {
            return None;
        }
    }
    let owners: BTreeSet<String> = map.load().keys().map(ToString::to_string).collect();
    if owners != ids || !map.moving.is_empty() || map.owners.iter().any(Option::is_none) {
        return None;
    }
    let leaders: Vec<&ClusterManager> = nodes.iter().filter(|n| n.is_leader()).collect();
    let [leader] = leaders.as_slice() else {
        return None;
    };
    Some((
        leader.node_id().to_string(),
        leader.term(),
        map.epoch,
        map.term,
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn status_names_every_node_the_leader_and_the_epoch() {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("cli-cluster");
    let mut nodes = Vec::new();
    for id in ["n1", "n2", "n3"] {
        nodes.push(start_node(&url, &cluster, id).await);
    }
    wait_until(SOON, "three nodes settle", async || {
        settled(&nodes).is_some()
    })
    .await;

    // The state can move on between reading it from the nodes and the tool
    // reading the buckets; compare only when the nodes agree before and after.
    let deadline = tokio::time::Instant::now() + SOON;
    let (json_out, table_out, expected) = loop {
        let before = settled(&nodes);
        let json_out = run(
            &server,
            &["cluster", "status", "--cluster", &cluster, "--json"],
        );
        let table_out = run(&server, &["cluster", "status", "--cluster", &cluster]);
        let after = settled(&nodes);
        if let Some(state) = before.filter(|b| Some(b) == after.as_ref()) {
            break (json_out, table_out, state);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster never stayed settled while the tool read it"
        );
    };
    let (leader, term, epoch, map_term) = expected;

    assert_code(&json_out, 0);
    let value = json(&json_out);
    assert_eq!(value["cluster"], cluster.as_str());
    assert_eq!(value["leader"]["node"], leader.as_str(), "{value:#}");
    assert_eq!(value["leader"]["term"], term, "{value:#}");
    assert_eq!(value["shard_map"]["epoch"], epoch, "{value:#}");
    assert_eq!(value["shard_map"]["term"], map_term, "{value:#}");
    assert_eq!(value["shard_map"]["shard_count"], SHARDS);
    assert_eq!(value["shard_map"]["moving"], 0);
    let members = value["members"].as_array().expect("members");
    let names: Vec<&str> = members.iter().filter_map(|m| m["node"].as_str()).collect();
    assert_eq!(names, ["n1", "n2", "n3"], "{value:#}");
    let mut total = 0;
    for m in members {
        assert_eq!(m["member"], true, "{m}");
        assert_eq!(m["leader"], m["node"] == leader.as_str(), "{m}");
        assert_eq!(m["kinds"], serde_json::json!(["cart"]), "{m}");
        let shards = m["shards"].as_u64().expect("shards");
        assert!(shards > 0, "{m}");
        total += shards;
        let age = m["heartbeat_age_seconds"].as_f64().expect("an age");
        assert!((0.0..30.0).contains(&age), "{m}");
        // The subject the node's actor system serves, as the runtime names it.
        let served = format!(
            "aether.rt.{}.{}",
            aether_core::name::encode_token(&cluster),
            aether_core::name::encode_token(m["node"].as_str().expect("a node"))
        );
        assert_eq!(m["subject"].as_str(), Some(served.as_str()), "{m}");
    }
    assert_eq!(total, u64::from(SHARDS));
    assert_eq!(value["member_ttl_seconds"], 4.0);
    assert!(value["bad_records"].as_array().unwrap().is_empty());

    assert_code(&table_out, 0);
    let text = stdout(&table_out);
    assert!(
        text.contains(&format!("leader: {leader} (term {term},")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "shard map: epoch {epoch}, term {map_term}, {SHARDS} shards"
        )),
        "{text}"
    );
    for id in ["n1", "n2", "n3"] {
        let row = text
            .lines()
            .find(|l| l.contains(&format!(" {id} ")))
            .unwrap_or_else(|| panic!("a row for {id}:\n{text}"));
        let role = if id == leader { "leader" } else { "member" };
        assert!(row.contains(role), "{row}");
    }

    // The only cluster on the server: --cluster may be left out.
    let out = run(&server, &["cluster", "status", "--json"]);
    assert_code(&out, 0);
    assert_eq!(json(&out)["cluster"], cluster.as_str());

    for node in nodes {
        node.shutdown().await.expect("graceful leave");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_cluster_is_a_clear_error_and_creates_nothing() {
    let server = NatsServer::start().await;
    let out = run(&server, &["cluster", "status", "--cluster", "ghost"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("no Aether cluster named `ghost` on this server"),
        "{}",
        stderr(&out)
    );
    let out = run(&server, &["cluster", "status"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("no Aether cluster on this server"),
        "{}",
        stderr(&out)
    );
    // Read-only: no bucket was made.
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    let mut names = js.stream_names();
    use futures::StreamExt as _;
    assert!(names.next().await.is_none(), "a stream was created");

    // With a cluster on the server, the error names it.
    let url = server.url();
    let cluster = unique_name("cli-real");
    let node = start_node(&url, &cluster, "solo").await;
    let out = run(&server, &["cluster", "status", "--cluster", "ghost"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains(&format!("clusters here: {cluster}")),
        "{}",
        stderr(&out)
    );
    node.shutdown().await.expect("leave");
}

/// Buckets written by hand: a member record, a garbage record, a map that
/// names a node that is no longer a member, no leader bucket.
#[tokio::test(flavor = "multi_thread")]
async fn unreadable_records_and_owners_that_left_are_shown() {
    use aether_cluster::{Incarnation, NodeInfo, ShardMap};
    use async_nats::jetstream::kv;

    let server = NatsServer::start().await;
    let cluster = unique_name("cli-hand");
    let token = aether_core::name::encode_token(&cluster);
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    let bucket = |suffix: &str| kv::Config {
        bucket: format!("AETHER_CLUSTER_{token}_{suffix}"),
        history: 1,
        ..Default::default()
    };
    let members = js.create_key_value(bucket("MEMBERS")).await.unwrap();
    let map_bucket = js.create_key_value(bucket("MAP")).await.unwrap();
    let n1 = NodeId::new("n1").unwrap();
    let info = NodeInfo {
        node_id: n1.clone(),
        incarnation: Incarnation::new(),
        subject: "aether.rt.x.n1".to_owned(),
        kinds: vec!["cart".to_owned()],
        capacity: 2,
        version: "0.1.0".to_owned(),
        started_at: time::OffsetDateTime::now_utc(),
    };
    members
        .put("members.n1", rmp_serde::to_vec_named(&info).unwrap().into())
        .await
        .unwrap();
    members
        .put("members.bad", "not a record".into())
        .await
        .unwrap();
    let mut map = ShardMap::empty(4);
    map.term = 3;
    map.epoch = 7;
    let gone = NodeId::new("gone-node").unwrap();
    map.owners = vec![Some(n1.clone()), Some(gone.clone()), Some(gone), None];
    map_bucket.put("map", map.encode().into()).await.unwrap();

    let out = run(
        &server,
        &["cluster", "status", "--cluster", &cluster, "--json"],
    );
    assert_code(&out, 0);
    let value = json(&out);
    assert_eq!(value["leader"], serde_json::Value::Null, "{value:#}");
    assert_eq!(value["shard_map"]["epoch"], 7);
    assert_eq!(value["shard_map"]["term"], 3);
    assert_eq!(value["shard_map"]["unassigned"], 1);
    let rows = value["members"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{value:#}");
    assert_eq!(rows[0]["node"], "n1");
    assert_eq!(rows[0]["member"], true);
    assert_eq!(rows[0]["shards"], 1);
    assert_eq!(rows[0]["capacity"], 2);
    assert_eq!(rows[1]["node"], "gone-node");
    assert_eq!(rows[1]["member"], false);
    assert_eq!(rows[1]["shards"], 2);
    let bad = value["bad_records"].as_array().unwrap();
    assert_eq!(bad.len(), 1, "{value:#}");
    assert_eq!(bad[0]["key"], "members.bad");

    let out = run(&server, &["cluster", "status", "--cluster", &cluster]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("leader: none"), "{text}");
    assert!(
        text.contains("shard map: epoch 7, term 3, 4 shards, 1 unassigned"),
        "{text}"
    );
    let gone_row = text
        .lines()
        .find(|l| l.contains(" gone-node "))
        .unwrap_or_else(|| panic!("a row for gone-node:\n{text}"));
    assert!(gone_row.contains("gone"), "{gone_row}");
    assert!(text.contains("unreadable record members.bad"), "{text}");
}
