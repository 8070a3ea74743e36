//! The trust boundary over the in-memory store and `Repository`: foreign
//! records, snapshots that cannot be trusted, effectively-once commands.
//! Each test names the finding of the trust-boundary issue it pins; what was
//! stored is checked with the store's raw record hook, independently of the
//! reads under test.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use aether_core::store::BoxStream;
use aether_core::{
    ActorId, ActorSnapshot, Aggregate, Command, CommandError, CommandId, DomainEvent, Event,
    EventId, EventStore, Namespace, Repository, SnapshotStore, StoreError, TrustPolicy, Version,
};
use aether_store_memory::{InMemoryEventStore, RawRecord};
use serde::{Deserialize, Serialize};

// ---- A small aggregate -----------------------------------------------------

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Stock {
    on_hand: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum StockCommand {
    Receive(u32),
    Ship(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum StockEvent {
    Received(u32),
    Shipped(u32),
}

impl DomainEvent for StockEvent {
    fn event_type(&self) -> &'static str {
        match self {
            StockEvent::Received(_) => "StockReceived",
            StockEvent::Shipped(_) => "StockShipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("only {0} on hand")]
struct NotEnough(u32);

fn decide(on_hand: u32, command: StockCommand) -> Result<Vec<StockEvent>, NotEnough> {
    match command {
        StockCommand::Receive(n) => Ok(vec![StockEvent::Received(n)]),
        StockCommand::Ship(n) if n > on_hand => Err(NotEnough(on_hand)),
        StockCommand::Ship(n) => Ok(vec![StockEvent::Shipped(n)]),
    }
}

fn fold(on_hand: &mut u32, event: &StockEvent) {
    match event {
        StockEvent::Received(n) => *on_hand += n,
        StockEvent::Shipped(n) => *on_hand -= n,
    }
}

impl Aggregate for Stock {
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = NotEnough;
    const KIND: &'static str = "stock";

    fn handle(&self, command: StockCommand) -> Result<Vec<StockEvent>, NotEnough> {
        decide(self.on_hand, command)
    }

    fn apply(&mut self, event: &StockEvent) {
        fold(&mut self.on_hand, event);
    }
}

fn id(s: &str) -> ActorId {
    ActorId::new(s).unwrap()
}

fn received(actor: &ActorId, version: u64, n: u32) -> Event {
    Event::from_domain(
        actor.clone(),
        Version::new(version),
        &StockEvent::Received(n),
    )
    .unwrap()
}

/// `(actor, version)` of every raw record; `None` for garbage.
fn raw(store: &InMemoryEventStore, actor: &ActorId) -> Vec<Option<(String, u64)>> {
    store
        .raw_records(actor)
        .into_iter()
        .map(|r| match r {
            RawRecord::Event(e) => Some((e.actor_id.as_str().to_owned(), e.version.get())),
            RawRecord::Garbage(_) => None,
            other => panic!("unknown record {other:?}"),
        })
        .collect()
}

fn versions(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}

// ---- Findings 1-4: foreign records and snapshots ----------------------------

/// Finding 1: garbage at the tip of an actor's log does not block it.
#[tokio::test]
async fn garbage_at_the_tip_does_not_block_the_actor() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone());
    let a = id("sku-garbage");
    repo.execute::<Stock>(&a, StockCommand::Receive(5))
        .await
        .unwrap();
    store.inject_garbage(&a, b"\xc1 not an envelope".to_vec());
    let out = repo
        .execute::<Stock>(&a, StockCommand::Receive(1))
        .await
        .expect("the actor keeps working");
    assert_eq!((out.version, out.state.on_hand), (Version::new(2), 6));
    assert_eq!(
        raw(&store, &a),
        vec![
            Some(("sku-garbage".into(), 1)),
            None,
            Some(("sku-garbage".into(), 2))
        ]
    );
}

/// Finding 2: a forged version 0 after v1 neither hides the history nor
/// makes the repository write a second v1.
#[tokio::test]
async fn a_forged_version_zero_hides_nothing() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone());
    let a = id("sku-v0");
    repo.execute::<Stock>(&a, StockCommand::Receive(5))
        .await
        .unwrap();
    store.inject_event(&a, received(&a, 0, 1000));
    assert_eq!(
        versions(&store.get_events(&a, Version::ZERO).await.unwrap()),
        vec![1]
    );
    let out = repo
        .execute::<Stock>(&a, StockCommand::Receive(1))
        .await
        .unwrap();
    assert_eq!((out.version, out.state.on_hand), (Version::new(2), 6));
    assert_eq!(
        raw(&store, &a),
        vec![
            Some(("sku-v0".into(), 1)),
            Some(("sku-v0".into(), 0)),
            Some(("sku-v0".into(), 2))
        ],
        "stored history is 1, forged 0, 2 — never a second v1"
    );
}

/// Finding 3: a forged duplicate v1 is not returned, and the repository does
/// not fold it.
#[tokio::test]
async fn a_forged_duplicate_is_not_returned() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone());
    let a = id("sku-dup");
    repo.execute::<Stock>(&a, StockCommand::Receive(5))
        .await
        .unwrap();
    store.inject_event(&a, received(&a, 1, 1000));
    let read = store.get_events(&a, Version::ZERO).await.unwrap();
    assert_eq!(versions(&read), vec![1]);
    assert_eq!(
        read[0].decode::<StockEvent>().unwrap(),
        StockEvent::Received(5)
    );
    let out = repo
        .execute::<Stock>(&a, StockCommand::Ship(5))
        .await
        .expect("state is 5, not 1005");
    assert_eq!((out.version, out.state.on_hand), (Version::new(2), 0));
    // Strict refuses the same history.
    let strict = store.clone().trust_policy(TrustPolicy::Strict);
    match strict.get_events(&a, Version::ZERO).await {
        Err(StoreError::Corrupt {
            position, reason, ..
        }) => {
            assert_eq!(position, 1, "the forged record is the log's second record");
            assert_eq!(reason.label(), "out_of_order");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A snapshot store that returns a snapshot claiming version 1000, whatever
/// is stored: the repository must not trust it even if a store does.
struct TrustingSnapshots(InMemoryEventStore);

impl EventStore for TrustingSnapshots {
    fn namespace(&self) -> &Namespace {
        self.0.namespace()
    }
    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        self.0.append(actor, expected, events).await
    }
    async fn get_events(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        self.0.get_events(actor, from).await
    }
    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        self.0.stream_events(actor, from)
    }
    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        self.0.get_latest_version(actor).await
    }
}

impl SnapshotStore for TrustingSnapshots {
    async fn save_snapshot(&self, _: ActorSnapshot) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        Ok(Some(
            ActorSnapshot::new(actor.clone(), Version::new(1000), &Stock { on_hand: 999 }).unwrap(),
        ))
    }
}

/// Finding 4: a snapshot claiming version 1000 for an actor with 2 events is
/// ignored, by the store and by the repository, and commands keep working.
#[tokio::test]
async fn a_snapshot_ahead_of_the_events_is_ignored() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone());
    let a = id("sku-ahead");
    for n in [2, 3] {
        repo.execute::<Stock>(&a, StockCommand::Receive(n))
            .await
            .unwrap();
    }
    store.inject_snapshot(
        ActorSnapshot::new(a.clone(), Version::new(1000), &Stock { on_hand: 999 }).unwrap(),
    );
    assert_eq!(store.get_latest_snapshot(&a).await.unwrap(), None);
    let loaded = repo.load::<Stock>(&a).await.unwrap();
    assert_eq!(
        (
            loaded.version,
            loaded.state.on_hand,
            loaded.snapshot_version
        ),
        (Version::new(2), 5, None)
    );
    let out = repo
        .execute::<Stock>(&a, StockCommand::Receive(1))
        .await
        .expect("no version conflict");
    assert_eq!(out.version, Version::new(3));

    // The repository's own check, against a store that trusts the snapshot.
    let trusting = Repository::new(TrustingSnapshots(InMemoryEventStore::new()));
    let b = id("sku-trusting");
    for n in [2, 3] {
        trusting
            .execute::<Stock>(&b, StockCommand::Receive(n))
            .await
            .expect("commands work despite the snapshot");
    }
    let loaded = trusting.load::<Stock>(&b).await.unwrap();
    assert_eq!(
        (
            loaded.version,
            loaded.state.on_hand,
            loaded.snapshot_version
        ),
        (Version::new(2), 5, None)
    );
}

// ---- Finding 5: snapshot failures never fail a stored command ---------------

/// State that cannot be encoded once it holds 13.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
struct Fragile {
    on_hand: u32,
}

impl Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.on_hand == 13 {
            return Err(serde::ser::Error::custom("13 cannot be encoded"));
        }
        s.serialize_u32(self.on_hand)
    }
}

impl Aggregate for Fragile {
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = NotEnough;
    const KIND: &'static str = "fragile";

    fn handle(&self, command: StockCommand) -> Result<Vec<StockEvent>, NotEnough> {
        decide(self.on_hand, command)
    }

    fn apply(&mut self, event: &StockEvent) {
        fold(&mut self.on_hand, event);
    }
}

#[tokio::test]
async fn a_snapshot_that_cannot_be_encoded_does_not_fail_the_command() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone()).snapshot_every(1);
    let a = id("fragile");
    let out = repo
        .execute::<Fragile>(&a, StockCommand::Receive(13))
        .await
        .expect("the events were stored, so the command succeeded");
    assert_eq!((out.version, out.snapshotted), (Version::FIRST, false));
    assert_eq!(raw(&store, &a), vec![Some(("fragile".into(), 1))]);
    assert_eq!(store.get_latest_snapshot(&a).await.unwrap(), None);
    let out = repo
        .execute::<Fragile>(&a, StockCommand::Receive(1))
        .await
        .unwrap();
    assert_eq!((out.version, out.snapshotted), (Version::new(2), true));
}

// ---- Finding 6: effectively-once commands ----------------------------------

/// Stores the batch, then reports `Timeout` (or a conflict) for the first
/// `fail` appends: a lost acknowledgement.
struct LosesAcks {
    inner: InMemoryEventStore,
    fail: AtomicU32,
    as_conflict: bool,
    appends: AtomicU32,
    ids: Mutex<Vec<EventId>>,
}

impl LosesAcks {
    fn new(fail: u32, as_conflict: bool) -> Self {
        LosesAcks {
            inner: InMemoryEventStore::new(),
            fail: AtomicU32::new(fail),
            as_conflict,
            appends: AtomicU32::new(0),
            ids: Mutex::default(),
        }
    }
}

impl EventStore for LosesAcks {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }
    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> Result<Version, StoreError> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        self.ids.lock().unwrap().extend(events.iter().map(|e| e.id));
        let stored = self.inner.append(actor, expected, events).await?;
        let lose = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        match (lose, self.as_conflict) {
            (false, _) => Ok(stored),
            (true, false) => Err(StoreError::Timeout("the acknowledgement was lost".into())),
            (true, true) => Err(StoreError::VersionConflict {
                actor: actor.clone(),
                expected,
                actual: stored,
            }),
        }
    }
    async fn get_events(&self, actor: &ActorId, from: Version) -> Result<Vec<Event>, StoreError> {
        self.inner.get_events(actor, from).await
    }
    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, Result<Event, StoreError>> {
        self.inner.stream_events(actor, from)
    }
    async fn get_latest_version(&self, actor: &ActorId) -> Result<Version, StoreError> {
        self.inner.get_latest_version(actor).await
    }
}

impl SnapshotStore for LosesAcks {
    async fn save_snapshot(&self, s: ActorSnapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(s).await
    }
    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> Result<Option<ActorSnapshot>, StoreError> {
        self.inner.get_latest_snapshot(actor).await
    }
}

/// Finding 6: a retry after `Timeout` whose first write landed is answered
/// with the original outcome and applies nothing twice.
#[tokio::test]
async fn a_retry_after_a_timeout_applies_the_command_once() {
    let repo = Repository::new(LosesAcks::new(1, false));
    let a = id("account-1");
    let cid = CommandId::new();
    let deposit = Command::new(StockCommand::Receive(100))
        .id(cid)
        .correlation_id("request-7");
    match repo.execute_command::<Stock>(&a, deposit.clone()).await {
        Err(CommandError::Store(e)) => assert!(e.is_transient(), "{e}"),
        other => panic!("expected the lost acknowledgement, got {other:?}"),
    }
    let retry = repo
        .execute_command::<Stock>(&a, deposit.clone())
        .await
        .expect("the retry succeeds");
    assert!(retry.duplicate, "the retry is recognised");
    assert_eq!((retry.version, retry.state.on_hand), (Version::FIRST, 100));
    assert_eq!(retry.command_id, cid);
    assert_eq!(retry.events.len(), 1);
    let e = &retry.events[0];
    assert_eq!(e.id, EventId::for_command(cid, &a, 0));
    assert_eq!(
        e.metadata.causation_id.as_deref(),
        Some(cid.to_string().as_str())
    );
    assert_eq!(e.metadata.correlation_id.as_deref(), Some("request-7"));
    assert_eq!(
        raw(&repo.store().inner, &a),
        vec![Some(("account-1".into(), 1))]
    );
    assert_eq!(
        repo.store().appends.load(Ordering::SeqCst),
        1,
        "nothing ran twice"
    );

    // Another command lands in between; the retry is still recognised.
    let other = repo
        .execute::<Stock>(&a, StockCommand::Ship(30))
        .await
        .unwrap();
    assert_eq!(other.version, Version::new(2));
    let again = repo.execute_command::<Stock>(&a, deposit).await.unwrap();
    assert!(again.duplicate);
    assert_eq!((again.version, again.state.on_hand), (Version::FIRST, 70));
    assert_eq!(raw(&repo.store().inner, &a).len(), 2);
}

/// `execute` generates one command id and keeps it across its internal
/// conflict retries: a write that landed but was reported as a conflict is
/// recognised on the retry, not applied again.
#[tokio::test]
async fn execute_keeps_its_command_id_across_retries() {
    let repo = Repository::new(LosesAcks::new(1, true));
    let a = id("account-2");
    let out = repo
        .execute::<Stock>(&a, StockCommand::Receive(5))
        .await
        .unwrap();
    assert!(out.duplicate, "the retry found its own write");
    assert_eq!(
        (out.retries, out.version, out.state.on_hand),
        (1, Version::FIRST, 5)
    );
    assert_eq!(raw(&repo.store().inner, &a).len(), 1);
    let ids = repo.store().ids.lock().unwrap().clone();
    assert_eq!(ids, vec![EventId::for_command(out.command_id, &a, 0)]);
}

/// The window of recent commands survives snapshots and is bounded.
#[tokio::test]
async fn the_command_window_is_kept_in_snapshots_and_bounded() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone())
        .snapshot_every(1)
        .recent_commands(2);
    let a = id("account-3");
    let cmds: Vec<Command<StockCommand>> = (1..=3)
        .map(|n| Command::new(StockCommand::Receive(n)))
        .collect();
    for c in &cmds {
        assert!(
            !repo
                .execute_command::<Stock>(&a, c.clone())
                .await
                .unwrap()
                .duplicate
        );
    }
    let snap = store.get_latest_snapshot(&a).await.unwrap().unwrap();
    assert_eq!(snap.version, Version::new(3));
    assert_eq!(snap.schema_version, Stock::SNAPSHOT_VERSION);
    assert_eq!(
        snap.recent_commands
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>(),
        vec![cmds[1].command_id(), cmds[2].command_id()],
        "the two newest commands, oldest first"
    );
    // Loaded from the snapshot alone (no events after it): still recognised.
    let loaded = repo.load::<Stock>(&a).await.unwrap();
    assert_eq!(
        (loaded.snapshot_version, loaded.events_applied),
        (Some(Version::new(3)), 0)
    );
    let dup = repo
        .execute_command::<Stock>(&a, cmds[2].clone())
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(versions(&dup.events), vec![3]);
    // The oldest fell out of the window: it runs again (the documented bound).
    let rerun = repo
        .execute_command::<Stock>(&a, cmds[0].clone())
        .await
        .unwrap();
    assert!(!rerun.duplicate);
    assert_eq!(rerun.version, Version::new(4));
}

/// The window is rebuilt from the events' causation ids when there is no
/// snapshot, and a command id is per actor.
#[tokio::test]
async fn the_command_window_is_rebuilt_from_events_and_per_actor() {
    let store = InMemoryEventStore::new();
    let repo = Repository::new(store.clone());
    let a = id("account-4");
    let b = id("account-5");
    let c = Command::new(StockCommand::Receive(7));
    repo.execute_command::<Stock>(&a, c.clone()).await.unwrap();
    // A fresh repository (nothing cached) over the same store.
    let fresh = Repository::new(store.clone());
    let loaded = fresh.load::<Stock>(&a).await.unwrap();
    assert_eq!(
        loaded.find_command(c.command_id()).map(|r| r.last),
        Some(Version::FIRST)
    );
    assert!(
        fresh
            .execute_command::<Stock>(&a, c.clone())
            .await
            .unwrap()
            .duplicate
    );
    // The same command id on another actor is another command.
    let on_b = fresh.execute_command::<Stock>(&b, c.clone()).await.unwrap();
    assert!(!on_b.duplicate);
    assert_ne!(
        on_b.events[0].id,
        EventId::for_command(c.command_id(), &a, 0)
    );
    assert_eq!(store.get_events(&a, Version::ZERO).await.unwrap().len(), 1);
}

// ---- Finding 8: snapshot schema evolution -----------------------------------

/// The same events with a new state shape and a bumped snapshot version.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct StockV2 {
    on_hand: u64,
    movements: u32,
}

impl Aggregate for StockV2 {
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = NotEnough;
    const KIND: &'static str = "stock";
    const SNAPSHOT_VERSION: u32 = 2;

    fn handle(&self, command: StockCommand) -> Result<Vec<StockEvent>, NotEnough> {
        decide(u32::try_from(self.on_hand).unwrap_or(u32::MAX), command)
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Received(n) => self.on_hand += u64::from(*n),
            StockEvent::Shipped(n) => self.on_hand -= u64::from(*n),
        }
        self.movements += 1;
    }
}

/// A changed state type that forgot to bump the snapshot version.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct StockRenamed {
    units: Vec<String>,
}

impl Aggregate for StockRenamed {
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = NotEnough;
    const KIND: &'static str = "stock";

    fn handle(&self, command: StockCommand) -> Result<Vec<StockEvent>, NotEnough> {
        decide(self.units.len() as u32, command)
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Received(n) => self.units.extend((0..*n).map(|i| i.to_string())),
            StockEvent::Shipped(n) => {
                let keep = self.units.len().saturating_sub(*n as usize);
                self.units.truncate(keep);
            }
        }
    }
}

/// Finding 8: a snapshot of another schema version, or whose state no longer
/// decodes, is ignored and the actor replays from its events.
#[tokio::test]
async fn a_changed_state_type_replays_instead_of_failing() {
    let store = InMemoryEventStore::new();
    let v1 = Repository::new(store.clone()).snapshot_every(2);
    let a = id("sku-evolve");
    for n in [1, 2, 3] {
        v1.execute::<Stock>(&a, StockCommand::Receive(n))
            .await
            .unwrap();
    }
    assert_eq!(
        store
            .get_latest_snapshot(&a)
            .await
            .unwrap()
            .unwrap()
            .version,
        Version::new(2)
    );

    let v2 = Repository::new(store.clone());
    let loaded = v2
        .load::<StockV2>(&a)
        .await
        .expect("schema 1 snapshot is ignored");
    assert_eq!(
        (loaded.snapshot_version, loaded.events_applied, loaded.state),
        (
            None,
            3,
            StockV2 {
                on_hand: 6,
                movements: 3
            }
        )
    );
    let out = v2
        .execute::<StockV2>(&a, StockCommand::Ship(6))
        .await
        .unwrap();
    assert_eq!((out.version, out.state.on_hand), (Version::new(4), 0));

    let renamed = v2
        .load::<StockRenamed>(&a)
        .await
        .expect("undecodable state is ignored");
    assert_eq!(
        (renamed.snapshot_version, renamed.events_applied),
        (None, 4)
    );
    assert!(renamed.state.units.is_empty());
}
