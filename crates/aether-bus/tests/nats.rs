//! `NatsEventBus` against a real `nats-server` from `aether-testkit-nats`.
#![cfg(feature = "nats")]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_bus::{NatsEventBus, Subscription, WireFormat};
use aether_core::{
    ActorId, BusError, BusEvent, Event, EventBus, EventFilter, NamespacePattern, Version,
};
use aether_testkit_nats::{NatsServer, connect, unique_name, wait_until};
use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{event, ns};

const DEADLINE: Duration = Duration::from_secs(20);

/// A bus on its own connection, with a prefix unique to the test.
async fn node(server: &NatsServer, prefix: &str) -> NatsEventBus {
    NatsEventBus::builder(connect(&server.url()).await)
        .prefix(prefix)
        .build()
        .unwrap()
}

/// Collects a subscription's items in a background task.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<Result<BusEvent, String>>>>);

impl Collected {
    /// Subscribes `bus` with `filter` and collects the subscription.
    async fn subscribe(bus: &NatsEventBus, filter: EventFilter) -> Self {
        Self::spawn(bus.subscribe(filter).await.unwrap())
    }

    fn spawn(mut sub: Subscription) -> Self {
        let out = Collected::default();
        let items = Arc::clone(&out.0);
        tokio::spawn(async move {
            while let Some(item) = sub.next().await {
                items.lock().unwrap().push(item.map_err(|e| e.to_string()));
            }
            items.lock().unwrap().push(Err("stream ended".into()));
        });
        out
    }

    fn events(&self) -> Vec<BusEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|i| i.as_ref().ok().cloned())
            .collect()
    }

    fn errors(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|i| i.as_ref().err().cloned())
            .collect()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// Returns once the server has processed everything `client` sent before
/// (e.g. a subscription): `flush` only empties the socket buffer, while a
/// message to a fresh inbox comes back only after the operations before it.
async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(DEADLINE, probe.next())
        .await
        .unwrap()
        .unwrap();
}

/// `num_subscriptions` from the server's `/subsz` monitoring endpoint.
async fn server_subscriptions(server: &NatsServer) -> u64 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.monitor_port()))
        .await
        .unwrap();
    stream
        .write_all(b"GET /subsz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let key = "\"num_subscriptions\":";
    let at = body.find(key).unwrap() + key.len();
    body[at..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn namespaces_are_isolated_across_nodes_including_patterns_and_special_characters() {
    let server = NatsServer::start().await;
    let prefix = unique_name("iso");
    let publisher = node(&server, &prefix).await;
    let receiver = node(&server, &prefix).await;

    let names = [
        "a", "b", "a.b", "a_b", "a-b", "ab", "a.b.c", "a.bc", "b.a", "a_2Eb",
    ];
    let mut filters: Vec<(String, EventFilter, Vec<&str>)> = names
        .iter()
        .map(|n| {
            (
                format!("exact {n}"),
                EventFilter::namespace(ns(n)),
                vec![*n],
            )
        })
        .collect();
    filters.push((
        "within a".into(),
        EventFilter::within(ns("a")),
        vec!["a", "a.b", "a.b.c", "a.bc"],
    ));
    filters.push((
        "within a.b".into(),
        EventFilter::within(ns("a.b")),
        vec!["a.b", "a.b.c"],
    ));
    filters.push((
        "within a_b".into(),
        EventFilter::within(ns("a_b")),
        vec!["a_b"],
    ));
    filters.push((
        "within a-b".into(),
        EventFilter::within(ns("a-b")),
        vec!["a-b"],
    ));

    // Bus subscribers, and raw NATS subscribers on the very subjects the bus
    // uses, to check that the subject scheme itself never leaks (the bus also
    // re-checks filters locally, which would hide a leaky subject).
    let raw = connect(&server.url()).await;
    let mut subs = Vec::new();
    for (label, filter, expected) in &filters {
        let subject = receiver.subject_pattern(&filter.namespaces).unwrap();
        let raw_sub = raw.subscribe(subject).await.unwrap();
        let sub = receiver.subscribe(filter.clone()).await.unwrap();
        subs.push((
            label.clone(),
            Collected::spawn(sub),
            raw_sub,
            expected.clone(),
        ));
    }
    round_trip(&raw).await;

    // Phase 1: one event per namespace; phase 2: an "End" marker in each. Per
    // publisher, NATS keeps order, so once a subscriber has every End it
    // expects, every phase-1 event it could receive has arrived.
    for n in names {
        publisher.publish(&ns(n), event("x", 1, n)).await.unwrap();
    }
    for n in names {
        publisher
            .publish(&ns(n), event("x", 2, "End"))
            .await
            .unwrap();
    }

    for (label, got, raw_sub, expected) in &mut subs {
        wait_until(
            DEADLINE,
            format!("{label} receives its End markers"),
            async || {
                let n = got
                    .events()
                    .iter()
                    .filter(|e| &*e.event.event_type == "End")
                    .count();
                n == expected.len()
            },
        )
        .await;
        let phase1: Vec<String> = got
            .events()
            .iter()
            .filter(|e| &*e.event.event_type != "End")
            .map(|e| {
                assert_eq!(
                    e.namespace.as_str(),
                    &*e.event.event_type,
                    "{label}: namespace/payload mix-up"
                );
                e.namespace.to_string()
            })
            .collect();
        assert_eq!(phase1, *expected, "{label}");
        assert!(got.errors().is_empty(), "{label}: {:?}", got.errors());

        // The raw subscription got exactly 2 messages per expected namespace.
        let mut raw_subjects = Vec::new();
        while raw_subjects.len() < expected.len() * 2 {
            let m = tokio::time::timeout(DEADLINE, raw_sub.next())
                .await
                .unwrap()
                .unwrap();
            raw_subjects.push(m.subject.to_string());
        }
        let expected_subjects: BTreeSet<String> = expected
            .iter()
            .flat_map(|n| {
                [
                    publisher.subject_for(&ns(n), n),
                    publisher.subject_for(&ns(n), "End"),
                ]
            })
            .collect();
        assert_eq!(
            raw_subjects.iter().cloned().collect::<BTreeSet<_>>(),
            expected_subjects,
            "{label}"
        );
        assert!(
            raw_sub.next().now_or_never().is_none(),
            "{label}: raw subject leaked"
        );
    }
    assert_eq!(receiver.stats().decode_errors, 0);
}

#[tokio::test]
async fn each_subscriber_sees_each_event_exactly_once_across_three_nodes() {
    const EACH: u64 = 50;
    let server = NatsServer::start().await;
    let prefix = unique_name("echo");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node(&server, &prefix).await);
    }
    let room = ns("room");
    let mut collected = Vec::new();
    for n in &nodes {
        // Two subscribers per node, with different patterns (two NATS
        // subscriptions on the node), both covering `room`.
        collected.push(Collected::subscribe(n, EventFilter::namespace(room.clone())).await);
        collected.push(Collected::subscribe(n, EventFilter::within(room.clone())).await);
    }
    // Interleave the publishers.
    for v in 1..=EACH {
        for (i, n) in nodes.iter().enumerate() {
            n.publish(&room, event(&format!("node-{i}"), v, "T"))
                .await
                .unwrap();
        }
    }
    // Every echo came back (and was dropped) on both subscriptions of each
    // node: after that no late duplicate can arrive.
    for (i, n) in nodes.iter().enumerate() {
        wait_until(DEADLINE, format!("node {i} sees its echoes"), async || {
            n.stats().echoes_suppressed == 2 * EACH
        })
        .await;
    }
    for (k, got) in collected.iter().enumerate() {
        wait_until(
            DEADLINE,
            format!("subscriber {k} receives every event"),
            async || got.len() >= 3 * EACH as usize,
        )
        .await;
    }
    for (k, got) in collected.iter().enumerate() {
        let events = got.events();
        let mut seen: BTreeMap<(String, u64), usize> = BTreeMap::new();
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for e in &events {
            let actor = e.event.actor_id.to_string();
            *seen
                .entry((actor.clone(), e.event.version.get()))
                .or_default() += 1;
            let prev = last
                .insert(actor.clone(), e.event.version.get())
                .unwrap_or(0);
            assert!(
                e.event.version.get() > prev,
                "subscriber {k}: {actor} out of order"
            );
        }
        assert_eq!(events.len(), 3 * EACH as usize, "subscriber {k}");
        assert_eq!(seen.len(), 3 * EACH as usize, "subscriber {k}: duplicates");
        assert!(seen.values().all(|&c| c == 1));
        assert!(
            got.errors().is_empty(),
            "subscriber {k}: {:?}",
            got.errors()
        );
    }
    for n in &nodes {
        assert_eq!(n.stats().published, EACH);
        assert_eq!(n.stats().decode_errors, 0);
    }
}

#[tokio::test]
async fn a_slow_subscriber_lags_while_a_fast_one_gets_everything() {
    const N: u64 = 300;
    let server = NatsServer::start().await;
    let prefix = unique_name("lag");
    let publisher = node(&server, &prefix).await;
    let receiver = node(&server, &prefix).await;
    let n = ns("feed");
    let mut slow = receiver
        .subscribe_with_capacity(EventFilter::namespace(n.clone()), 8)
        .await
        .unwrap();
    let fast = Collected::spawn(
        receiver
            .subscribe_with_capacity(EventFilter::namespace(n.clone()), 10_000)
            .await
            .unwrap(),
    );
    for v in 1..=N {
        publisher.publish(&n, event("a", v, "T")).await.unwrap();
    }
    wait_until(
        DEADLINE,
        "the fast subscriber gets everything",
        async || fast.len() >= N as usize,
    )
    .await;
    let versions: Vec<u64> = fast
        .events()
        .iter()
        .map(|e| e.event.version.get())
        .collect();
    assert_eq!(versions, (1..=N).collect::<Vec<_>>());
    assert!(fast.errors().is_empty());

    // The slow one never read: it is told what it missed, then gets the 8 newest.
    let mut items = Vec::new();
    while let Some(Some(item)) = slow.next().now_or_never() {
        items.push(item);
    }
    assert!(
        matches!(items[0], Err(BusError::Lagged { missed }) if missed == N - 8),
        "{:?}",
        items[0]
    );
    let rest: Vec<u64> = items[1..]
        .iter()
        .map(|i| i.as_ref().unwrap().event.version.get())
        .collect();
    assert_eq!(rest, (N - 7..=N).collect::<Vec<_>>());
    assert_eq!(receiver.stats().dropped, N - 8);
}

/// Nobody polls the subscription, and the client buffers only 64 messages
/// per subscription: events still move into the bounded queue (so overflow is
/// counted and reported as `Lagged`), instead of filling the client's buffer,
/// which would drop them without a count.
#[tokio::test]
async fn events_reach_the_bounded_queue_while_nobody_polls() {
    const CHUNK: u64 = 32;
    const CHUNKS: u64 = 20;
    let server = NatsServer::start().await;
    let prefix = unique_name("idle");
    let publisher = node(&server, &prefix).await;
    let small_buffer = async_nats::ConnectOptions::new()
        .subscription_capacity(64)
        .connect(server.url())
        .await
        .unwrap();
    let receiver = NatsEventBus::builder(small_buffer)
        .prefix(prefix.as_str())
        .build()
        .unwrap();
    let n = ns("idle");
    let mut sub = receiver
        .subscribe_with_capacity(EventFilter::namespace(n.clone()), 8)
        .await
        .unwrap();
    for chunk in 0..CHUNKS {
        for i in 1..=CHUNK {
            let v = chunk * CHUNK + i;
            publisher.publish(&n, event("a", v, "T")).await.unwrap();
        }
        // Never more than 32 messages in the client's buffer of 64.
        let want = (chunk + 1) * CHUNK;
        wait_until(
            DEADLINE,
            "the events reach the subscriber's queue without a poll",
            async || receiver.stats().delivered >= want,
        )
        .await;
    }
    let total = CHUNK * CHUNKS;
    assert_eq!(receiver.stats().delivered, total);
    assert_eq!(receiver.stats().dropped, total - 8);
    let first = sub.next().await.unwrap();
    assert!(
        matches!(first, Err(BusError::Lagged { missed }) if missed == total - 8),
        "{first:?}"
    );
    let mut rest = Vec::new();
    while let Some(item) = sub.try_recv() {
        rest.push(item.unwrap().event.version.get());
    }
    assert_eq!(rest, (total - 7..=total).collect::<Vec<_>>());
}

#[tokio::test]
async fn garbage_and_forged_messages_are_counted_and_dropped() {
    let server = NatsServer::start().await;
    let prefix = unique_name("junk");
    let publisher = node(&server, &prefix).await;
    let receiver = node(&server, &prefix).await;
    let raw = connect(&server.url()).await;
    let n = ns("inbox");
    let got = Collected::subscribe(&receiver, EventFilter::within(n.clone())).await;

    // A genuine envelope published in `other`, captured raw...
    let mut capture = raw
        .subscribe(
            publisher
                .subject_pattern(&NamespacePattern::Exact(ns("other")))
                .unwrap(),
        )
        .await
        .unwrap();
    round_trip(&raw).await;
    publisher
        .publish(&ns("other"), event("spy", 1, "Secret"))
        .await
        .unwrap();
    let genuine = tokio::time::timeout(DEADLINE, capture.next())
        .await
        .unwrap()
        .unwrap()
        .payload;

    let subject = publisher.subject_for(&n, "T");
    let mut bad_magic = genuine.to_vec();
    bad_magic[0] = b'X';
    let mut truncated = genuine.to_vec();
    truncated.truncate(genuine.len() / 2);
    let mut garbage_body = genuine[..20].to_vec();
    garbage_body.extend_from_slice(&[0xc1, 0xff, 0x00, 0x13]);
    let junk: Vec<Vec<u8>> = vec![
        b"hello, not an event".to_vec(),
        Vec::new(),
        bad_magic,
        truncated,
        garbage_body,
        // ...and replayed on `inbox`'s subject: the envelope says `other`.
        genuine.to_vec(),
    ];
    for payload in &junk {
        raw.publish(subject.clone(), payload.clone().into())
            .await
            .unwrap();
    }
    // Foreign bytes on a subject below the namespace too.
    raw.publish(format!("{prefix}._bus.inbox.deeper.T"), "nope".into())
        .await
        .unwrap();
    round_trip(&raw).await;
    publisher.publish(&n, event("ok", 1, "Fine")).await.unwrap();

    let expected_errors = junk.len() as u64 + 1;
    wait_until(DEADLINE, "the junk is counted", async || {
        let errors = receiver.stats().decode_errors;
        errors == expected_errors
    })
    .await;
    wait_until(DEADLINE, "the genuine event arrives", async || {
        got.len() >= 1
    })
    .await;
    let events = got.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(&*events[0].event.event_type, "Fine");
    assert!(got.errors().is_empty(), "{:?}", got.errors());

    // Still working afterwards.
    publisher.publish(&n, event("ok", 2, "Fine")).await.unwrap();
    wait_until(DEADLINE, "a later event arrives", async || got.len() >= 2).await;
    assert_eq!(receiver.stats().decode_errors, expected_errors);
}

/// The envelope body of earlier releases: a MessagePack map with named keys.
#[derive(serde::Serialize)]
struct PreviousWire<'a> {
    namespace: &'a aether_core::Namespace,
    event: &'a Event,
}

#[tokio::test]
async fn envelopes_of_the_previous_format_are_still_received() {
    let server = NatsServer::start().await;
    let prefix = unique_name("old");
    let publisher = node(&server, &prefix).await;
    let receiver = node(&server, &prefix).await;
    let raw = connect(&server.url()).await;
    let n = ns("acme.orders");
    let got = Collected::subscribe(&receiver, EventFilter::namespace(n.clone())).await;

    let mut sent = Vec::new();
    for (i, actor) in ["order-1", "order-1", "order-2"].into_iter().enumerate() {
        let mut event = event(
            actor,
            i as u64 + 1,
            if i == 2 { "Shipped" } else { "Placed" },
        );
        event.data = vec![0x93, 1, 2, i as u8].into();
        if i == 1 {
            event.metadata.correlation_id = Some("corr".into());
            event.metadata.custom.insert("tenant".into(), "t1".into());
        }
        // Written exactly as the previous release did.
        let mut payload = b"AEB1".to_vec();
        payload.extend_from_slice(uuid_bytes(i as u8));
        payload.extend(
            rmp_serde::to_vec_named(&PreviousWire {
                namespace: &n,
                event: &event,
            })
            .unwrap(),
        );
        raw.publish(publisher.subject_for(&n, &event.event_type), payload.into())
            .await
            .unwrap();
        sent.push(event);
    }
    // A current one after them (from another connection: once the server
    // has processed the raw ones).
    round_trip(&raw).await;
    let current = event("order-3", 1, "Placed");
    publisher.publish(&n, current.clone()).await.unwrap();
    sent.push(current);

    wait_until(DEADLINE, "every event arrives", async || {
        got.len() >= sent.len()
    })
    .await;
    let events = got.events();
    assert_eq!(events.len(), sent.len(), "{:?}", got.errors());
    for (got, want) in events.iter().zip(&sent) {
        assert_eq!(got.namespace, n);
        let e = &*got.event;
        assert_eq!(
            (
                &e.id,
                &*e.event_type,
                &e.actor_id,
                e.version,
                e.schema_version
            ),
            (
                &want.id,
                &*want.event_type,
                &want.actor_id,
                want.version,
                want.schema_version
            )
        );
        assert_eq!(e.timestamp, want.timestamp);
        assert_eq!(e.metadata, want.metadata);
        assert_eq!(e.data, want.data);
    }
    assert_eq!(receiver.stats().decode_errors, 0);
}

#[tokio::test]
async fn a_node_set_to_the_previous_format_writes_it_and_current_nodes_receive_it() {
    let server = NatsServer::builder().jetstream(false).start().await;
    let prefix = unique_name("v1-writer");
    let old_style = NatsEventBus::builder(connect(&server.url()).await)
        .prefix(&prefix)
        .wire_format(WireFormat::V1)
        .build()
        .unwrap();
    let receiver = node(&server, &prefix).await;
    let raw = connect(&server.url()).await;
    let n = ns("acme.orders");
    let got = Collected::subscribe(&receiver, EventFilter::namespace(n.clone())).await;
    let mut capture = raw
        .subscribe(
            old_style
                .subject_pattern(&NamespacePattern::Exact(n.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    round_trip(&raw).await;

    let mut sent = event("order-1", 1, "Placed");
    sent.metadata.correlation_id = Some("corr".into());
    old_style.publish(&n, sent.clone()).await.unwrap();

    // On the wire: byte for byte what the previous release wrote.
    let message = tokio::time::timeout(DEADLINE, capture.next())
        .await
        .expect("the envelope is on the subject")
        .expect("subscription open");
    let mut want = b"AEB1".to_vec();
    want.extend_from_slice(old_style.node_id().as_bytes());
    want.extend(
        rmp_serde::to_vec_named(&PreviousWire {
            namespace: &n,
            event: &sent,
        })
        .unwrap(),
    );
    assert_eq!(&message.payload[..], &want[..]);

    wait_until(DEADLINE, "the event arrives", async || got.len() >= 1).await;
    let events = got.events();
    assert_eq!(events.len(), 1, "{:?}", got.errors());
    let e = &*events[0].event;
    assert_eq!(
        (&e.id, e.version, &e.metadata),
        (&sent.id, sent.version, &sent.metadata)
    );
    assert_eq!(receiver.stats().decode_errors, 0);
}

/// A node id that is neither the publisher's nor the receiver's.
fn uuid_bytes(n: u8) -> &'static [u8] {
    const IDS: [[u8; 16]; 3] = [[0x11; 16], [0x22; 16], [0x33; 16]];
    &IDS[n as usize]
}

#[tokio::test]
async fn subscribers_keep_working_across_a_server_restart() {
    let server = NatsServer::builder().jetstream(false).start().await;
    let prefix = unique_name("restart");
    let publisher = node(&server, &prefix).await;
    let receiver = node(&server, &prefix).await;
    let n = ns("stream");
    let got = Collected::subscribe(&receiver, EventFilter::within(n.clone())).await;
    let local = Collected::subscribe(&publisher, EventFilter::namespace(n.clone())).await;

    // A stream of publishes that goes on through the restart.
    let next_version = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = {
        let (publisher, n, next_version, stop) = (
            publisher.clone(),
            n.clone(),
            Arc::clone(&next_version),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let v = next_version.fetch_add(1, Ordering::Relaxed);
                if publisher.publish(&n, event("p", v, "T")).await.is_err() {
                    errors += 1;
                }
            }
            errors
        })
    };
    let max_version = |c: &Collected| {
        c.events()
            .iter()
            .map(|e| e.event.version.get())
            .max()
            .unwrap_or(0)
    };

    wait_until(DEADLINE, "events flow before the restart", async || {
        max_version(&got) >= 20
    })
    .await;
    server.restart().await;
    let clients = [publisher.client().clone(), receiver.client().clone()];
    wait_until(DEADLINE, "both clients reconnect", async || {
        clients
            .iter()
            .all(|c| c.connection_state() == async_nats::connection::State::Connected)
    })
    .await;
    // Delivery resumes: an event published after the reconnect arrives.
    let after = next_version.load(Ordering::Relaxed);
    let started = Instant::now();
    wait_until(DEADLINE, "delivery resumes after the restart", async || {
        max_version(&got) > after + 10
    })
    .await;
    eprintln!("delivery resumed {:?} after reconnect", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    let publish_errors = publishing.await.unwrap();

    // The streams never ended or errored; order was kept; nothing duplicated.
    for (label, c) in [("remote", &got), ("local", &local)] {
        assert!(c.errors().is_empty(), "{label}: {:?}", c.errors());
        let versions: Vec<u64> = c.events().iter().map(|e| e.event.version.get()).collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{label}: out of order or duplicated"
        );
    }
    assert_eq!(
        publish_errors, 0,
        "the client buffers publishes while reconnecting"
    );
    // A subscription made after the restart works too.
    let late = Collected::subscribe(&receiver, EventFilter::namespace(ns("late"))).await;
    publisher
        .publish(&ns("late"), event("p", 1, "T"))
        .await
        .unwrap();
    wait_until(
        DEADLINE,
        "a new subscription works after the restart",
        async || late.len() == 1,
    )
    .await;
    assert_eq!(receiver.stats().decode_errors, 0);
}

#[tokio::test]
async fn events_over_max_payload_are_refused_before_sending() {
    let server = NatsServer::builder()
        .jetstream(false)
        .config("max_payload: 4096")
        .start()
        .await;
    let prefix = unique_name("big");
    let publisher = node(&server, &prefix).await;
    let receiver = node(&server, &prefix).await;
    let n = ns("n");
    let remote = Collected::subscribe(&receiver, EventFilter::namespace(n.clone())).await;
    let local = Collected::subscribe(&publisher, EventFilter::namespace(n.clone())).await;

    let big = Event::from_raw(
        ActorId::new("a").unwrap(),
        Version::new(1),
        "Big",
        vec![7u8; 5000],
    );
    match publisher.publish(&n, big).await {
        Err(BusError::TooLarge { size, max }) => {
            assert_eq!(max, 4096);
            assert!(size > 5000, "{size}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    publisher.publish(&n, event("a", 2, "Small")).await.unwrap();
    for (label, c) in [("remote", &remote), ("local", &local)] {
        wait_until(
            DEADLINE,
            format!("{label} gets the small event"),
            async || c.len() >= 1,
        )
        .await;
        let events = c.events();
        assert_eq!(events.len(), 1, "{label}");
        assert_eq!(
            &*events[0].event.event_type, "Small",
            "{label}: the big event leaked"
        );
    }
    assert_eq!(publisher.stats().published, 1);
    // The connection survived.
    assert_eq!(
        publisher.client().connection_state(),
        async_nats::connection::State::Connected
    );
}

#[tokio::test]
async fn nats_subscriptions_are_shared_per_pattern_and_removed_with_the_last_subscriber() {
    let server = NatsServer::builder().jetstream(false).start().await;
    let prefix = unique_name("subs");
    let bus = node(&server, &prefix).await;
    let other = node(&server, &prefix).await;
    bus.client().flush().await.unwrap();
    let base = server_subscriptions(&server).await;

    let a1 = bus.subscribe(EventFilter::within(ns("a"))).await.unwrap();
    let a2 = bus
        .subscribe(EventFilter::within(ns("a")).event_types(["X"]))
        .await
        .unwrap();
    let b = bus
        .subscribe(EventFilter::namespace(ns("a")))
        .await
        .unwrap();
    // One NATS subscription per pattern (the probe subscriptions that
    // confirm them are gone again).
    wait_until(DEADLINE, "two NATS subscriptions", async || {
        server_subscriptions(&server).await == base + 2
    })
    .await;

    // Both subscribers of the shared subscription get what their filters pass.
    let (a1, a2) = (Collected::spawn(a1), Collected::spawn(a2));
    other.publish(&ns("a.z"), event("q", 1, "X")).await.unwrap();
    other.publish(&ns("a.z"), event("q", 2, "Y")).await.unwrap();
    wait_until(DEADLINE, "both get their events", async || {
        let (l1, l2) = (a1.len(), a2.len());
        l1 == 2 && l2 == 1
    })
    .await;
    assert_eq!(&*a2.events()[0].event.event_type, "X");

    drop(b);
    wait_until(DEADLINE, "the Exact subscription is removed", async || {
        server_subscriptions(&server).await == base + 1
    })
    .await;
    bus.close();
    wait_until(DEADLINE, "close removes the rest", async || {
        server_subscriptions(&server).await == base
    })
    .await;
    wait_until(DEADLINE, "streams end on close", async || {
        a1.errors().iter().any(|e| e == "stream ended")
    })
    .await;
    assert!(matches!(
        bus.publish(&ns("a"), event("q", 3, "X")).await,
        Err(BusError::Closed)
    ));
}

#[tokio::test]
async fn invalid_prefixes_are_refused() {
    let server = NatsServer::builder().jetstream(false).start().await;
    let client = connect(&server.url()).await;
    for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a.", &"x".repeat(65)] {
        assert!(
            NatsEventBus::builder(client.clone())
                .prefix(bad)
                .build()
                .is_err(),
            "{bad:?} should be refused"
        );
    }
    let bus = NatsEventBus::builder(client)
        .prefix("my-app.v1")
        .build()
        .unwrap();
    assert_eq!(
        bus.subject_for(&ns("acme.orders_eu"), "Placed"),
        "my-app.v1._bus.acme.orders_5Feu.Placed"
    );
    assert_eq!(
        bus.subject_pattern(&NamespacePattern::Within(ns("acme")))
            .unwrap(),
        "my-app.v1._bus.acme.>"
    );
    assert_eq!(
        bus.subject_pattern(&NamespacePattern::Exact(ns("acme")))
            .unwrap(),
        "my-app.v1._bus.acme.*"
    );
    assert_eq!(bus.subject_for(&ns("a"), ""), "my-app.v1._bus.a._");
    assert_eq!(
        bus.subject_for(&ns("a"), "Order Placed.v2"),
        "my-app.v1._bus.a.Order_20Placed_2Ev2"
    );
}

/// A node without local subscribers still counts its publishes; once it has
/// one, its own publishes reach it again, and after it is gone the count
/// goes on.
#[tokio::test]
async fn publishes_are_counted_with_and_without_local_subscribers() {
    let server = NatsServer::builder().jetstream(false).start().await;
    let prefix = unique_name("count");
    let publisher = node(&server, &prefix).await;
    let remote = node(&server, &prefix).await;
    let n = ns("acme.orders");
    let far = Collected::subscribe(&remote, EventFilter::namespace(n.clone())).await;

    for v in 1..=3 {
        publisher.publish(&n, event("a", v, "T")).await.unwrap();
    }
    assert_eq!(publisher.stats().published, 3);
    assert_eq!(publisher.stats().delivered, 0);

    let mut local = publisher
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    publisher.publish(&n, event("a", 4, "T")).await.unwrap();
    let got = local.try_recv().expect("a local publish is queued at once");
    assert_eq!(got.unwrap().event.version.get(), 4);
    assert_eq!(publisher.stats().published, 4);
    drop(local);

    publisher.publish(&n, event("a", 5, "T")).await.unwrap();
    assert_eq!(publisher.stats().published, 5);
    assert_eq!(publisher.stats().delivered, 1);
    wait_until(DEADLINE, "the remote node gets all 5", async || {
        far.len() >= 5
    })
    .await;
    let versions: Vec<u64> = far.events().iter().map(|e| e.event.version.get()).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
}
