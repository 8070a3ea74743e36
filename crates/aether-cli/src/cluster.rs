//! `aether cluster status`: members, leader, shard map of an `aether-cluster`
//! cluster, read from its KV buckets.

use std::collections::BTreeSet;
use std::io::Write as _;

use aether_cluster::NodeId;
use aether_cluster::status::{ClusterStatus, list_clusters};
use clap::{Args, Subcommand};
use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::conn::ConnArgs;
use crate::error::CliError;

/// A cluster of `aether-cluster` nodes.
#[derive(Debug, Subcommand)]
pub(crate) enum ClusterCommand {
    /// Members, leader and term, shard-map epoch and shards per node.
    Status(StatusArgs),
}

/// Show a cluster's members, leader and term, shard-map epoch and term, and
/// shards per node, from its KV buckets (read-only).
#[derive(Debug, Args)]
#[command(after_help = "\
A cluster keeps its state in three KV buckets, \
`<BUCKET_PREFIX>_CLUSTER_<name>_MEMBERS`, `.._LEADER` and `.._MAP`. Without \
--cluster, the only cluster on the server is shown (several: name one).

HEARTBEAT is the time since the server stored the node's last heartbeat \
(the server's clock against this machine's); a member disappears when it is \
older than the member TTL. A node in the map that is no longer a member is \
shown with `-` as its heartbeat.

Examples:
  aether cluster status
  aether cluster status --cluster shop --json | jq .leader")]
pub(crate) struct StatusArgs {
    /// The cluster's name (as given to `ClusterManager::builder`).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// Prefix of the cluster's bucket names.
    #[arg(long, default_value = aether_cluster::kv::DEFAULT_PREFIX, value_name = "PREFIX")]
    bucket_prefix: String,
    /// A JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(conn: &ConnArgs, command: ClusterCommand) -> Result<(), CliError> {
    match command {
        ClusterCommand::Status(args) => status(conn, args).await,
    }
}

async fn status(conn: &ConnArgs, args: StatusArgs) -> Result<(), CliError> {
    let (_client, js) = conn.connect_jetstream().await?;
    let cluster = match args.cluster {
        Some(name) => name,
        None => {
            let mut known = list_clusters(&js, &args.bucket_prefix).await?;
            match known.len() {
                1 => known.remove(0),
                0 => {
                    return Err(CliError::NoCluster {
                        cluster: None,
                        known,
                    });
                }
                _ => return Err(CliError::ChooseCluster { known }),
            }
        }
    };
    let Some(status) = ClusterStatus::read(&js, &args.bucket_prefix, &cluster).await? else {
        let known = list_clusters(&js, &args.bucket_prefix).await?;
        return Err(CliError::NoCluster {
            cluster: Some(cluster),
            known,
        });
    };
    let now = OffsetDateTime::now_utc();
    let value = status_json(&status, now);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{value}").map_err(CliError::stdout)?;
    } else {
        write_table(&mut out, &status, &value)?;
    }
    Ok(())
}

/// Seconds from `then` to `now`, never negative (clocks differ).
fn age(now: OffsetDateTime, then: OffsetDateTime) -> f64 {
    (now - then).as_seconds_f64().max(0.0)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Every node worth a row: the members, then owners in the map that are not.
fn nodes(status: &ClusterStatus) -> Vec<NodeId> {
    let mut seen = BTreeSet::new();
    let mut nodes = Vec::new();
    for m in &status.members {
        if seen.insert(m.info.node_id.clone()) {
            nodes.push(m.info.node_id.clone());
        }
    }
    for node in status.shards_per_node().into_keys() {
        if seen.insert(node.clone()) {
            nodes.push(node);
        }
    }
    nodes
}

fn status_json(status: &ClusterStatus, now: OffsetDateTime) -> Value {
    let load = status.shards_per_node();
    let leader = status.leader.as_ref();
    let members: Vec<Value> = nodes(status)
        .into_iter()
        .map(|node| {
            let shards = load.get(&node).copied().unwrap_or(0);
            let is_leader = leader.is_some_and(|l| l.node == node);
            match status.members.iter().find(|m| m.info.node_id == node) {
                Some(m) => json!({
                    "node": node.as_str(),
                    "member": true,
                    "leader": is_leader,
                    "shards": shards,
                    "subject": m.info.subject,
                    "incarnation": m.info.incarnation.to_string(),
                    "kinds": m.info.kinds,
                    "capacity": m.info.capacity,
                    "version": m.info.version,
                    "started_at": rfc3339(m.info.started_at),
                    "heartbeat_at": rfc3339(m.heartbeat_at),
                    "heartbeat_age_seconds": age(now, m.heartbeat_at),
                }),
                None => json!({
                    "node": node.as_str(),
                    "member": false,
                    "leader": is_leader,
                    "shards": shards,
                }),
            }
        })
        .collect();
    let map = status.shard_map.as_ref().map(|map| {
        json!({
            "term": map.term,
            "epoch": map.epoch,
            "shard_count": map.shard_count,
            "unassigned": map.owners.iter().filter(|o| o.is_none()).count(),
            "moving": map.moving.len(),
        })
    });
    let leader = leader.map(|l| {
        json!({
            "node": l.node.as_str(),
            "term": l.term,
            "incarnation": l.incarnation.to_string(),
            "renewed_at": rfc3339(l.renewed_at),
            "renewed_age_seconds": age(now, l.renewed_at),
        })
    });
    let bad: Vec<Value> = status
        .bad_records
        .iter()
        .map(|b| json!({"bucket": b.bucket, "key": b.key, "reason": b.reason}))
        .collect();
    json!({
        "cluster": status.cluster,
        "buckets": {
            "members": status.buckets.members,
            "leader": status.buckets.leader,
            "map": status.buckets.map,
        },
        "member_ttl_seconds": status.member_ttl.as_secs_f64(),
        "lease_ttl_seconds": status.lease_ttl.as_secs_f64(),
        "leader": leader,
        "shard_map": map,
        "members": members,
        "bad_records": bad,
    })
}

fn write_table(
    out: &mut impl std::io::Write,
    status: &ClusterStatus,
    value: &Value,
) -> Result<(), CliError> {
    let line = |out: &mut dyn std::io::Write, text: String| {
        writeln!(out, "{text}").map_err(CliError::stdout)
    };
    line(
        out,
        format!(
            "cluster `{}`: {} member(s); member TTL {:.1}s, lease TTL {:.1}s",
            status.cluster,
            status.members.len(),
            status.member_ttl.as_secs_f64(),
            status.lease_ttl.as_secs_f64()
        ),
    )?;
    match &status.leader {
        Some(l) => line(
            out,
            format!(
                "leader: {} (term {}, renewed {:.1}s ago)",
                l.node,
                l.term,
                value["leader"]["renewed_age_seconds"]
                    .as_f64()
                    .unwrap_or_default()
            ),
        )?,
        None => line(out, "leader: none (the lease is vacant)".to_owned())?,
    }
    match &status.shard_map {
        Some(map) => line(
            out,
            format!(
                "shard map: epoch {}, term {}, {} shards, {} unassigned, {} moving",
                map.epoch,
                map.term,
                map.shard_count,
                map.owners.iter().filter(|o| o.is_none()).count(),
                map.moving.len()
            ),
        )?,
        None => line(out, "shard map: none written yet".to_owned())?,
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "NODE",
        "ROLE",
        "SHARDS",
        "HEARTBEAT",
        "CAPACITY",
        "KINDS",
        "SUBJECT",
        "VERSION",
        "STARTED",
    ]);
    let empty = Vec::new();
    for m in value["members"].as_array().unwrap_or(&empty) {
        let text = |key: &str| m[key].as_str().unwrap_or("-").to_owned();
        let role = match (m["leader"].as_bool(), m["member"].as_bool()) {
            (Some(true), _) => "leader",
            (_, Some(false)) => "gone",
            _ => "member",
        };
        let kinds = m["kinds"]
            .as_array()
            .map(|k| {
                k.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "-".to_owned());
        table.add_row([
            text("node"),
            role.to_owned(),
            m["shards"].to_string(),
            m["heartbeat_age_seconds"]
                .as_f64()
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s ago")),
            m["capacity"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            kinds,
            text("subject"),
            text("version"),
            // Whole seconds are enough in a table.
            m["started_at"].as_str().map_or_else(
                || "-".to_owned(),
                |t| {
                    t.split_once('.')
                        .map_or(t.to_owned(), |(s, _)| format!("{s}Z"))
                },
            ),
        ]);
    }
    for col in [2, 3, 4] {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    line(out, table.to_string())?;
    for bad in &status.bad_records {
        line(
            out,
            format!(
                "unreadable record {} in {}: {}",
                bad.key, bad.bucket, bad.reason
            ),
        )?;
    }
    Ok(())
}
