//! The in-process bus: isolation, filters, overflow, unsubscribe, close, and
//! the store → bus helper.

use std::sync::Arc;
use std::time::Duration;

use aether_bus::{LocalEventBus, PublishingStore};
use aether_core::{
    ActorId, BusError, BusEvent, DynEventBus, EventBus, EventFilter, EventStore, NamespacePattern,
    StoreError, Version,
};
use aether_store_memory::InMemoryEventStore;
use futures::{FutureExt, Stream, StreamExt};

mod common;
use common::{event, ns};

/// Everything queued right now, without waiting.
fn drain<S>(sub: &mut S) -> Vec<Result<BusEvent, BusError>>
where
    S: Stream<Item = Result<BusEvent, BusError>> + Unpin,
{
    let mut out = Vec::new();
    while let Some(Some(item)) = sub.next().now_or_never() {
        out.push(item);
    }
    out
}

fn namespaces(items: &[Result<BusEvent, BusError>]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Ok(e) => e.namespace.to_string(),
            Err(e) => format!("error: {e}"),
        })
        .collect()
}

#[tokio::test]
async fn namespaces_are_isolated_including_special_characters_and_patterns() {
    let bus = LocalEventBus::new();
    let names = ["a", "b", "a.b", "a_b", "a-b", "ab", "a.b.c", "a.bc", "b.a"];
    let mut exact = Vec::new();
    for n in names {
        exact.push((
            n,
            bus.subscribe(EventFilter::namespace(ns(n))).await.unwrap(),
        ));
    }
    let mut within_a = bus.subscribe(EventFilter::within(ns("a"))).await.unwrap();
    let mut within_ab = bus.subscribe(EventFilter::within(ns("a.b"))).await.unwrap();
    let mut within_a_b = bus.subscribe(EventFilter::within(ns("a_b"))).await.unwrap();

    for n in names {
        bus.publish(&ns(n), event("x", 1, n)).await.unwrap();
    }

    for (n, sub) in &mut exact {
        let got = drain(sub);
        assert_eq!(
            namespaces(&got),
            vec![n.to_string()],
            "exact subscriber of {n}"
        );
        // The event is the one published in that namespace, not a look-alike.
        let Ok(e) = &got[0] else { unreachable!() };
        assert_eq!(&*e.event.event_type, *n);
    }
    assert_eq!(
        namespaces(&drain(&mut within_a)),
        ["a", "a.b", "a.b.c", "a.bc"]
    );
    assert_eq!(namespaces(&drain(&mut within_ab)), ["a.b", "a.b.c"]);
    assert_eq!(namespaces(&drain(&mut within_a_b)), ["a_b"]);
}

#[tokio::test]
async fn filters_narrow_by_event_type_and_actor_prefix() {
    let bus = LocalEventBus::new();
    let shop = ns("shop");
    let mut typed = bus
        .subscribe(EventFilter::namespace(shop.clone()).event_types(["Placed", "Shipped"]))
        .await
        .unwrap();
    let mut prefixed = bus
        .subscribe(EventFilter::within(shop.clone()).actor_prefix("order-"))
        .await
        .unwrap();
    bus.publish(&shop, event("order-1", 1, "Placed"))
        .await
        .unwrap();
    bus.publish(&shop, event("order-1", 2, "Paid"))
        .await
        .unwrap();
    bus.publish(&shop, event("cust-1", 1, "Shipped"))
        .await
        .unwrap();
    bus.publish(&ns("shop.eu"), event("order-9", 1, "Placed"))
        .await
        .unwrap();

    let types: Vec<_> = drain(&mut typed)
        .into_iter()
        .map(|e| e.unwrap().event.event_type.to_string())
        .collect();
    assert_eq!(types, ["Placed", "Shipped"]);
    let actors: Vec<_> = drain(&mut prefixed)
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            format!("{}/{}", e.namespace, e.event.actor_id)
        })
        .collect();
    assert_eq!(actors, ["shop/order-1", "shop/order-1", "shop.eu/order-9"]);
}

#[tokio::test]
async fn slow_subscriber_lags_while_a_fast_one_gets_everything() {
    let bus = LocalEventBus::builder().capacity(4).build();
    let room = ns("room");
    let mut slow = bus
        .subscribe(EventFilter::namespace(room.clone()))
        .await
        .unwrap();
    let mut fast = bus
        .subscribe_with_capacity(EventFilter::namespace(room.clone()), 1000)
        .unwrap();
    assert_eq!((slow.capacity(), fast.capacity()), (4, 1000));

    for v in 1..=10 {
        bus.publish(&room, event("a", v, "T")).await.unwrap();
    }
    let fast_versions: Vec<u64> = drain(&mut fast)
        .into_iter()
        .map(|e| e.unwrap().event.version.get())
        .collect();
    assert_eq!(fast_versions, (1..=10).collect::<Vec<_>>());

    // The slow one lost the 6 oldest, is told so first, then continues.
    let got = drain(&mut slow);
    assert!(
        matches!(got[0], Err(BusError::Lagged { missed: 6 })),
        "{got:?}"
    );
    let rest: Vec<u64> = got[1..]
        .iter()
        .map(|e| e.as_ref().unwrap().event.version.get())
        .collect();
    assert_eq!(rest, [7, 8, 9, 10]);

    // It recovers: the next events arrive without another lag.
    bus.publish(&room, event("a", 11, "T")).await.unwrap();
    let got = drain(&mut slow);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].as_ref().unwrap().event.version.get(), 11);

    let stats = bus.stats();
    assert_eq!(stats.published, 11);
    assert_eq!(stats.dropped, 6);
    assert_eq!(stats.delivered, 22);
}

#[tokio::test]
async fn lag_is_reported_where_the_gap_is() {
    let bus = LocalEventBus::builder().capacity(2).build();
    let n = ns("n");
    let mut sub = bus
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    for v in 1..=3 {
        bus.publish(&n, event("a", v, "T")).await.unwrap();
    }
    // 1 dropped; take one queued event, then overflow again.
    assert!(matches!(
        sub.next().await,
        Some(Err(BusError::Lagged { missed: 1 }))
    ));
    assert_eq!(sub.next().await.unwrap().unwrap().event.version.get(), 2);
    for v in 4..=6 {
        bus.publish(&n, event("a", v, "T")).await.unwrap();
    }
    let got = drain(&mut sub);
    // Queue held [3], then 4, 5, 6 arrived with capacity 2: 3 and 4 dropped.
    assert!(
        matches!(got[0], Err(BusError::Lagged { missed: 2 })),
        "{got:?}"
    );
    let rest: Vec<u64> = got[1..]
        .iter()
        .map(|e| e.as_ref().unwrap().event.version.get())
        .collect();
    assert_eq!(rest, [5, 6]);
}

/// After some events were taken, the queue holds exactly `capacity` of the
/// rest, its length counts them, each overflow drops the oldest one still
/// queued, and consecutive drops are reported as one lag.
#[test]
fn a_gap_across_taken_and_queued_events_is_one_lag() {
    let bus = LocalEventBus::builder().capacity(3).build();
    let n = ns("n");
    let mut sub = bus
        .subscribe_with_capacity(EventFilter::namespace(n.clone()), 3)
        .unwrap();
    for v in 1..=3 {
        bus.publish_now(&n, event("a", v, "T")).unwrap();
    }
    assert_eq!(sub.try_recv().unwrap().unwrap().event.version.get(), 1);
    assert_eq!(sub.len(), 2);
    bus.publish_now(&n, event("a", 4, "T")).unwrap();
    assert_eq!(sub.len(), 3);
    assert_eq!(bus.stats().dropped, 0);
    for v in 5..=7 {
        bus.publish_now(&n, event("a", v, "T")).unwrap();
        assert_eq!(sub.len(), 3);
    }
    // Queue [2, 3, 4], then 5, 6, 7: 2, 3 and 4 dropped.
    assert_eq!(bus.stats().dropped, 3);
    let mut got = Vec::new();
    while let Some(item) = sub.try_recv() {
        got.push(match item {
            Ok(e) => Ok(e.event.version.get()),
            Err(BusError::Lagged { missed }) => Err(missed),
            Err(e) => panic!("{e}"),
        });
    }
    assert_eq!(got, [Err(3), Ok(5), Ok(6), Ok(7)]);
    assert!(sub.is_empty());
}

/// A reader racing a publisher on another thread, with a queue small
/// enough to overflow all the time: every event is either received once,
/// in order, or counted in a lag reported right where it is missing, and
/// the bus's dropped count is the sum of the lags.
#[test]
fn lags_stay_exact_while_a_reader_races_the_publisher() {
    const EVENTS: u64 = 100_000;
    let bus = LocalEventBus::builder().capacity(4).build();
    let n = ns("race");
    let mut sub = bus
        .subscribe_with_capacity(EventFilter::namespace(n.clone()), 4)
        .unwrap();
    let publisher = {
        let (bus, n) = (bus.clone(), n.clone());
        std::thread::spawn(move || {
            for v in 1..=EVENTS {
                bus.publish_now(&n, event("a", v, "T")).unwrap();
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut last, mut received, mut missed_total, mut pending_gap) = (0u64, 0u64, 0u64, 0u64);
    while last < EVENTS {
        assert!(std::time::Instant::now() < deadline, "stuck at {last}");
        assert!(sub.len() <= 4, "the queue grew past its capacity");
        match sub.try_recv() {
            None => std::thread::yield_now(),
            Some(Err(BusError::Lagged { missed })) => {
                // Another lag may follow before the next event, when more
                // were dropped in between: the gap is their sum.
                assert!(missed > 0);
                pending_gap += missed;
                missed_total += missed;
            }
            Some(Ok(e)) => {
                let v = e.event.version.get();
                assert_eq!(
                    v,
                    last + 1 + pending_gap,
                    "a gap without a lag, or a wrong count"
                );
                pending_gap = 0;
                last = v;
                received += 1;
            }
            Some(Err(e)) => panic!("{e}"),
        }
    }
    publisher.join().unwrap();
    assert!(sub.try_recv().is_none());
    assert_eq!(received + missed_total, EVENTS);
    let stats = bus.stats();
    assert_eq!(stats.published, EVENTS);
    assert_eq!(stats.delivered, EVENTS);
    assert_eq!(stats.dropped, missed_total);
}

#[tokio::test]
async fn a_subscriber_that_never_reads_never_blocks_publishers_and_stays_bounded() {
    let bus = LocalEventBus::builder().capacity(8).build();
    let n = ns("n");
    let stuck = bus
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    let mut other = bus
        .subscribe_with_capacity(EventFilter::namespace(n.clone()), 200_000)
        .unwrap();
    let published = tokio::time::timeout(Duration::from_secs(20), async {
        for v in 1..=100_000 {
            bus.publish(&n, event("a", v, "T")).await.unwrap();
        }
    })
    .await;
    assert!(
        published.is_ok(),
        "publishing was blocked by a stuck subscriber"
    );
    assert_eq!(stuck.len(), 8);
    assert_eq!(other.len(), 100_000);
    assert_eq!(bus.stats().dropped, 100_000 - 8);
    assert_eq!(other.next().await.unwrap().unwrap().event.version.get(), 1);
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let bus = LocalEventBus::new();
    let n = ns("n");
    let keep = bus
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    let gone = bus.subscribe(EventFilter::within(n.clone())).await.unwrap();
    assert_eq!(bus.publish_now(&n, event("a", 1, "T")).unwrap(), 2);
    drop(gone);
    assert_eq!(bus.publish_now(&n, event("a", 2, "T")).unwrap(), 1);
    drop(keep);
    assert_eq!(bus.publish_now(&n, event("a", 3, "T")).unwrap(), 0);
}

#[tokio::test]
async fn close_and_drop_end_subscriptions_after_queued_events() {
    let bus = LocalEventBus::new();
    let n = ns("n");
    let mut sub = bus
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    bus.publish(&n, event("a", 1, "T")).await.unwrap();
    bus.close();
    assert!(bus.is_closed());
    assert!(matches!(
        bus.publish(&n, event("a", 2, "T")).await,
        Err(BusError::Closed)
    ));
    assert!(matches!(
        bus.subscribe(EventFilter::namespace(n.clone())).await,
        Err(BusError::Closed)
    ));
    assert_eq!(sub.next().await.unwrap().unwrap().event.version.get(), 1);
    assert!(sub.next().await.is_none());

    let bus = LocalEventBus::new();
    let mut sub = bus
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    let waiter = tokio::spawn(async move { sub.next().await.is_none() });
    drop(bus);
    let ended = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    assert!(
        ended.unwrap().unwrap(),
        "subscription should end when the bus is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_subscribers_are_woken_and_per_publisher_order_is_kept() {
    const PUBLISHERS: u64 = 4;
    const EACH: u64 = 2_000;
    let bus = LocalEventBus::builder().capacity(100_000).build();
    let n = ns("n");
    let mut sub = bus
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut last = vec![0u64; PUBLISHERS as usize];
        let mut count = 0;
        while count < PUBLISHERS * EACH {
            let e = sub.next().await.unwrap().unwrap();
            let p: usize = e.event.actor_id.as_str().parse().unwrap();
            assert!(
                e.event.version.get() > last[p],
                "publisher {p} out of order"
            );
            last[p] = e.event.version.get();
            count += 1;
        }
        last
    });
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        let n = n.clone();
        publishers.push(tokio::spawn(async move {
            for v in 1..=EACH {
                bus.publish(&n, event(&p.to_string(), v, "T"))
                    .await
                    .unwrap();
                if v % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let last = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, vec![EACH; PUBLISHERS as usize]);
}

#[tokio::test]
async fn the_bus_works_as_a_dyn_event_bus() {
    let bus: Arc<dyn DynEventBus> = Arc::new(LocalEventBus::new());
    let n = ns("n");
    let mut sub = bus
        .subscribe_dyn(EventFilter::pattern(NamespacePattern::Within(n.clone())))
        .await
        .unwrap();
    bus.publish_dyn(&ns("n.m"), event("a", 1, "T"))
        .await
        .unwrap();
    bus.publish_dyn(&ns("nm"), event("a", 1, "T"))
        .await
        .unwrap();
    let got = sub.next().await.unwrap().unwrap();
    assert_eq!(got.namespace.as_str(), "n.m");
    assert!(sub.next().now_or_never().is_none());
}

#[tokio::test]
async fn publishing_store_publishes_appended_events_only() {
    let bus = LocalEventBus::new();
    let shop = ns("shop");
    let store = PublishingStore::new(
        InMemoryEventStore::builder()
            .namespace(shop.clone())
            .build(),
        bus.clone(),
    );
    let mut sub = bus
        .subscribe(EventFilter::within(shop.clone()))
        .await
        .unwrap();
    let mut other = bus
        .subscribe(EventFilter::within(ns("other")))
        .await
        .unwrap();
    let cart = ActorId::new("cart-1").unwrap();

    let batch = vec![event("cart-1", 1, "Added"), event("cart-1", 2, "Added")];
    let ids: Vec<_> = batch.iter().map(|e| e.id).collect();
    assert_eq!(
        store.append(&cart, Version::ZERO, batch).await.unwrap(),
        Version::new(2)
    );
    let got = drain(&mut sub);
    let got_ids: Vec<_> = got.iter().map(|e| e.as_ref().unwrap().event.id).collect();
    assert_eq!(got_ids, ids);
    assert!(got.iter().all(|e| e.as_ref().unwrap().namespace == shop));
    assert!(drain(&mut other).is_empty());

    // A conflicting append fails and publishes nothing.
    let err = store
        .append(&cart, Version::ZERO, vec![event("cart-1", 1, "Added")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { .. }));
    assert!(drain(&mut sub).is_empty());

    // A bus failure does not fail (or undo) the append.
    bus.close();
    assert_eq!(
        store
            .append(&cart, Version::new(2), vec![event("cart-1", 3, "Added")])
            .await
            .unwrap(),
        Version::new(3)
    );
    assert_eq!(
        store.get_latest_version(&cart).await.unwrap(),
        Version::new(3)
    );
}

#[tokio::test]
async fn recv_and_try_recv_need_no_stream_trait() {
    let bus = LocalEventBus::builder().capacity(1).build();
    let n = ns("n");
    let mut sub = bus
        .subscribe(EventFilter::namespace(n.clone()))
        .await
        .unwrap();
    assert!(sub.try_recv().is_none());
    let waiter = tokio::spawn(async move {
        let first = sub.recv().await.unwrap().unwrap();
        (first, sub)
    });
    // The spawned task may or may not be waiting yet; either way it gets it.
    bus.publish(&n, event("a", 1, "T")).await.unwrap();
    let (first, mut sub) = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.event.version.get(), 1);
    bus.publish(&n, event("a", 2, "T")).await.unwrap();
    bus.publish(&n, event("a", 3, "T")).await.unwrap();
    assert!(matches!(
        sub.try_recv(),
        Some(Err(BusError::Lagged { missed: 1 }))
    ));
    assert_eq!(sub.try_recv().unwrap().unwrap().event.version.get(), 3);
    assert!(sub.try_recv().is_none());
    drop(bus);
    assert!(sub.recv().await.is_none());
}

/// Subscribers of one anchor share a lock but not a queue: each keeps its
/// own capacity and lag, and a queue freed by a dropped subscriber starts
/// empty for the next one (nothing of the old one's events shows up).
#[tokio::test]
async fn subscribers_of_one_anchor_keep_their_own_queues_across_drops() {
    let bus = LocalEventBus::builder().capacity(8).build();
    let n = ns("shared");
    let mut small = bus
        .subscribe_with_capacity(EventFilter::namespace(n.clone()), 2)
        .unwrap();
    let doomed = bus
        .subscribe_with_capacity(EventFilter::within(n.clone()), 8)
        .unwrap();
    let mut big = bus
        .subscribe_with_capacity(EventFilter::within(n.clone()), 8)
        .unwrap();
    for v in 1..=4 {
        bus.publish(&n, event("a", v, "T")).await.unwrap();
    }
    assert_eq!(doomed.len(), 4);
    drop(doomed);
    let mut fresh = bus
        .subscribe_with_capacity(EventFilter::namespace(n.clone()), 8)
        .unwrap();
    assert!(fresh.try_recv().is_none(), "a reused queue starts empty");
    bus.publish(&n, event("a", 5, "T")).await.unwrap();

    let versions = |items: Vec<Result<BusEvent, BusError>>| -> Vec<Result<u64, u64>> {
        items
            .into_iter()
            .map(|i| match i {
                Ok(e) => Ok(e.event.version.get()),
                Err(BusError::Lagged { missed }) => Err(missed),
                Err(e) => panic!("{e}"),
            })
            .collect()
    };
    assert_eq!(versions(drain(&mut small)), [Err(3), Ok(4), Ok(5)]);
    assert_eq!(
        versions(drain(&mut big)),
        [Ok(1), Ok(2), Ok(3), Ok(4), Ok(5)]
    );
    assert_eq!(versions(drain(&mut fresh)), [Ok(5)]);
}
