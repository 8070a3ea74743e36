//! The conformance suite: every rule of the storage contract as an async test
//! function that takes a [`StoreFactory`]. Every backend runs all of them
//! unchanged, usually through [`conformance_suite!`](crate::conformance_suite),
//! which expands to one `#[test]` per rule.
//!
//! The functions panic (like `assert!`) on the first broken rule, naming it.
//! They need no particular runtime; concurrency comes from many futures
//! polled together with explicit yield points, so interleavings happen on
//! every backend.
//!
//! ```text
//! // in a backend's tests/conformance.rs
//! aether_core::conformance_suite!(tokio::test, MyFactory::new().await);
//! ```

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::future::join_all;

use crate::command::{CommandId, RecentCommand};
use crate::error::{InvalidInput, StoreError};
use crate::event::{Event, EventId};
use crate::name::{ActorId, Namespace};
use crate::snapshot::ActorSnapshot;
use crate::store::{EventStore, EventStoreExt, SnapshotStore};
use crate::trust::TrustPolicy;
use crate::version::Version;

/// A record that a well-behaved writer would never store, injected under an
/// actor by [`StoreFactory::inject_foreign`] to test the [`crate::trust`] rule.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ForeignRecord {
    /// Raw bytes on the actor's log (or subject): garbage, foreign MessagePack.
    Garbage(Vec<u8>),
    /// An envelope stored as is, bypassing every write check: another
    /// actor's event, version 0, a repeated version, or (where the backend
    /// can represent it) an envelope without an event id.
    Forged(Event),
    /// A snapshot stored as is, bypassing the "not ahead of the events" check.
    SnapshotAhead(ActorSnapshot),
}

/// Opens stores of one backend, one per namespace, for the suite.
pub trait StoreFactory: Send + Sync {
    /// The store under test.
    type Store: EventStore + SnapshotStore + 'static;

    /// Opens (creating if needed) the store of `namespace` with `policy`.
    /// Stores opened for different namespaces must share the backend (same
    /// server, same process-wide memory) so isolation is really tested.
    fn open_with_policy(
        &self,
        namespace: Namespace,
        policy: TrustPolicy,
    ) -> impl Future<Output = Self::Store> + Send;

    /// Opens the store of `namespace` with the default [`TrustPolicy`].
    fn open(&self, namespace: Namespace) -> impl Future<Output = Self::Store> + Send {
        self.open_with_policy(namespace, TrustPolicy::default())
    }

    /// Stores `record` under `actor` in `store`'s namespace the way another
    /// program could (raw bytes on the actor's subject, a test hook in
    /// memory), bypassing every check of the store's own write path. It
    /// becomes the actor's newest record.
    fn inject_foreign(
        &self,
        store: &Self::Store,
        actor: &ActorId,
        record: ForeignRecord,
    ) -> impl Future<Output = ()> + Send;

    /// The largest payload, in bytes, of [`sized_event`] that the backend
    /// stores: `sized_event(.., limit)` is accepted and
    /// `sized_event(.., limit + 1)` is refused with [`StoreError::TooLarge`].
    /// Every backend has a limit and declares it exactly.
    fn max_event_size(&self) -> usize;

    /// The most events one atomic append may carry.
    fn max_batch(&self) -> usize {
        1000
    }

    /// Events written for the large-history rule (100 000 by default).
    fn large_history_len(&self) -> u64 {
        100_000
    }
}

/// The event the size rule writes: actor `big`'s event of `version`, type
/// `Big`, no metadata, a payload of `payload_len` bytes. A factory computes
/// [`StoreFactory::max_event_size`] for this shape.
///
/// # Panics
/// Never for the fixed actor id it uses.
pub fn sized_event(version: u64, payload_len: usize) -> Event {
    Event::from_raw(
        actor("big"),
        Version::new(version),
        "Big",
        vec![7u8; payload_len],
    )
}

/// A namespace no other test uses: `<base>-<random>`.
///
/// # Panics
/// If `base` is not a valid namespace.
pub fn fresh_namespace(base: &str) -> Namespace {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    Namespace::new(format!("{base}-{}", &suffix[..12])).expect("valid namespace base")
}

fn actor(id: &str) -> ActorId {
    ActorId::new(id).expect("valid test actor id")
}

/// An event with a small, distinguishable payload.
pub fn test_event(actor: &ActorId, version: u64, tag: &str) -> Event {
    Event::new(
        actor.clone(),
        Version::new(version),
        "TestEvent",
        &BTreeMap::from([("tag", tag), ("actor", actor.as_str())]),
    )
    .expect("encodable")
    .with_correlation_id(format!("corr-{tag}"))
}

fn batch(actor: &ActorId, after: u64, len: u64, tag: &str) -> Vec<Event> {
    (1..=len)
        .map(|i| test_event(actor, after + i, &format!("{tag}-{i}")))
        .collect()
}

/// Yields once to the executor so concurrent futures interleave.
async fn yield_now() {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    YieldNow(false).await;
}

#[track_caller]
fn expect_conflict<T: std::fmt::Debug>(
    rule: &str,
    result: Result<T, StoreError>,
    who: &ActorId,
    expected: u64,
    actual: u64,
) {
    match result {
        Err(StoreError::VersionConflict {
            actor,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(&actor, who, "{rule}: conflict names the wrong actor");
            assert_eq!(
                e.get(),
                expected,
                "{rule}: conflict reports the wrong expected version"
            );
            assert_eq!(
                a.get(),
                actual,
                "{rule}: conflict reports the wrong actual version"
            );
        }
        other => panic!(
            "{rule}: expected VersionConflict(expected {expected}, actual {actual}), got {other:?}"
        ),
    }
}

async fn latest_version<S: EventStore>(store: &S, a: &ActorId, rule: &str) -> Version {
    match store.get_latest_version(a).await {
        Ok(v) => v,
        Err(e) => panic!("{rule}: get_latest_version({a}) failed: {e:?}"),
    }
}

async fn versions<S: EventStore>(store: &S, a: &ActorId) -> Vec<u64> {
    store
        .get_events(a, Version::ZERO)
        .await
        .expect("get_events")
        .iter()
        .map(|e| e.version.get())
        .collect()
}

/// An actor nobody wrote has latest version 0, no events and no snapshot.
pub async fn unknown_actor_is_empty<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-unknown")).await;
    let a = actor("nobody");
    assert_eq!(
        latest_version(&store, &a, "unknown_actor_is_empty").await,
        Version::ZERO,
        "latest version of an unknown actor must be 0"
    );
    assert!(
        store
            .get_events(&a, Version::ZERO)
            .await
            .expect("unknown_actor_is_empty: get_events")
            .is_empty()
    );
    assert!(
        store
            .stream_events(&a, Version::ZERO)
            .next()
            .await
            .is_none(),
        "stream of an unknown actor must be empty"
    );
    assert!(
        store
            .get_latest_snapshot(&a)
            .await
            .expect("unknown_actor_is_empty: snapshot")
            .is_none()
    );
}

/// `save_event` stores versions 1, 2, 3 … and reads them back unchanged
/// (every envelope field, payload and metadata included).
pub async fn save_and_read_back<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-save")).await;
    let a = actor("order-1");
    let mut written = Vec::new();
    for v in 1..=3 {
        let mut e = test_event(&a, v, &format!("e{v}"));
        e.metadata.causation_id = Some(format!("cause-{v}"));
        e.metadata.custom.insert("user".into(), "ünï".into());
        assert_eq!(
            store
                .save_event(e.clone())
                .await
                .expect("save_and_read_back: save_event"),
            Version::new(v)
        );
        written.push(e);
    }
    assert_eq!(
        latest_version(&store, &a, "save_and_read_back").await,
        Version::new(3)
    );
    let read = store
        .get_events(&a, Version::ZERO)
        .await
        .expect("save_and_read_back: get_events");
    assert_eq!(read, written, "events must read back exactly as written");
    let decoded: BTreeMap<String, String> = read[1]
        .decode()
        .expect("save_and_read_back: payload decodes");
    assert_eq!(decoded["tag"], "e2");
}

/// A write whose expected version is not the latest fails with
/// `VersionConflict` naming both versions, and writes nothing.
pub async fn version_conflict<F: StoreFactory>(f: &F) {
    let rule = "version_conflict";
    let store = f.open(fresh_namespace("conf-conflict")).await;
    let a = actor("acc-1");
    store
        .save_event(test_event(&a, 1, "first"))
        .await
        .expect("version_conflict: first save");
    expect_conflict(
        rule,
        store.save_event(test_event(&a, 1, "again")).await,
        &a,
        0,
        1,
    );
    expect_conflict(
        rule,
        store
            .append(&a, Version::new(5), batch(&a, 5, 2, "ahead"))
            .await,
        &a,
        5,
        1,
    );
    expect_conflict(
        rule,
        store
            .append(&a, Version::ZERO, batch(&a, 0, 3, "stale"))
            .await,
        &a,
        0,
        1,
    );
    // A gap: version 3 when the latest is 1.
    expect_conflict(
        rule,
        store.save_event(test_event(&a, 3, "gap")).await,
        &a,
        2,
        1,
    );
    assert_eq!(
        versions(&store, &a).await,
        vec![1],
        "{rule}: a refused write must store nothing"
    );
    assert_eq!(
        latest_version(&store, &a, "version_conflict").await,
        Version::new(1)
    );
    // The store still accepts the right next version.
    store
        .save_event(test_event(&a, 2, "second"))
        .await
        .expect("version_conflict: second save");
    assert_eq!(versions(&store, &a).await, vec![1, 2]);
}

/// Malformed batches (another actor's event, non-consecutive versions,
/// version 0, a repeated id) are refused with `InvalidInput` before anything
/// is written.
pub async fn invalid_batches_rejected<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-invalid")).await;
    let a = actor("a");
    let b = actor("b");
    let mixed = vec![test_event(&a, 1, "x"), test_event(&b, 2, "y")];
    let skipping = vec![test_event(&a, 1, "x"), test_event(&a, 3, "y")];
    let dup = test_event(&a, 1, "x");
    let mut dup2 = test_event(&a, 2, "y");
    dup2.id = dup.id;
    for (name, bad) in [
        ("mixed actors", mixed),
        ("skipped version", skipping),
        ("repeated id", vec![dup, dup2]),
    ] {
        match store.append(&a, Version::ZERO, bad).await {
            Err(StoreError::InvalidInput(_)) => {}
            other => {
                panic!("invalid_batches_rejected: {name}: expected InvalidInput, got {other:?}")
            }
        }
    }
    match store.save_event(test_event(&a, 0, "zero")).await {
        Err(StoreError::InvalidInput(InvalidInput::ZeroVersion)) => {}
        other => panic!(
            "invalid_batches_rejected: version 0: expected InvalidInput::ZeroVersion, got {other:?}"
        ),
    }
    assert_eq!(
        latest_version(&store, &a, "invalid_batches_rejected").await,
        Version::ZERO,
        "nothing may be written"
    );
    assert_eq!(
        latest_version(&store, &b, "invalid_batches_rejected").await,
        Version::ZERO,
        "nothing may be written"
    );
    assert_eq!(
        store
            .append(&a, Version::ZERO, Vec::new())
            .await
            .expect("invalid_batches_rejected: empty append"),
        Version::ZERO
    );
}

/// `append` of many events stores them with consecutive versions in one step.
pub async fn append_batch<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-append")).await;
    let a = actor("cart-7");
    assert_eq!(
        store
            .append(&a, Version::ZERO, batch(&a, 0, 10, "b1"))
            .await
            .expect("append_batch: append"),
        Version::new(10)
    );
    assert_eq!(
        store
            .append(&a, Version::new(10), batch(&a, 10, 1, "b2"))
            .await
            .expect("append_batch: append"),
        Version::new(11)
    );
    let max = f.max_batch().min(500) as u64;
    assert_eq!(
        store
            .append(&a, Version::new(11), batch(&a, 11, max, "b3"))
            .await
            .expect("append_batch: append max batch"),
        Version::new(11 + max)
    );
    assert_eq!(
        versions(&store, &a).await,
        (1..=11 + max).collect::<Vec<_>>()
    );
}

/// Concurrent batches on one actor never interleave: each lands whole and
/// contiguous, or not at all.
pub async fn append_is_atomic<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-atomic")).await;
    let a = actor("atomic");
    let writers = 8;
    let per_writer = 5;
    let results = join_all((0..writers).map(|w| {
        let store = &store;
        let a = &a;
        async move {
            let mut landed = 0;
            let mut attempts = 0;
            while landed < per_writer && attempts < 500 {
                attempts += 1;
                let latest = store
                    .get_latest_version(a)
                    .await
                    .expect("append_is_atomic: latest")
                    .get();
                yield_now().await;
                let events = batch(a, latest, 4, &format!("w{w}-b{landed}"));
                match store.append(a, Version::new(latest), events).await {
                    Ok(v) => {
                        assert_eq!(
                            v.get(),
                            latest + 4,
                            "append_is_atomic: a batch reported the wrong version"
                        );
                        landed += 1;
                    }
                    Err(StoreError::VersionConflict { .. }) => yield_now().await,
                    Err(e) => panic!("append_is_atomic: unexpected error {e:?}"),
                }
            }
            landed
        }
    }))
    .await;
    let landed: u64 = results.iter().sum();
    assert!(
        landed >= writers,
        "append_is_atomic: only {landed} batches landed for {writers} writers in 500 attempts each"
    );
    let events = store
        .get_events(&a, Version::ZERO)
        .await
        .expect("append_is_atomic: get_events");
    assert_eq!(
        events.len() as u64,
        landed * 4,
        "append_is_atomic: every successful batch and nothing else is stored"
    );
    for (i, chunk) in events.chunks(4).enumerate() {
        let tags: Vec<String> = chunk
            .iter()
            .map(|e| {
                e.decode::<BTreeMap<String, String>>()
                    .expect("append_is_atomic: payload")["tag"]
                    .clone()
            })
            .collect();
        let batch_tag = tags[0]
            .rsplit_once('-')
            .map(|(b, _)| b.to_owned())
            .unwrap_or_default();
        for (j, t) in tags.iter().enumerate() {
            assert_eq!(
                t,
                &format!("{batch_tag}-{}", j + 1),
                "append_is_atomic: batch {i} is interleaved: {tags:?}"
            );
        }
        for (j, e) in chunk.iter().enumerate() {
            assert_eq!(
                e.version.get(),
                (i * 4 + j + 1) as u64,
                "append_is_atomic: versions must have no gaps"
            );
        }
    }
}

/// Many writers race for the same versions of one actor: exactly one wins
/// each version, the history has no gaps and no duplicates, and every
/// success reported to a writer is in the history.
pub async fn concurrent_writers<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-race")).await;
    let a = actor("hot");
    let target = 40u64;
    let wins = join_all((0..6).map(|w| {
        let store = &store;
        let a = &a;
        async move {
            let mut won = Vec::new();
            let mut rounds = 0;
            loop {
                rounds += 1;
                assert!(rounds < 10_000, "concurrent_writers: no progress");
                let latest = store
                    .get_latest_version(a)
                    .await
                    .expect("concurrent_writers: latest")
                    .get();
                if latest >= target {
                    return won;
                }
                yield_now().await;
                let e = test_event(a, latest + 1, &format!("w{w}-v{}", latest + 1));
                let id = e.id;
                match store.save_event(e).await {
                    Ok(v) => {
                        assert_eq!(
                            v.get(),
                            latest + 1,
                            "concurrent_writers: a write reported the wrong version"
                        );
                        won.push((v.get(), id));
                    }
                    Err(StoreError::VersionConflict { .. }) => {}
                    Err(e) => panic!("concurrent_writers: unexpected error {e:?}"),
                }
            }
        }
    }))
    .await;
    let mut claimed: Vec<(u64, EventId)> = wins.into_iter().flatten().collect();
    claimed.sort();
    let events = store
        .get_events(&a, Version::ZERO)
        .await
        .expect("concurrent_writers: get_events");
    let stored: Vec<(u64, EventId)> = events.iter().map(|e| (e.version.get(), e.id)).collect();
    assert_eq!(
        stored.len() as u64,
        target,
        "concurrent_writers: history must hold exactly the target versions"
    );
    assert_eq!(
        claimed, stored,
        "concurrent_writers: each version has exactly one winner, and it is the stored event"
    );
    let ids: HashSet<_> = events.iter().map(|e| e.id).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "concurrent_writers: duplicate event ids stored"
    );
}

/// Writing the same event (same id, same version) again succeeds without a
/// second copy, for single events and whole batches.
pub async fn idempotent_retry<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-idem")).await;
    let a = actor("pay-1");
    let e1 = test_event(&a, 1, "once");
    assert_eq!(
        store
            .save_event(e1.clone())
            .await
            .expect("idempotent_retry: save"),
        Version::new(1)
    );
    assert_eq!(
        store
            .save_event(e1.clone())
            .await
            .expect("idempotent_retry: retried save must succeed"),
        Version::new(1)
    );
    let b = batch(&a, 1, 3, "batch");
    assert_eq!(
        store
            .append(&a, Version::new(1), b.clone())
            .await
            .expect("idempotent_retry: append"),
        Version::new(4)
    );
    assert_eq!(
        store
            .append(&a, Version::new(1), b.clone())
            .await
            .expect("idempotent_retry: retried append must succeed"),
        Version::new(4)
    );
    let events = store
        .get_events(&a, Version::ZERO)
        .await
        .expect("idempotent_retry: get_events");
    assert_eq!(
        versions(&store, &a).await,
        vec![1, 2, 3, 4],
        "retries must not duplicate events"
    );
    assert_eq!(events[0].id, e1.id);
    assert_eq!(
        events[1..].iter().map(|e| e.id).collect::<Vec<_>>(),
        b.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    // A *different* event at a taken version is still a conflict.
    expect_conflict(
        "idempotent_retry",
        store.save_event(test_event(&a, 4, "other")).await,
        &a,
        3,
        4,
    );
}

/// `get_events` and `stream_events` return exactly the versions `>= from`,
/// ascending, for every `from` (0 means all; past the end means none), also
/// when the actor's writes are interleaved with another actor's.
pub async fn reads_from_any_version<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-reads")).await;
    let a = actor("r");
    let other = actor("r2");
    // Interleave the two actors' writes (2 events of `a`, then 1 of `other`,
    // ten times), so a backend that locates versions by position in a shared
    // log is exercised, not just one contiguous run.
    for round in 0..10u64 {
        store
            .append(&a, Version::new(round * 2), batch(&a, round * 2, 2, "r"))
            .await
            .expect("reads_from_any_version: append");
        store
            .append(&other, Version::new(round), batch(&other, round, 1, "o"))
            .await
            .expect("reads_from_any_version: append");
    }
    let other_tail: Vec<u64> = store
        .get_events(&other, Version::new(7))
        .await
        .expect("reads_from_any_version: get_events")
        .iter()
        .map(|e| e.version.get())
        .collect();
    assert_eq!(
        other_tail,
        vec![7, 8, 9, 10],
        "reads_from_any_version: the interleaved actor"
    );
    for from in 0..=22u64 {
        let want: Vec<u64> = (from.max(1)..=20).collect();
        let got: Vec<u64> = store
            .get_events(&a, Version::new(from))
            .await
            .expect("reads_from_any_version: get_events")
            .iter()
            .map(|e| e.version.get())
            .collect();
        assert_eq!(got, want, "reads_from_any_version: get_events from {from}");
        let streamed: Vec<u64> = store
            .stream_events(&a, Version::new(from))
            .map(|r| {
                r.expect("reads_from_any_version: stream item")
                    .version
                    .get()
            })
            .collect()
            .await;
        assert_eq!(
            streamed, want,
            "reads_from_any_version: stream_events from {from}"
        );
    }
    assert!(
        store
            .get_events(&a, Version::ZERO)
            .await
            .expect("reads_from_any_version: get")
            .iter()
            .all(|e| e.actor_id == a),
        "reads must not return another actor's events"
    );
}

/// Stores of different namespaces on one backend never see each other's
/// events or snapshots, including namespaces that differ only by `.` vs `_`
/// or by hierarchy.
pub async fn namespace_isolation<F: StoreFactory>(f: &F) {
    let base = fresh_namespace("conf-iso");
    let names = [
        base.as_str().to_owned(),
        format!("{base}.x"),
        format!("{base}_x"),
        format!("{base}-x"),
        format!("{base}.x.y"),
    ];
    let a = actor("shared-actor");
    let mut stores = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let store = f
            .open(Namespace::new(n).expect("namespace_isolation: valid namespace"))
            .await;
        let count = i as u64 + 1;
        store
            .append(&a, Version::ZERO, batch(&a, 0, count, n))
            .await
            .expect("namespace_isolation: append");
        let snap = ActorSnapshot::new(a.clone(), Version::new(count), &n.clone())
            .expect("namespace_isolation: snapshot");
        store
            .save_snapshot(snap)
            .await
            .expect("namespace_isolation: save_snapshot");
        stores.push(store);
    }
    for (i, (n, store)) in names.iter().zip(&stores).enumerate() {
        assert_eq!(store.namespace().as_str(), n);
        let events = store
            .get_events(&a, Version::ZERO)
            .await
            .expect("namespace_isolation: get_events");
        assert_eq!(
            events.len(),
            i + 1,
            "namespace_isolation: {n} sees another namespace's events"
        );
        for e in &events {
            let tag = e
                .decode::<BTreeMap<String, String>>()
                .expect("namespace_isolation: payload")["tag"]
                .clone();
            assert!(
                tag.starts_with(&format!("{n}-")),
                "namespace_isolation: {n} read {tag}"
            );
        }
        assert_eq!(
            latest_version(store, &a, "namespace_isolation").await.get(),
            i as u64 + 1
        );
        let snap = store
            .get_latest_snapshot(&a)
            .await
            .expect("namespace_isolation: snapshot")
            .expect("namespace_isolation: a snapshot");
        assert_eq!(
            &snap.decode::<String>().expect("namespace_isolation: state"),
            n,
            "namespace_isolation: snapshot leaked"
        );
    }
}

/// Actor ids that a NATS subject cannot carry as-is (`.`, `*`, `>`, spaces,
/// unicode, the longest allowed) are stored and read back, each separately;
/// ids that break the rules are refused by [`ActorId::new`].
pub async fn awkward_actor_ids<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-ids")).await;
    let long = "é".repeat(ActorId::MAX_LEN / 2);
    let ids = [
        "a.b",
        "a_b",
        "a_2Eb",
        "a-b",
        "a b",
        "a*b",
        "a>b",
        "a.>",
        "*",
        ">",
        "ünïcødé ✓",
        "A",
        "a",
        "$JS.API",
        long.as_str(),
    ];
    for (i, id) in ids.iter().enumerate() {
        let a = actor(id);
        store
            .append(&a, Version::ZERO, batch(&a, 0, i as u64 + 1, id))
            .await
            .expect("awkward_actor_ids: append awkward id");
    }
    for (i, id) in ids.iter().enumerate() {
        let a = actor(id);
        let events = store
            .get_events(&a, Version::ZERO)
            .await
            .expect("awkward_actor_ids: get_events");
        assert_eq!(
            events.len(),
            i + 1,
            "awkward_actor_ids: {id:?} mixed up with another id"
        );
        assert!(
            events.iter().all(|e| e.actor_id == a),
            "awkward_actor_ids: {id:?} read another actor's event"
        );
        assert_eq!(
            latest_version(&store, &a, "awkward_actor_ids").await.get(),
            i as u64 + 1
        );
    }
    assert!(
        ActorId::new("x".repeat(1024)).is_err(),
        "1 KiB ids are refused"
    );
    assert!(ActorId::new("line\nbreak").is_err());
    assert!(ActorId::new("").is_err());
}

/// The snapshot with the highest version is returned; an older one saved
/// later does not replace it; a snapshot ahead of the stored events is
/// refused with `SnapshotAhead`.
pub async fn snapshots<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-snap")).await;
    let a = actor("snap-1");
    assert!(
        store
            .get_latest_snapshot(&a)
            .await
            .expect("snapshots: get")
            .is_none()
    );
    store
        .append(&a, Version::ZERO, batch(&a, 0, 5, "s"))
        .await
        .expect("snapshots: append");
    store
        .save_snapshot(
            ActorSnapshot::new(a.clone(), Version::new(3), &3u32).expect("snapshots: snap"),
        )
        .await
        .expect("snapshots: save v3");
    let s5 = ActorSnapshot::new(a.clone(), Version::new(5), &5u32).expect("snapshots: snap");
    store
        .save_snapshot(s5.clone())
        .await
        .expect("snapshots: save v5");
    store
        .save_snapshot(
            ActorSnapshot::new(a.clone(), Version::new(2), &2u32).expect("snapshots: snap"),
        )
        .await
        .expect("snapshots: save older v2");
    let latest = store
        .get_latest_snapshot(&a)
        .await
        .expect("snapshots: get")
        .expect("snapshots: snapshot");
    assert_eq!(
        latest, s5,
        "snapshots: the highest version must win and read back unchanged"
    );
    match store
        .save_snapshot(
            ActorSnapshot::new(a.clone(), Version::new(9), &9u32).expect("snapshots: snap"),
        )
        .await
    {
        Err(StoreError::SnapshotAhead {
            snapshot, latest, ..
        }) => {
            assert_eq!((snapshot.get(), latest.get()), (9, 5));
        }
        other => panic!("snapshots: a snapshot ahead of the events must be refused, got {other:?}"),
    }
    let ghost = actor("never-written");
    assert!(
        matches!(
            store
                .save_snapshot(
                    ActorSnapshot::new(ghost.clone(), Version::new(1), &1u32)
                        .expect("snapshots: snap")
                )
                .await,
            Err(StoreError::SnapshotAhead { .. })
        ),
        "snapshots: a snapshot of an actor without events must be refused"
    );
    assert_eq!(
        store
            .get_latest_snapshot(&a)
            .await
            .expect("snapshots: get")
            .expect("snapshots: snapshot")
            .version,
        Version::new(5)
    );
    assert!(
        store
            .get_latest_snapshot(&ghost)
            .await
            .expect("snapshots: get")
            .is_none()
    );
}

/// An append whose versions would run past `u64::MAX` is refused with
/// [`InvalidInput::VersionOverflow`] and writes nothing.
pub async fn version_overflow_rejected<F: StoreFactory>(f: &F) {
    let rule = "version_overflow_rejected";
    let store = f.open(fresh_namespace("conf-overflow")).await;
    let a = actor("overflow");
    match store
        .append(
            &a,
            Version::new(u64::MAX),
            vec![test_event(&a, u64::MAX, "past-the-end")],
        )
        .await
    {
        Err(StoreError::InvalidInput(InvalidInput::VersionOverflow { after })) => {
            assert_eq!(
                after,
                Version::new(u64::MAX),
                "{rule}: wrong overflow point"
            );
        }
        other => panic!("{rule}: expected InvalidInput::VersionOverflow, got {other:?}"),
    }
    assert_eq!(
        latest_version(&store, &a, rule).await,
        Version::ZERO,
        "{rule}: nothing may be written"
    );
}

/// Event ids are unique per actor, not per namespace: the same id in two
/// actors is two events, both stored and read back, and a retry of either is
/// still recognised as a retry.
pub async fn event_ids_are_per_actor<F: StoreFactory>(f: &F) {
    let rule = "event_ids_are_per_actor";
    let store = f.open(fresh_namespace("conf-ids-per-actor")).await;
    let a = actor("twin-a");
    let b = actor("twin-b");
    let shared = EventId::new();
    let ea = test_event(&a, 1, "a1").with_id(shared);
    let eb = test_event(&b, 1, "b1").with_id(shared);
    for e in [&ea, &eb] {
        assert_eq!(
            store
                .save_event(e.clone())
                .await
                .unwrap_or_else(|err| panic!("{rule}: save {}: {err:?}", e.actor_id)),
            Version::FIRST,
            "{rule}: the shared id must be stored for {}",
            e.actor_id
        );
    }
    // A batch whose ids are the other actor's ids.
    let ba = batch(&a, 1, 2, "a-batch");
    let bb: Vec<Event> = batch(&b, 1, 2, "b-batch")
        .into_iter()
        .zip(&ba)
        .map(|(e, twin)| e.with_id(twin.id))
        .collect();
    store
        .append(&a, Version::FIRST, ba.clone())
        .await
        .unwrap_or_else(|e| panic!("{rule}: append a: {e:?}"));
    assert_eq!(
        store
            .append(&b, Version::FIRST, bb.clone())
            .await
            .unwrap_or_else(|e| panic!("{rule}: append b with a's ids: {e:?}")),
        Version::new(3)
    );
    // Retries are still retries.
    assert_eq!(
        store
            .save_event(eb.clone())
            .await
            .unwrap_or_else(|e| panic!("{rule}: retried save of b: {e:?}")),
        Version::FIRST
    );
    let want_a: Vec<Event> = std::iter::once(ea).chain(ba).collect();
    let want_b: Vec<Event> = std::iter::once(eb).chain(bb).collect();
    for (who, want) in [(&a, want_a), (&b, want_b)] {
        let got = store
            .get_events(who, Version::ZERO)
            .await
            .unwrap_or_else(|e| panic!("{rule}: get_events {who}: {e:?}"));
        assert_eq!(got, want, "{rule}: {who} must read back its own events");
    }
}

/// Every field of a snapshot round-trips, the state's `schema_version` and
/// the `recent_commands` window included.
pub async fn snapshot_fields_round_trip<F: StoreFactory>(f: &F) {
    let rule = "snapshot_fields_round_trip";
    let store = f.open(fresh_namespace("conf-snap-fields")).await;
    let a = actor("snap-fields");
    store
        .append(&a, Version::ZERO, batch(&a, 0, 3, "s"))
        .await
        .unwrap_or_else(|e| panic!("{rule}: append: {e:?}"));
    let window = vec![
        RecentCommand {
            id: CommandId::new(),
            first: Version::new(1),
            last: Version::new(2),
        },
        RecentCommand {
            id: CommandId::new(),
            first: Version::new(3),
            last: Version::new(3),
        },
    ];
    let snap = ActorSnapshot::new(a.clone(), Version::new(3), &"state")
        .unwrap_or_else(|e| panic!("{rule}: snapshot: {e:?}"))
        .with_schema_version(7)
        .with_recent_commands(window);
    store
        .save_snapshot(snap.clone())
        .await
        .unwrap_or_else(|e| panic!("{rule}: save: {e:?}"));
    let got = store
        .get_latest_snapshot(&a)
        .await
        .unwrap_or_else(|e| panic!("{rule}: get: {e:?}"));
    assert_eq!(
        got,
        Some(snap),
        "{rule}: the snapshot must read back unchanged"
    );
}

/// The foreign records every backend must survive, with the metric label of
/// the reason each is reported under.
pub(crate) fn foreign_event_records(
    a: &ActorId,
) -> Vec<(&'static str, ForeignRecord, &'static str)> {
    let foreign_map =
        rmp_serde::to_vec_named(&BTreeMap::from([("hello", "world")])).expect("a map encodes");
    vec![
        (
            "garbage bytes",
            ForeignRecord::Garbage(b"\xc1\xffnot an envelope".to_vec()),
            "not_envelope",
        ),
        (
            "a foreign MessagePack map",
            ForeignRecord::Garbage(foreign_map),
            "not_envelope",
        ),
        (
            "a forged version 0",
            ForeignRecord::Forged(test_event(a, 0, "forged-v0")),
            "out_of_order",
        ),
        (
            "a forged duplicate version 1",
            ForeignRecord::Forged(test_event(a, 1, "forged-dup")),
            "out_of_order",
        ),
        (
            "another actor's envelope",
            ForeignRecord::Forged(test_event(&actor("someone-else"), 2, "forged-other")),
            "wrong_actor",
        ),
    ]
}

/// The whole history of `a`, read both ways, as `(version, id)` pairs;
/// panics if the two reads disagree or either fails.
async fn history<S: EventStore>(store: &S, a: &ActorId, rule: &str) -> Vec<(u64, EventId)> {
    let read: Vec<(u64, EventId)> = store
        .get_events(a, Version::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{rule}: get_events({a}): {e:?}"))
        .iter()
        .map(|e| (e.version.get(), e.id))
        .collect();
    let streamed: Vec<(u64, EventId)> = store
        .stream_events(a, Version::ZERO)
        .map(|r| {
            let e = r.unwrap_or_else(|e| panic!("{rule}: stream_events({a}) item: {e:?}"));
            (e.version.get(), e.id)
        })
        .collect()
        .await;
    assert_eq!(
        read, streamed,
        "{rule}: get_events and stream_events disagree"
    );
    read
}

fn ids(events: &[Event]) -> Vec<(u64, EventId)> {
    events.iter().map(|e| (e.version.get(), e.id)).collect()
}

/// Under the default policy a foreign record on an actor's log (garbage, a
/// foreign map, a forged version 0 or repeated version, another actor's
/// envelope) is skipped: reads return exactly the valid history (never a
/// gap, a repeat or a backward version), the latest version is the last
/// valid one, and the actor keeps working: the next append gets version
/// last valid + 1. A snapshot ahead of the events is not returned, and a
/// valid snapshot saved afterwards is.
pub async fn foreign_records_are_skipped<F: StoreFactory>(f: &F) {
    let rule = "foreign_records_are_skipped";
    let store = f
        .open_with_policy(fresh_namespace("conf-foreign"), TrustPolicy::SkipForeign)
        .await;
    for (i, (what, record, _)) in foreign_event_records(&actor("x")).into_iter().enumerate() {
        let a = actor(&format!("victim-{i}"));
        // Re-target forged records of the placeholder actor at this victim.
        let record = match record {
            ForeignRecord::Forged(mut e) if e.actor_id.as_str() == "x" => {
                e.actor_id = a.clone();
                ForeignRecord::Forged(e)
            }
            other => other,
        };
        let first = batch(&a, 0, 1, "valid");
        store
            .append(&a, Version::ZERO, first.clone())
            .await
            .unwrap_or_else(|e| panic!("{rule}: {what}: first append: {e:?}"));
        f.inject_foreign(&store, &a, record).await;
        assert_eq!(
            history(&store, &a, rule).await,
            ids(&first),
            "{rule}: {what}: reads must return exactly the valid history"
        );
        assert_eq!(
            latest_version(&store, &a, rule).await,
            Version::FIRST,
            "{rule}: {what}: the latest version is the last valid one"
        );
        let second = batch(&a, 1, 2, "after");
        assert_eq!(
            store
                .append(&a, Version::FIRST, second.clone())
                .await
                .unwrap_or_else(|e| panic!(
                    "{rule}: {what}: the actor must keep working after it: {e:?}"
                )),
            Version::new(3),
            "{rule}: {what}"
        );
        let all: Vec<Event> = first.iter().chain(&second).cloned().collect();
        assert_eq!(
            history(&store, &a, rule).await,
            ids(&all),
            "{rule}: {what}: the history continues after the last valid version"
        );
        let tail = store
            .get_events(&a, Version::new(2))
            .await
            .unwrap_or_else(|e| panic!("{rule}: {what}: get_events from 2: {e:?}"));
        assert_eq!(ids(&tail), ids(&second), "{rule}: {what}: read from 2");
    }
    let other = actor("someone-else");
    assert_eq!(
        latest_version(&store, &other, rule).await,
        Version::ZERO,
        "{rule}: a forged envelope naming another actor is not that actor's event"
    );

    // A snapshot ahead of the events.
    let a = actor("snap-victim");
    store
        .append(&a, Version::ZERO, batch(&a, 0, 2, "s"))
        .await
        .unwrap_or_else(|e| panic!("{rule}: snapshot: append: {e:?}"));
    let ahead = ActorSnapshot::new(a.clone(), Version::new(1000), &"forged")
        .unwrap_or_else(|e| panic!("{rule}: snapshot: {e:?}"));
    f.inject_foreign(&store, &a, ForeignRecord::SnapshotAhead(ahead))
        .await;
    match store.get_latest_snapshot(&a).await {
        Ok(None) => {}
        Ok(Some(s)) => assert!(
            s.version <= Version::new(2),
            "{rule}: a snapshot ahead of the events (v{}) was returned",
            s.version
        ),
        Err(e) => panic!("{rule}: a snapshot ahead must be ignored, got {e:?}"),
    }
    let valid = ActorSnapshot::new(a.clone(), Version::new(2), &"valid")
        .unwrap_or_else(|e| panic!("{rule}: snapshot: {e:?}"));
    store
        .save_snapshot(valid.clone())
        .await
        .unwrap_or_else(|e| panic!("{rule}: a valid snapshot after a forged one: {e:?}"));
    assert_eq!(
        store
            .get_latest_snapshot(&a)
            .await
            .unwrap_or_else(|e| panic!("{rule}: get snapshot: {e:?}")),
        Some(valid),
        "{rule}: the valid snapshot saved after a forged one must be returned"
    );
}

#[track_caller]
fn expect_corrupt<T: std::fmt::Debug>(
    rule: &str,
    what: &str,
    result: Result<T, StoreError>,
    who: &ActorId,
    label: &str,
) {
    match result {
        Err(StoreError::Corrupt { actor, reason, .. }) => {
            assert_eq!(&actor, who, "{rule}: {what}: Corrupt names the wrong actor");
            assert_eq!(
                reason.label(),
                label,
                "{rule}: {what}: Corrupt gives the wrong reason ({reason})"
            );
        }
        other => panic!("{rule}: {what}: expected Corrupt({label}), got {other:?}"),
    }
}

/// Under [`TrustPolicy::Strict`] the same foreign records fail reads with
/// `Corrupt` (naming the actor and the reason), a stream yields the valid
/// events before the record, then the error as its last item, an append
/// after the record is refused with `Corrupt` and writes nothing, and a
/// snapshot ahead of the events is `Corrupt` too.
pub async fn foreign_records_are_refused_when_strict<F: StoreFactory>(f: &F) {
    let rule = "foreign_records_are_refused_when_strict";
    let ns = fresh_namespace("conf-strict");
    let lenient = f
        .open_with_policy(ns.clone(), TrustPolicy::SkipForeign)
        .await;
    let strict = f.open_with_policy(ns, TrustPolicy::Strict).await;
    for (i, (what, record, label)) in foreign_event_records(&actor("x")).into_iter().enumerate() {
        let a = actor(&format!("strict-{i}"));
        let record = match record {
            ForeignRecord::Forged(mut e) if e.actor_id.as_str() == "x" => {
                e.actor_id = a.clone();
                ForeignRecord::Forged(e)
            }
            other => other,
        };
        let first = batch(&a, 0, 1, "valid");
        strict
            .append(&a, Version::ZERO, first.clone())
            .await
            .unwrap_or_else(|e| panic!("{rule}: {what}: first append: {e:?}"));
        f.inject_foreign(&lenient, &a, record).await;
        expect_corrupt(
            rule,
            what,
            strict.get_events(&a, Version::ZERO).await,
            &a,
            label,
        );
        let mut stream = strict.stream_events(&a, Version::ZERO);
        let item = stream.next().await;
        match item {
            Some(Ok(e)) => assert_eq!(
                (e.version.get(), e.id),
                (1, first[0].id),
                "{rule}: {what}: the stream starts with the valid event"
            ),
            other => panic!("{rule}: {what}: expected the valid v1 first, got {other:?}"),
        }
        expect_corrupt(
            rule,
            what,
            stream
                .next()
                .await
                .unwrap_or_else(|| panic!("{rule}: {what}: the stream ended without an error")),
            &a,
            label,
        );
        assert!(
            stream.next().await.is_none(),
            "{rule}: {what}: the error must be the stream's last item"
        );
        expect_corrupt(
            rule,
            what,
            strict
                .append(&a, Version::FIRST, batch(&a, 1, 1, "after"))
                .await,
            &a,
            label,
        );
        assert_eq!(
            history(&lenient, &a, rule).await,
            ids(&first),
            "{rule}: {what}: a refused append writes nothing"
        );
    }
    let a = actor("strict-snap");
    strict
        .append(&a, Version::ZERO, batch(&a, 0, 2, "s"))
        .await
        .unwrap_or_else(|e| panic!("{rule}: snapshot: append: {e:?}"));
    let ahead = ActorSnapshot::new(a.clone(), Version::new(1000), &"forged")
        .unwrap_or_else(|e| panic!("{rule}: snapshot: {e:?}"));
    f.inject_foreign(&lenient, &a, ForeignRecord::SnapshotAhead(ahead))
        .await;
    expect_corrupt(
        rule,
        "a snapshot ahead of the events",
        strict.get_latest_snapshot(&a).await,
        &a,
        "snapshot_ahead",
    );
}

/// A stream ends only at the end of the history or right after an `Err`
/// item: over a history longer than any backend's read chunk with a foreign
/// record in the middle, the default policy streams every valid event and no
/// error; the strict policy streams the events before the record, then
/// `Corrupt`, then nothing.
pub async fn streams_end_only_at_the_end_or_an_error<F: StoreFactory>(f: &F) {
    let rule = "streams_end_only_at_the_end_or_an_error";
    let ns = fresh_namespace("conf-stream-end");
    let lenient = f
        .open_with_policy(ns.clone(), TrustPolicy::SkipForeign)
        .await;
    let strict = f.open_with_policy(ns, TrustPolicy::Strict).await;
    let a = actor("long-stream");
    let chunk = f.max_batch().clamp(1, 500) as u64;
    let mut latest = 0;
    let mut append_to = |target: u64| {
        let lenient = &lenient;
        let a = &a;
        let start = latest;
        latest = target;
        async move {
            let mut at = start;
            while at < target {
                let n = chunk.min(target - at);
                at = lenient
                    .append(a, Version::new(at), batch(a, at, n, "long"))
                    .await
                    .unwrap_or_else(|e| panic!("{rule}: append: {e:?}"))
                    .get();
            }
        }
    };
    append_to(1500).await;
    f.inject_foreign(
        &lenient,
        &a,
        ForeignRecord::Garbage(b"in the middle".to_vec()),
    )
    .await;
    append_to(1600).await;
    let mut expected = 1u64;
    let mut stream = lenient.stream_events(&a, Version::ZERO);
    while let Some(item) = stream.next().await {
        let e = item.unwrap_or_else(|e| panic!("{rule}: lenient stream item {expected}: {e:?}"));
        assert_eq!(e.version.get(), expected, "{rule}: lenient stream order");
        expected += 1;
    }
    assert_eq!(expected - 1, 1600, "{rule}: the lenient stream lost events");

    let mut stream = strict.stream_events(&a, Version::ZERO);
    let mut valid = 0u64;
    let error = loop {
        match stream.next().await {
            Some(Ok(e)) => {
                valid += 1;
                assert_eq!(e.version.get(), valid, "{rule}: strict stream order");
            }
            Some(Err(e)) => break e,
            None => panic!("{rule}: the strict stream ended after {valid} events without an error"),
        }
    };
    assert_eq!(
        valid, 1500,
        "{rule}: the strict stream must yield every event before the record"
    );
    expect_corrupt(
        rule,
        "strict stream",
        Err::<(), _>(error),
        &a,
        "not_envelope",
    );
    assert!(
        stream.next().await.is_none(),
        "{rule}: the error must be the stream's last item"
    );
}

/// The backend's declared limit is exact: an event ([`sized_event`]) with a
/// payload of `limit - 1` or `limit` bytes is stored, one of `limit + 1` is
/// refused with `TooLarge`, alone or inside a batch, and nothing of that
/// batch is written.
pub async fn oversized_events_rejected<F: StoreFactory>(f: &F) {
    let rule = "oversized_events_rejected";
    let limit = f.max_event_size();
    assert!(
        limit > 1,
        "{rule}: the declared limit {limit} is not a limit"
    );
    let store = f.open(fresh_namespace("conf-large")).await;
    let a = actor("big");
    match store.save_event(sized_event(1, limit + 1)).await {
        Err(StoreError::TooLarge { size, max, .. }) => {
            assert!(size > max, "{rule}: TooLarge must report size > max")
        }
        other => panic!("{rule}: a payload of limit + 1 bytes: expected TooLarge, got {other:?}"),
    }
    let mut mixed = batch(&a, 0, 2, "ok");
    mixed.push(sized_event(3, limit + 1));
    match store.append(&a, Version::ZERO, mixed).await {
        Err(StoreError::TooLarge { .. }) => {}
        other => {
            panic!("{rule}: a batch with an oversized event: expected TooLarge, got {other:?}")
        }
    }
    assert_eq!(
        latest_version(&store, &a, rule).await,
        Version::ZERO,
        "{rule}: nothing of the refused batch may be written"
    );
    assert_eq!(
        store
            .save_event(sized_event(1, limit - 1))
            .await
            .unwrap_or_else(|e| panic!("{rule}: limit - 1 bytes must be stored: {e:?}")),
        Version::new(1)
    );
    assert_eq!(
        store
            .save_event(sized_event(2, limit))
            .await
            .unwrap_or_else(|e| panic!("{rule}: exactly limit bytes must be stored: {e:?}")),
        Version::new(2)
    );
    let stored = store
        .get_events(&a, Version::ZERO)
        .await
        .unwrap_or_else(|e| panic!("{rule}: get_events: {e:?}"));
    assert_eq!(
        stored.iter().map(|e| e.data.len()).collect::<Vec<_>>(),
        vec![limit - 1, limit],
        "{rule}: the events at the limit read back whole"
    );
}

/// A long history (100 000 events by default) for one actor reads back
/// intact, through `get_events` and `stream_events`, from the start and from
/// near the end.
pub async fn large_history<F: StoreFactory>(f: &F) {
    let store = f.open(fresh_namespace("conf-long")).await;
    let a = actor("long-lived");
    let total = f.large_history_len();
    let chunk = f.max_batch().clamp(1, 1000) as u64;
    let mut latest = 0;
    while latest < total {
        let n = chunk.min(total - latest);
        let events: Vec<Event> = (1..=n)
            .map(|i| {
                Event::from_raw(
                    a.clone(),
                    Version::new(latest + i),
                    "Tick",
                    (latest + i).to_be_bytes().to_vec(),
                )
            })
            .collect();
        latest = store
            .append(&a, Version::new(latest), events)
            .await
            .expect("large_history: append chunk")
            .get();
    }
    assert_eq!(
        latest_version(&store, &a, "large_history").await.get(),
        total
    );
    let all = store
        .get_events(&a, Version::ZERO)
        .await
        .expect("large_history: get_events");
    assert_eq!(
        all.len() as u64,
        total,
        "large_history: get_events lost events"
    );
    for (i, e) in all.iter().enumerate() {
        let v = i as u64 + 1;
        assert_eq!(e.version.get(), v, "large_history: out of order at {v}");
        assert_eq!(
            &e.data[..],
            &v.to_be_bytes(),
            "large_history: payload of {v} damaged"
        );
    }
    drop(all);
    let mut expected = 1u64;
    let mut stream = store.stream_events(&a, Version::ZERO);
    while let Some(e) = stream.next().await {
        let e = e.expect("large_history: stream item");
        assert_eq!(
            e.version.get(),
            expected,
            "large_history: stream out of order"
        );
        expected += 1;
    }
    assert_eq!(expected - 1, total, "large_history: stream lost events");
    let tail = store
        .get_events(&a, Version::new(total - 9))
        .await
        .expect("large_history: tail");
    assert_eq!(
        tail.iter().map(|e| e.version.get()).collect::<Vec<_>>(),
        (total - 9..=total).collect::<Vec<_>>()
    );
}

/// The one list of rules: [`run_all`] and
/// [`conformance_suite!`](crate::conformance_suite) are both generated from
/// it, so a rule cannot be in one and missing from the other.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_rules {
    ($mode:ident $($args:tt)*) => {
        $crate::__conformance_expand!($mode [$($args)*]
            unknown_actor_is_empty, save_and_read_back, version_conflict,
            invalid_batches_rejected, version_overflow_rejected, append_batch, append_is_atomic,
            concurrent_writers, idempotent_retry, event_ids_are_per_actor,
            reads_from_any_version, namespace_isolation, awkward_actor_ids, snapshots,
            snapshot_fields_round_trip, foreign_records_are_skipped,
            foreign_records_are_refused_when_strict, streams_end_only_at_the_end_or_an_error,
            oversized_events_rejected, large_history);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    (run_all [] $($rule:ident),*) => {
        /// Runs every rule in turn (prefer
        /// [`conformance_suite!`](crate::conformance_suite), which reports
        /// each rule as its own test).
        pub async fn run_all<F: StoreFactory>(f: &F) {
            $( $rule(f).await; )*
        }
    };
    (tests [$test:meta, $factory:expr] $($rule:ident),*) => {
        $(
            #[$test]
            async fn $rule() {
                let factory = $factory;
                $crate::testkit::conformance::$rule(&factory).await;
            }
        )*
    };
}

crate::__conformance_rules!(run_all);

/// Expands to one test per conformance rule (the same list [`run_all`] runs).
///
/// The first argument is the test attribute (e.g. `tokio::test` or
/// `tokio::test(flavor = "multi_thread")`), the second an expression,
/// evaluated inside each async test, that yields a [`StoreFactory`].
///
/// ```text
/// aether_core::conformance_suite!(tokio::test, MemoryFactory::default());
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($test:meta, $factory:expr) => {
        $crate::__conformance_rules!(tests $test, $factory);
    };
}
