//! Helpers: run the real `aether` binary against a real server and write
//! events through the JetStream store.

#![allow(dead_code, reason = "each test file uses a different subset")]

use std::process::{Command, Output};

use aether_core::{ActorId, Event, EventStore, Namespace, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, connect, unique_name};
use serde_json::Value;

/// The built binary.
pub(crate) fn aether() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aether"));
    for var in [
        "NATS_URL",
        "NATS_CREDS",
        "NATS_USER",
        "NATS_PASSWORD",
        "NATS_TOKEN",
        "NATS_NKEY",
        "NATS_CA",
        "NATS_CERT",
        "NATS_KEY",
        "AETHER_PREFIX",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `aether --server <url> <args>` to completion.
pub(crate) fn run(server: &NatsServer, args: &[&str]) -> Output {
    aether()
        .arg("--server")
        .arg(server.url())
        .args(args)
        .output()
        .expect("run the aether binary")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// Exit code, failing with both outputs shown when it is not `expected`.
pub(crate) fn assert_code(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "exit status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// The single JSON document on stdout.
pub(crate) fn json(output: &Output) -> Value {
    serde_json::from_str(stdout(output).trim()).expect("stdout is one JSON document")
}

/// One JSON value per line of stdout.
pub(crate) fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

pub(crate) fn fresh_namespace(prefix: &str) -> Namespace {
    Namespace::new(unique_name(prefix)).expect("valid namespace")
}

pub(crate) async fn open_store(server: &NatsServer, namespace: &Namespace) -> JetStreamEventStore {
    JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(namespace.clone())
        .open()
        .await
        .expect("open the store")
}

/// Appends `count` events `ItemAdded {sku, qty}` to `actor` after `after`.
pub(crate) async fn write_events(store: &JetStreamEventStore, actor: &str, after: u64, count: u64) {
    let actor = ActorId::new(actor).expect("valid actor");
    let events: Vec<Event> = (after + 1..=after + count)
        .map(|v| {
            Event::new(
                actor.clone(),
                Version::new(v),
                "ItemAdded",
                &serde_json::json!({"sku": format!("sku-{v}"), "qty": v}),
            )
            .expect("encode")
        })
        .collect();
    store
        .append(&actor, Version::new(after), events)
        .await
        .expect("append");
}
