//! `aether events`: an actor's history, through the store's public reads.

use std::io::Write as _;

use aether_core::{ActorId, Event, EventStore, Version};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use futures::StreamExt as _;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use crate::conn::{self, ConnArgs};
use crate::error::CliError;
use crate::progress;

/// Print an actor's history: envelope fields and the payload decoded from
/// MessagePack into JSON.
#[derive(Debug, Args)]
#[command(after_help = "\
Reads go through the event store exactly as an application's do: foreign \
messages on the actor's subject are skipped (see `aether check`).

Examples:
  aether events shop cart-7
  aether events shop cart-7 --from 100 --json | jq .data")]
pub(crate) struct EventsArgs {
    /// The namespace (e.g. `shop` or `acme.orders`).
    namespace: String,
    /// The actor id.
    actor: String,
    /// The first version to show.
    #[arg(long, default_value_t = 1, value_name = "V")]
    from: u64,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn event_json(namespace: &str, event: &Event) -> Value {
    let mut value = json!({
        "namespace": namespace,
        "actor": event.actor_id.as_str(),
        "version": event.version.get(),
        "type": &*event.event_type,
        "id": event.id.as_uuid().to_string(),
        "timestamp": event.timestamp.format(&Rfc3339).unwrap_or_default(),
        "schema": event.schema_version,
        "data": crate::payload::to_json(&event.data),
    });
    let meta = &event.metadata;
    if let Some(c) = &meta.correlation_id {
        value["correlation_id"] = json!(c);
    }
    if let Some(c) = &meta.causation_id {
        value["causation_id"] = json!(c);
    }
    if !meta.custom.is_empty() {
        value["metadata"] = json!(meta.custom);
    }
    value
}

pub(crate) async fn run(conn: &ConnArgs, args: EventsArgs) -> Result<(), CliError> {
    let namespace = conn::namespace(&args.namespace)?;
    let actor = ActorId::new(&args.actor).map_err(|e| CliError::InvalidArgument {
        what: "actor id",
        value: args.actor.clone(),
        detail: e.to_string(),
    })?;
    let from = Version::new(args.from.max(1));
    let (client, js) = conn.connect_jetstream().await?;
    let store = conn.open_store(client, &js, &namespace).await?;
    let latest = store.get_latest_version(&actor).await?;
    let total = latest.get().saturating_sub(from.get() - 1);
    let bar = progress::bar(total, "events");
    let mut events = store.stream_events(&actor, from);
    let mut stdout = std::io::stdout().lock();
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["VERSION", "TYPE", "TIMESTAMP", "ID", "DATA"]);
    let mut count = 0u64;
    while let Some(event) = events.next().await {
        let event = event?;
        count += 1;
        bar.inc(1);
        let value = event_json(namespace.as_str(), &event);
        if args.json {
            writeln!(stdout, "{value}").map_err(CliError::stdout)?;
        } else {
            table.add_row([
                event.version.get().to_string(),
                event.event_type.to_string(),
                value["timestamp"].as_str().unwrap_or_default().to_owned(),
                value["id"].as_str().unwrap_or_default().to_owned(),
                value["data"].to_string(),
            ]);
        }
    }
    bar.finish_and_clear();
    if !args.json {
        if count == 0 {
            writeln!(
                stdout,
                "actor `{actor}` in namespace `{namespace}` has no events from version {}",
                from.get()
            )
            .map_err(CliError::stdout)?;
        } else {
            writeln!(stdout, "{table}").map_err(CliError::stdout)?;
            writeln!(
                stdout,
                "{count} event(s) of actor `{actor}` in namespace `{namespace}`"
            )
            .map_err(CliError::stdout)?;
        }
    }
    Ok(())
}
