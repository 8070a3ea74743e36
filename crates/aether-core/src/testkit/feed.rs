//! The feed conformance suite: every rule of [`crate::feed`] as an async
//! test function over a [`StoreFactory`] whose store is an [`EventFeed`].
//! Every store with a feed runs all of them unchanged, usually through
//! [`feed_conformance_suite!`](crate::feed_conformance_suite).
//!
//! Like the storage suite, the rules need no particular runtime: writers and
//! readers are futures polled together with yield points.

use std::collections::BTreeMap;

use futures::StreamExt;
use futures::future::join_all;

use crate::error::StoreError;
use crate::event::{Event, EventId};
use crate::feed::{EventFeed, FeedFilter, FeedItem, Position};
use crate::name::ActorId;
use crate::store::EventStore;
use crate::testkit::conformance::{
    ForeignRecord, StoreFactory, foreign_event_records, fresh_namespace, test_event,
};
use crate::trust::TrustPolicy;
use crate::version::Version;

fn actor(id: &str) -> ActorId {
    ActorId::new(id).expect("valid test actor id")
}

fn batch(a: &ActorId, after: u64, len: u64, tag: &str) -> Vec<Event> {
    (1..=len)
        .map(|i| test_event(a, after + i, &format!("{tag}-{i}")))
        .collect()
}

async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Everything `read_all(from, filter)` yields, panicking on an error item.
async fn read<S: EventFeed>(
    store: &S,
    from: Position,
    filter: FeedFilter,
    rule: &str,
) -> Vec<FeedItem> {
    let mut out = Vec::new();
    let mut s = store.read_all(from, filter);
    while let Some(item) = s.next().await {
        out.push(item.unwrap_or_else(|e| panic!("{rule}: read_all from {from}: {e:?}")));
    }
    out
}

/// The first `n` items of `subscribe_all(from, filter)`.
async fn take_live<S: EventFeed>(
    store: &S,
    from: Position,
    filter: FeedFilter,
    n: usize,
    rule: &str,
) -> Vec<FeedItem> {
    let mut out = Vec::with_capacity(n);
    let mut s = store.subscribe_all(from, filter);
    while out.len() < n {
        match s.next().await {
            Some(Ok(item)) => out.push(item),
            Some(Err(e)) => panic!("{rule}: subscribe_all from {from}: {e:?}"),
            None => panic!(
                "{rule}: subscribe_all ended after {} of {n} items",
                out.len()
            ),
        }
    }
    out
}

fn ids(items: &[FeedItem]) -> Vec<(String, u64, EventId)> {
    items
        .iter()
        .map(|i| {
            (
                i.event.actor_id.as_str().to_owned(),
                i.event.version.get(),
                i.event.id,
            )
        })
        .collect()
}

fn event_ids(events: &[Event]) -> Vec<(String, u64, EventId)> {
    events
        .iter()
        .map(|e| (e.actor_id.as_str().to_owned(), e.version.get(), e.id))
        .collect()
}

#[track_caller]
fn assert_increasing(items: &[FeedItem], rule: &str) {
    for w in items.windows(2) {
        assert!(
            w[0].position < w[1].position,
            "{rule}: positions must strictly increase ({} then {})",
            w[0].position,
            w[1].position
        );
    }
    if let Some(first) = items.first() {
        assert!(
            first.position > Position::ZERO,
            "{rule}: no event is at position 0"
        );
    }
}

async fn append<S: EventStore>(store: &S, a: &ActorId, after: u64, events: &[Event], rule: &str) {
    store
        .append(a, Version::new(after), events.to_vec())
        .await
        .unwrap_or_else(|e| panic!("{rule}: append to {a}: {e:?}"));
}

/// `read_all` from zero yields every event exactly once, in commit order,
/// each batch contiguous, with strictly increasing positions; the head is
/// the last item's position; the stream ends.
pub async fn feed_commit_order<F: StoreFactory>(f: &F)
where
    F::Store: EventFeed,
{
    let rule = "feed_commit_order";
    let store = f.open(fresh_namespace("feed-order")).await;
    assert_eq!(
        store.head().await.expect("head"),
        Position::ZERO,
        "{rule}: an empty namespace's head is 0"
    );
    assert!(
        read(&store, Position::ZERO, FeedFilter::all(), rule)
            .await
            .is_empty(),
        "{rule}: an empty namespace has an empty feed"
    );
    let (a, b, c) = (actor("a"), actor("b"), actor("c.d e"));
    let mut written = Vec::new();
    for (who, after, events) in [
        (&a, 0, batch(&a, 0, 1, "a1")),
        (&b, 0, batch(&b, 0, 3, "b1")),
        (&a, 1, batch(&a, 1, 1, "a2")),
        (&c, 0, batch(&c, 0, 2, "c1")),
        (&b, 3, batch(&b, 3, 1, "b2")),
    ] {
        append(&store, who, after, &events, rule).await;
        written.extend(events);
    }
    let items = read(&store, Position::ZERO, FeedFilter::all(), rule).await;
    assert_eq!(
        ids(&items),
        event_ids(&written),
        "{rule}: the feed must hold every event once, in commit order"
    );
    assert_eq!(
        items.iter().map(|i| i.event.clone()).collect::<Vec<_>>(),
        written,
        "{rule}: events read back unchanged"
    );
    assert_increasing(&items, rule);
    assert_eq!(
        store.head().await.expect("head"),
        items.last().map(|i| i.position).unwrap_or_default(),
        "{rule}: the head is the last event's position"
    );
}

/// A feed opened at the position of any item yields exactly the items after
/// it; opened at the head it yields nothing; filters yield the matching
/// items with the same positions.
pub async fn feed_from_any_position<F: StoreFactory>(f: &F)
where
    F::Store: EventFeed,
{
    let rule = "feed_from_any_position";
    let store = f.open(fresh_namespace("feed-from")).await;
    let (x, y) = (actor("acc-x"), actor("ord-y"));
    for i in 0..4u64 {
        append(&store, &x, i, &batch(&x, i, 1, "x"), rule).await;
        let mut events = batch(&y, i * 2, 2, "y");
        for e in &mut events {
            e.event_type = if i % 2 == 0 { "Even" } else { "Odd" }.into();
        }
        append(&store, &y, i * 2, &events, rule).await;
    }
    let all = read(&store, Position::ZERO, FeedFilter::all(), rule).await;
    assert_eq!(all.len(), 12, "{rule}: every event is in the feed");
    for (i, item) in all.iter().enumerate() {
        let after = read(&store, item.position, FeedFilter::all(), rule).await;
        assert_eq!(
            after,
            all[i + 1..],
            "{rule}: a feed opened at {} must yield exactly the later events",
            item.position
        );
    }
    let by_prefix = read(
        &store,
        Position::ZERO,
        FeedFilter::all().actor_prefix("acc-"),
        rule,
    )
    .await;
    let want: Vec<FeedItem> = all
        .iter()
        .filter(|i| i.event.actor_id == x)
        .cloned()
        .collect();
    assert_eq!(by_prefix, want, "{rule}: actor-prefix filter");
    let by_type = read(
        &store,
        Position::ZERO,
        FeedFilter::all().event_types(["Odd"]),
        rule,
    )
    .await;
    let want: Vec<FeedItem> = all
        .iter()
        .filter(|i| &*i.event.event_type == "Odd")
        .cloned()
        .collect();
    assert_eq!(by_type.len(), 4, "{rule}: event-type filter");
    assert_eq!(by_type, want, "{rule}: event-type filter");
    let mid = all[5].position;
    let live = take_live(&store, mid, FeedFilter::all().event_types(["Odd"]), 2, rule).await;
    assert_eq!(
        live,
        want.iter()
            .filter(|i| i.position > mid)
            .take(2)
            .cloned()
            .collect::<Vec<_>>(),
        "{rule}: filtered subscription from the middle"
    );
}

/// Many writers append concurrently (single events and batches, two of
/// them racing on one actor) while a subscriber reads from zero: the
/// subscriber sees exactly the committed events, the same sequence a later
/// `read_all` gives, each actor's versions contiguous, each batch
/// contiguous.
pub async fn feed_concurrent_writers<F: StoreFactory>(f: &F)
where
    F::Store: EventFeed,
{
    let rule = "feed_concurrent_writers";
    let store = f.open(fresh_namespace("feed-concurrent")).await;
    const WRITERS: u64 = 6;
    const ROUNDS: u64 = 8;
    let shared = actor("shared");
    // Versions of a writer's own actor before round r: rounds alternate one
    // event and a batch of three.
    let committed_own = |r: u64| (r / 2) * 4 + (r % 2);
    let writers = (0..WRITERS).map(|w| {
        let store = &store;
        let shared = shared.clone();
        async move {
            let own = actor(&format!("w{w}"));
            let mut committed = 0u64;
            for r in 0..ROUNDS {
                // Odd rounds write a batch of three, even rounds one event.
                let len = if r % 2 == 1 { 3 } else { 1 };
                let after = committed_own(r);
                let events = batch(&own, after, len, &format!("w{w}r{r}"));
                append(store, &own, after, &events, rule).await;
                committed += len;
                yield_now().await;
                if w < 2 {
                    // Two writers race on one actor; the loser retries.
                    loop {
                        let latest = store
                            .get_latest_version(&shared)
                            .await
                            .unwrap_or_else(|e| panic!("{rule}: latest: {e:?}"));
                        let e = test_event(&shared, latest.get() + 1, &format!("s{w}r{r}-1"));
                        match store.append(&shared, latest, vec![e]).await {
                            Ok(_) => break,
                            Err(StoreError::VersionConflict { .. }) => yield_now().await,
                            Err(e) => panic!("{rule}: shared append: {e:?}"),
                        }
                    }
                    committed += 1;
                }
            }
            committed
        }
    });
    let total = (ROUNDS / 2) * 4 * WRITERS + 2 * ROUNDS;
    let subscriber = take_live(
        &store,
        Position::ZERO,
        FeedFilter::all(),
        total as usize,
        rule,
    );
    let (committed, seen) = futures::join!(join_all(writers), subscriber);
    assert_eq!(
        committed.iter().sum::<u64>(),
        total,
        "{rule}: writers' count"
    );
    let after = read(&store, Position::ZERO, FeedFilter::all(), rule).await;
    assert_eq!(
        ids(&seen),
        ids(&after),
        "{rule}: the live subscriber must see exactly what read_all finds afterwards"
    );
    assert_eq!(after.len() as u64, total, "{rule}: every committed event");
    assert_increasing(&seen, rule);
    let mut per_actor: BTreeMap<&str, u64> = BTreeMap::new();
    for item in &seen {
        let v = per_actor.entry(item.event.actor_id.as_str()).or_default();
        *v += 1;
        assert_eq!(
            item.event.version.get(),
            *v,
            "{rule}: versions of {} must be contiguous in the feed",
            item.event.actor_id
        );
    }
    // Batches (same correlation tag stem) are contiguous.
    let stems: Vec<String> = seen
        .iter()
        .map(|i| {
            let c = i.event.metadata.correlation_id.clone().unwrap_or_default();
            c.rsplit_once('-').map(|(s, _)| s.to_owned()).unwrap_or(c)
        })
        .collect();
    let mut finished = std::collections::HashSet::new();
    for (i, s) in stems.iter().enumerate() {
        if i > 0 && stems[i - 1] != *s {
            finished.insert(stems[i - 1].clone());
        }
        assert!(
            !finished.contains(s),
            "{rule}: batch {s} is interleaved with another append"
        );
    }
}

/// A subscription opened at the head sees appends made after it opened, and
/// one opened at an earlier position passes from catch-up to live without a
/// gap or a repeat.
pub async fn feed_live_sees_later_appends<F: StoreFactory>(f: &F)
where
    F::Store: EventFeed,
{
    let rule = "feed_live_sees_later_appends";
    let store = f.open(fresh_namespace("feed-live")).await;
    let a = actor("live");
    let first = batch(&a, 0, 2, "old");
    append(&store, &a, 0, &first, rule).await;
    let head = store.head().await.expect("head");
    let later = batch(&a, 2, 3, "new");
    let mut from_head = store.subscribe_all(head, FeedFilter::all());
    let mut from_zero = store.subscribe_all(Position::ZERO, FeedFilter::all());
    // Both streams are open (and have polled) before the append.
    let first_old = from_zero
        .next()
        .await
        .expect("from_zero yields")
        .expect("ok item");
    assert_eq!(first_old.event, first[0], "{rule}: catch-up first");
    let writer = async {
        yield_now().await;
        append(&store, &a, 2, &later, rule).await;
    };
    let reader = async {
        let mut got = Vec::new();
        while got.len() < later.len() {
            got.push(
                from_head
                    .next()
                    .await
                    .expect("a live stream does not end")
                    .expect("ok item"),
            );
        }
        got
    };
    let ((), live) = futures::join!(writer, reader);
    assert_eq!(
        live.iter().map(|i| i.event.clone()).collect::<Vec<_>>(),
        later,
        "{rule}: a subscription at the head sees later appends"
    );
    let mut rest = Vec::new();
    while rest.len() < 4 {
        rest.push(
            from_zero
                .next()
                .await
                .expect("a live stream does not end")
                .expect("ok item"),
        );
    }
    let want: Vec<Event> = first[1..].iter().chain(&later).cloned().collect();
    assert_eq!(
        rest.iter().map(|i| i.event.clone()).collect::<Vec<_>>(),
        want,
        "{rule}: catch-up then live without a gap or a repeat"
    );
    assert_eq!(
        rest[1..],
        live[..],
        "{rule}: both streams agree on positions"
    );
}

/// Under the default policy foreign records on actors' logs are skipped by
/// the feed exactly as by per-actor reads; under the strict policy the feed
/// yields the valid events before the first foreign record, then
/// `Corrupt`, and ends.
pub async fn feed_follows_trust_policy<F: StoreFactory>(f: &F)
where
    F::Store: EventFeed,
{
    let rule = "feed_follows_trust_policy";
    let ns = fresh_namespace("feed-trust");
    let store = f
        .open_with_policy(ns.clone(), TrustPolicy::SkipForeign)
        .await;
    let mut valid = Vec::new();
    for (i, (what, record, _)) in foreign_event_records(&actor("x")).into_iter().enumerate() {
        let a = actor(&format!("victim-{i}"));
        let record = match record {
            ForeignRecord::Forged(mut e) if e.actor_id.as_str() == "x" => {
                e.actor_id = a.clone();
                ForeignRecord::Forged(e)
            }
            other => other,
        };
        let first = batch(&a, 0, 1, "valid");
        append(&store, &a, 0, &first, rule).await;
        f.inject_foreign(&store, &a, record).await;
        let second = batch(&a, 1, 2, "after");
        append(&store, &a, 1, &second, rule).await;
        valid.extend(first);
        valid.extend(second);
        let items = read(&store, Position::ZERO, FeedFilter::all(), rule).await;
        assert_eq!(
            ids(&items),
            event_ids(&valid),
            "{rule}: {what}: the feed must hold exactly the valid events"
        );
    }
    let all = read(&store, Position::ZERO, FeedFilter::all(), rule).await;
    // From every position (also between a foreign record and the next
    // valid event) the feed yields exactly the later valid events.
    for item in &all {
        let after = read(&store, item.position, FeedFilter::all(), rule).await;
        let want: Vec<FeedItem> = all
            .iter()
            .filter(|i| i.position > item.position)
            .cloned()
            .collect();
        assert_eq!(ids(&after), ids(&want), "{rule}: from {}", item.position);
    }
    let live = take_live(&store, Position::ZERO, FeedFilter::all(), valid.len(), rule).await;
    assert_eq!(ids(&live), event_ids(&valid), "{rule}: subscribe_all too");

    let strict = f
        .open_with_policy(fresh_namespace("feed-strict"), TrustPolicy::Strict)
        .await;
    let a = actor("strict-victim");
    let first = batch(&a, 0, 2, "valid");
    append(&strict, &a, 0, &first, rule).await;
    f.inject_foreign(
        &strict,
        &a,
        ForeignRecord::Garbage(b"\xc1 not an envelope".to_vec()),
    )
    .await;
    for (how, mut s) in [
        (
            "read_all",
            strict.read_all(Position::ZERO, FeedFilter::all()),
        ),
        (
            "subscribe_all",
            strict.subscribe_all(Position::ZERO, FeedFilter::all()),
        ),
    ] {
        for e in &first {
            let item = s
                .next()
                .await
                .unwrap_or_else(|| panic!("{rule}: strict {how}: ended early"))
                .unwrap_or_else(|e| panic!("{rule}: strict {how}: {e:?}"));
            assert_eq!(&item.event, e, "{rule}: strict {how}: valid events first");
        }
        match s.next().await {
            Some(Err(StoreError::Corrupt { actor: who, .. })) => {
                assert_eq!(who, a, "{rule}: strict {how}: Corrupt names the actor");
            }
            other => panic!("{rule}: strict {how}: expected Corrupt, got {other:?}"),
        }
        assert!(
            s.next().await.is_none(),
            "{rule}: strict {how}: the stream ends after its error"
        );
    }
}

/// A namespace's feed never yields another namespace's events, nor counts
/// them in its head.
pub async fn feed_namespace_isolation<F: StoreFactory>(f: &F)
where
    F::Store: EventFeed,
{
    let rule = "feed_namespace_isolation";
    let base = fresh_namespace("feed-iso");
    let one = f.open(base.clone()).await;
    let nested = f
        .open(crate::Namespace::new(format!("{base}.sub")).expect("valid"))
        .await;
    let a = actor("same-id");
    let mine = batch(&a, 0, 2, "one");
    append(&one, &a, 0, &mine, rule).await;
    append(&nested, &a, 0, &batch(&a, 0, 3, "nested"), rule).await;
    let items = read(&one, Position::ZERO, FeedFilter::all(), rule).await;
    assert_eq!(ids(&items), event_ids(&mine), "{rule}: only its own events");
    let other = read(&nested, Position::ZERO, FeedFilter::all(), rule).await;
    assert_eq!(other.len(), 3, "{rule}: the nested namespace's own events");
}

/// The one list of feed rules: [`run_all`] and
/// [`feed_conformance_suite!`](crate::feed_conformance_suite) are both
/// generated from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __feed_conformance_rules {
    ($mode:ident $($args:tt)*) => {
        $crate::__feed_conformance_expand!($mode [$($args)*]
            feed_commit_order, feed_from_any_position, feed_concurrent_writers,
            feed_live_sees_later_appends, feed_follows_trust_policy, feed_namespace_isolation);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __feed_conformance_expand {
    (run_all [] $($rule:ident),*) => {
        /// Runs every feed rule in turn.
        pub async fn run_all<F: StoreFactory>(f: &F)
        where
            F::Store: EventFeed,
        {
            $( $rule(f).await; )*
        }
    };
    (tests [$test:meta, $factory:expr] $($rule:ident),*) => {
        $(
            #[$test]
            async fn $rule() {
                let factory = $factory;
                $crate::testkit::feed::$rule(&factory).await;
            }
        )*
    };
}

crate::__feed_conformance_rules!(run_all);

/// Expands to one test per feed conformance rule, like
/// [`conformance_suite!`](crate::conformance_suite); the factory's store
/// must implement [`EventFeed`].
///
/// ```text
/// aether_core::feed_conformance_suite!(tokio::test, MemoryFactory::default());
/// ```
#[macro_export]
macro_rules! feed_conformance_suite {
    ($test:meta, $factory:expr) => {
        $crate::__feed_conformance_rules!(tests $test, $factory);
    };
}
