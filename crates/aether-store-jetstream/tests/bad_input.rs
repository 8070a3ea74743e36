//! Bad input against a real `nats-server`: oversized events, awkward names,
//! incompatible streams (foreign messages on an actor's subject: `trust.rs`).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::{
    ActorId, ActorSnapshot, Event, EventStore, EventStoreExt, Namespace, SnapshotStore, StoreError,
    Version,
};
use aether_store_jetstream::{IncompatibleStream, JetStreamEventStore};
use aether_testkit_nats::connect;
use async_nats::jetstream::{self, stream};

async fn open(client: &async_nats::Client, ns: Namespace) -> JetStreamEventStore {
    JetStreamEventStore::builder(client.clone())
        .namespace(ns)
        .open()
        .await
        .expect("open")
}

async fn stream_messages(client: &async_nats::Client, name: &str) -> u64 {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(name).await.expect("stream");
    s.info().await.expect("info").state.messages
}

fn incompatible(result: Result<JetStreamEventStore, StoreError>) -> IncompatibleStream {
    match result {
        Err(StoreError::Backend {
            source: Some(source),
            message,
        }) => source
            .downcast_ref::<IncompatibleStream>()
            .cloned()
            .unwrap_or_else(|| {
                panic!("expected an IncompatibleStream source, got {message}: {source}")
            }),
        other => {
            panic!("expected a Backend error with an IncompatibleStream source, got {other:?}")
        }
    }
}

#[tokio::test]
async fn oversized_events_are_refused_before_anything_is_sent() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let store = open(&client, fresh_namespace("bad-large")).await;
    let max = store.max_payload();
    assert_eq!(
        max,
        1024 * 1024,
        "the harness server runs with the default max_payload"
    );
    let a = ActorId::new("big").unwrap();
    store.save_event(test_event(&a, 1, "small")).await.unwrap();
    let before = stream_messages(&client, store.events_stream_name()).await;

    // The payload alone fits, but not with the envelope headers.
    let near = Event::from_raw(a.clone(), Version::new(2), "Big", vec![1u8; max - 100]);
    match store.save_event(near).await {
        Err(StoreError::TooLarge { size, max: m, what }) => {
            assert!(size > m && m == max, "{size} {m}");
            assert!(what.contains("big"), "{what}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let mut mixed: Vec<Event> = (2..=4).map(|v| test_event(&a, v, "ok")).collect();
    mixed.push(Event::from_raw(
        a.clone(),
        Version::new(5),
        "Big",
        vec![2u8; max + 1],
    ));
    assert!(matches!(
        store.append(&a, Version::new(1), mixed).await,
        Err(StoreError::TooLarge { .. })
    ));
    let huge_snapshot = ActorSnapshot::from_raw(a.clone(), Version::new(1), vec![0u8; max]);
    assert!(matches!(
        store.save_snapshot(huge_snapshot).await,
        Err(StoreError::TooLarge { .. })
    ));
    assert_eq!(
        stream_messages(&client, store.events_stream_name()).await,
        before,
        "nothing may reach the stream"
    );
    assert_eq!(store.get_latest_version(&a).await.unwrap(), Version::new(1));

    // Large but within the limit is stored and reads back intact.
    let fits = Event::from_raw(a.clone(), Version::new(2), "Big", vec![3u8; max - 4096]);
    store
        .save_event(fits.clone())
        .await
        .expect("an event under the limit");
    assert_eq!(
        store.get_events(&a, Version::new(2)).await.unwrap(),
        vec![fits]
    );
    // More than the atomic batch limit is refused up front.
    let too_many: Vec<Event> = (3..=1003).map(|v| test_event(&a, v, "n")).collect();
    assert!(matches!(
        store.append(&a, Version::new(2), too_many).await,
        Err(StoreError::InvalidInput(
            aether_core::InvalidInput::BatchTooLarge {
                len: 1001,
                max: 1000
            }
        ))
    ));
}

#[tokio::test]
async fn awkward_actor_ids_and_namespaces_are_stored_apart_or_refused() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("bad-names");
    let store = open(&client, ns.clone()).await;
    let max_len = "ü".repeat(ActorId::MAX_LEN / 2);
    let ids = [
        "a.b",
        "a_b",
        "a_2Eb",
        "a*b",
        "a>b",
        "*",
        ">",
        "a.>",
        "with space",
        " lead",
        "trail ",
        "ünïcødé ✓",
        "日本語",
        "emoji 🦀",
        "$JS.API.STREAM.DELETE.x",
        "a\tb",
        max_len.as_str(),
    ];
    let mut actors = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        // A tab is a control character: refused by ActorId::new, never reaches NATS.
        let Ok(a) = ActorId::new(id) else {
            assert_eq!(*id, "a\tb");
            continue;
        };
        let subject = store.event_subject(&a);
        assert_eq!(subject.split('.').count(), 4, "{id:?} -> {subject}");
        assert!(!subject.contains(['*', '>', ' ']), "{id:?} -> {subject}");
        store
            .append(
                &a,
                Version::ZERO,
                (1..=i as u64 + 1).map(|v| test_event(&a, v, id)).collect(),
            )
            .await
            .expect("append");
        store
            .save_snapshot(ActorSnapshot::new(a.clone(), Version::new(1), id).unwrap())
            .await
            .expect("snapshot");
        actors.push((i, a));
    }
    for (i, a) in &actors {
        let events = store.get_events(a, Version::ZERO).await.unwrap();
        assert_eq!(events.len(), i + 1, "{a:?} mixed up");
        assert!(events.iter().all(|e| &e.actor_id == a));
        let tag = events[0].decode::<BTreeMap<String, String>>().unwrap()["tag"].clone();
        assert_eq!(tag, a.as_str());
        assert_eq!(
            store
                .get_latest_snapshot(a)
                .await
                .unwrap()
                .unwrap()
                .decode::<String>()
                .unwrap(),
            a.as_str()
        );
    }
    assert!(
        ActorId::new("x".repeat(1024)).is_err(),
        "1 KiB actor ids are refused"
    );

    // Namespaces: `.` `_` `-` variants are distinct streams; wildcards, spaces,
    // unicode and 1 KiB are refused by Namespace::new.
    for bad in ["a*", "a>", "a b", "ünï", "a..b", &"x".repeat(1024)] {
        assert!(Namespace::new(bad).is_err(), "{bad:?} must be refused");
    }
    let base = fresh_namespace("bad-ns");
    let variants = [
        format!("{base}.x"),
        format!("{base}_x"),
        format!("{base}-x"),
        format!("{base}.x.y"),
    ];
    let a = ActorId::new("same").unwrap();
    let mut names = std::collections::HashSet::new();
    for (i, n) in variants.iter().enumerate() {
        let s = open(&client, Namespace::new(n).unwrap()).await;
        assert!(
            names.insert(s.events_stream_name().to_owned()),
            "{n} shares a stream"
        );
        s.append(
            &a,
            Version::ZERO,
            (1..=i as u64 + 1).map(|v| test_event(&a, v, n)).collect(),
        )
        .await
        .unwrap();
    }
    for (i, n) in variants.iter().enumerate() {
        let s = open(&client, Namespace::new(n).unwrap()).await;
        assert_eq!(
            s.get_latest_version(&a).await.unwrap().get(),
            i as u64 + 1,
            "{n} mixed up"
        );
    }
    // The longest namespace fits; one whose encoding makes the stream name
    // too long is refused with a clear error, not truncated.
    let longest = Namespace::new("n".repeat(Namespace::MAX_LEN)).unwrap();
    open(&client, longest).await;
    let dotted = Namespace::new(vec!["a"; 64].join(".")).unwrap();
    match JetStreamEventStore::builder(client.clone())
        .namespace(dotted)
        .open()
        .await
    {
        Err(StoreError::InvalidName(e)) => assert!(e.reason.contains("stream name"), "{e}"),
        other => panic!("expected InvalidName, got {other:?}"),
    }
}

#[tokio::test]
async fn incompatible_streams_are_refused_at_open() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let js = jetstream::new(client.clone());

    // An "old" events stream: right subjects, but no atomic publish, deletes
    // allowed, and a max age that would discard events.
    let ns = fresh_namespace("bad-old");
    let enc = ns.encoded();
    js.create_stream(stream::Config {
        name: format!("AETHER_EVENTS_{enc}"),
        subjects: vec![format!("aether.{enc}.events.*")],
        allow_direct: true,
        max_age: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap();
    let e = incompatible(
        JetStreamEventStore::builder(client.clone())
            .namespace(ns)
            .open()
            .await,
    );
    let all = e.problems.join("; ");
    assert!(
        all.contains("allow_atomic") && all.contains("deny_delete") && all.contains("max_age"),
        "{all}"
    );

    // A stream of that name on other subjects.
    let ns = fresh_namespace("bad-subj");
    js.create_stream(stream::Config {
        name: format!("AETHER_EVENTS_{}", ns.encoded()),
        subjects: vec![format!("elsewhere.{}", ns.encoded())],
        ..Default::default()
    })
    .await
    .unwrap();
    let e = incompatible(
        JetStreamEventStore::builder(client.clone())
            .namespace(ns)
            .open()
            .await,
    );
    assert!(e.problems.iter().any(|p| p.contains("subjects")), "{e}");

    // Replicas and storage must match the configuration.
    let ns = fresh_namespace("bad-repl");
    open(&client, ns.clone()).await;
    let e = incompatible(
        JetStreamEventStore::builder(client.clone())
            .namespace(ns.clone())
            .storage(aether_store_jetstream::Storage::Memory)
            .open()
            .await,
    );
    assert!(e.problems.iter().any(|p| p.contains("storage")), "{e}");

    // Validation only: a missing stream is an error, not created.
    let e = incompatible(
        JetStreamEventStore::builder(client.clone())
            .namespace(fresh_namespace("bad-missing"))
            .create_streams(false)
            .open()
            .await,
    );
    assert!(e.problems[0].contains("does not exist"), "{e}");

    // Bad configuration values.
    assert!(matches!(
        JetStreamEventStore::builder(client.clone())
            .prefix("a.b")
            .open()
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        JetStreamEventStore::builder(client.clone())
            .events_stream("has space")
            .open()
            .await,
        Err(StoreError::InvalidInput(_))
    ));
    // Explicit stream names.
    let name = format!("SEED_{}", fresh_namespace("x").encoded());
    let s = JetStreamEventStore::builder(client.clone())
        .events_stream(name.clone())
        .namespace(fresh_namespace("seed"))
        .open()
        .await
        .unwrap();
    assert_eq!(s.events_stream_name(), name);
    assert_eq!(s.snapshots_stream_name(), format!("{name}_SNAPSHOTS"));
}

#[tokio::test]
async fn constructors_open_the_default_namespace_and_others_with_the_same_settings() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;

    let default = JetStreamEventStore::new(client.clone()).await.unwrap();
    assert_eq!(default.namespace(), &Namespace::default());
    assert_eq!(default.events_stream_name(), "AETHER_EVENTS_default");
    assert_eq!(default.snapshots_stream_name(), "AETHER_SNAPSHOTS_default");

    // Another namespace keeps the prefix and settings; explicit stream
    // names belong to the first store only.
    let base = JetStreamEventStore::builder(client.clone())
        .prefix("ctor")
        .events_stream(format!("CTOR_{}", fresh_namespace("x").encoded()))
        .namespace(fresh_namespace("base"))
        .timeout(Duration::from_secs(3))
        .open()
        .await
        .unwrap();
    let ns = fresh_namespace("other");
    let other = base.with_namespace(ns.clone()).await.unwrap();
    assert_eq!(other.namespace(), &ns);
    assert_eq!(
        other.events_stream_name(),
        format!("CTOR_EVENTS_{}", ns.encoded())
    );
    let actor = ActorId::new("ctor-actor").unwrap();
    assert_eq!(
        other.event_subject(&actor),
        format!("ctor.{}.events.{}", ns.encoded(), actor.encoded())
    );
    other
        .save_event(test_event(&actor, 1, "in other"))
        .await
        .unwrap();
    assert_eq!(
        other.get_latest_version(&actor).await.unwrap(),
        Version::FIRST
    );
    assert_eq!(
        base.get_latest_version(&actor).await.unwrap(),
        Version::ZERO
    );

    // `create_streams(false)` carries over: a namespace without streams is refused.
    let validating = JetStreamEventStore::builder(client.clone())
        .prefix("ctor")
        .namespace(ns)
        .create_streams(false)
        .open()
        .await
        .unwrap();
    let e = incompatible(validating.with_namespace(fresh_namespace("none")).await);
    assert!(e.problems[0].contains("does not exist"), "{e}");
}
