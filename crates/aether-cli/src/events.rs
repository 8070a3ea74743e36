//! `aether events`: an actor's history, through the store's public reads.

use std::io::Write as _;

use aether_core::{ActorId, Event, EventStore, Version};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use futures::{StreamExt as _, TryStreamExt as _};
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
messages on the actor's subject are skipped (see `aether check`). The actor \
system stores actor `<id>` of kind `<kind>` as `<kind>:<id>`: for an actor \
with no events, the `<kind>:<id>` actors of the namespace are suggested.

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
    let suggestions = if count == 0 && latest == Version::ZERO {
        actor_system_ids(conn, &js, &namespace, &actor).await?
    } else {
        Vec::new()
    };
    if !suggestions.is_empty() {
        let hint = format!(
            "actor `{actor}` in namespace `{namespace}` has no events; did you mean {}? \
             (the actor system stores an actor as `<kind>:<id>`)",
            one_of(&suggestions)
        );
        // With --json, stdout stays JSON lines only.
        if args.json {
            eprintln!("aether: {hint}");
        } else {
            writeln!(stdout, "{hint}").map_err(CliError::stdout)?;
        }
    } else if !args.json {
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

/// Most `<kind>:<id>` actors a miss names; one more means "and others".
const MAX_SUGGESTIONS: usize = 5;

/// The namespace's actors `<kind>:<actor>` (a kind never contains `:`),
/// sorted: at most [`MAX_SUGGESTIONS`] + 1 of them. Read from the events
/// stream's per-subject index; NATS wildcards match whole tokens only, so
/// the filter lists every actor subject and the `:<actor>` suffix is matched
/// here, stopping once enough are found.
async fn actor_system_ids(
    conn: &ConnArgs,
    js: &async_nats::jetstream::Context,
    namespace: &aether_core::Namespace,
    actor: &ActorId,
) -> Result<Vec<String>, CliError> {
    let stream = conn.events_stream_of(js, namespace).await?;
    let root = conn.events_subject_root(namespace);
    let reading = |e| CliError::js("reading the namespace's actors", e);
    let mut subjects = stream
        .info_with_subjects(format!("{root}.*"))
        .await
        .map_err(reading)?;
    let mut found = Vec::new();
    while found.len() <= MAX_SUGGESTIONS {
        let Some((subject, _)) = subjects.try_next().await.map_err(reading)? else {
            break;
        };
        let Some(id) = conn::actor_of_subject(&root, &subject) else {
            continue;
        };
        if id
            .split_once(':')
            .is_some_and(|(kind, rest)| !kind.is_empty() && rest == actor.as_str())
        {
            found.push(id);
        }
    }
    found.sort();
    Ok(found)
}

/// "`a`", "`a` or `b`", "`a`, `b` or `c`"; past [`MAX_SUGGESTIONS`], "`a`,
/// …, `e` or another".
fn one_of(ids: &[String]) -> String {
    let quote = |ids: &[String]| {
        let quoted: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
        quoted.join(", ")
    };
    if ids.len() > MAX_SUGGESTIONS {
        return format!("{} or another", quote(&ids[..MAX_SUGGESTIONS]));
    }
    match ids.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or `{last}`", quote(rest)),
        _ => quote(ids),
    }
}

#[cfg(test)]
mod tests {
    use super::one_of;

    #[test]
    fn suggestions_read_as_a_list() {
        let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("k{i}:a")).collect() };
        assert_eq!(one_of(&ids(1)), "`k0:a`");
        assert_eq!(one_of(&ids(2)), "`k0:a` or `k1:a`");
        assert_eq!(one_of(&ids(3)), "`k0:a`, `k1:a` or `k2:a`");
        assert_eq!(
            one_of(&ids(6)),
            "`k0:a`, `k1:a`, `k2:a`, `k3:a`, `k4:a` or another"
        );
    }
}
