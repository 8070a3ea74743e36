//! `aether streams` and `aether actor-stats`: what Aether keeps on a server,
//! read from JetStream's stream info.

use std::io::Write as _;

use aether_core::name::decode_token;
use clap::Args;
use comfy_table::{CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use futures::TryStreamExt as _;
use serde_json::{Value, json};

use crate::conn::{self, ConnArgs};
use crate::error::CliError;

/// List Aether's streams on the server, one row per namespace.
#[derive(Debug, Args)]
#[command(after_help = "\
A namespace's events live in stream `<PREFIX>_EVENTS_<ns>`, its snapshots in \
`<PREFIX>_SNAPSHOTS_<ns>`; ACTORS counts the subjects (one per actor).

Example:
  aether streams --server nats://nats.internal:4222 --json")]
pub(crate) struct StreamsArgs {
    /// A JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

/// Show a namespace's largest and busiest actors (events per actor).
#[derive(Debug, Args)]
#[command(after_help = "\
Counts come from the server's per-subject index (stream info with a subjects \
filter); foreign messages on an actor's subject count too.

Example:
  aether actor-stats shop --top 20")]
pub(crate) struct ActorStatsArgs {
    /// The namespace.
    namespace: String,
    /// How many actors to show.
    #[arg(long, default_value_t = 10, value_name = "N")]
    top: usize,
    /// A JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn streams(conn: &ConnArgs, args: StreamsArgs) -> Result<(), CliError> {
    let (_client, js) = conn.connect_jetstream().await?;
    let upper = conn.prefix.to_ascii_uppercase();
    let events_prefix = format!("{upper}_EVENTS_");
    let snapshots_prefix = format!("{upper}_SNAPSHOTS_");
    let infos: Vec<_> = js
        .streams()
        .try_collect()
        .await
        .map_err(|e| CliError::js("listing streams", e))?;
    let mut snapshots = std::collections::HashMap::new();
    for info in &infos {
        if let Some(ns) = info.config.name.strip_prefix(&snapshots_prefix) {
            snapshots.insert(ns.to_owned(), info.state.messages);
        }
    }
    let mut rows: Vec<Value> = infos
        .iter()
        .filter_map(|info| {
            let token = info.config.name.strip_prefix(&events_prefix)?;
            let namespace = decode_token(token).unwrap_or_else(|| token.to_owned());
            Some(json!({
                "namespace": namespace,
                "stream": info.config.name,
                "events": info.state.messages,
                "actors": info.state.subjects_count,
                "bytes": info.state.bytes,
                "replicas": info.config.num_replicas,
                "snapshots": snapshots.get(token).copied().unwrap_or(0),
            }))
        })
        .collect();
    rows.sort_by(|a, b| a["namespace"].as_str().cmp(&b["namespace"].as_str()));
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", Value::Array(rows)).map_err(CliError::stdout)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(
            out,
            "no Aether streams (prefix `{}`) on {}",
            conn.prefix, conn.server
        )
        .map_err(CliError::stdout)?;
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "NAMESPACE",
        "EVENTS",
        "ACTORS",
        "BYTES",
        "REPLICAS",
        "SNAPSHOTS",
        "STREAM",
    ]);
    for row in &rows {
        table.add_row([
            row["namespace"].as_str().unwrap_or_default().to_owned(),
            row["events"].to_string(),
            row["actors"].to_string(),
            human_bytes(row["bytes"].as_u64().unwrap_or(0)),
            row["replicas"].to_string(),
            row["snapshots"].to_string(),
            row["stream"].as_str().unwrap_or_default().to_owned(),
        ]);
    }
    for col in 1..=5 {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    writeln!(out, "{table}").map_err(CliError::stdout)?;
    Ok(())
}

pub(crate) async fn actor_stats(conn: &ConnArgs, args: ActorStatsArgs) -> Result<(), CliError> {
    let namespace = conn::namespace(&args.namespace)?;
    let (_client, js) = conn.connect_jetstream().await?;
    let stream = conn.events_stream_of(&js, &namespace).await?;
    let root = conn.events_subject_root(&namespace);
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("{root}.*"))
        .await
        .map_err(|e| CliError::js("reading subject counts", e))?
        .try_collect()
        .await
        .map_err(|e| CliError::js("reading subject counts", e))?;
    let actors = subjects.len();
    let total: u64 = subjects.iter().map(|(_, n)| *n as u64).sum();
    let mut counted: Vec<(String, u64)> = subjects
        .into_iter()
        .map(|(subject, n)| {
            let actor = conn::actor_of_subject(&root, &subject).unwrap_or(subject);
            (actor, n as u64)
        })
        .collect();
    counted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counted.truncate(args.top);
    let mut out = std::io::stdout().lock();
    if args.json {
        let top: Vec<Value> = counted
            .iter()
            .map(|(actor, n)| json!({"actor": actor, "events": n}))
            .collect();
        let value = json!({
            "namespace": namespace.as_str(),
            "actors": actors,
            "events": total,
            "top": top,
        });
        writeln!(out, "{value}").map_err(CliError::stdout)?;
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["#", "ACTOR", "EVENTS", "SHARE"]);
    for (i, (actor, n)) in counted.iter().enumerate() {
        let share = if total == 0 {
            0.0
        } else {
            *n as f64 * 100.0 / total as f64
        };
        table.add_row([
            (i + 1).to_string(),
            actor.clone(),
            n.to_string(),
            format!("{share:.1}%"),
        ]);
    }
    for col in [0, 2, 3] {
        if let Some(c) = table.column_mut(col) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    writeln!(out, "{table}").map_err(CliError::stdout)?;
    writeln!(
        out,
        "namespace `{namespace}`: {actors} actor(s), {total} message(s); top {} by message count",
        counted.len()
    )
    .map_err(CliError::stdout)?;
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_read_well() {
        assert_eq!(super::human_bytes(512), "512 B");
        assert_eq!(super::human_bytes(1536), "1.5 KiB");
        assert_eq!(super::human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
