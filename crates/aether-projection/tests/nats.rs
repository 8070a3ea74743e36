//! Projection runners on a real `nats-server`: the JetStream feed, NATS KV
//! checkpoints. Runners aborted at random points 20 times end with the same
//! read model as one uninterrupted run (at least once with an idempotent
//! handler, and exactly once with the checkpoint kept in the read model);
//! two runners of one projection started at once: only one advances the
//! checkpoint, and with a lease the other handles nothing; lag does not
//! count skipped foreign records; a foreign record under the strict policy
//! stops the runner before it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_core::testkit::conformance::fresh_namespace;
use aether_core::{
    ActorId, Checkpoint, CheckpointError, CheckpointStore, Event, EventFeed, EventStore, FeedItem,
    Position, Projection, ProjectionError, StoreError, TrustPolicy, Version,
};
use aether_projection::{
    KvCheckpointStore, LeaseError, MemoryCheckpointStore, ProjectionRunner, RunnerError,
};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, connect, unique_name, wait_until};

const ACCOUNTS: u64 = 8;

/// A cheap random number (v4 UUIDs are random).
fn random_below(n: u64) -> u64 {
    (uuid::Uuid::new_v4().as_u128() % u128::from(n.max(1))) as u64
}

/// Appends `rounds` more events per account: deposits, every third a
/// withdrawal of 1 (batches of two every other round).
async fn write(store: &JetStreamEventStore, versions: &mut BTreeMap<u64, u64>, rounds: u64) {
    for _ in 0..rounds {
        for a in 0..ACCOUNTS {
            let actor = ActorId::new(format!("account-{a}")).unwrap();
            let v = versions.entry(a).or_default();
            let len = 1 + (*v % 2);
            let events: Vec<Event> = (1..=len)
                .map(|i| {
                    let version = *v + i;
                    if version.is_multiple_of(3) {
                        Event::new(actor.clone(), Version::new(version), "Withdrawn", &1i64)
                    } else {
                        Event::new(
                            actor.clone(),
                            Version::new(version),
                            "Deposited",
                            &(version as i64 * 10 + a as i64),
                        )
                    }
                    .unwrap()
                })
                .collect();
            store
                .append(&actor, Version::new(*v), events)
                .await
                .expect("append");
            *v += len;
        }
    }
}

fn amount(item: &FeedItem) -> i64 {
    let n: i64 = item.event.decode().expect("amount");
    if &*item.event.event_type == "Withdrawn" {
        -n
    } else {
        n
    }
}

/// Where a run "crashes": the handler that brings `handled` to `stop`
/// never returns (the task is then aborted there).
#[derive(Clone)]
struct Crash {
    handled: Arc<AtomicU64>,
    stop: Arc<AtomicU64>,
}

impl Crash {
    fn never() -> Self {
        Crash {
            handled: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    async fn count(&self) {
        let n = self.handled.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.stop.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        tokio::task::yield_now().await;
    }
}

/// Balances with, per account, the position of the last event applied: the
/// handler ignores an event it has already applied (at least once).
#[derive(Debug, Default, Clone, PartialEq)]
struct Balances(BTreeMap<String, (i64, Position)>);

struct Idempotent {
    db: Arc<Mutex<Balances>>,
    crash: Crash,
}

impl Projection for Idempotent {
    fn name(&self) -> &str {
        "balances"
    }
    async fn handle(&mut self, item: &FeedItem) -> Result<(), ProjectionError> {
        {
            let mut db = self.db.lock().unwrap();
            let row =
                db.0.entry(item.event.actor_id.as_str().to_owned())
                    .or_default();
            if item.position > row.1 {
                *row = (row.0 + amount(item), item.position);
            }
        }
        self.crash.count().await;
        Ok(())
    }
}

/// A read model that keeps its checkpoint in the same "transaction" as its
/// rows: handle stages, commit applies the staged rows and the position at
/// once (exactly once, with a handler that is not idempotent).
#[derive(Debug, Default)]
struct Db {
    balances: BTreeMap<String, i64>,
    position: Position,
    revision: u64,
}

#[derive(Clone, Default)]
struct SharedDb(Arc<Mutex<Db>>);

impl CheckpointStore for SharedDb {
    async fn load(&self, _: &str) -> Result<Checkpoint, CheckpointError> {
        let db = self.0.lock().unwrap();
        Ok(Checkpoint {
            position: db.position,
            revision: db.revision,
        })
    }
    async fn save(
        &self,
        projection: &str,
        expected: Checkpoint,
        position: Position,
    ) -> Result<Checkpoint, CheckpointError> {
        // The position was written by `commit`; the save only checks it.
        let db = self.0.lock().unwrap();
        if db.position != position || db.revision != expected.revision + 1 {
            return Err(CheckpointError::Conflict {
                projection: projection.to_owned(),
                expected: expected.revision,
            });
        }
        Ok(Checkpoint {
            position,
            revision: db.revision,
        })
    }
}

struct Transactional {
    db: SharedDb,
    staged: Vec<(String, i64)>,
    crash: Crash,
}

impl Projection for Transactional {
    fn name(&self) -> &str {
        "balances-tx"
    }
    async fn handle(&mut self, item: &FeedItem) -> Result<(), ProjectionError> {
        self.staged
            .push((item.event.actor_id.as_str().to_owned(), amount(item)));
        self.crash.count().await;
        Ok(())
    }
    async fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        let mut db = self.db.0.lock().unwrap();
        for (account, n) in self.staged.drain(..) {
            *db.balances.entry(account).or_default() += n;
        }
        db.position = position;
        db.revision += 1;
        Ok(())
    }
}

async fn open_store(server: &NatsServer, ns: &aether_core::Namespace) -> JetStreamEventStore {
    JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(ns.clone())
        .open()
        .await
        .expect("open store")
}

/// Starts `catch_up` 20 times (with more events written before each) and
/// aborts it at a random number of handled events; returns after a last,
/// complete catch-up.
async fn crash_twenty_times<C, P>(
    store: &JetStreamEventStore,
    checkpoints: C,
    crash: &Crash,
    make: impl Fn() -> P,
) where
    C: CheckpointStore + Clone + 'static,
    P: Projection + 'static,
{
    let mut versions = BTreeMap::new();
    for _ in 0..20 {
        write(store, &mut versions, 3).await;
        // Each round writes at least 24 new events, so the crash lies
        // inside the run.
        let stop = crash.handled.load(Ordering::SeqCst) + 1 + random_below(23);
        crash.stop.store(stop, Ordering::SeqCst);
        let mut projection = make();
        let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone()).batch_size(7);
        let task = tokio::spawn(async move { runner.catch_up(&mut projection).await });
        wait_until(
            Duration::from_secs(30),
            "the runner reaching its crash point",
            async || crash.handled.load(Ordering::SeqCst) >= stop,
        )
        .await;
        task.abort();
        let e = task
            .await
            .expect_err("the runner was stopped at its crash point");
        assert!(e.is_cancelled(), "{e}");
    }
    crash.stop.store(u64::MAX, Ordering::SeqCst);
    let mut projection = make();
    let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone()).batch_size(7);
    let at = runner
        .catch_up(&mut projection)
        .await
        .expect("last catch-up");
    assert_eq!(
        at,
        store.head().await.unwrap(),
        "the last run reaches the head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_runner_crashed_twenty_times_equals_one_run() {
    let server = NatsServer::start().await;
    let store = open_store(&server, &fresh_namespace("proj-crash")).await;
    let kv = KvCheckpointStore::open(connect(&server.url()).await, &unique_name("CP"), 1)
        .await
        .expect("kv");
    let db = Arc::new(Mutex::new(Balances::default()));
    let crash = Crash::never();
    crash_twenty_times(&store, kv.clone(), &crash, || Idempotent {
        db: db.clone(),
        crash: crash.clone(),
    })
    .await;
    let total = store.head().await.unwrap().get();
    assert!(
        crash.handled.load(Ordering::SeqCst) > total,
        "crashes made the runner handle some events again (at least once)"
    );
    // One uninterrupted run on a fresh read model.
    let fresh = Arc::new(Mutex::new(Balances::default()));
    let mut runner = ProjectionRunner::new(store.clone(), MemoryCheckpointStore::new());
    runner
        .catch_up(&mut Idempotent {
            db: fresh.clone(),
            crash: Crash::never(),
        })
        .await
        .expect("uninterrupted run");
    assert_eq!(*db.lock().unwrap(), *fresh.lock().unwrap());
    assert_eq!(fresh.lock().unwrap().0.len() as u64, ACCOUNTS);
    assert_eq!(
        kv.load("balances").await.unwrap().position.get(),
        total,
        "the KV checkpoint is at the head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_runner_crashed_twenty_times_equals_one_run() {
    let server = NatsServer::start().await;
    let store = open_store(&server, &fresh_namespace("proj-tx")).await;
    let db = SharedDb::default();
    let crash = Crash::never();
    crash_twenty_times(&store, db.clone(), &crash, || Transactional {
        db: db.clone(),
        staged: Vec::new(),
        crash: crash.clone(),
    })
    .await;
    let fresh = SharedDb::default();
    let mut runner = ProjectionRunner::new(store.clone(), fresh.clone());
    runner
        .catch_up(&mut Transactional {
            db: fresh.clone(),
            staged: Vec::new(),
            crash: Crash::never(),
        })
        .await
        .expect("uninterrupted run");
    let (got, want) = (db.0.lock().unwrap(), fresh.0.lock().unwrap());
    assert_eq!(got.balances, want.balances);
    assert_eq!(got.position, want.position);
    assert_eq!(want.balances.len() as u64, ACCOUNTS);
}

/// A projection whose first event waits until both runners got there (both
/// have loaded the checkpoint by then).
struct Gated {
    gate: Arc<tokio::sync::Barrier>,
    first: bool,
}

impl Projection for Gated {
    fn name(&self) -> &str {
        "contested"
    }
    async fn handle(&mut self, _: &FeedItem) -> Result<(), ProjectionError> {
        if std::mem::take(&mut self.first) {
            self.gate.wait().await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_only_one_advances_the_kv_checkpoint() {
    let server = NatsServer::start().await;
    let store = open_store(&server, &fresh_namespace("proj-two")).await;
    write(&store, &mut BTreeMap::new(), 10).await;
    let bucket = unique_name("CP");
    let gate = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let kv = KvCheckpointStore::open(connect(&server.url()).await, &bucket, 1)
            .await
            .expect("kv");
        let store = store.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            ProjectionRunner::new(store, kv)
                .batch_size(10)
                .catch_up(&mut Gated { gate, first: true })
                .await
        }));
    }
    let mut ok = 0;
    let mut fenced = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(at) => {
                ok += 1;
                assert_eq!(at, store.head().await.unwrap());
            }
            Err(e) if e.is_fenced() => fenced += 1,
            Err(e) => panic!("unexpected runner error: {e}"),
        }
    }
    assert_eq!((ok, fenced), (1, 1), "exactly one runner advances");
    // An independent raw read of the bucket.
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    let raw = js.get_key_value(&bucket).await.unwrap();
    let entry = raw.entry("contested").await.unwrap().expect("a checkpoint");
    assert_eq!(
        std::str::from_utf8(&entry.value).unwrap(),
        store.head().await.unwrap().get().to_string()
    );
}

/// Counts the events one runner handled.
struct Counted {
    handled: Arc<AtomicU64>,
}

impl Projection for Counted {
    fn name(&self) -> &str {
        "leased"
    }
    async fn handle(&mut self, _: &FeedItem) -> Result<(), ProjectionError> {
        self.handled.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(())
    }
}

/// With a lease, of two runners started at once the loser stops *before
/// handling anything*; the winner handles everything and advances the
/// checkpoint; once it gave the lease back, a third runner takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leased_runners_started_at_once_only_one_handles() {
    let server = NatsServer::start().await;
    let store = open_store(&server, &fresh_namespace("proj-lease")).await;
    write(&store, &mut BTreeMap::new(), 10).await;
    let head = store.head().await.unwrap();
    let bucket = unique_name("CP");
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let kv = KvCheckpointStore::open(connect(&server.url()).await, &bucket, 1)
            .await
            .expect("kv");
        let store = store.clone();
        let start = start.clone();
        let handled = Arc::new(AtomicU64::new(0));
        let counter = handled.clone();
        tasks.push((
            handled,
            tokio::spawn(async move {
                let mut runner = ProjectionRunner::new(store, kv.clone())
                    .batch_size(10)
                    .lease(kv, Duration::from_secs(30));
                start.wait().await;
                runner.catch_up(&mut Counted { handled: counter }).await
            }),
        ));
    }
    let (mut winners, mut losers) = (Vec::new(), Vec::new());
    for (handled, task) in tasks {
        match task.await.expect("task") {
            Ok(at) => winners.push((at, handled.load(Ordering::SeqCst))),
            Err(e) => {
                assert!(e.is_fenced(), "{e}");
                assert!(
                    matches!(e, RunnerError::Lease(LeaseError::Held { .. })),
                    "{e}"
                );
                losers.push(handled.load(Ordering::SeqCst));
            }
        }
    }
    assert_eq!(
        winners,
        [(head, head.get())],
        "one runner handled everything"
    );
    assert_eq!(losers, [0], "the other handled nothing");
    // An independent raw read of the bucket: the checkpoint is the head.
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    let raw = js.get_key_value(&bucket).await.unwrap();
    let entry = raw.entry("leased").await.unwrap().expect("a checkpoint");
    assert_eq!(
        std::str::from_utf8(&entry.value).unwrap(),
        head.get().to_string()
    );

    // The winner gave the lease back when it stopped: a new runner takes it
    // at once (well inside the 30 s time to live) and has nothing to do.
    let kv = KvCheckpointStore::open(connect(&server.url()).await, &bucket, 1)
        .await
        .expect("kv");
    let handled = Arc::new(AtomicU64::new(0));
    let at = ProjectionRunner::new(store.clone(), kv.clone())
        .lease(kv, Duration::from_secs(30))
        .catch_up(&mut Counted {
            handled: handled.clone(),
        })
        .await
        .expect("the lease was given back");
    assert_eq!((at, handled.load(Ordering::SeqCst)), (head, 0));
}

/// Lag does not count foreign records the `SkipForeign` trust policy skipped:
/// once the feed has passed them, the runner reports 0 behind, after a
/// catch-up and while running live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_does_not_count_skipped_foreign_records() {
    let server = NatsServer::start().await;
    let store = JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(fresh_namespace("proj-lag"))
        .trust_policy(TrustPolicy::SkipForeign)
        .open()
        .await
        .expect("open");
    let a = ActorId::new("account-0").unwrap();
    let deposit = |v| Event::new(a.clone(), Version::new(v), "Deposited", &5i64).unwrap();
    store
        .append(&a, Version::ZERO, vec![deposit(1), deposit(2)])
        .await
        .unwrap();
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    let garbage = async || {
        for _ in 0..3 {
            js.publish(store.event_subject(&a), "not an envelope".into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    garbage().await;
    assert_eq!(store.head().await.unwrap(), Position::new(5));

    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let db = Arc::new(Mutex::new(Balances::default()));
    let mut runner = ProjectionRunner::new(store.clone(), MemoryCheckpointStore::new())
        .flush_after(Duration::from_millis(20))
        .on_progress(move |p| sink.lock().unwrap().push(p.clone()));
    let mut projection = Idempotent {
        db: db.clone(),
        crash: Crash::never(),
    };
    let at = runner.catch_up(&mut projection).await.unwrap();
    assert_eq!(at, Position::new(2));
    let last = reports.lock().unwrap().last().cloned().expect("a report");
    assert_eq!(
        (last.position, last.head),
        (Position::new(2), Position::new(5))
    );
    assert_eq!(last.behind(), 0, "{last:?}");

    // Live: one more event, then more garbage after it.
    let live = tokio::spawn(async move { runner.run(&mut projection).await });
    store
        .append(&a, Version::new(2), vec![deposit(3)])
        .await
        .unwrap();
    garbage().await;
    let head = store.head().await.unwrap();
    assert_eq!(head, Position::new(9));
    wait_until(
        Duration::from_secs(20),
        "a report at the head, 0 behind",
        async || {
            reports.lock().unwrap().last().is_some_and(|p| {
                p.head == head && p.position == Position::new(6) && p.behind() == 0
            })
        },
    )
    .await;
    assert_eq!(db.lock().unwrap().0["account-0"].0, 15);
    live.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_record_stops_a_strict_runner_before_it() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("proj-strict");
    let store = JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(ns)
        .trust_policy(TrustPolicy::Strict)
        .open()
        .await
        .expect("open");
    let a = ActorId::new("account-0").unwrap();
    let two: Vec<Event> = (1..=2)
        .map(|v| Event::new(a.clone(), Version::new(v), "Deposited", &5i64).unwrap())
        .collect();
    store.append(&a, Version::ZERO, two).await.unwrap();
    // Garbage on the actor's subject, published by another client.
    let js = async_nats::jetstream::new(connect(&server.url()).await);
    js.publish(store.event_subject(&a), "not an envelope".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let db = Arc::new(Mutex::new(Balances::default()));
    let checkpoints = MemoryCheckpointStore::new();
    let mut runner = ProjectionRunner::new(store.clone(), checkpoints.clone());
    let err = runner
        .catch_up(&mut Idempotent {
            db: db.clone(),
            crash: Crash::never(),
        })
        .await
        .expect_err("strict: the garbage stops the runner");
    assert!(
        matches!(
            err,
            aether_projection::RunnerError::Feed(StoreError::Corrupt { .. })
        ),
        "{err}"
    );
    assert_eq!(
        db.lock().unwrap().0["account-0"].0,
        10,
        "the valid events were handled"
    );
    assert_eq!(
        checkpoints.load("balances").await.unwrap().position,
        Position::ZERO,
        "nothing was committed past the foreign record (the batch was not flushed)"
    );
}
