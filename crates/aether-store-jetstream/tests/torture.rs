//! Torture: several writers (single events and batches, two of them racing
//! on one actor) keep issuing commands while the server is killed -9 and
//! restarted three times. Callers retry after `Timeout` / `Unavailable` with
//! the same events (ids derived from the command id, so a retry is the same
//! command). Afterwards an independent raw async-nats reader checks the
//! stream: no acknowledged event lost, none duplicated, no partial batch, no
//! command applied twice.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_core::testkit::conformance::fresh_namespace;
use aether_core::{ActorId, CommandId, Event, EventId, EventStore, StoreError, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, connect, wait_until};

/// A command as issued: its actor and how many events it writes.
#[derive(Debug, Clone)]
struct Issued {
    actor: ActorId,
    len: u32,
}

/// An acknowledged command: its actor, first version, id and event ids.
type Acked = (ActorId, u64, CommandId, Vec<EventId>);

/// What the writers share with the test.
#[derive(Default)]
struct Ledger {
    /// Every command ever attempted (acknowledged or not).
    issued: Mutex<HashMap<CommandId, Issued>>,
    /// Acknowledged commands: (actor, first version, event ids).
    acked: Mutex<Vec<Acked>>,
    acked_count: AtomicUsize,
    transient_errors: AtomicUsize,
    conflicts: AtomicUsize,
}

fn command_events(actor: &ActorId, cmd: CommandId, after: u64, len: u32) -> Vec<Event> {
    (0..len)
        .map(|i| {
            Event::from_raw(
                actor.clone(),
                Version::new(after + u64::from(i) + 1),
                "Torture",
                vec![i as u8; 16],
            )
            .with_id(EventId::for_command(cmd, actor, i))
            .with_causation_id(cmd.to_string())
        })
        .collect()
}

/// One writer: commands of 1-3 events on `actor` until `stop`.
fn spawn_writer(
    store: JetStreamEventStore,
    actor: ActorId,
    seed: u32,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = seed;
        while !stop.load(Ordering::SeqCst) {
            n += 1;
            let len = n % 3 + 1;
            let cmd = CommandId::new();
            ledger.issued.lock().unwrap().insert(
                cmd,
                Issued {
                    actor: actor.clone(),
                    len,
                },
            );
            let deadline = Instant::now() + Duration::from_secs(40);
            let mut expected = loop {
                match store.get_latest_version(&actor).await {
                    Ok(v) => break v,
                    Err(e) if e.is_transient() => {
                        ledger.transient_errors.fetch_add(1, Ordering::SeqCst);
                        assert!(Instant::now() < deadline, "no latest version: {e:?}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("latest version of {actor}: {e:?}"),
                }
            };
            loop {
                // The same command at the same expected version is the
                // same events: a retry is idempotent.
                let events = command_events(&actor, cmd, expected.get(), len);
                match store.append(&actor, expected, events.clone()).await {
                    Ok(v) => {
                        assert_eq!(v.get(), expected.get() + u64::from(len));
                        ledger.acked.lock().unwrap().push((
                            actor.clone(),
                            expected.get() + 1,
                            cmd,
                            events.iter().map(|e| e.id).collect(),
                        ));
                        ledger.acked_count.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Err(StoreError::VersionConflict { actual, .. }) => {
                        // Another writer took the version: decide again on
                        // top of it (this command was not stored: a retry
                        // of it would have been recognised).
                        ledger.conflicts.fetch_add(1, Ordering::SeqCst);
                        expected = actual;
                    }
                    Err(e) if e.is_transient() => {
                        ledger.transient_errors.fetch_add(1, Ordering::SeqCst);
                        assert!(
                            Instant::now() < deadline,
                            "{actor}: still failing after 40 s: {e:?}"
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("{actor}: unexpected error {e:?}"),
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_survive_repeated_crashes_without_loss_duplicates_or_partial_batches() {
    let started = Instant::now();
    let server = NatsServer::start().await;
    let ns = fresh_namespace("torture");
    let store = JetStreamEventStore::builder(connect(&server.url()).await)
        .namespace(ns.clone())
        .timeout(Duration::from_secs(2))
        .open()
        .await
        .expect("open");
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let actors: Vec<ActorId> = ["solo-1", "solo-2", "solo-3", "solo-4", "contested"]
        .iter()
        .map(|a| ActorId::new(*a).unwrap())
        .collect();
    // One writer per solo actor, two racing on the contested one; each
    // writer has its own client, so each sees the crash on its own.
    let mut writers = Vec::new();
    for (i, actor) in actors.iter().chain([&actors[4]]).enumerate() {
        let own = JetStreamEventStore::builder(connect(&server.url()).await)
            .namespace(ns.clone())
            .timeout(Duration::from_secs(2))
            .open()
            .await
            .expect("open a writer's store");
        writers.push(spawn_writer(
            own,
            actor.clone(),
            i as u32,
            ledger.clone(),
            stop.clone(),
        ));
    }

    for kill in 1..=3 {
        let before = ledger.acked_count.load(Ordering::SeqCst);
        wait_until(
            Duration::from_secs(20),
            format!("100 more commands acknowledged before kill {kill}"),
            async || ledger.acked_count.load(Ordering::SeqCst) >= before + 100,
        )
        .await;
        server.kill();
        server.restart().await;
    }
    let before = ledger.acked_count.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(20),
        "40 more commands acknowledged after the last restart",
        async || ledger.acked_count.load(Ordering::SeqCst) >= before + 40,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        tokio::time::timeout(Duration::from_secs(45), w)
            .await
            .expect("a writer stops")
            .expect("writer task");
    }

    // The independent read-back.
    let raw_client = connect(&server.url()).await;
    let issued = ledger.issued.lock().unwrap().clone();
    let acked = ledger.acked.lock().unwrap().clone();
    let mut stored_events = 0;
    let mut stored_commands: HashMap<CommandId, (ActorId, Vec<(u64, EventId)>)> = HashMap::new();
    for actor in &actors {
        let raw = common::raw_messages(
            &raw_client,
            store.events_stream_name(),
            &store.event_subject(actor),
        )
        .await;
        stored_events += raw.len();
        let versions: Vec<u64> = raw
            .iter()
            .map(|m| m.version.expect("an envelope"))
            .collect();
        assert_eq!(
            versions,
            (1..=raw.len() as u64).collect::<Vec<_>>(),
            "{actor}: versions without gaps or repeats"
        );
        let ids: Vec<EventId> = raw
            .iter()
            .map(|m| m.event_id().expect("an id").parse().expect("a uuid"))
            .collect();
        let unique: HashSet<&EventId> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{actor}: an event stored twice");
        for (m, id) in raw.iter().zip(&ids) {
            let cmd: CommandId = m
                .cause
                .as_deref()
                .expect("a causation id")
                .parse()
                .expect("a command id");
            stored_commands
                .entry(cmd)
                .or_insert_with(|| (actor.clone(), Vec::new()))
                .1
                .push((m.version.unwrap(), *id));
        }
    }
    // Every stored command is whole, consecutive, on its own actor, and
    // stored once (its deterministic ids appear once, in order).
    for (cmd, (actor, events)) in &stored_commands {
        let issued = issued.get(cmd).expect("a stored command was issued");
        assert_eq!(&issued.actor, actor);
        let first = events[0].0;
        let want: Vec<(u64, EventId)> = (0..issued.len)
            .map(|i| (first + u64::from(i), EventId::for_command(*cmd, actor, i)))
            .collect();
        assert_eq!(events, &want, "command {cmd}: partial or applied twice");
    }
    // Every acknowledged command is stored where it was acknowledged.
    let acked_by_cmd: BTreeMap<CommandId, (ActorId, u64, Vec<EventId>)> = acked
        .iter()
        .map(|(a, first, cmd, ids)| (*cmd, (a.clone(), *first, ids.clone())))
        .collect();
    assert_eq!(
        acked_by_cmd.len(),
        acked.len(),
        "a command acknowledged twice"
    );
    for (cmd, (actor, first, ids)) in &acked_by_cmd {
        let (stored_actor, events) = stored_commands
            .get(cmd)
            .unwrap_or_else(|| panic!("acknowledged command {cmd} of {actor} is lost"));
        assert_eq!(stored_actor, actor);
        assert_eq!(
            events,
            &ids.iter()
                .enumerate()
                .map(|(i, id)| (first + i as u64, *id))
                .collect::<Vec<_>>()
        );
    }
    let transient = ledger.transient_errors.load(Ordering::SeqCst);
    assert!(transient > 0, "the crashes were never felt by a writer");
    eprintln!(
        "torture: {} commands acknowledged, {} stored ({} events), {} unacknowledged but stored, \
         {transient} transient errors retried, {} conflicts, {:?}",
        acked.len(),
        stored_commands.len(),
        stored_events,
        stored_commands.len() - acked.len(),
        ledger.conflicts.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(90));
}
