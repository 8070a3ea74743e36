//! Availability against real `nats-server` processes: a long read while the
//! server goes away, opening before the first connection, how fast an append
//! fails when the server crashes or freezes.

mod common;

use std::time::{Duration, Instant};

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::{ActorId, Event, EventStore, StoreError, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, connect, connect_options, wait_until};
use futures::StreamExt;

async fn store_with_history(
    server: &NatsServer,
    timeout: Duration,
    actor: &ActorId,
    len: u64,
) -> JetStreamEventStore {
    let store = JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(fresh_namespace("avail"))
        .timeout(timeout)
        .open()
        .await
        .expect("open");
    for start in (0..len).step_by(1000) {
        let events: Vec<Event> = (start + 1..=(start + 1000).min(len))
            .map(|v| test_event(actor, v, "x"))
            .collect();
        store
            .append(actor, Version::new(start), events)
            .await
            .expect("append");
    }
    store
}

/// Reads the rest of `stream`, checking that versions continue from `next`
/// without a gap or a repeat and that an error, if any, is the last item.
async fn drain(
    stream: &mut (impl futures::Stream<Item = Result<Event, StoreError>> + Unpin),
    mut next: u64,
) -> (u64, Option<StoreError>) {
    while let Some(item) = stream.next().await {
        match item {
            Ok(e) => {
                assert_eq!(e.version.get(), next, "a gap or a repeat in the stream");
                next += 1;
            }
            Err(e) => {
                assert!(
                    stream.next().await.is_none(),
                    "an item after the error {e:?}"
                );
                return (next - 1, Some(e));
            }
        }
    }
    (next - 1, None)
}

/// Finding 9: a stream over 3000 events whose server is killed -9 mid-read
/// and restarted resumes where it stopped and delivers every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_read_resumes_after_the_server_restarts() {
    let server = NatsServer::start().await;
    let actor = ActorId::new("long-read").unwrap();
    let store = store_with_history(&server, Duration::from_secs(5), &actor, 3000).await;
    let mut stream = store.stream_events(&actor, Version::ZERO);
    for v in 1..=1000u64 {
        let e = stream.next().await.expect("an item").expect("an event");
        assert_eq!(e.version.get(), v);
    }
    server.kill();
    server.restart().await;
    let (last, error) = drain(&mut stream, 1001).await;
    assert_eq!(
        (last, error.map(|e| e.to_string())),
        (3000, None),
        "the read resumes and reaches the end"
    );
}

/// Finding 9: with the server gone for good, a stream ends with the error
/// as its last item, never quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_read_of_a_dead_server_ends_with_the_error() {
    let server = NatsServer::start().await;
    let actor = ActorId::new("long-read").unwrap();
    let store = store_with_history(&server, Duration::from_secs(1), &actor, 3000).await;
    let mut stream = store.stream_events(&actor, Version::ZERO);
    for v in 1..=1000u64 {
        let e = stream.next().await.expect("an item").expect("an event");
        assert_eq!(e.version.get(), v);
    }
    server.kill();
    let started = Instant::now();
    let (last, error) = drain(&mut stream, 1001).await;
    // Whatever the client had buffered may still arrive; the stream then ends
    // with an error, since the rest cannot be read.
    assert!(last < 3000, "read {last} events from a dead server");
    let error = error.expect("a stream cut short ends with an error item");
    assert!(error.is_transient(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up after {:?}",
        started.elapsed()
    );
}

/// Finding 10: a client built with `retry_on_initial_connect` that has not
/// connected yet gets a transient `Unavailable` ("not connected yet") from
/// `open` when no server comes up in time, and `open` succeeds when one
/// comes up within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_before_the_first_connection_waits_or_fails_transiently() {
    let server = NatsServer::start().await;
    let url = server.url();
    server.kill();
    let client = connect_options()
        .retry_on_initial_connect()
        .connect(url.as_str())
        .await
        .expect("a client that retries connects lazily");
    let started = Instant::now();
    let refused = JetStreamEventStore::builder(client.clone())
        .namespace(fresh_namespace("early"))
        .timeout(Duration::from_millis(500))
        .open()
        .await;
    match &refused {
        Err(e @ StoreError::Unavailable { message, .. }) => {
            assert!(e.is_transient());
            assert!(message.contains("not connected yet"), "{message}");
            assert!(!message.contains("too old"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    let opening = tokio::spawn({
        let client = client.clone();
        async move {
            JetStreamEventStore::builder(client)
                .namespace(fresh_namespace("early"))
                .timeout(Duration::from_secs(30))
                .open()
                .await
        }
    });
    server.restart().await;
    let store = opening.await.unwrap().expect("open once connected");
    let a = ActorId::new("a").unwrap();
    store
        .append(&a, Version::ZERO, vec![test_event(&a, 1, "x")])
        .await
        .expect("append");
}

/// Finding 11: an append in flight when the server crashes fails at once
/// with `Unavailable` (the connection is known lost), not after the 10 s
/// request timeout; the same events then land after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_in_flight_when_the_server_crashes_fails_fast() {
    let server = NatsServer::start().await;
    let client = connect(&server.url()).await;
    let store = JetStreamEventStore::builder(client)
        .namespace(fresh_namespace("crash"))
        .timeout(Duration::from_secs(10))
        .open()
        .await
        .expect("open");
    let a = ActorId::new("a").unwrap();
    store
        .append(&a, Version::ZERO, vec![test_event(&a, 1, "x")])
        .await
        .unwrap();
    // A frozen server holds the append in flight; then it crashes.
    server.pause();
    let events = vec![test_event(&a, 2, "in-flight")];
    let append = tokio::spawn({
        let (store, a, events) = (store.clone(), a.clone(), events.clone());
        async move {
            let started = Instant::now();
            (store.append(&a, Version::FIRST, events).await, started)
        }
    });
    wait_until(
        Duration::from_secs(5),
        "the append is waiting for its acknowledgement",
        async || !append.is_finished(),
    )
    .await;
    let killed = Instant::now();
    server.kill();
    let (result, started) = append.await.unwrap();
    let waited = started.elapsed();
    match result {
        Err(e @ StoreError::Unavailable { .. }) => assert!(e.is_transient()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "failed {:?} after the crash (waited {waited:?} in all)",
        killed.elapsed()
    );
    server.restart().await;
    let v = aether_testkit_nats::wait_for(
        Duration::from_secs(20),
        "the retried append lands",
        async || store.append(&a, Version::FIRST, events.clone()).await,
    )
    .await;
    assert_eq!(v, Version::new(2));
    eprintln!(
        "crash: the append in flight failed {:?} after the kill",
        killed.elapsed()
    );
}

/// Finding 11: a frozen server (SIGSTOP: the connection stays open) is
/// noticed by the client's pings. With a 1 s ping interval an append fails
/// within a few seconds, well inside a 30 s request timeout (with the 60 s
/// default interval it would wait out the timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_noticed_by_a_short_ping_interval() {
    let server = NatsServer::start().await;
    let client = connect_options()
        .ping_interval(Duration::from_secs(1))
        .connect(server.url().as_str())
        .await
        .expect("connect");
    let store = JetStreamEventStore::builder(client)
        .namespace(fresh_namespace("frozen"))
        .timeout(Duration::from_secs(30))
        .open()
        .await
        .expect("open");
    let a = ActorId::new("a").unwrap();
    store
        .append(&a, Version::ZERO, vec![test_event(&a, 1, "x")])
        .await
        .unwrap();
    server.pause();
    let started = Instant::now();
    let result = store
        .append(&a, Version::FIRST, vec![test_event(&a, 2, "x")])
        .await;
    let waited = started.elapsed();
    server.resume();
    match result {
        Err(e @ StoreError::Unavailable { .. }) => assert!(e.is_transient()),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        waited < Duration::from_secs(10),
        "a frozen server took {waited:?} to notice"
    );
    eprintln!("frozen: the append failed after {waited:?} (ping interval 1 s)");
}
