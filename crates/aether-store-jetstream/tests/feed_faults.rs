//! The feed under faults, against real `nats-server` processes: a live
//! subscriber from position 0 while writers append (single events and
//! batches) and the server is killed with SIGKILL and restarted, or the
//! subscriber's connection is cut by a proxy. The subscriber must end with
//! exactly the stored events — checked against an independent raw
//! async-nats reader — with no gap and no repeat.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::{
    ActorId, Event, EventFeed, EventStore, FeedFilter, FeedItem, Position, StoreError, Version,
};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, TcpProxy, connect, wait_until};
use futures::StreamExt;

const ACTORS: u64 = 4;
const ROUNDS: u64 = 30;
/// Rounds alternate one event and a batch of three.
const TOTAL: u64 = ACTORS * (ROUNDS / 2) * 4;

fn batch(actor: &ActorId, after: u64, len: u64, tag: &str) -> Vec<Event> {
    (1..=len)
        .map(|i| test_event(actor, after + i, &format!("{tag}-{}", after + i)))
        .collect()
}

/// Appends until it succeeds, retrying transient errors with the same
/// events (idempotent).
async fn append_until_ok(
    store: &JetStreamEventStore,
    actor: &ActorId,
    expected: Version,
    events: &[Event],
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut backoff = Duration::from_millis(5);
    loop {
        match store.append(actor, expected, events.to_vec()).await {
            Ok(_) => return,
            Err(e) if e.is_transient() => {
                assert!(Instant::now() < deadline, "append still failing: {e:?}");
                // A caller's retry back-off, not a wait for a condition.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            Err(e) => panic!("append at {expected}: {e:?}"),
        }
    }
}

/// Writes the events of `rounds` over `ACTORS` actors, one round at a time
/// (all rounds write `TOTAL` events).
async fn write_rounds(store: JetStreamEventStore, rounds: std::ops::Range<u64>) {
    for r in rounds {
        for a in 0..ACTORS {
            let actor = ActorId::new(format!("acct-{a}")).unwrap();
            let after = (r / 2) * 4 + (r % 2);
            let len = if r % 2 == 1 { 3 } else { 1 };
            append_until_ok(
                &store,
                &actor,
                Version::new(after),
                &batch(&actor, after, len, &format!("r{r}")),
            )
            .await;
        }
    }
}

/// A live subscriber from 0 that keeps its items in `seen`.
fn subscribe(
    store: &JetStreamEventStore,
    seen: Arc<std::sync::Mutex<Vec<FeedItem>>>,
    count: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let mut feed = store.subscribe_all(Position::ZERO, FeedFilter::all());
    tokio::spawn(async move {
        while (count.load(Ordering::SeqCst) as u64) < TOTAL {
            match feed.next().await {
                Some(Ok(item)) => {
                    seen.lock().unwrap().push(item);
                    count.fetch_add(1, Ordering::SeqCst);
                }
                Some(Err(e)) => return Err(e),
                None => panic!("a live feed ended"),
            }
        }
        Ok(())
    })
}

/// Every message of the events stream, `(sequence, Nats-Msg-Id)`, read
/// with plain direct gets by sequence (not through the store).
async fn raw_stream(client: &async_nats::Client, stream: &str) -> Vec<(u64, String)> {
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(stream).await.expect("stream");
    let last = stream.get_info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = stream.direct_get(seq).await.expect("direct get");
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .expect("an event message has an id");
        out.push((m.sequence, id));
    }
    out
}

async fn assert_exact(
    seen: &[FeedItem],
    raw_client: &async_nats::Client,
    store: &JetStreamEventStore,
) {
    let raw = raw_stream(raw_client, store.events_stream_name()).await;
    assert_eq!(
        raw.len() as u64,
        TOTAL,
        "the raw reader finds every event once"
    );
    let positions: Vec<u64> = seen.iter().map(|i| i.position.get()).collect();
    assert_eq!(
        positions,
        raw.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        "the subscriber saw exactly the stored sequences, in order, no gap, no repeat"
    );
    for (item, (_, msg_id)) in seen.iter().zip(&raw) {
        assert!(
            msg_id.starts_with(&item.event.id.to_string()),
            "event at {} is not the stored one",
            item.position
        );
    }
    let mut versions = std::collections::BTreeMap::<&str, u64>::new();
    for item in seen {
        let v = versions.entry(item.event.actor_id.as_str()).or_default();
        *v += 1;
        assert_eq!(
            item.event.version.get(),
            *v,
            "per-actor versions contiguous"
        );
    }
    let again: Vec<FeedItem> = store
        .read_all(Position::ZERO, FeedFilter::all())
        .map(|i| i.expect("read_all item"))
        .collect()
        .await;
    assert_eq!(again, seen, "read_all afterwards agrees with the live feed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_survives_kill_and_restart() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("feed-kill");
    let open = async |client| {
        JetStreamEventStore::builder(client)
            .namespace(ns.clone())
            .timeout(Duration::from_secs(2))
            .open()
            .await
            .expect("open")
    };
    let store = open(connect(&server.url()).await).await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let reader = subscribe(&store, seen.clone(), count.clone());
    // First half: kill while the subscriber is catching up with writers
    // running; then kill again while it waits live; then the second half.
    let writer = tokio::spawn(write_rounds(store.clone(), 0..ROUNDS / 2));
    wait_until(
        Duration::from_secs(60),
        "the subscriber reaching a quarter",
        async || count.load(Ordering::SeqCst) as u64 >= TOTAL / 4,
    )
    .await;
    server.kill();
    server.restart().await;
    writer.await.expect("writer");
    let at_kill = count.load(Ordering::SeqCst) as u64;
    assert!(
        at_kill <= TOTAL / 2,
        "the subscriber has at most the first half before the second kill"
    );
    server.kill();
    server.restart().await;
    let writer = tokio::spawn(write_rounds(store.clone(), ROUNDS / 2..ROUNDS));
    writer.await.expect("writer");
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the subscriber catches up")
        .expect("reader task")
        .expect("a live feed rides out the restarts");
    let seen = seen.lock().unwrap().clone();
    assert_exact(&seen, &connect(&server.url()).await, &store).await;
}

/// Cuts every connection through the proxy and waits for the client to
/// come back.
async fn cut(proxy: &TcpProxy) {
    let before = proxy.accepted_connections();
    proxy.cut().await;
    proxy.restore();
    wait_until(
        Duration::from_secs(30),
        "the subscriber's client reconnecting",
        async || proxy.accepted_connections() > before,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_survives_connection_cuts() {
    let server = NatsServer::start().await;
    let proxy = TcpProxy::start(server.addr()).await;
    let ns = fresh_namespace("feed-cut");
    let builder = |client| {
        JetStreamEventStore::builder(client)
            .namespace(ns.clone())
            .timeout(Duration::from_secs(2))
    };
    // Writers go straight to the server; the subscriber goes through the proxy.
    let writer_store = builder(connect(&server.url()).await)
        .open()
        .await
        .expect("open");
    let reader_store = builder(connect(&proxy.url()).await)
        .open()
        .await
        .expect("open through the proxy");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let reader = subscribe(&reader_store, seen.clone(), count.clone());
    let writer = tokio::spawn(write_rounds(writer_store.clone(), 0..ROUNDS / 2));
    wait_until(
        Duration::from_secs(60),
        "the subscriber reaching a fifth",
        async || count.load(Ordering::SeqCst) as u64 >= TOTAL / 5,
    )
    .await;
    cut(&proxy).await;
    writer.await.expect("writer");
    // Cut while it waits live, and write the rest while it is cut off.
    let writer = tokio::spawn(write_rounds(writer_store.clone(), ROUNDS / 2..ROUNDS));
    let at_cut = count.load(Ordering::SeqCst) as u64;
    cut(&proxy).await;
    assert!(
        at_cut < TOTAL,
        "the last cut happened before the subscriber had everything"
    );
    writer.await.expect("writer");
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the subscriber catches up")
        .expect("reader task")
        .expect("a live feed rides out the cuts");
    let seen = seen.lock().unwrap().clone();
    assert_exact(&seen, &connect(&server.url()).await, &reader_store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_survives_a_paused_server() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("feed-pause");
    let store = JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(ns)
        .timeout(Duration::from_secs(1))
        .open()
        .await
        .expect("open");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let reader = subscribe(&store, seen.clone(), count.clone());
    write_rounds(store.clone(), 0..ROUNDS / 2).await;
    let r = ROUNDS / 2;
    // Versions of each actor before round r.
    let v = (r / 2) * 4 + (r % 2);
    wait_until(
        Duration::from_secs(30),
        "the subscriber reaching the first half",
        async || count.load(Ordering::SeqCst) as u64 == ACTORS * v,
    )
    .await;
    // Freeze the server until an append has failed on it, then thaw it.
    server.pause();
    let a = ActorId::new("acct-0").unwrap();
    let len = if r % 2 == 1 { 3 } else { 1 };
    let first = batch(&a, v, len, &format!("r{r}"));
    let failed = store.append(&a, Version::new(v), first.clone()).await;
    assert!(
        matches!(&failed, Err(e) if e.is_transient()),
        "an append on a frozen server fails transiently: {failed:?}"
    );
    server.resume();
    // The refused append may have been stored after the thaw: settle it by
    // retrying the same event (idempotent), then write the rest after it.
    append_until_ok(&store, &a, Version::new(v), &first).await;
    let rest = tokio::spawn(write_rounds_after_pause(store.clone()));
    rest.await.expect("writer");
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the subscriber catches up")
        .expect("reader task")
        .expect("a live feed rides out the pause");
    let seen = seen.lock().unwrap().clone();
    assert_exact(&seen, &connect(&server.url()).await, &store).await;
}

/// The second half of the rounds, except the first event of acct-0 in its
/// first round, written during the pause test.
async fn write_rounds_after_pause(store: JetStreamEventStore) {
    for r in ROUNDS / 2..ROUNDS {
        for a in 0..ACTORS {
            let actor = ActorId::new(format!("acct-{a}")).unwrap();
            let after = (r / 2) * 4 + (r % 2);
            let len = if r % 2 == 1 { 3 } else { 1 };
            if r == ROUNDS / 2 && a == 0 {
                continue;
            }
            append_until_ok(
                &store,
                &actor,
                Version::new(after),
                &batch(&actor, after, len, &format!("r{r}")),
            )
            .await;
        }
    }
}
