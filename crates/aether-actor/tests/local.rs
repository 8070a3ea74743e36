//! The actor system on the embedded default (in-memory store, single node):
//! commands, persistence identity, effectively-once, snapshots, passivation,
//! LRU, panics, full mailboxes, deadlines, conflicts and the bus.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aether_actor::{ActorSystem, ActorSystemBuilder, AskError, SystemError, persistence_id};
use aether_core::{
    ActorId, CommandId, EventBus, EventFilter, EventStore, Repository, SnapshotStore, Version,
};
use aether_store_memory::InMemoryEventStore;
use aether_testkit_nats::wait_until;
use common::{Cmd, Counter, GatedStore, Ledger, Loud, id};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

fn system(store: &Arc<InMemoryEventStore>) -> ActorSystem {
    ActorSystem::builder(store.clone())
        .register::<Counter>()
        .register::<Ledger>()
        .build()
        .expect("system")
}

#[tokio::test]
async fn commands_are_decided_on_cached_state_and_stored_under_the_kind() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = system(&store);
    let c = system.actor::<Counter>(id("a"));
    let first = c.ask(Cmd::Add(5)).await.expect("first");
    let second = c.ask(Cmd::Add(2)).await.expect("second");
    assert_eq!(first.version, Version::new(1));
    assert_eq!(second.version, Version::new(2));
    assert_eq!(second.state.total, 7);
    assert!(!second.duplicate);
    let stored = store
        .get_events(&id("counter:a"), Version::ZERO)
        .await
        .expect("read");
    assert_eq!(stored, second_and_first(&first.events, &second.events));
    assert!(
        store
            .get_events(&id("a"), Version::ZERO)
            .await
            .expect("read")
            .is_empty(),
        "nothing is stored under the bare id"
    );
    // A command that produces no event writes nothing.
    let none = c.ask(Cmd::Nothing).await.expect("nothing");
    assert_eq!((none.version, none.events.len()), (Version::new(2), 0));
    assert!(matches!(
        c.ask(Cmd::Refuse).await,
        Err(AskError::Rejected(_))
    ));
    assert_eq!(
        store.get_latest_version(&id("counter:a")).await.expect("v"),
        Version::new(2)
    );
    system.shutdown().await;
    assert_eq!(system.active_actors(), 0);
}

fn second_and_first(a: &[aether_core::Event], b: &[aether_core::Event]) -> Vec<aether_core::Event> {
    a.iter().chain(b).cloned().collect()
}

#[tokio::test]
async fn two_kinds_with_one_id_never_share_a_history() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = system(&store);
    let same = id("x");
    for n in 1..=3 {
        system
            .actor::<Counter>(same.clone())
            .ask(Cmd::Add(n))
            .await
            .expect("counter");
    }
    let ledger = system
        .actor::<Ledger>(same.clone())
        .ask(Cmd::Add(100))
        .await
        .expect("ledger");
    assert_eq!(
        ledger.version,
        Version::new(1),
        "the ledger starts its own history"
    );
    assert_eq!(ledger.state.entries, vec![100]);
    let counter_log = store
        .get_events(
            &persistence_id("counter", &same).expect("pid"),
            Version::ZERO,
        )
        .await
        .expect("read");
    let ledger_log = store
        .get_events(
            &persistence_id("ledger", &same).expect("pid"),
            Version::ZERO,
        )
        .await
        .expect("read");
    assert_eq!(counter_log.len(), 3);
    assert_eq!(ledger_log.len(), 1);
    assert!(
        counter_log
            .iter()
            .all(|e| e.actor_id.as_str() == "counter:x")
    );
    assert_eq!(ledger_log[0].actor_id.as_str(), "ledger:x");
    // An id that contains ':' stays distinct: counter `ledger:x` is stored as
    // `counter:ledger:x` (split at the first ':'), never as ledger `x`.
    let tricky = system.actor::<Counter>(id("ledger:x"));
    assert_eq!(
        tricky.ask(Cmd::Add(1)).await.expect("tricky").version,
        Version::new(1)
    );
    assert_eq!(
        store
            .get_latest_version(&id("counter:ledger:x"))
            .await
            .expect("v"),
        Version::new(1)
    );
    assert_eq!(
        store.get_latest_version(&id("ledger:x")).await.expect("v"),
        Version::new(1),
        "ledger x is untouched"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn kinds_are_validated_and_unregistered_kinds_are_typed_errors() {
    let store = Arc::new(InMemoryEventStore::new());
    let err = ActorSystem::builder(store.clone())
        .register::<Loud>()
        .build()
        .expect_err("':' in a kind");
    assert!(
        matches!(err, SystemError::InvalidKind { kind: "lo:ud", .. }),
        "{err}"
    );
    let err = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .register::<Counter>()
        .build()
        .expect_err("twice");
    assert!(
        matches!(err, SystemError::DuplicateKind("counter")),
        "{err}"
    );
    let only_counters = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .build()
        .expect("system");
    assert!(matches!(
        only_counters
            .actor::<Ledger>(id("a"))
            .ask(Cmd::Add(1))
            .await,
        Err(AskError::NotRegistered("ledger"))
    ));
    let long = id("x".repeat(ActorId::MAX_LEN));
    assert!(matches!(
        only_counters.actor::<Counter>(long).ask(Cmd::Add(1)).await,
        Err(AskError::InvalidId(_))
    ));
    assert_eq!(store.actor_count(), 0, "nothing was written");
}

#[tokio::test]
async fn a_repeated_command_id_gets_the_original_outcome_even_after_passivation() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .idle_timeout(Duration::from_millis(20))
        .build()
        .expect("system");
    let c = system.actor::<Counter>(id("once"));
    let cid = CommandId::new();
    let first = c.ask(Cmd::Add(10)).id(cid).await.expect("first");
    let again = c.ask(Cmd::Add(10)).id(cid).await.expect("again");
    assert!(again.duplicate);
    assert_eq!(again.version, first.version);
    assert_eq!(again.events, first.events);
    assert_eq!(again.state.total, 10);
    wait_until(WAIT, "the actor passivates", async || {
        system.active_actors() == 0
    })
    .await;
    let after = c
        .ask(Cmd::Add(10))
        .id(cid)
        .await
        .expect("after passivation");
    assert!(after.duplicate, "the next incarnation rebuilt the window");
    assert_eq!(after.events, first.events);
    assert_eq!(
        store
            .get_latest_version(&id("counter:once"))
            .await
            .expect("v"),
        Version::new(1),
        "applied once"
    );
    system.shutdown().await;
}

#[tokio::test]
async fn snapshots_bound_replay_and_a_new_system_continues_the_history() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .snapshot_every(4)
        .build()
        .expect("system");
    let c = system.actor::<Counter>(id("snap"));
    for n in 1..=9 {
        c.ask(Cmd::Add(n)).await.expect("ask");
    }
    system.shutdown().await;
    let snap = store
        .get_latest_snapshot(&id("counter:snap"))
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!(snap.version, Version::new(8));
    assert_eq!(
        snap.recent_commands.len(),
        8,
        "the window is in the snapshot"
    );
    let again = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .build()
        .expect("system");
    let out = again
        .actor::<Counter>(id("snap"))
        .ask(Cmd::Add(100))
        .await
        .expect("ask");
    assert_eq!(
        (out.version, out.state.total, out.state.count),
        (Version::new(10), 145, 10)
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_arriving_while_actors_passivate_are_never_lost() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .idle_timeout(Duration::from_millis(1))
        .mailbox_capacity(4)
        .build()
        .expect("system");
    const ACTORS: u64 = 8;
    const ROUNDS: u64 = 30;
    const PER_ROUND: u64 = 10;
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for a in 0..ACTORS {
            for k in 0..PER_ROUND {
                let r = system.actor::<Counter>(id(format!("burst-{a}")));
                tasks.push(tokio::spawn(async move {
                    r.ask(Cmd::Add(round * 1000 + k)).await
                }));
            }
        }
        for t in tasks {
            t.await.expect("task").expect("every ask succeeds");
        }
        if round % 10 == 0 {
            wait_until(WAIT, "every actor passivates", async || {
                system.active_actors() == 0
            })
            .await;
        }
    }
    let per_actor: u64 = (0..ROUNDS)
        .map(|r| (0..PER_ROUND).map(|k| r * 1000 + k).sum::<u64>())
        .sum();
    for a in 0..ACTORS {
        let out = system
            .actor::<Counter>(id(format!("burst-{a}")))
            .ask(Cmd::Nothing)
            .await
            .expect("read");
        assert_eq!(out.version, Version::new(ROUNDS * PER_ROUND));
        assert_eq!(
            (out.state.total, out.state.count),
            (per_actor, ROUNDS * PER_ROUND)
        );
    }
    system.shutdown().await;
}

#[tokio::test]
async fn the_least_recently_used_actor_passivates_beyond_the_maximum() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .max_active_actors(2)
        .build()
        .expect("system");
    for round in 1..=3u64 {
        for a in ["a", "b", "c", "d"] {
            let out = system
                .actor::<Counter>(id(a))
                .ask(Cmd::Add(round))
                .await
                .expect("ask");
            assert_eq!(out.version, Version::new(round), "{a} keeps its history");
            assert!(
                system.active_actors() <= 2,
                "{} active",
                system.active_actors()
            );
        }
    }
    let out = system
        .actor::<Counter>(id("a"))
        .ask(Cmd::Nothing)
        .await
        .expect("a");
    assert_eq!(out.state.total, 6);
    system.shutdown().await;
}

#[tokio::test]
async fn eviction_takes_the_actor_used_least_recently_not_the_oldest_activation() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .max_active_actors(3)
        .build()
        .expect("system");
    let r = |a: &str| system.actor::<Counter>(id(a));
    for a in ["a", "b", "c", "a", "a", "c"] {
        r(a).ask(Cmd::Add(1)).await.expect("ask");
    }
    // b was used least recently: activating d evicts it, not a.
    r("d").ask(Cmd::Add(1)).await.expect("d");
    let active: Vec<bool> = ["a", "b", "c", "d"]
        .iter()
        .map(|a| r(a).is_active())
        .collect();
    assert_eq!(active, vec![true, false, true, true]);
    // Then a (c and d were used since).
    r("c").ask(Cmd::Nothing).await.expect("c");
    r("d").ask(Cmd::Nothing).await.expect("d");
    r("e").ask(Cmd::Add(1)).await.expect("e");
    let active: Vec<bool> = ["a", "c", "d", "e"]
        .iter()
        .map(|a| r(a).is_active())
        .collect();
    assert_eq!(active, vec![false, true, true, true]);
    // Many actors through a small table: every history intact, the table
    // never past its maximum.
    for round in 1..=2u64 {
        for n in 0..300 {
            let out = r(&format!("m{n}")).ask(Cmd::Add(1)).await.expect("ask");
            assert_eq!(out.version, Version::new(round));
            assert!(system.active_actors() <= 3);
        }
    }
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_user_code_stops_the_incarnation_not_the_node() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = system(&store);
    let c = system.actor::<Counter>(id("p"));
    let other = system.actor::<Counter>(id("q"));
    c.ask(Cmd::Add(3)).await.expect("before");
    assert!(matches!(
        c.ask(Cmd::Panic).await,
        Err(AskError::ActorPanicked)
    ));
    other.ask(Cmd::Add(1)).await.expect("other actors go on");
    let after = c.ask(Cmd::Add(4)).await.expect("a new incarnation");
    assert_eq!((after.version, after.state.total), (Version::new(2), 7));
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_is_busy_and_a_busy_command_is_never_run() {
    let (inner, store, system) = gated_counter_system(|b| b.mailbox_capacity(1));
    let c = system.actor::<Counter>(id("slow"));
    store.close();
    let first = tokio::spawn({
        let c = c.clone();
        async move { c.ask(Cmd::Add(1)).await }
    });
    wait_until(WAIT, "the first command reaches the store", async || {
        store.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = tokio::spawn({
        let c = c.clone();
        async move { c.ask(Cmd::Add(2)).await }
    });
    wait_until(WAIT, "the second command is queued", async || {
        c.queued() == 1
    })
    .await;
    assert!(matches!(
        c.ask(Cmd::Add(1000)).no_wait().await,
        Err(AskError::Busy)
    ));
    assert!(matches!(
        c.ask(Cmd::Add(1000))
            .within(Duration::from_millis(30))
            .await,
        Err(AskError::Busy)
    ));
    store.open();
    assert_eq!(
        first.await.expect("task").expect("first").version,
        Version::new(1)
    );
    assert_eq!(
        second.await.expect("task").expect("second").version,
        Version::new(2)
    );
    assert_eq!(
        stored_amounts(&inner, "counter:slow").await,
        vec![1, 2],
        "the busy commands were never run"
    );
    system.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_deadline_passed_in_the_mailbox_is_not_run() {
    let (_, store, system) = gated_counter_system(|b| b);
    let c = system.actor::<Counter>(id("late"));
    store.close();
    let first = tokio::spawn({
        let c = c.clone();
        async move { c.ask(Cmd::Add(1)).await }
    });
    wait_until(WAIT, "the first command reaches the store", async || {
        store.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let late = c.ask(Cmd::Add(50)).within(Duration::from_millis(30)).await;
    assert!(matches!(late, Err(AskError::Timeout)), "{late:?}");
    store.open();
    first.await.expect("task").expect("first");
    let next = c.ask(Cmd::Add(2)).await.expect("next");
    assert_eq!((next.version, next.state.total), (Version::new(2), 3));
    system.shutdown().await;
}

#[tokio::test]
async fn a_conflict_with_another_writer_reloads_and_decides_again() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = system(&store);
    let c = system.actor::<Counter>(id("shared"));
    c.ask(Cmd::Add(1)).await.expect("first");
    // Another writer (a stale owner elsewhere) appends behind the actor's back.
    let other = Repository::new(store.clone());
    other
        .execute::<Counter>(&id("counter:shared"), Cmd::Add(10))
        .await
        .expect("other writer");
    let out = c.ask(Cmd::Add(100)).await.expect("after a conflict");
    assert_eq!(out.retries, 1);
    assert_eq!((out.version, out.state.total), (Version::new(3), 111));
    system.shutdown().await;
}

#[tokio::test]
async fn appended_events_are_published_and_a_failing_bus_fails_nothing() {
    let store = Arc::new(InMemoryEventStore::new());
    let bus = Arc::new(aether_bus::LocalEventBus::new());
    let mut sub = bus
        .subscribe(EventFilter::namespace(store.namespace().clone()))
        .await
        .expect("subscribe");
    let system = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .bus(bus.clone())
        .build()
        .expect("system");
    let out = system
        .actor::<Counter>(id("pub"))
        .ask(Cmd::Add(7))
        .await
        .expect("ask");
    let seen = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("published")
        .expect("open")
        .expect("event");
    assert_eq!(*seen.event, out.events[0]);
    system.shutdown().await;

    let failing = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .bus(Arc::new(common::FailingBus))
        .build()
        .expect("system");
    let out = failing
        .actor::<Counter>(id("pub"))
        .ask(Cmd::Add(1))
        .await
        .expect("a bus failure does not fail the command");
    assert_eq!(out.version, Version::new(2));
    failing.shutdown().await;
}

#[tokio::test]
async fn after_shutdown_asks_are_unavailable() {
    let store = Arc::new(InMemoryEventStore::new());
    let system = system(&store);
    let c = system.actor::<Counter>(id("s"));
    c.ask(Cmd::Add(1)).await.expect("ask");
    system.shutdown().await;
    assert_eq!(system.active_actors(), 0);
    assert!(matches!(
        c.ask(Cmd::Add(1)).await,
        Err(AskError::Unavailable(_))
    ));
    assert_eq!(
        store.get_latest_version(&id("counter:s")).await.expect("v"),
        Version::new(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_in_an_evicted_actor_go_to_its_next_incarnation() {
    let (inner, store, system) = gated_counter_system(|b| b.max_active_actors(1));
    let a = system.actor::<Counter>(id("a"));
    let b = system.actor::<Counter>(id("b"));
    store.close();
    let spawn_ask = |r: &aether_actor::ActorRef<Counter>, n: u64| {
        let r = r.clone();
        tokio::spawn(async move { r.ask(Cmd::Add(n)).await })
    };
    let a1 = spawn_ask(&a, 1);
    wait_until(WAIT, "a's first command reaches the store", async || {
        store.entered.load(Ordering::SeqCst) == 1
    })
    .await;
    let a2 = spawn_ask(&a, 2);
    let a3 = spawn_ask(&a, 4);
    wait_until(WAIT, "two commands wait in a's mailbox", async || {
        a.queued() == 2
    })
    .await;
    // Activating b evicts a while a is busy and has a full queue.
    let b1 = spawn_ask(&b, 8);
    wait_until(WAIT, "b's command reaches the store", async || {
        store.entered.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(a.queued(), 0, "a left the table when it was evicted");
    store.open();
    let versions: Vec<u64> = [a1, a2, a3]
        .into_iter()
        .map(|t| async {
            t.await
                .expect("task")
                .expect("a's commands succeed")
                .version
                .get()
        })
        .collect::<futures::stream::FuturesOrdered<_>>()
        .collect()
        .await;
    let mut sorted = versions.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![1, 2, 3]);
    assert_eq!(b1.await.expect("task").expect("b").version, Version::new(1));
    let a_log = inner
        .get_events(&id("counter:a"), Version::ZERO)
        .await
        .expect("read");
    assert_eq!(a_log.len(), 3, "nothing lost, nothing doubled");
    let out = a.ask(Cmd::Nothing).await.expect("a");
    assert_eq!(out.state.total, 7);
    system.shutdown().await;
}

/// A shard moved away before the system's placement follower first ran (on
/// a current-thread runtime it runs only when the test yields) still
/// passivates its actors: the follower reads placements after subscribing
/// to changes, so a change made before it started is not missed.
#[tokio::test(flavor = "current_thread")]
async fn a_shard_moved_before_the_placement_follower_first_runs_still_passivates() {
    use aether_actor::Placement;
    use aether_actor::ShardId;

    let store = Arc::new(InMemoryEventStore::new());
    let dir = solo_directory(Placement::Local);
    let system = ActorSystem::builder(store)
        .register::<Counter>()
        .directory(dir.clone())
        .build()
        .expect("system");
    let out = system
        .actor::<Counter>(id("early"))
        .ask(Cmd::Add(1))
        .await
        .expect("ran in place");
    assert_eq!(out.version, Version::new(1));
    assert_eq!(system.active_actors(), 1);
    dir.assign(ShardId::new(0), Placement::Moving);
    wait_until(WAIT, "the moved actor passivates", async || {
        system.active_actors() == 0
    })
    .await;
    system.shutdown().await;
}

/// Commands for a shard that is moving wait in a bounded buffer until the
/// directory settles; beyond its capacity they get `Busy` at once, never
/// queued or run.
#[tokio::test]
async fn commands_for_a_moving_shard_wait_in_a_bounded_buffer() {
    use aether_actor::Placement;
    use aether_actor::ShardId;

    let store = Arc::new(InMemoryEventStore::new());
    let dir = solo_directory(Placement::Moving);
    let system = ActorSystem::builder(store.clone())
        .register::<Counter>()
        .directory(dir.clone())
        .moving_buffer(2)
        .ask_deadline(Duration::from_secs(20))
        .build()
        .expect("system");
    let c = system.actor::<Counter>(id("moving"));
    let waiters: Vec<_> = (1..=2)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move { c.ask(Cmd::Add(n)).await })
        })
        .collect();
    wait_until(WAIT, "two commands wait for the shard", async || {
        system.waiting_for_placement() == 2
    })
    .await;
    // The buffer is full: the third is turned away at once, unrun.
    let started = std::time::Instant::now();
    assert!(matches!(c.ask(Cmd::Add(100)).await, Err(AskError::Busy)));
    assert!(started.elapsed() < Duration::from_secs(5), "Busy at once");
    assert_eq!(system.waiting_for_placement(), 2);
    assert_eq!(system.active_actors(), 0, "nothing ran while moving");
    // The shard settles here: the two waiting commands run.
    dir.assign(ShardId::new(0), Placement::Local);
    let mut versions = Vec::new();
    for w in waiters {
        versions.push(
            w.await
                .expect("task")
                .expect("ran once placed")
                .version
                .get(),
        );
    }
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2]);
    assert_eq!(system.waiting_for_placement(), 0);
    let stored = store
        .get_events(
            &persistence_id("counter", &id("moving")).expect("id"),
            Version::ZERO,
        )
        .await
        .expect("read");
    assert_eq!(stored.len(), 2, "the Busy command never ran");
    // A waiter whose deadline passes while the shard moves gets
    // `Unavailable` (never sent) and leaves the buffer.
    dir.assign(ShardId::new(0), Placement::Moving);
    let late = c.ask(Cmd::Add(1)).within(Duration::from_millis(50)).await;
    assert!(matches!(late, Err(AskError::Unavailable(_))), "{late:?}");
    assert_eq!(system.waiting_for_placement(), 0);
    system.shutdown().await;
}

/// An idle actor runs a command in its caller's task; a command that has to
/// wait for the store goes on by itself when its caller stops waiting, and
/// the commands behind it run after it, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_caller_gives_up_still_finishes_before_the_next() {
    let (inner, store, system) = gated_counter_system(|b| b);
    let c = system.actor::<Counter>(id("gives-up"));
    c.ask(Cmd::Add(1)).await.expect("activate");
    store.close();
    // The caller stops waiting while the command waits for the store.
    let dropped = tokio::time::timeout(Duration::from_millis(30), c.ask(Cmd::Add(2))).await;
    assert!(dropped.is_err(), "the store is closed: no answer yet");
    assert_eq!(store.entered.load(Ordering::SeqCst), 2);
    // The next command waits behind it in the mailbox.
    let next = tokio::spawn({
        let c = c.clone();
        async move { c.ask(Cmd::Add(4)).await }
    });
    wait_until(WAIT, "the next command is queued", async || c.queued() == 1).await;
    store.open();
    let next = next.await.expect("task").expect("next");
    assert_eq!(
        (next.version, next.state.total, next.retries),
        (Version::new(3), 7, 0),
        "the abandoned command finished first, on the cached state"
    );
    assert_eq!(
        stored_amounts(&inner, "counter:gives-up").await,
        vec![1, 2, 4]
    );
    system.shutdown().await;
}

/// A command run in place whose deadline passes while it waits for the
/// store answers `Timeout` at the deadline, goes on by itself, and still
/// runs before the command behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_deadline_answers_timeout_and_still_finishes_first() {
    let (inner, store, system) = gated_counter_system(|b| b);
    let c = system.actor::<Counter>(id("deadline"));
    c.ask(Cmd::Add(1)).await.expect("activate");
    store.close();
    let late = c.ask(Cmd::Add(2)).within(Duration::from_millis(30)).await;
    assert!(matches!(late, Err(AskError::Timeout)), "{late:?}");
    assert_eq!(store.entered.load(Ordering::SeqCst), 2);
    let next = tokio::spawn({
        let c = c.clone();
        async move { c.ask(Cmd::Add(4)).await }
    });
    wait_until(WAIT, "the next command is queued", async || c.queued() == 1).await;
    store.open();
    let next = next.await.expect("task").expect("next");
    assert_eq!(
        (next.version, next.state.total),
        (Version::new(3), 7),
        "the command past its deadline finished first"
    );
    assert_eq!(
        stored_amounts(&inner, "counter:deadline").await,
        vec![1, 2, 4]
    );
    system.shutdown().await;
}

/// A caller on another runtime than the actor's never runs the command
/// itself: it goes through the mailbox, to run on the actor's runtime.
#[test]
fn a_caller_on_another_runtime_goes_through_the_mailbox() {
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let (home, away) = (rt(), rt());
    let store = Arc::new(InMemoryEventStore::new());
    let system = home.block_on(async {
        ActorSystem::builder(store.clone())
            .register::<Counter>()
            .build()
            .expect("system")
    });
    let c = system.actor::<Counter>(id("home"));
    // Activated on `home`: its task runs there.
    home.block_on(c.ask(Cmd::Add(1)).into_future())
        .expect("activate");
    // While `home` is not running, an ask made on `away` waits in the
    // mailbox instead of running on `away`.
    #[expect(
        clippy::async_yields_async,
        reason = "the ask's task is awaited later, once home runs"
    )]
    let asked = away.block_on(async {
        let asked = tokio::spawn({
            let c = c.clone();
            async move { c.ask(Cmd::Add(2)).await }
        });
        wait_until(WAIT, "the command is queued", async || c.queued() == 1).await;
        asked
    });
    assert_eq!(
        store.actor_count(),
        1,
        "nothing more was written while home stood still"
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let home_thread = std::thread::spawn(move || {
        home.block_on(async {
            let _ = stopped.await;
        });
    });
    let out = away
        .block_on(asked)
        .expect("task")
        .expect("run by the actor's task on home");
    assert_eq!((out.version, out.state.total), (Version::new(2), 3));
    let _ = stop.send(());
    home_thread.join().expect("home");
}

/// The amounts of the `Added` events stored for `actor`, raw from the store.
async fn stored_amounts(store: &InMemoryEventStore, actor: &str) -> Vec<u64> {
    store
        .get_events(&id(actor), Version::ZERO)
        .await
        .expect("read")
        .iter()
        .map(|e| e.decode::<common::Added>().expect("amount").amount)
        .collect()
}

/// A system hosting `Counter` over a store whose appends the test holds
/// back ([`GatedStore`]), with the memory store underneath for raw reads.
fn gated_counter_system(
    configure: impl FnOnce(ActorSystemBuilder) -> ActorSystemBuilder,
) -> (Arc<InMemoryEventStore>, Arc<GatedStore>, ActorSystem) {
    let inner = Arc::new(InMemoryEventStore::new());
    let store = Arc::new(GatedStore::new(inner.clone()));
    let system = configure(ActorSystem::builder(store.clone()).register::<Counter>())
        .build()
        .expect("system");
    (inner, store, system)
}

/// A one-shard directory of node `solo` whose shard starts at `placement`.
fn solo_directory(placement: aether_actor::Placement) -> Arc<aether_actor::StaticDirectory> {
    Arc::new(aether_actor::StaticDirectory::new(
        aether_actor::NodeId::new("solo").expect("node"),
        1,
        move |_| placement.clone(),
    ))
}
