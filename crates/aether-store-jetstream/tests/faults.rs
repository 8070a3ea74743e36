//! Fault tests against real `nats-server` processes: a server killed and
//! restarted mid-run, a connection cut mid-append, an R3 cluster losing its
//! stream leader, two clients racing on one actor.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::{ActorId, Event, EventId, EventStore, EventStoreExt, StoreError, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsCluster, NatsServer, TcpProxy, connect, wait_until};

type Acked = Arc<Mutex<Vec<(u64, EventId)>>>;

fn batch(actor: &ActorId, after: u64, len: u64, tag: &str) -> Vec<Event> {
    (1..=len)
        .map(|i| test_event(actor, after + i, &format!("{tag}-{}", after + i)))
        .collect()
}

/// Appends `events` until it succeeds, retrying transient errors (the same
/// events, so the retry is idempotent); panics on anything else.
async fn append_until_ok(
    store: &JetStreamEventStore,
    actor: &ActorId,
    expected: Version,
    events: &[Event],
    errors: &Arc<AtomicUsize>,
    timeout: Duration,
) -> Version {
    // Retrying an operation with a back-off (what a caller does), not
    // waiting for state: the loop ends at the first success.
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(5);
    loop {
        match store.append(actor, expected, events.to_vec()).await {
            Ok(v) => return v,
            Err(e) if e.is_transient() => {
                errors.fetch_add(1, Ordering::SeqCst);
                assert!(
                    Instant::now() < deadline,
                    "append at {expected} still failing after {timeout:?}: {e:?}"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            Err(e) => panic!("append at {expected}: unexpected error {e:?}"),
        }
    }
}

/// Every acknowledged event is stored exactly once at its version, and the
/// history has no gaps or duplicate ids.
async fn assert_history(store: &JetStreamEventStore, actor: &ActorId, acked: &[(u64, EventId)]) {
    let events = store
        .get_events(actor, Version::ZERO)
        .await
        .expect("read back");
    let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
    assert_eq!(
        versions,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "versions must have no gaps"
    );
    let ids: HashSet<EventId> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), events.len(), "an event is stored twice");
    let stored: BTreeMap<u64, EventId> = events.iter().map(|e| (e.version.get(), e.id)).collect();
    for (v, id) in acked {
        assert_eq!(
            stored.get(v),
            Some(id),
            "acknowledged event at version {v} is missing or replaced"
        );
    }
}

/// A writer task appending to one actor, and what it shares with the test.
struct Writer {
    actor: ActorId,
    acked: Acked,
    errors: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

/// Spawns a writer that appends batches of 1–3 events to `actor` until
/// `stop` or `total` versions, retrying transient errors with the same events.
fn spawn_writer(store: &JetStreamEventStore, actor: &str, total: u64) -> Writer {
    let actor = ActorId::new(actor).unwrap();
    let acked: Acked = Arc::default();
    let errors = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let task = {
        let (store, actor, acked, errors, stop) = (
            store.clone(),
            actor.clone(),
            acked.clone(),
            errors.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut v = 0;
            let mut round = 0u64;
            while v < total && !stop.load(Ordering::SeqCst) {
                round += 1;
                let events = batch(&actor, v, round % 3 + 1, "w");
                let new = append_until_ok(
                    &store,
                    &actor,
                    Version::new(v),
                    &events,
                    &errors,
                    Duration::from_secs(60),
                )
                .await;
                assert_eq!(new.get(), v + events.len() as u64);
                acked
                    .lock()
                    .unwrap()
                    .extend(events.iter().map(|e| (e.version.get(), e.id)));
                v = new.get();
            }
            v
        })
    };
    Writer {
        actor,
        acked,
        errors,
        stop,
        task,
    }
}

/// Waits until at least `n` events are acknowledged.
async fn wait_acked(acked: &Acked, n: usize, timeout: Duration, what: &str) {
    wait_until(timeout, what, || {
        let got = acked.lock().unwrap().len();
        async move { got >= n }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_appends_and_restarted_loses_nothing_acknowledged() {
    let server = NatsServer::start().await;
    let client = connect(&server.url()).await;
    let store = JetStreamEventStore::builder(client)
        .namespace(fresh_namespace("fault-kill"))
        .timeout(Duration::from_secs(2))
        .open()
        .await
        .expect("open");
    let Writer {
        actor,
        acked,
        errors,
        task: writer,
        ..
    } = spawn_writer(&store, "survivor", 300);

    wait_acked(
        &acked,
        50,
        Duration::from_secs(20),
        "50 events acknowledged",
    )
    .await;
    server.kill();
    wait_until(
        Duration::from_secs(20),
        "the writer sees the server gone",
        || {
            let n = errors.load(Ordering::SeqCst);
            async move { n >= 1 }
        },
    )
    .await;
    let acked_while_down = acked.lock().unwrap().len();
    server.restart().await;

    let last = tokio::time::timeout(Duration::from_secs(90), writer)
        .await
        .expect("the writer finishes after the restart")
        .expect("writer task");
    assert!(last >= 300);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > acked_while_down,
        "appends continued after the restart"
    );
    assert_history(&store, &actor, &acked).await;
    assert_eq!(store.get_latest_version(&actor).await.unwrap().get(), last);
    eprintln!(
        "kill/restart: {} events acknowledged, {} transient errors retried",
        acked.len(),
        errors.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_append_retry_succeeds_without_duplicate() {
    let server = NatsServer::start().await;
    let proxy = TcpProxy::start(server.addr()).await;
    let ns = fresh_namespace("fault-cut");
    let store = JetStreamEventStore::builder(connect(&proxy.url()).await)
        .namespace(ns.clone())
        .timeout(Duration::from_secs(1))
        .open()
        .await
        .expect("open");
    // Watches the server directly, around the proxy.
    let observer = JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(ns)
        .open()
        .await
        .expect("open observer");
    let actor = ActorId::new("cut-actor").unwrap();
    let raw_client = connect(&server.url()).await;
    let subject = store.event_subject(&actor);
    let raw = || common::raw_messages(&raw_client, store.events_stream_name(), &subject);
    let errors = Arc::new(AtomicUsize::new(0));
    let mut acked = Vec::new();
    let mut v = 0u64;
    let (mut interrupted, mut stored_but_unacknowledged) = (0, 0);
    for round in 0..30u64 {
        let len = if round % 2 == 0 { 1 } else { 5 };
        let events = batch(&actor, v, len, &format!("r{round}"));
        let first = {
            let (store, actor, events) = (store.clone(), actor.clone(), events.clone());
            tokio::spawn(async move { store.append(&actor, Version::new(v), events).await })
        };
        if round % 3 == 0 {
            // Cut while the append is being sent.
            for _ in 0..round % 5 {
                tokio::task::yield_now().await;
            }
        } else {
            // Cut as soon as the server has stored the events (or the append
            // has returned), racing the acknowledgement on its way back.
            wait_until(
                Duration::from_secs(10),
                format!("round {round}: the append is stored or returns"),
                async || {
                    first.is_finished()
                        || observer.get_latest_version(&actor).await.unwrap().get() >= v + len
                },
            )
            .await;
        }
        proxy.cut().await;
        let first = first.await.expect("append task");
        proxy.restore();
        // What an independent reader finds before the retry.
        let before = raw().await;
        let stored_now = before.len() as u64 == v + len;
        match &first {
            Ok(nv) => {
                assert_eq!(nv.get(), v + len);
                assert!(stored_now, "round {round}: acknowledged but not stored");
            }
            Err(e) => {
                assert!(
                    e.is_transient(),
                    "round {round}: a cut connection must be a transient error, got {e:?}"
                );
                interrupted += 1;
                assert!(
                    stored_now || before.len() as u64 == v,
                    "round {round}: an interrupted append is stored whole or not at all ({} messages, {v} before)",
                    before.len()
                );
                if stored_now {
                    stored_but_unacknowledged += 1;
                }
            }
        }
        // The retry of the same events succeeds whether or not the first try
        // landed, and stores nothing twice.
        let nv = append_until_ok(
            &store,
            &actor,
            Version::new(v),
            &events,
            &errors,
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(nv.get(), v + len, "round {round}");
        // Independently: exactly this round's events were added, once each,
        // whether the first try had landed (the retry stored nothing) or not.
        let after = raw().await;
        assert_eq!(after.len() as u64, v + len, "round {round}: stored twice?");
        let added: Vec<(Option<u64>, Option<String>)> = after[v as usize..]
            .iter()
            .map(|m| (m.version, m.event_id().map(str::to_owned)))
            .collect();
        let want: Vec<(Option<u64>, Option<String>)> = events
            .iter()
            .map(|e| (Some(e.version.get()), Some(e.id.to_string())))
            .collect();
        assert_eq!(added, want, "round {round}");
        acked.extend(events.iter().map(|e| (e.version.get(), e.id)));
        v = nv.get();
    }
    assert!(interrupted > 0, "no append was interrupted by a cut");
    assert_history(&store, &actor, &acked).await;
    assert_eq!(store.get_latest_version(&actor).await.unwrap().get(), v);
    eprintln!(
        "cut: {interrupted} of 30 appends interrupted ({stored_but_unacknowledged} stored but unacknowledged), {} retried errors",
        errors.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_cluster_loses_the_stream_leader_and_keeps_every_acknowledged_event() {
    let cluster = NatsCluster::start(3).await;
    let client = connect(&cluster.urls()).await;
    let store = JetStreamEventStore::builder(client.clone())
        .namespace(fresh_namespace("fault-r3"))
        .replicas(3)
        .timeout(Duration::from_secs(2))
        .open()
        .await
        .expect("open");
    let Writer {
        actor,
        acked,
        errors,
        stop,
        task: writer,
    } = spawn_writer(&store, "replicated", u64::MAX);

    wait_acked(
        &acked,
        40,
        Duration::from_secs(30),
        "40 events acknowledged",
    )
    .await;
    let js = async_nats::jetstream::new(client.clone());
    let mut stream = js
        .get_stream(store.events_stream_name())
        .await
        .expect("stream");
    let leader = stream
        .info()
        .await
        .expect("stream info")
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the stream has a leader");
    let index = cluster.node_index(&leader).expect("leader is a node");
    cluster.kill(index);
    let at_kill = acked.lock().unwrap().len();
    wait_acked(
        &acked,
        at_kill + 40,
        Duration::from_secs(60),
        "appends continue after the leader is gone",
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let last = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("writer stops")
        .expect("writer task");
    let acked = acked.lock().unwrap().clone();
    assert_history(&store, &actor, &acked).await;
    assert_eq!(store.get_latest_version(&actor).await.unwrap().get(), last);

    // The killed node comes back and the history is still the same.
    cluster.restart(index).await;
    assert_history(&store, &actor, &acked).await;
    eprintln!(
        "r3: killed leader {leader}; {} events acknowledged ({} after the kill), {} transient errors retried",
        acked.len(),
        acked.len() - at_kill,
        errors.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_on_one_actor_conflict_and_never_fork() {
    let server = common::shared_server().await;
    let ns = fresh_namespace("fault-two");
    let open = |client| {
        JetStreamEventStore::builder(client)
            .namespace(ns.clone())
            .open()
    };
    let a = open(connect(&server.url()).await).await.expect("open a");
    let b = open(connect(&server.url()).await).await.expect("open b");
    let actor = ActorId::new("contested").unwrap();

    // Stale caches: each client's cache is refreshed by a conflict.
    a.save_event(test_event(&actor, 1, "a1")).await.expect("a1");
    b.append(&actor, Version::new(1), batch(&actor, 1, 2, "b"))
        .await
        .expect("b2-3");
    match a.save_event(test_event(&actor, 2, "a2")).await {
        Err(StoreError::VersionConflict {
            expected, actual, ..
        }) => {
            assert_eq!((expected.get(), actual.get()), (1, 3));
        }
        other => panic!("a's stale write must conflict, got {other:?}"),
    }
    a.save_event(test_event(&actor, 4, "a4"))
        .await
        .expect("a writes after reloading");
    // A read that sees a newer version raises the cache: b reads, then writes
    // at the version it read, without a conflict.
    assert_eq!(b.get_events(&actor, Version::ZERO).await.unwrap().len(), 4);
    b.save_event(test_event(&actor, 5, "b5"))
        .await
        .expect("b writes after reading");

    // Then both race for the same versions.
    let target = 80u64;
    let race = |store: JetStreamEventStore, who: &'static str| {
        let actor = actor.clone();
        tokio::spawn(async move {
            let mut won = Vec::new();
            let mut conflicts = 0u32;
            loop {
                let latest = store
                    .get_latest_version(&actor)
                    .await
                    .expect("latest")
                    .get();
                if latest >= target {
                    return (won, conflicts);
                }
                let e = test_event(&actor, latest + 1, &format!("{who}{}", latest + 1));
                let id = e.id;
                match store.save_event(e).await {
                    Ok(v) => won.push((v.get(), id)),
                    Err(StoreError::VersionConflict { .. }) => conflicts += 1,
                    Err(e) => panic!("{who}: unexpected error {e:?}"),
                }
            }
        })
    };
    let (ra, rb) = tokio::join!(race(a.clone(), "a"), race(b.clone(), "b"));
    let (won_a, conflicts_a) = ra.unwrap();
    let (won_b, conflicts_b) = rb.unwrap();
    let mut claimed: Vec<(u64, EventId)> = won_a.into_iter().chain(won_b).collect();
    claimed.sort();
    let events = a.get_events(&actor, Version::new(6)).await.unwrap();
    let stored: Vec<(u64, EventId)> = events.iter().map(|e| (e.version.get(), e.id)).collect();
    assert_eq!(
        claimed, stored,
        "each version has exactly one winner, and it is what is stored"
    );
    assert_history(&a, &actor, &[]).await;
    assert_eq!(a.get_latest_version(&actor).await.unwrap().get(), target);
    eprintln!("two clients: {} conflicts", conflicts_a + conflicts_b);
}
