//! `aether tail`: live events off the NATS bus, or a namespace's feed from
//! a position (durable: read off the JetStream events stream, nothing skipped).

use std::io::Write as _;
use std::str::FromStr;

use aether_bus::NatsEventBus;
use aether_core::{
    BusError, Event, EventFeed as _, EventFilter, FeedFilter, NamespacePattern, Position,
};
use clap::Args;
use futures::StreamExt as _;

use crate::conn::{self, ConnArgs};
use crate::error::CliError;

/// Print events as they happen: off the NATS bus, or (with --from) off a
/// namespace's feed.
#[derive(Debug, Args)]
#[command(after_help = "\
Two sources:

* Without --from, the NATS bus. PATTERN is a namespace (`shop`: exactly that \
namespace) or a namespace followed by `.>` (`acme.>`: `acme` and every \
namespace under it). The bus delivers at most once: events published while \
nothing listens, or while this tool lags behind, are not shown (a lag is \
reported on stderr).

* With --from, the namespace's feed: every event of one namespace in commit \
order, read off its JetStream events stream through the store (foreign \
messages skipped, as the store's reads do), never skipping one, first the \
stored ones and then new ones as they are committed. Each line starts with \
the event's position (`@17`); to resume after position 17, pass --from 18. \
--from start is the first event, --from end only events committed from now on.

Stops on Ctrl-C, or after --count events.

Examples:
  aether tail shop --type ItemAdded
  aether tail 'acme.>' --json --count 100
  aether tail shop --from start --actor-prefix cart- --count 10
  aether tail shop --from end")]
pub(crate) struct TailArgs {
    /// `<namespace>` or `<namespace>.>` (with --from: a namespace).
    pattern: String,
    /// Read the namespace's feed from this position instead of the bus:
    /// `start`, `end`, or a position (the first one shown).
    #[arg(long, value_name = "POSITION|start|end")]
    from: Option<StartAt>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_name = "T")]
    types: Vec<String>,
    /// Only actors whose id starts with this.
    #[arg(long, value_name = "PREFIX")]
    actor_prefix: Option<String>,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Subject prefix of the bus (bus mode).
    #[arg(long, default_value = aether_bus::DEFAULT_PREFIX)]
    bus_prefix: String,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

/// Where a feed tail starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartAt {
    /// The namespace's first event.
    Start,
    /// Events committed after the tool started.
    End,
    /// The event at this position and later ones.
    At(u64),
}

impl FromStr for StartAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "start" => Ok(StartAt::Start),
            "end" => Ok(StartAt::End),
            _ => s
                .parse()
                .map(StartAt::At)
                .map_err(|_| format!("`{s}` is not a position: give a number, `start` or `end`")),
        }
    }
}

fn pattern(text: &str) -> Result<NamespacePattern, CliError> {
    match text.strip_suffix(".>") {
        Some(root) => Ok(NamespacePattern::Within(conn::namespace(root)?)),
        None => Ok(NamespacePattern::Exact(conn::namespace(text)?)),
    }
}

/// Writes one event, with its position when it comes from the feed.
fn print(
    json: bool,
    namespace: &str,
    position: Option<Position>,
    event: &Event,
) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let mut value = crate::events::event_json(namespace, event);
    if json {
        if let Some(p) = position {
            value["position"] = p.get().into();
        }
        writeln!(out, "{value}").map_err(CliError::stdout)?;
    } else {
        if let Some(p) = position {
            write!(out, "@{p} ").map_err(CliError::stdout)?;
        }
        writeln!(
            out,
            "{} {} {} v{} {} {}",
            value["timestamp"].as_str().unwrap_or_default(),
            namespace,
            event.actor_id,
            event.version.get(),
            event.event_type,
            value["data"]
        )
        .map_err(CliError::stdout)?;
    }
    out.flush().map_err(CliError::stdout)
}

pub(crate) async fn run(conn: &ConnArgs, args: TailArgs) -> Result<(), CliError> {
    if let Some(from) = args.from {
        return feed(conn, &args, from).await;
    }
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
        print(args.json, event.namespace.as_str(), None, &event.event)?;
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    bus.close();
    Ok(())
}

/// `--from`: the namespace's feed, catch-up then live.
async fn feed(conn: &ConnArgs, args: &TailArgs, from: StartAt) -> Result<(), CliError> {
    if args.pattern.ends_with(".>") {
        return Err(CliError::InvalidArgument {
            what: "namespace",
            value: args.pattern.clone(),
            detail: "--from reads one namespace's feed: give a namespace, not a pattern".to_owned(),
        });
    }
    let namespace = conn::namespace(&args.pattern)?;
    let mut filter = FeedFilter::all();
    if !args.types.is_empty() {
        filter = filter.event_types(args.types.iter().cloned());
    }
    if let Some(prefix) = &args.actor_prefix {
        filter = filter.actor_prefix(prefix);
    }
    let (client, js) = conn.connect_jetstream().await?;
    let store = conn.open_store(client, &js, &namespace).await?;
    // The feed yields the events after `after`.
    let after = match from {
        StartAt::Start => Position::ZERO,
        StartAt::End => store.head().await?,
        StartAt::At(p) => Position::new(p.saturating_sub(1)),
    };
    eprintln!("following the feed of {namespace} after position {after} (Ctrl-C to stop)");
    if args.count == Some(0) {
        return Ok(());
    }
    let mut items = store.subscribe_all(after, filter);
    let mut seen = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let item = tokio::select! {
            _ = &mut ctrl_c => break,
            item = items.next() => item,
        };
        let Some(item) = item else {
            return Err(CliError::JetStream("the feed ended".to_owned()));
        };
        let item = item?;
        print(
            args.json,
            namespace.as_str(),
            Some(item.position),
            &item.event,
        )?;
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            break;
        }
    }
    Ok(())
}
