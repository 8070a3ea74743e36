//! `aether check` against a real server: clean, then with foreign messages
//! published raw on actors' subjects, then with a snapshot ahead of events.

mod common;

use aether_testkit_nats::{NatsServer, connect};
use common::*;
use serde::Serialize;

/// An envelope as the store writes it (see aether-store-jetstream).
#[derive(Serialize)]
struct Envelope<'a> {
    aether: u8,
    #[serde(rename = "type")]
    event_type: &'a str,
    actor: &'a str,
    version: u64,
    ts: &'a str,
    #[serde(with = "serde_bytes_compat")]
    data: &'a [u8],
}

mod serde_bytes_compat {
    pub(crate) fn serialize<S: serde::Serializer>(b: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }
}

fn envelope(actor: &str, version: u64) -> Vec<u8> {
    rmp_serde::to_vec_named(&Envelope {
        aether: 1,
        event_type: "Forged",
        actor,
        version,
        ts: "2026-01-01T00:00:00.000000000Z",
        data: &[0x90],
    })
    .unwrap()
}

async fn publish(
    js: &async_nats::jetstream::Context,
    subject: String,
    id: Option<&str>,
    body: Vec<u8>,
) {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(id) = id {
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    }
    js.publish_with_headers(subject, headers, body.into())
        .await
        .expect("publish")
        .await
        .expect("stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_injected_foreign_messages_and_exits_1() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("cli-check");
    let store = open_store(&server, &ns).await;
    write_events(&store, "a", 0, 3).await;
    write_events(&store, "b.c", 0, 2).await;

    let clean = run(&server, &["check", ns.as_str(), "--json"]);
    assert_code(&clean, 0);
    let report = json(&clean);
    assert_eq!(report["clean"], true);
    assert_eq!(report["messages"], 5);
    assert_eq!(report["valid_events"], 5);
    assert_eq!(report["actors"], 2);
    let table = run(&server, &["check", ns.as_str()]);
    assert_code(&table, 0);
    assert!(stdout(&table).contains("is clean"), "{}", stdout(&table));

    // Foreign messages, published raw by a client allowed on the subjects.
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    let subject_a = format!("aether.{}.events.a", ns.encoded());
    let subject_bc = format!("aether.{}.events.b_2Ec", ns.encoded());
    publish(
        &js,
        subject_a.clone(),
        None,
        b"not messagepack at all".to_vec(),
    )
    .await;
    publish(&js, subject_a.clone(), Some("f1"), envelope("b.c", 4)).await;
    publish(&js, subject_a.clone(), None, envelope("a", 4)).await;
    publish(&js, subject_a.clone(), Some("f2"), envelope("a", 2)).await;
    publish(&js, subject_bc.clone(), Some("f3"), envelope("b.c", 9)).await;
    // The store skips them: a writer carries on after the last valid event.
    write_events(&store, "a", 3, 1).await;
    // A snapshot ahead of the events (the store refuses to write one).
    let snapshot = rmp_serde::to_vec_named(
        &serde_json::json!({"aether": 1, "version": 50, "ts": "2026-01-01T00:00:00Z", "schema": 1}),
    )
    .unwrap();
    publish(
        &js,
        format!("aether.{}.snapshots.a", ns.encoded()),
        None,
        snapshot,
    )
    .await;

    let out = run(&server, &["check", ns.as_str(), "--json"]);
    assert_code(&out, 1);
    let report = json(&out);
    assert_eq!(report["clean"], false);
    assert_eq!(report["messages"], 11);
    assert_eq!(report["valid_events"], 6);
    assert_eq!(
        report["counts"],
        serde_json::json!({
            "garbage": 1, "wrong-actor": 1, "missing-id": 1, "repeat": 1, "gap": 1,
            "snapshot-ahead": 1
        })
    );
    let problems = report["problems"].as_array().unwrap();
    let gap = problems.iter().find(|p| p["kind"] == "gap").unwrap();
    assert_eq!(gap["actor"], "b.c");
    assert_eq!(gap["sequence"], 10);
    let garbage = problems.iter().find(|p| p["kind"] == "garbage").unwrap();
    assert_eq!(garbage["actor"], "a");
    assert_eq!(garbage["sequence"], 6);

    let table = run(&server, &["check", ns.as_str()]);
    assert_code(&table, 1);
    let text = stdout(&table);
    assert!(
        text.contains("snapshot-ahead") && text.contains("wrong-actor"),
        "{text}"
    );
    assert!(text.contains("6 problem(s) found"), "{text}");

    // Read-only: nothing was added by the scans.
    let stream = js
        .get_stream(format!("AETHER_EVENTS_{}", ns.encoded()))
        .await
        .unwrap();
    assert_eq!(stream.cached_info().state.messages, 11);
    assert_eq!(stream.cached_info().state.consumer_count, 0);
}
