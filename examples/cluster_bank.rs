//! A bank on three actor-system nodes: accounts spread over the nodes by
//! shard, a node stops, and its accounts answer from the others with their
//! balances intact.
//!
//! Each node is one `ClusterManager` (membership and the shard map on NATS
//! KV) and one `ActorSystem` joined to it in one call
//! (`ActorSystem::builder(store).cluster(&manager)`), with its own NATS
//! connection and its own handle on one JetStream namespace. Deposits are sent through every node; a
//! command for an account whose shard another node owns crosses NATS
//! request/reply to that node. Then `node-3` leaves: its shards are handed
//! off, and its accounts are activated again on the remaining nodes from the
//! events in JetStream.
//!
//! Start a server (`cargo xtask nats`, or `nats-server -js -p 4222`) and run:
//!
//! ```text
//! cargo run --example cluster_bank
//! NATS_URL=nats://127.0.0.1:4333 cargo run --example cluster_bank
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aether::actor::ActorSystem;
use aether::async_nats;
use aether::cluster::{ClusterManager, NodeId, shard_of};
use aether::jetstream::JetStreamEventStore;
use aether::prelude::*;
use serde::{Deserialize, Serialize};

const ACCOUNTS: usize = 12;
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum AccountCommand {
    Deposit(i64),
    /// Produces no event: the answer carries the current state.
    Balance,
}

#[derive(Debug, Serialize, Deserialize)]
enum AccountEvent {
    Deposited(i64),
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        "Deposited"
    }
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("a deposit must be positive")]
struct NotPositive;

impl Aggregate for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = NotPositive;
    const KIND: &'static str = "account";

    fn handle(&self, command: AccountCommand) -> Result<Vec<AccountEvent>, NotPositive> {
        match command {
            AccountCommand::Deposit(n) if n <= 0 => Err(NotPositive),
            AccountCommand::Deposit(n) => Ok(vec![AccountEvent::Deposited(n)]),
            AccountCommand::Balance => Ok(Vec::new()),
        }
    }

    fn apply(&mut self, AccountEvent::Deposited(n): &AccountEvent) {
        self.balance += n;
    }
}

/// One node: its place in the cluster and the actors it hosts.
struct Node {
    manager: ClusterManager,
    system: ActorSystem,
}

async fn start_node(
    url: &str,
    cluster: &str,
    namespace: &Namespace,
    name: &str,
) -> Result<Node, Box<dyn std::error::Error>> {
    let client = async_nats::connect(url).await?;
    let store = JetStreamEventStore::builder(client.clone())
        .namespace(namespace.clone())
        .open()
        .await?;
    let manager = ClusterManager::builder(client, cluster, NodeId::new(name)?)
        .kinds([Account::KIND])
        .start()
        .await?;
    // The node's directory, its NATS transport and the release of a shard's
    // actors before its handoff is acknowledged, in one step.
    let system = ActorSystem::builder(store)
        .register::<Account>()
        .cluster(&manager)
        .ask_deadline(Duration::from_secs(15))
        .start()
        .await?;
    Ok(Node { manager, system })
}

/// Polls until every node holds the same settled map and each owns shards.
async fn settle(nodes: &[&Node]) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let first = nodes.first().and_then(|n| n.manager.shard_map());
        let settled = first.as_ref().is_some_and(|first| {
            first.moving.is_empty()
                && first.load().len() == nodes.len()
                && first.owners.iter().all(Option::is_some)
                && nodes.iter().all(|n| {
                    n.manager.shard_map().is_some_and(|m| {
                        (m.term, m.epoch) == (first.term, first.epoch)
                            && !m.shards_of(n.manager.node_id()).is_empty()
                    })
                })
        });
        if settled {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("the shard map did not settle within {WAIT:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn owner(manager: &ClusterManager, account: &ActorId) -> String {
    let shard = shard_of(Account::KIND, account, manager.shard_count());
    manager
        .owner_of(shard)
        .map_or_else(|| "-".to_owned(), |n| n.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    // A fresh cluster and namespace per run, so a rerun starts from zero.
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let cluster = format!("bank-{run}");
    let namespace = Namespace::new(format!("examples.bank_{run}"))?;
    println!("cluster {cluster} on {url}, events in namespace {namespace}");

    let mut nodes = Vec::new();
    for name in ["node-1", "node-2", "node-3"] {
        nodes.push(start_node(&url, &cluster, &namespace, name).await?);
        println!("{name} started");
    }
    // Ready: each node holds a map of the current leader's term that places
    // every member it sees (never a map left by an earlier run).
    for node in &nodes {
        tokio::time::timeout(WAIT, node.manager.ready()).await??;
    }
    settle(&nodes.iter().collect::<Vec<_>>()).await?;
    println!("three nodes share one shard map\n");

    let accounts: Vec<ActorId> = (1..=ACCOUNTS)
        .map(|i| ActorId::new(format!("acct-{i:02}")))
        .collect::<Result<_, _>>()?;
    let mut expected: BTreeMap<&ActorId, i64> = BTreeMap::new();
    for round in 0..3usize {
        for (i, account) in accounts.iter().enumerate() {
            // Send through every node in turn, whoever owns the account.
            let via = &nodes[(i + round) % nodes.len()];
            let amount = 10 * (i as i64 + 1);
            let outcome = via
                .system
                .actor::<Account>(account.clone())
                .ask(AccountCommand::Deposit(amount))
                .await?;
            *expected.entry(account).or_default() += amount;
            assert_eq!(outcome.state.balance, expected[account]);
        }
    }
    let mut on_node_3 = Vec::new();
    println!("{:<8} {:>8}  owner", "account", "balance");
    for account in &accounts {
        let who = owner(&nodes[0].manager, account);
        println!("{account:<8} {:>8}  {who}", expected[account]);
        if who == "node-3" {
            on_node_3.push(account);
        }
    }
    let active: Vec<usize> = nodes.iter().map(|n| n.system.active_actors()).collect();
    println!("active actors per node: {active:?}\n");

    let leaving = nodes.pop().ok_or("no node to stop")?;
    let names: Vec<&str> = on_node_3.iter().map(|a| a.as_str()).collect();
    println!(
        "stopping node-3, which hosts {} of the accounts: {}",
        names.len(),
        names.join(", ")
    );
    leaving.system.shutdown().await;
    leaving.manager.shutdown().await?;
    settle(&nodes.iter().collect::<Vec<_>>()).await?;
    println!("node-1 and node-2 own every shard now\n");

    println!("{:<8} {:>8}  owner (was)", "account", "balance");
    for (i, account) in accounts.iter().enumerate() {
        let via = &nodes[i % nodes.len()];
        let outcome = via
            .system
            .actor::<Account>(account.clone())
            .ask(AccountCommand::Balance)
            .await?;
        let was = if on_node_3.contains(&account) {
            "  (node-3)"
        } else {
            ""
        };
        println!(
            "{account:<8} {:>8}  {}{was}",
            outcome.state.balance,
            owner(&nodes[0].manager, account)
        );
        if outcome.state.balance != expected[account] {
            return Err(format!(
                "{account}: balance {} after the failover, {} deposited",
                outcome.state.balance, expected[account]
            )
            .into());
        }
    }
    println!("\nevery balance is intact after node-3 left");
    for node in nodes {
        node.system.shutdown().await;
        node.manager.shutdown().await?;
    }
    Ok(())
}
