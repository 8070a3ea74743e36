//! Aggregates and store wrappers shared by the runtime tests.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test binary uses a part of the shared helpers"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aether_core::{
    ActorId, ActorSnapshot, Aggregate, BoxStream, BusError, BusEvent, DomainEvent, Event, EventBus,
    EventFilter, EventStore, Namespace, SnapshotStore, Version,
};
use aether_store_memory::InMemoryEventStore;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub fn id(s: impl AsRef<str>) -> ActorId {
    ActorId::new(s).expect("actor id")
}

/// What the test aggregates are asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Cmd {
    Add(u64),
    /// Produces no event.
    Nothing,
    /// Refused.
    Refuse,
    /// Panics in `handle`.
    Panic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Added {
    pub amount: u64,
}

impl DomainEvent for Added {
    fn event_type(&self) -> &'static str {
        "Added"
    }
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("refused")]
pub struct Refused;

fn decide(cmd: Cmd) -> Result<Vec<Added>, Refused> {
    match cmd {
        Cmd::Add(amount) => Ok(vec![Added { amount }]),
        Cmd::Nothing => Ok(Vec::new()),
        Cmd::Refuse => Err(Refused),
        Cmd::Panic => panic!("the aggregate panics on purpose"),
    }
}

/// Sums amounts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Counter {
    pub total: u64,
    pub count: u64,
}

impl Aggregate for Counter {
    type Command = Cmd;
    type Event = Added;
    type Error = Refused;
    const KIND: &'static str = "counter";

    fn handle(&self, cmd: Cmd) -> Result<Vec<Added>, Refused> {
        decide(cmd)
    }

    fn apply(&mut self, e: &Added) {
        self.total += e.amount;
        self.count += 1;
    }
}

/// Lists amounts: another kind, used with the same ids as [`Counter`].
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub entries: Vec<u64>,
}

impl Aggregate for Ledger {
    type Command = Cmd;
    type Event = Added;
    type Error = Refused;
    const KIND: &'static str = "ledger";

    fn handle(&self, cmd: Cmd) -> Result<Vec<Added>, Refused> {
        decide(cmd)
    }

    fn apply(&mut self, e: &Added) {
        self.entries.push(e.amount);
    }
}

/// A kind that cannot be part of a persistence id.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Loud;

impl Aggregate for Loud {
    type Command = Cmd;
    type Event = Added;
    type Error = Refused;
    const KIND: &'static str = "lo:ud";

    fn handle(&self, cmd: Cmd) -> Result<Vec<Added>, Refused> {
        decide(cmd)
    }

    fn apply(&mut self, _: &Added) {}
}

/// An in-memory store whose appends wait while the gate is closed, and
/// count how many appends started.
pub struct GatedStore {
    inner: Arc<InMemoryEventStore>,
    gate: watch::Sender<bool>,
    pub entered: AtomicUsize,
}

impl GatedStore {
    pub fn new(inner: Arc<InMemoryEventStore>) -> Self {
        GatedStore {
            inner,
            gate: watch::Sender::new(true),
            entered: AtomicUsize::new(0),
        }
    }

    pub fn close(&self) {
        self.gate.send_replace(false);
    }

    pub fn open(&self) {
        self.gate.send_replace(true);
    }
}

impl EventStore for GatedStore {
    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    async fn append(
        &self,
        actor: &ActorId,
        expected: Version,
        events: Vec<Event>,
    ) -> aether_core::Result<Version> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        gate.wait_for(|open| *open).await.expect("gate");
        self.inner.append(actor, expected, events).await
    }

    async fn get_events(&self, actor: &ActorId, from: Version) -> aether_core::Result<Vec<Event>> {
        self.inner.get_events(actor, from).await
    }

    fn stream_events(
        &self,
        actor: &ActorId,
        from: Version,
    ) -> BoxStream<'static, aether_core::Result<Event>> {
        self.inner.stream_events(actor, from)
    }

    async fn get_latest_version(&self, actor: &ActorId) -> aether_core::Result<Version> {
        self.inner.get_latest_version(actor).await
    }
}

impl SnapshotStore for GatedStore {
    async fn save_snapshot(&self, snapshot: ActorSnapshot) -> aether_core::Result<()> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn get_latest_snapshot(
        &self,
        actor: &ActorId,
    ) -> aether_core::Result<Option<ActorSnapshot>> {
        self.inner.get_latest_snapshot(actor).await
    }
}

/// A bus on which every publish fails.
pub struct FailingBus;

impl EventBus for FailingBus {
    type Subscription = futures::stream::Empty<Result<BusEvent, BusError>>;

    async fn publish(&self, _: &Namespace, _: Event) -> Result<(), BusError> {
        Err(BusError::Closed)
    }

    async fn subscribe(&self, _: EventFilter) -> Result<Self::Subscription, BusError> {
        Err(BusError::Closed)
    }
}
