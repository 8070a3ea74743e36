//! `aether check`: a read-only scan of a namespace's raw messages under the
//! store's trust rule, with its own decoder of the envelope (so it reports
//! what the store would skip rather than skipping it).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::conn::{self, ConnArgs};
use crate::error::CliError;
use crate::progress;

/// Scan every actor's raw messages of a namespace for problems (read-only).
#[derive(Debug, Args)]
#[command(after_help = "\
Reports, per message, what the store's trust rule would skip:
  garbage        not an Aether envelope (not MessagePack, another format)
  wrong-actor    an envelope naming another actor than its subject's
  missing-id     an envelope without a Nats-Msg-Id header
  repeat         a version at or below the actor's last valid version
  gap            a version past the last valid version + 1
and per snapshot:
  snapshot-ahead       a snapshot beyond the actor's last valid event
  snapshot-undecodable a snapshot that is not an Aether snapshot

Exit code: 0 when the namespace is clean, 1 when problems were found, 2 on \
an error.

Example:
  aether check shop --json > report.json")]
pub(crate) struct CheckArgs {
    /// The namespace.
    namespace: String,
    /// List at most this many problems in the table (the summary counts all).
    #[arg(long, default_value_t = 50, value_name = "N")]
    limit: usize,
    /// A JSON report instead of tables.
    #[arg(long)]
    json: bool,
}

/// One problem found.
struct Problem {
    kind: &'static str,
    actor: String,
    stream: &'static str,
    sequence: u64,
    detail: String,
}

/// The outcome of a run: exit code 0 or 1.
pub(crate) async fn run(conn: &ConnArgs, args: CheckArgs) -> Result<u8, CliError> {
    let namespace = conn::namespace(&args.namespace)?;
    let (_client, js) = conn.connect_jetstream().await?;
    let events = conn.events_stream_of(&js, &namespace).await?;
    let root = conn.events_subject_root(&namespace);

    let mut problems = Vec::new();
    // actor → last valid version
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut scanned = 0u64;
    let mut valid = 0u64;

    let end = events.cached_info().state.last_sequence;
    let bar = progress::bar(end, "messages");
    for_each_message(&events, &format!("{root}.*"), end, |message, seq| {
        scanned += 1;
        bar.set_position(seq);
        let Some(actor) = conn::actor_of_subject(&root, message.subject.as_str()) else {
            problems.push(Problem {
                kind: "garbage",
                actor: message.subject.to_string(),
                stream: "events",
                sequence: seq,
                detail: "subject is not an encoded actor id".to_owned(),
            });
            return;
        };
        let mut problem = |kind, detail: String| {
            problems.push(Problem {
                kind,
                actor: actor.clone(),
                stream: "events",
                sequence: seq,
                detail,
            });
        };
        // Either envelope format, payload left undecoded.
        let envelope = match aether_store_jetstream::inspect_event(&message.payload) {
            Ok(e) => e,
            Err(e) => {
                problem("garbage", format!("{} bytes: {e}", message.payload.len()));
                return;
            }
        };
        if envelope.actor != actor {
            problem(
                "wrong-actor",
                format!("envelope of actor `{}`", envelope.actor),
            );
            return;
        }
        let has_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .is_some_and(|id| !id.as_str().is_empty());
        if !has_id {
            problem(
                "missing-id",
                format!("version {} has no Nats-Msg-Id", envelope.version),
            );
            return;
        }
        let prev = last.get(&actor).copied().unwrap_or(0);
        if envelope.version <= prev {
            problem(
                "repeat",
                format!("version {} again after version {prev}", envelope.version),
            );
        } else if envelope.version != prev + 1 {
            problem(
                "gap",
                format!("version {} after version {prev}", envelope.version),
            );
        } else {
            last.insert(actor, envelope.version);
            valid += 1;
        }
    })
    .await?;
    bar.finish_and_clear();

    // Snapshots: at most one message per actor.
    let mut snapshots = 0u64;
    if let Some(stream) = conn::get_stream(&js, &conn.snapshots_stream(&namespace)).await? {
        let snap_root = conn.snapshots_subject_root(&namespace);
        let end = stream.cached_info().state.last_sequence;
        for_each_message(&stream, &format!("{snap_root}.*"), end, |message, seq| {
            snapshots += 1;
            let actor = conn::actor_of_subject(&snap_root, message.subject.as_str())
                .unwrap_or_else(|| message.subject.to_string());
            let mut problem = |kind, detail: String| {
                problems.push(Problem {
                    kind,
                    actor: actor.clone(),
                    stream: "snapshots",
                    sequence: seq,
                    detail,
                });
            };
            match aether_store_jetstream::inspect_snapshot_version(&message.payload) {
                Ok(version) => {
                    let events = last.get(&actor).copied().unwrap_or(0);
                    if version > events {
                        problem(
                            "snapshot-ahead",
                            format!(
                                "snapshot at version {version} but the last valid event is {events}"
                            ),
                        );
                    }
                }
                Err(e) => problem("snapshot-undecodable", e.to_string()),
            }
        })
        .await?;
    }

    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &problems {
        *counts.entry(p.kind).or_default() += 1;
    }
    let clean = problems.is_empty();
    let mut out = std::io::stdout().lock();
    if args.json {
        let list: Vec<Value> = problems
            .iter()
            .map(|p| {
                json!({
                    "kind": p.kind,
                    "actor": p.actor,
                    "stream": p.stream,
                    "sequence": p.sequence,
                    "detail": p.detail,
                })
            })
            .collect();
        let report = json!({
            "namespace": namespace.as_str(),
            "messages": scanned,
            "valid_events": valid,
            "actors": last.len(),
            "snapshots": snapshots,
            "clean": clean,
            "counts": counts,
            "problems": list,
        });
        writeln!(out, "{report}").map_err(CliError::stdout)?;
    } else {
        if !clean {
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_header(["KIND", "ACTOR", "STREAM", "SEQ", "DETAIL"]);
            for p in problems.iter().take(args.limit) {
                table.add_row([
                    p.kind.to_owned(),
                    p.actor.clone(),
                    p.stream.to_owned(),
                    p.sequence.to_string(),
                    p.detail.clone(),
                ]);
            }
            writeln!(out, "{table}").map_err(CliError::stdout)?;
            if problems.len() > args.limit {
                writeln!(out, "… and {} more", problems.len() - args.limit)
                    .map_err(CliError::stdout)?;
            }
        }
        let mut summary = Table::new();
        summary
            .load_preset(UTF8_FULL_CONDENSED)
            .set_header(["SUMMARY", "COUNT"]);
        summary.add_row(["messages scanned".to_owned(), scanned.to_string()]);
        summary.add_row(["valid events".to_owned(), valid.to_string()]);
        summary.add_row(["actors".to_owned(), last.len().to_string()]);
        summary.add_row(["snapshots".to_owned(), snapshots.to_string()]);
        for (kind, n) in &counts {
            summary.add_row([(*kind).to_owned(), n.to_string()]);
        }
        writeln!(out, "{summary}").map_err(CliError::stdout)?;
        if clean {
            writeln!(out, "namespace `{namespace}` is clean").map_err(CliError::stdout)?;
        } else {
            writeln!(
                out,
                "namespace `{namespace}`: {} problem(s) found",
                problems.len()
            )
            .map_err(CliError::stdout)?;
        }
    }
    Ok(if clean { 0 } else { 1 })
}

/// Reads every message of `stream` on `filter` up to sequence `end` (the
/// stream's last sequence when the scan started) with an ordered consumer;
/// it ends at `end` or when the server says nothing more is pending.
async fn for_each_message(
    stream: &jetstream::stream::Stream,
    filter: &str,
    end: u64,
    mut f: impl FnMut(&async_nats::jetstream::Message, u64),
) -> Result<(), CliError> {
    if end == 0 || stream.cached_info().state.messages == 0 {
        return Ok(());
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| CliError::js("creating a reader", e))?;
    let name = consumer.cached_info().name.clone();
    let result = read_to_end(consumer, end, &mut f).await;
    // The reader is ephemeral (the server drops it after 30 s idle); remove
    // it now so a scan leaves nothing behind. Best effort: a failure here
    // changes nothing the scan found.
    if let Err(e) = stream.delete_consumer(&name).await {
        note_leftover(&name, &e);
    }
    result
}

async fn read_to_end(
    consumer: jetstream::consumer::Consumer<OrderedConfig>,
    end: u64,
    f: &mut impl FnMut(&async_nats::jetstream::Message, u64),
) -> Result<(), CliError> {
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| CliError::js("reading messages", e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| CliError::js("reading messages", e))?;
        let info = message
            .info()
            .map_err(|e| CliError::js("reading a message's sequence", e))?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        f(&message, seq);
        if seq >= end || pending == 0 {
            return Ok(());
        }
    }
    Err(CliError::js("reading messages", "the reader ended early"))
}

fn note_leftover(name: &str, error: &dyn std::fmt::Display) {
    if std::env::var_os("AETHER_DEBUG").is_some() {
        eprintln!("note: could not remove reader {name}: {error}");
    }
}
