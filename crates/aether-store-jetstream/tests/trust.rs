//! The trust boundary on a real `nats-server`: messages on an actor's subject
//! that the store did not write (published by any client allowed to), and
//! streams written before message ids were scoped by actor.
//!
//! Every check of what is stored goes through an independent raw reader
//! (plain async-nats direct gets), not through the store under test.

mod common;

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::{
    ActorId, ActorSnapshot, Event, EventId, EventStore, EventStoreExt, Namespace, SnapshotStore,
    StoreError, TrustPolicy, Version,
};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::connect;
use async_nats::HeaderMap;
use futures::StreamExt;

use common::{forged_envelope, raw_messages, raw_publish};

async fn open(
    client: &async_nats::Client,
    ns: &Namespace,
    policy: TrustPolicy,
) -> JetStreamEventStore {
    JetStreamEventStore::builder(client.clone())
        .namespace(ns.clone())
        .trust_policy(policy)
        .open()
        .await
        .expect("open")
}

fn ids(events: &[Event]) -> Vec<(u64, EventId)> {
    events.iter().map(|e| (e.version.get(), e.id)).collect()
}

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    actor: &ActorId,
    position: u64,
    label: &str,
) {
    match result {
        Err(StoreError::Corrupt {
            actor: a,
            position: p,
            reason,
        }) => {
            assert_eq!(&a, actor);
            assert_eq!(p, position, "position of the foreign message");
            assert_eq!(reason.label(), label, "{reason}");
        }
        other => panic!("expected Corrupt({label}) at {position}, got {other:?}"),
    }
}

/// Findings 1-3: an envelope without `Nats-Msg-Id`, bytes that are not
/// MessagePack and an envelope of an unknown format at the tip no longer
/// block the actor: reads skip them, the latest version is the last valid
/// one, and an append lands after them (with a cold cache too). The strict
/// policy names the first one.
#[tokio::test]
async fn foreign_messages_at_the_tip_are_skipped_and_the_actor_keeps_working() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("trust-tip");
    let store = open(&client, &ns, TrustPolicy::SkipForeign).await;
    let strict = open(&client, &ns, TrustPolicy::Strict).await;
    let a = ActorId::new("victim").unwrap();
    let first: Vec<Event> = (1..=2).map(|v| test_event(&a, v, "ok")).collect();
    store
        .append(&a, Version::ZERO, first.clone())
        .await
        .unwrap();
    let subject = store.event_subject(&a);

    // A valid envelope of version 3 without the event id header, bytes that
    // are not MessagePack, an envelope of an unknown (future) format.
    let no_id = raw_publish(
        &client,
        subject.clone(),
        HeaderMap::new(),
        forged_envelope(&test_event(&a, 3, "no-id")),
    )
    .await;
    raw_publish(
        &client,
        subject.clone(),
        HeaderMap::new(),
        b"\xc1\xff garbage".to_vec(),
    )
    .await;
    #[derive(serde::Serialize)]
    struct Future {
        aether: u8,
        version: u64,
    }
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", EventId::new().to_string().as_str());
    let future = raw_publish(
        &client,
        subject.clone(),
        h,
        rmp_serde::to_vec_named(&Future {
            aether: 2,
            version: 3,
        })
        .unwrap(),
    )
    .await;

    for fresh in [false, true] {
        if fresh {
            store.clear_cache();
        }
        assert_eq!(
            ids(&store.get_events(&a, Version::ZERO).await.unwrap()),
            ids(&first)
        );
        let streamed: Vec<Result<Event, StoreError>> =
            store.stream_events(&a, Version::ZERO).collect().await;
        assert_eq!(streamed.len(), 2, "{streamed:?}");
        assert!(streamed.iter().all(Result::is_ok));
        assert_eq!(store.get_latest_version(&a).await.unwrap(), Version::new(2));
    }
    assert_corrupt(
        strict.get_events(&a, Version::ZERO).await,
        &a,
        no_id,
        "missing_id",
    );
    // The strict tip read meets the newest foreign message first.
    strict.clear_cache();
    assert_corrupt(
        strict.get_latest_version(&a).await,
        &a,
        future,
        "not_envelope",
    );
    assert_corrupt(
        strict.save_event(test_event(&a, 3, "strict")).await,
        &a,
        future,
        "not_envelope",
    );

    // The writer continues after them, with a cold cache.
    store.clear_cache();
    let third = test_event(&a, 3, "after");
    store.save_event(third.clone()).await.unwrap();
    let all: Vec<Event> = first.iter().cloned().chain([third.clone()]).collect();
    assert_eq!(
        ids(&store.get_events(&a, Version::ZERO).await.unwrap()),
        ids(&all)
    );
    assert_eq!(
        ids(&store.get_events(&a, Version::new(3)).await.unwrap()),
        ids(&all[2..])
    );
    // Independently: the stream holds the two events, the three foreign
    // messages, then the third event, each event once, ids scoped by actor.
    let raw = raw_messages(&client, store.events_stream_name(), &subject).await;
    assert_eq!(raw.len(), 6);
    for (i, e) in [(0, &all[0]), (1, &all[1]), (5, &all[2])] {
        let id = raw[i]
            .msg_id
            .as_deref()
            .expect("an Aether event has a message id");
        assert!(id.starts_with(&format!("{}.", e.id)), "{id}");
    }
    // A retry of the last append is recognised, and stores nothing.
    store.clear_cache();
    assert_eq!(
        store
            .append(&a, Version::new(2), vec![third])
            .await
            .unwrap(),
        Version::new(3)
    );
    assert_eq!(
        raw_messages(&client, store.events_stream_name(), &subject)
            .await
            .len(),
        6
    );
}

/// Finding 4's store side and garbage on a snapshot subject: a snapshot that
/// cannot be decoded is ignored (the actor replays), `Corrupt` when strict,
/// and a valid save replaces it.
#[tokio::test]
async fn an_undecodable_snapshot_is_ignored_and_replaced() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("trust-snap");
    let store = open(&client, &ns, TrustPolicy::SkipForeign).await;
    let strict = open(&client, &ns, TrustPolicy::Strict).await;
    let b = ActorId::new("snap-victim").unwrap();
    store.save_event(test_event(&b, 1, "ok")).await.unwrap();
    let junk = raw_publish(
        &client,
        store.snapshot_subject(&b),
        HeaderMap::new(),
        b"junk".to_vec(),
    )
    .await;
    assert_eq!(store.get_latest_snapshot(&b).await.unwrap(), None);
    assert_corrupt(
        strict.get_latest_snapshot(&b).await,
        &b,
        junk,
        "snapshot_undecodable",
    );
    let valid = ActorSnapshot::new(b.clone(), Version::new(1), &1u8).unwrap();
    store.save_snapshot(valid.clone()).await.unwrap();
    assert_eq!(store.get_latest_snapshot(&b).await.unwrap(), Some(valid));
}

/// Foreign messages in the middle and at the end of a history longer than
/// one read batch (so the read switches to an ordered consumer): every valid
/// event is read, in order, from the start and from the middle, and nothing
/// else; strict reads end with `Corrupt` after the valid events before it.
#[tokio::test]
async fn foreign_messages_in_a_long_history_are_skipped_by_every_read_path() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("trust-long");
    let store = open(&client, &ns, TrustPolicy::SkipForeign).await;
    let strict = open(&client, &ns, TrustPolicy::Strict).await;
    let a = ActorId::new("long").unwrap();
    let subject = store.event_subject(&a);
    let mut forged_at = 0;
    for start in (0..3000u64).step_by(1000) {
        let events = (1..=1000).map(|i| test_event(&a, start + i, "x")).collect();
        store.append(&a, Version::new(start), events).await.unwrap();
        if start == 1000 {
            // A forged repeat of version 1500 in the middle.
            let mut h = HeaderMap::new();
            h.insert("Nats-Msg-Id", EventId::new().to_string().as_str());
            forged_at = raw_publish(
                &client,
                subject.clone(),
                h,
                forged_envelope(&test_event(&a, 1500, "forged")),
            )
            .await;
        }
    }
    raw_publish(&client, subject.clone(), HeaderMap::new(), b"junk".to_vec()).await;
    for from in [0u64, 500, 1999, 2500] {
        let items: Vec<Result<Event, StoreError>> =
            store.stream_events(&a, Version::new(from)).collect().await;
        let first = from.max(1);
        let versions: Vec<u64> = items
            .iter()
            .map(|i| i.as_ref().expect("no error item").version.get())
            .collect();
        assert_eq!(versions, (first..=3000).collect::<Vec<_>>(), "from {from}");
    }
    assert_eq!(store.get_latest_version(&a).await.unwrap().get(), 3000);
    store
        .save_event(test_event(&a, 3001, "after"))
        .await
        .unwrap();

    let items: Vec<Result<Event, StoreError>> =
        strict.stream_events(&a, Version::ZERO).collect().await;
    assert_eq!(items.len(), 2001, "2000 valid events, then the error");
    for (i, item) in items[..2000].iter().enumerate() {
        assert_eq!(item.as_ref().unwrap().version.get(), i as u64 + 1);
    }
    assert_corrupt(
        items.into_iter().last().unwrap(),
        &a,
        forged_at,
        "out_of_order",
    );
}

/// Finding 7 and old streams: the same event id in two actors is two events
/// (no stall on the duplicate window), and a stream written with bare event
/// ids as `Nats-Msg-Id` (before ids were scoped by actor) reads the same and
/// recognises a retry of its last event.
#[tokio::test]
async fn event_ids_are_scoped_by_actor_and_old_streams_still_read() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("trust-ids");
    let store = JetStreamEventStore::builder(client.clone())
        .namespace(ns)
        .timeout(std::time::Duration::from_secs(2))
        .open()
        .await
        .unwrap();
    let (a, b) = (ActorId::new("a").unwrap(), ActorId::new("b").unwrap());
    let ea = test_event(&a, 1, "a");
    let mut eb = test_event(&b, 1, "b");
    eb.id = ea.id;
    let started = std::time::Instant::now();
    store.save_event(ea.clone()).await.unwrap();
    store.save_event(eb.clone()).await.unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "the second actor's append must not wait for the duplicate window"
    );
    assert_eq!(store.get_events(&b, Version::ZERO).await.unwrap(), vec![eb]);

    // An old-format history: bare ids, written by a raw publisher.
    let old = ActorId::new("old").unwrap();
    let history: Vec<Event> = (1..=3).map(|v| test_event(&old, v, "old")).collect();
    for e in &history {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", e.id.to_string().as_str());
        raw_publish(&client, store.event_subject(&old), h, forged_envelope(e)).await;
    }
    assert_eq!(
        ids(&store.get_events(&old, Version::ZERO).await.unwrap()),
        ids(&history)
    );
    assert_eq!(
        store
            .append(&old, Version::new(2), vec![history[2].clone()])
            .await
            .unwrap(),
        Version::new(3),
        "a retry of a stored old-format event is recognised"
    );
    store.save_event(test_event(&old, 4, "new")).await.unwrap();
    assert_eq!(store.get_latest_version(&old).await.unwrap().get(), 4);
}
