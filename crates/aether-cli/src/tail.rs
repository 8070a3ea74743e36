//! `aether tail`: live events off the NATS bus.

use std::io::Write as _;

use aether_bus::NatsEventBus;
use aether_core::{BusError, EventFilter, NamespacePattern};
use clap::Args;
use futures::StreamExt as _;

use crate::conn::{self, ConnArgs};
use crate::error::CliError;

/// Print events published on the NATS bus as they happen.
#[derive(Debug, Args)]
#[command(after_help = "\
PATTERN is a namespace (`shop`: exactly that namespace) or a namespace \
followed by `.>` (`acme.>`: `acme` and every namespace under it).

The NATS bus delivers at most once: events published while nothing listens, \
or while this tool lags behind, are not shown (a lag is reported on stderr). \
Stops on Ctrl-C, or after --count events.

Examples:
  aether tail shop --type ItemAdded
  aether tail 'acme.>' --json --count 100")]
pub(crate) struct TailArgs {
    /// `<namespace>` or `<namespace>.>`.
    pattern: String,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "T")]
    types: Vec<String>,
    /// Only actors whose id starts with this.
    #[arg(long, value_name = "PREFIX")]
    actor_prefix: Option<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Subject prefix of the bus.
    #[arg(long, default_value = aether_bus::DEFAULT_PREFIX)]
    bus_prefix: String,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

fn pattern(text: &str) -> Result<NamespacePattern, CliError> {
    match text.strip_suffix(".>") {
        Some(root) => Ok(NamespacePattern::Within(conn::namespace(root)?)),
        None => Ok(NamespacePattern::Exact(conn::namespace(text)?)),
    }
}

pub(crate) async fn run(conn: &ConnArgs, args: TailArgs) -> Result<(), CliError> {
    let mut filter = EventFilter::pattern(pattern(&args.pattern)?);
    if !args.types.is_empty() {
        filter = filter.event_types(args.types.iter().cloned());
    }
    if let Some(prefix) = &args.actor_prefix {
        filter = filter.actor_prefix(prefix.clone());
    }
    let client = conn.connect().await?;
    let bus = NatsEventBus::builder(client)
        .prefix(args.bus_prefix.clone())
        .subscribe_timeout(conn.timeout())
        .build()
        .map_err(|e| CliError::Bus(e.to_string()))?;
    let mut sub = bus
        .subscribe_with_capacity(filter, 10_000)
        .await
        .map_err(|e| CliError::Bus(e.to_string()))?;
    eprintln!("listening on {} (Ctrl-C to stop)", args.pattern);
    let mut seen = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let item = tokio::select! {
            _ = &mut ctrl_c => break,
            item = sub.next() => item,
        };
        let Some(item) = item else {
            return Err(CliError::Bus("the subscription ended".to_owned()));
        };
        let event = match item {
            Ok(event) => event,
            Err(BusError::Lagged { missed, .. }) => {
                eprintln!("lagged: {missed} event(s) not shown");
                continue;
            }
            Err(e) => return Err(CliError::Bus(e.to_string())),
        };
        let mut out = std::io::stdout().lock();
        let value = crate::events::event_json(event.namespace.as_str(), &event.event);
        if args.json {
            writeln!(out, "{value}").map_err(CliError::stdout)?;
        } else {
            writeln!(
                out,
                "{} {} {} v{} {} {}",
                value["timestamp"].as_str().unwrap_or_default(),
                event.namespace,
                event.event.actor_id,
                event.event.version.get(),
                event.event.event_type,
                value["data"]
            )
            .map_err(CliError::stdout)?;
        }
        out.flush().map_err(CliError::stdout)?;
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    bus.close();
    Ok(())
}
