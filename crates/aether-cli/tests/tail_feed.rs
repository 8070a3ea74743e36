//! `aether tail <namespace> --from ..`: the namespace's feed off a real
//! server's JetStream events stream, with the real binary.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Stdio};
use std::time::Duration;

use aether_core::{ActorId, Event, EventStore as _, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, wait_until};
use common::*;
use serde_json::{Value, json};

const SOON: Duration = Duration::from_secs(30);

/// Appends events `(type, n)` to `actor` after version `after`, in one batch.
async fn append(store: &JetStreamEventStore, actor: &str, after: u64, events: &[(&str, u64)]) {
    let id = ActorId::new(actor).unwrap();
    let batch: Vec<Event> = events
        .iter()
        .zip(after + 1..)
        .map(|((ty, n), v)| Event::new(id.clone(), Version::new(v), *ty, &json!({"n": n})).unwrap())
        .collect();
    store
        .append(&id, Version::new(after), batch)
        .await
        .expect("append");
}

/// Starts `aether --server URL tail <args>` and waits for its first stderr
/// line (printed once it has opened the feed), which it returns.
async fn spawn_tail(server: &NatsServer, args: &[&str]) -> (Child, String) {
    let mut child = aether()
        .args(["--server", &server.url(), "tail"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn aether tail");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stderr.read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(SOON, ready)
        .await
        .expect("tail opens the feed in time")
        .unwrap()
        .unwrap();
    (child, line)
}

/// Waits for `child` to exit successfully and returns its stdout.
async fn finish(mut child: Child) -> String {
    wait_until(SOON, "tail exits after --count events", async || {
        matches!(child.try_wait(), Ok(Some(_)))
    })
    .await;
    let status = child.wait().unwrap();
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(status.success(), "{status}\n{text}");
    text
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn summary(items: &[Value]) -> Vec<(String, u64, String)> {
    items
        .iter()
        .map(|v| {
            (
                v["actor"].as_str().unwrap().to_owned(),
                v["version"].as_u64().unwrap(),
                v["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn positions(items: &[Value]) -> Vec<u64> {
    items
        .iter()
        .map(|v| v["position"].as_u64().expect("a position"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_from_start_prints_stored_then_new_events_in_order_with_positions() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("cli-feed");
    let store = open_store(&server, &ns).await;
    append(&store, "cart-1", 0, &[("ItemAdded", 1), ("ItemAdded", 2)]).await;
    append(&store, "user-1", 0, &[("SignedUp", 3)]).await;
    append(&store, "cart-1", 2, &[("ItemRemoved", 4)]).await;

    let (child, ready) = spawn_tail(
        &server,
        &[ns.as_str(), "--from", "start", "--count", "6", "--json"],
    )
    .await;
    assert!(ready.starts_with("following the feed of"), "{ready}");
    // Appended after the tool started: it must go on to these.
    append(&store, "cart-2", 0, &[("ItemAdded", 5)]).await;
    append(&store, "cart-1", 3, &[("CheckedOut", 6), ("ItemAdded", 7)]).await;

    let text = finish(child).await;
    let items = lines(&text);
    let expected = [
        ("cart-1", 1, "ItemAdded"),
        ("cart-1", 2, "ItemAdded"),
        ("user-1", 1, "SignedUp"),
        ("cart-1", 3, "ItemRemoved"),
        ("cart-2", 1, "ItemAdded"),
        ("cart-1", 4, "CheckedOut"),
    ]
    .map(|(a, v, t)| (a.to_owned(), v, t.to_owned()));
    assert_eq!(summary(&items), expected, "{text}");
    assert_eq!(positions(&items), [1, 2, 3, 4, 5, 6], "{text}");
    assert_eq!(items[4]["data"], json!({"n": 5}));
    assert_eq!(items[0]["namespace"], ns.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_from_a_position_with_filters_and_from_end() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("cli-feedf");
    let store = open_store(&server, &ns).await;
    append(&store, "cart-1", 0, &[("ItemAdded", 1), ("ItemRemoved", 2)]).await;
    append(&store, "user-1", 0, &[("ItemAdded", 3)]).await;
    append(&store, "cart-2", 0, &[("ItemAdded", 4), ("ItemAdded", 5)]).await;

    // From position 2 (inclusive), ItemAdded of carts only: positions 4 and 5,
    // then the next matching one appended later.
    let (child, _) = spawn_tail(
        &server,
        &[
            ns.as_str(),
            "--from",
            "2",
            "--type",
            "ItemAdded",
            "--actor-prefix",
            "cart-",
            "--count",
            "3",
            "--json",
        ],
    )
    .await;
    append(&store, "user-1", 1, &[("ItemAdded", 6)]).await;
    append(&store, "cart-1", 2, &[("ItemRemoved", 7), ("ItemAdded", 8)]).await;
    let items = lines(&finish(child).await);
    assert_eq!(positions(&items), [4, 5, 8]);
    assert_eq!(
        summary(&items),
        [("cart-2", 1), ("cart-2", 2), ("cart-1", 4)].map(|(a, v)| (
            a.to_owned(),
            v,
            "ItemAdded".to_owned()
        ))
    );

    // From the end: only what is committed after the tool started, as text
    // lines that start with the position.
    let (child, ready) = spawn_tail(&server, &[ns.as_str(), "--from", "end", "--count", "1"]).await;
    assert!(ready.contains("after position 8"), "{ready}");
    append(&store, "cart-3", 0, &[("ItemAdded", 9)]).await;
    let text = finish(child).await;
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("@9 "), "{text}");
    assert!(
        text.contains(&format!(" {ns} cart-3 v1 ItemAdded {{\"n\":9}}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn feed_refuses_patterns_and_namespaces_without_streams() {
    let server = NatsServer::start().await;
    let out = run(&server, &["tail", "acme.>", "--from", "start"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("give a namespace, not a pattern"),
        "{}",
        stderr(&out)
    );
    let out = run(&server, &["tail", "ghost", "--from", "start"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("namespace `ghost` has no Aether streams"),
        "{}",
        stderr(&out)
    );
    let out = run(&server, &["tail", "shop", "--from", "soon"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("is not a position"),
        "{}",
        stderr(&out)
    );
}
