//! Read paths the conformance suite does not reach: reads from any version
//! when actors' events interleave in the stream (the start is found by a
//! binary search over sequences), long reads switching to an ordered
//! consumer, and a read of an actor that keeps being written.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aether_core::testkit::conformance::{fresh_namespace, test_event};
use aether_core::{ActorId, EventStore, EventStoreExt, Version};
use aether_store_jetstream::{EnvelopeFormat, JetStreamEventStore};
use aether_testkit_nats::connect;
use futures::StreamExt;

async fn check_every_from(store: &JetStreamEventStore, a: &ActorId, latest: u64) {
    for from in 0..=latest + 1 {
        let want: Vec<u64> = (from.max(1)..=latest).collect();
        let got: Vec<u64> = store
            .get_events(a, Version::new(from))
            .await
            .expect("get_events")
            .iter()
            .map(|e| e.version.get())
            .collect();
        assert_eq!(got, want, "{a:?} from {from}");
    }
}

#[tokio::test]
async fn reads_from_any_version_with_interleaved_actors() {
    for r3 in [false, true] {
        let factory = if r3 {
            common::JetStreamFactory::r3().await
        } else {
            common::JetStreamFactory::r1().await
        };
        let store =
            aether_core::testkit::StoreFactory::open(&factory, fresh_namespace("reads-mix")).await;
        let actors: Vec<ActorId> = (0..3)
            .map(|i| ActorId::new(format!("mix-{i}")).unwrap())
            .collect();
        // Round-robin single events, with an occasional batch, so no actor's
        // events are contiguous in the stream.
        for v in 1..=40u64 {
            for (i, a) in actors.iter().enumerate() {
                if i == 2 && v % 10 == 0 {
                    continue;
                }
                let latest = store.get_latest_version(a).await.unwrap().get();
                if i == 1 && v % 7 == 0 {
                    let batch = (1..=3).map(|k| test_event(a, latest + k, "b")).collect();
                    store.append(a, Version::new(latest), batch).await.unwrap();
                } else {
                    store
                        .save_event(test_event(a, latest + 1, "s"))
                        .await
                        .unwrap();
                }
            }
        }
        for a in &actors {
            let latest = store.get_latest_version(a).await.unwrap().get();
            check_every_from(&store, a, latest).await;
        }
    }
}

#[tokio::test]
async fn long_reads_switch_to_a_consumer_and_see_every_event() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let store = JetStreamEventStore::builder(client)
        .namespace(fresh_namespace("reads-long"))
        .read_batch(100)
        .open()
        .await
        .unwrap();
    let a = ActorId::new("long").unwrap();
    let b = ActorId::new("other").unwrap();
    for chunk in 0..10u64 {
        let events = (1..=200)
            .map(|i| test_event(&a, chunk * 200 + i, "x"))
            .collect();
        store
            .append(&a, Version::new(chunk * 200), events)
            .await
            .unwrap();
        store
            .save_event(test_event(&b, chunk + 1, "y"))
            .await
            .unwrap();
    }
    for from in [0u64, 1, 2, 199, 200, 201, 777, 1500, 1999, 2000, 2001] {
        let want: Vec<u64> = (from.max(1)..=2000).collect();
        let got: Vec<u64> = store
            .stream_events(&a, Version::new(from))
            .map(|e| e.expect("event").version.get())
            .collect()
            .await;
        assert_eq!(got, want, "from {from}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_an_actor_being_written_ends() {
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let store = JetStreamEventStore::builder(client)
        .namespace(fresh_namespace("reads-live"))
        .read_batch(100)
        .open()
        .await
        .unwrap();
    let a = ActorId::new("live").unwrap();
    let events = (1..=1000).map(|i| test_event(&a, i, "x")).collect();
    store.append(&a, Version::ZERO, events).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, a, stop) = (store.clone(), a.clone(), stop.clone());
        tokio::spawn(async move {
            let mut v = 1000;
            while !stop.load(Ordering::SeqCst) {
                let events = (1..=50).map(|i| test_event(&a, v + i, "w")).collect();
                v = store
                    .append(&a, Version::new(v), events)
                    .await
                    .unwrap()
                    .get();
            }
            v
        })
    };
    for _ in 0..3 {
        let versions: Vec<u64> = store
            .stream_events(&a, Version::ZERO)
            .map(|e| e.expect("event").version.get())
            .collect()
            .await;
        assert!(versions.len() >= 1000);
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
    stop.store(true, Ordering::SeqCst);
    let last = writer.await.unwrap();
    assert_eq!(store.get_latest_version(&a).await.unwrap().get(), last);
}

/// MessagePack `bin` for hand-made envelopes.
struct Bin<'a>(&'a [u8]);

impl serde::Serialize for Bin<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[derive(serde::Serialize)]
struct SnapshotEnvelope<'a> {
    aether: u8,
    version: u64,
    seq: u64,
    ts: &'a str,
    schema: u32,
    state: Bin<'a>,
}

#[tokio::test]
async fn reads_after_a_snapshot_start_at_its_event_and_survive_a_wrong_hint() {
    use aether_core::{ActorSnapshot, SnapshotStore};
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("reads-hint");
    let open = || {
        JetStreamEventStore::builder(client.clone())
            .namespace(ns.clone())
            .open()
    };
    let store = open().await.unwrap();
    let (a, b) = (ActorId::new("a").unwrap(), ActorId::new("b").unwrap());
    for v in 1..=30 {
        store.save_event(test_event(&a, v, "a")).await.unwrap();
        store.save_event(test_event(&b, v, "b")).await.unwrap();
    }
    store
        .save_snapshot(ActorSnapshot::new(a.clone(), Version::new(30), &30u32).unwrap())
        .await
        .unwrap();
    for v in 31..=35 {
        store.save_event(test_event(&a, v, "a")).await.unwrap();
        store.save_event(test_event(&b, v, "b")).await.unwrap();
    }
    // The snapshot records where its event is.
    let js = async_nats::jetstream::new(client.clone());
    let snaps = js.get_stream(store.snapshots_stream_name()).await.unwrap();
    let raw = snaps
        .direct_get_last_for_subject(store.snapshot_subject(&a))
        .await
        .unwrap();
    // Format 2: [2, version, seq, ts, schema, cmds, state].
    type Positional = (
        u8,
        u64,
        Option<u64>,
        serde::de::IgnoredAny,
        serde::de::IgnoredAny,
        serde::de::IgnoredAny,
        serde::de::IgnoredAny,
    );
    let recorded: Positional = rmp_serde::from_slice(&raw.payload).unwrap();
    assert_eq!((recorded.0, recorded.1), (2, 30));
    assert!(
        recorded.2.is_some(),
        "the snapshot names its event's sequence"
    );

    // A fresh store (empty caches) loads the snapshot, then the events after it.
    let fresh = open().await.unwrap();
    let snap = fresh.get_latest_snapshot(&a).await.unwrap().unwrap();
    assert_eq!(snap.version, Version::new(30));
    let versions: Vec<u64> = fresh
        .get_events(&a, Version::new(31))
        .await
        .unwrap()
        .iter()
        .map(|e| e.version.get())
        .collect();
    assert_eq!(versions, (31..=35).collect::<Vec<_>>());

    // A snapshot whose hint is wrong (b's event, or a later event of a)
    // costs a search, never an event.
    let events = js.get_stream(store.events_stream_name()).await.unwrap();
    let b_seq = events
        .direct_get_last_for_subject(store.event_subject(&b))
        .await
        .unwrap()
        .sequence;
    let a_last_seq = events
        .direct_get_last_for_subject(store.event_subject(&a))
        .await
        .unwrap()
        .sequence;
    for (i, wrong) in [b_seq, a_last_seq, 1, 10_000].into_iter().enumerate() {
        let version = 32 + i as u64;
        let body = rmp_serde::to_vec_named(&SnapshotEnvelope {
            aether: 1,
            version,
            seq: wrong,
            ts: "2026-01-01T00:00:00Z",
            schema: 1,
            state: Bin(&[0x00]),
        })
        .unwrap();
        js.publish(store.snapshot_subject(&a), body.into())
            .await
            .unwrap()
            .await
            .unwrap();
        let fresh = open().await.unwrap();
        assert_eq!(
            fresh
                .get_latest_snapshot(&a)
                .await
                .unwrap()
                .unwrap()
                .version
                .get(),
            version
        );
        let versions: Vec<u64> = fresh
            .get_events(&a, Version::new(version + 1))
            .await
            .unwrap()
            .iter()
            .map(|e| e.version.get())
            .collect();
        assert_eq!(
            versions,
            (version + 1..=35).collect::<Vec<_>>(),
            "wrong hint {wrong}"
        );
    }
}

#[tokio::test]
async fn a_stream_written_in_format_1_reads_back_and_appends_continue_in_format_2() {
    use aether_core::{ActorSnapshot, Event, SnapshotStore};
    let server = common::shared_server().await;
    let client = connect(&server.url()).await;
    let ns = fresh_namespace("reads-format");
    let open = |format| {
        JetStreamEventStore::builder(client.clone())
            .namespace(ns.clone())
            .envelope_format(format)
            .open()
    };
    let old = open(EnvelopeFormat::V1).await.unwrap();
    let a = ActorId::new("a.format ü").unwrap();
    let event = |v: u64| {
        let mut e = test_event(&a, v, "format");
        e.metadata.correlation_id = Some(format!("corr-{v}"));
        if v.is_multiple_of(2) {
            e.metadata.causation_id = Some("cause ✓".into());
            e.metadata.custom.insert("k ü".into(), format!("v{v}"));
        }
        e.schema_version = 2;
        e
    };
    let mut written: Vec<Event> = (1..=5).map(event).collect();
    old.append(&a, Version::ZERO, written[..2].to_vec())
        .await
        .unwrap();
    for e in &written[2..] {
        old.save_event(e.clone()).await.unwrap();
    }
    let snap_v1 = ActorSnapshot::new(a.clone(), Version::new(3), &"state at 3").unwrap();
    old.save_snapshot(snap_v1.clone()).await.unwrap();

    // A store writing format 2 reads format 1 exactly, then appends after it.
    let new = open(EnvelopeFormat::default()).await.unwrap();
    assert_eq!(new.get_events(&a, Version::ZERO).await.unwrap(), written);
    assert_eq!(new.get_latest_snapshot(&a).await.unwrap(), Some(snap_v1));
    assert_eq!(new.get_latest_version(&a).await.unwrap(), Version::new(5));
    let more: Vec<Event> = (6..=8).map(event).collect();
    new.append(&a, Version::new(5), more.clone()).await.unwrap();
    let ninth = event(9);
    new.save_event(ninth.clone()).await.unwrap();
    written.extend(more);
    written.push(ninth);
    let snap_v2 = ActorSnapshot::new(a.clone(), Version::new(9), &"state at 9").unwrap();
    new.save_snapshot(snap_v2.clone()).await.unwrap();

    // An independent reader sees format 1 maps, then format 2 arrays, with
    // every version once.
    let raw = common::raw_messages(&client, new.events_stream_name(), &new.event_subject(&a)).await;
    let versions: Vec<Option<u64>> = raw.iter().map(|m| m.version).collect();
    assert_eq!(versions, (1..=9).map(Some).collect::<Vec<_>>());
    for m in &raw {
        let first = m.payload[0];
        if m.version.unwrap() <= 5 {
            assert!((0x80..=0x8f).contains(&first), "format 1 map at {}", m.seq);
        } else {
            assert_eq!(first, 0x9a, "format 2 array at {}", m.seq);
        }
    }

    // Both stores, and fresh ones, read the mixed history from any version.
    let fresh = open(EnvelopeFormat::default()).await.unwrap();
    for store in [&old, &new, &fresh] {
        store.clear_cache();
        assert_eq!(store.get_events(&a, Version::ZERO).await.unwrap(), written);
        for from in [3u64, 5, 6, 9] {
            let got = store.get_events(&a, Version::new(from)).await.unwrap();
            assert_eq!(got, written[from as usize - 1..].to_vec(), "from {from}");
        }
        assert_eq!(
            store.get_latest_snapshot(&a).await.unwrap(),
            Some(snap_v2.clone())
        );
    }
}
