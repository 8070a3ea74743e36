//! `aether`: the command-line tool of the Aether actor system.
//!
//! It reads what Aether keeps on a NATS server (actor histories, streams,
//! per-actor counts), checks a namespace for messages the store's trust rule
//! would skip, tails the event bus or a namespace's feed, shows a cluster's
//! members, leader and shard map, and validates and draws EventStorming
//! models. Every server command is read-only: it never creates a stream or a
//! bucket nor writes a message.
//!
//! Exit codes: 0 success, 1 problems found (`check`, `model check`), 2 an
//! error (one line on stderr: no server, a server too old, a namespace with no
//! streams, a bad argument, …).

mod check;
mod cluster;
mod conn;
mod error;
mod events;
mod model;
mod payload;
mod progress;
mod streams;
mod tail;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::conn::ConnArgs;
use crate::error::CliError;

/// Browse and check Aether's events on a NATS server; tail the bus or a
/// namespace's feed; show a cluster's status; validate and draw EventStorming
/// models.
#[derive(Debug, Parser)]
#[command(name = "aether", version, propagate_version = true)]
#[command(after_help = "\
Server commands connect like the `nats` CLI: --server/-s (or NATS_URL), \
--creds, --nkey, --user/--password, --token, --tls-ca/--tls-cert/--tls-key, \
--tls-first (the `nats` CLI's spellings --tlsca, --tlscert, --tlskey, \
--tlsfirst work too, and so do its NATS_* variables). They are read-only.

Examples:
  export NATS_URL=nats://127.0.0.1:4222
  aether streams
  aether events shop cart-7
  aether tail shop --from start --count 10
  aether check shop
  aether cluster status
  aether model render board.model.json --format svg -o board.svg

Exit codes: 0 success, 1 problems found (check, model check), 2 an error.")]
struct Cli {
    #[command(flatten)]
    conn: ConnArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// An actor's history: envelope fields and payloads as JSON.
    Events(events::EventsArgs),
    /// Live events off the NATS bus, or a namespace's feed from a position.
    Tail(tail::TailArgs),
    /// Aether's streams on the server: namespace, events, actors, bytes, replicas.
    Streams(streams::StreamsArgs),
    /// A namespace's largest and busiest actors.
    ActorStats(streams::ActorStatsArgs),
    /// Scan a namespace for foreign messages, gaps, repeats and snapshots
    /// ahead of events (read-only; exit code 1 when problems are found).
    Check(check::CheckArgs),
    /// EventStorming models: `check` and `render`.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// A cluster of `aether-cluster` nodes: `status`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
}

async fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Events(args) => events::run(&cli.conn, args).await.map(|()| 0),
        Command::Tail(args) => tail::run(&cli.conn, args).await.map(|()| 0),
        Command::Streams(args) => streams::streams(&cli.conn, args).await.map(|()| 0),
        Command::ActorStats(args) => streams::actor_stats(&cli.conn, args).await.map(|()| 0),
        Command::Check(args) => check::run(&cli.conn, args).await,
        Command::Model(command) => model::run(command),
        Command::Cluster(command) => cluster::run(&cli.conn, command).await.map(|()| 0),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("aether: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        // A reader that stopped early (`aether events .. | head`) is no error.
        Err(CliError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aether: error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
