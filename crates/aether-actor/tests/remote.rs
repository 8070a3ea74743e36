//! Remote asks between two actor systems in one process, each with its own
//! NATS connection to a real nats-server: commands cross to the owner, "not
//! here" answers and missing responders are retried inside the deadline,
//! and garbage on a node's subject gets a typed error reply.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aether_actor::{
    ActorSystem, AskError, NatsNode, Placement, ShardDirectory, StaticDirectory, WIRE_FORMAT,
    WireError,
};
use aether_actor::{NodeId, ShardId, shard_of};
use aether_core::name::encode_token;
use aether_core::{ActorId, CommandId, EventStore, Version};
use aether_store_memory::InMemoryEventStore;
use aether_testkit_nats::{NatsServer, connect, unique_name, wait_until};
use common::{Cmd, Counter, id};
use futures::future::BoxFuture;

const SHARDS: u32 = 2;
const WAIT: Duration = Duration::from_secs(10);

fn node(n: &str) -> NodeId {
    NodeId::new(n).expect("node id")
}

/// A static directory that counts how often the runtime consulted it.
struct Counting {
    inner: StaticDirectory,
    lookups: AtomicUsize,
}

impl ShardDirectory for Counting {
    fn local_node(&self) -> &NodeId {
        self.inner.local_node()
    }
    fn shard_count(&self) -> u32 {
        self.inner.shard_count()
    }
    fn placement(&self, shard: ShardId) -> Placement {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.placement(shard)
    }
    fn epoch(&self) -> u64 {
        self.inner.epoch()
    }
    fn changed(&self) -> BoxFuture<'static, ()> {
        self.inner.changed()
    }
}

/// Shard 0 on node-a, shard 1 on node-b, as `me` sees it.
fn directory(me: &str) -> Arc<Counting> {
    let me_id = node(me);
    Arc::new(Counting {
        inner: StaticDirectory::new(me_id.clone(), SHARDS, |s| {
            let owner = if s.get() == 0 { "node-a" } else { "node-b" };
            if owner == me {
                Placement::Local
            } else {
                Placement::Remote(node(owner))
            }
        }),
        lookups: AtomicUsize::new(0),
    })
}

/// An actor id whose counter lives in `shard`.
fn actor_in(shard: u32, tag: &str) -> ActorId {
    (0..)
        .map(|i| id(format!("{tag}-{i}")))
        .find(|a| shard_of("counter", a, SHARDS).get() == shard)
        .expect("some id falls in every shard")
}

struct Pair {
    _server: NatsServer,
    url: String,
    cluster: String,
    store: Arc<InMemoryEventStore>,
    a: ActorSystem,
    b: ActorSystem,
    dir_a: Arc<Counting>,
    dir_b: Arc<Counting>,
}

async fn pair() -> Pair {
    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("rt");
    let store = Arc::new(InMemoryEventStore::new());
    let dir_a = directory("node-a");
    let dir_b = directory("node-b");
    let start = |dir: Arc<Counting>| {
        let store = store.clone();
        let url = url.clone();
        let cluster = cluster.clone();
        async move {
            ActorSystem::builder(store)
                .register::<Counter>()
                .cluster(&NatsNode::new(connect(&url).await, cluster, dir))
                .start()
                .await
                .expect("start")
        }
    };
    let a = start(dir_a.clone()).await;
    let b = start(dir_b.clone()).await;
    Pair {
        _server: server,
        url,
        cluster,
        store,
        a,
        b,
        dir_a,
        dir_b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_for_another_nodes_shard_runs_on_that_node() {
    let p = pair().await;
    let on_b = actor_in(1, "acct");
    let from_a = p.a.actor::<Counter>(on_b.clone());
    let first = from_a.ask(Cmd::Add(5)).await.expect("remote ask");
    assert_eq!((first.version, first.state.total), (Version::new(1), 5));
    assert_eq!(p.a.active_actors(), 0, "nothing runs on the caller");
    assert_eq!(p.b.active_actors(), 1, "the owner hosts the actor");
    // The owner's own ask sees the same cached actor.
    let local =
        p.b.actor::<Counter>(on_b.clone())
            .ask(Cmd::Add(2))
            .await
            .expect("local");
    assert_eq!((local.version, local.state.total), (Version::new(2), 7));
    // Errors cross the wire typed.
    assert!(matches!(
        from_a.ask(Cmd::Refuse).await,
        Err(AskError::Rejected(_))
    ));
    // A repeated command id gets the original outcome across nodes.
    let cid = CommandId::new();
    let once = from_a.ask(Cmd::Add(10)).id(cid).await.expect("once");
    let again = from_a.ask(Cmd::Add(10)).id(cid).await.expect("again");
    assert!(again.duplicate && !once.duplicate);
    assert_eq!(
        (again.version, again.events.clone()),
        (once.version, once.events)
    );
    // And the other way round.
    let on_a = actor_in(0, "acct");
    let from_b =
        p.b.actor::<Counter>(on_a.clone())
            .ask(Cmd::Add(1))
            .await
            .expect("b → a");
    assert_eq!(from_b.version, Version::new(1));
    assert_eq!(p.a.active_actors(), 1);
    let log = p
        .store
        .get_events(&id(format!("counter:{on_b}")), Version::ZERO)
        .await
        .expect("read");
    assert_eq!(log.len(), 3, "5, 2 and 10, each once");
    p.a.shutdown().await;
    p.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_here_is_retried_until_the_owner_takes_the_shard() {
    let p = pair().await;
    let on_b = actor_in(1, "moving");
    // node-b does not (yet) think it owns shard 1: it answers "not here".
    p.dir_b
        .inner
        .assign(ShardId::new(1), Placement::Remote(node("node-a")));
    let from_a = p.a.actor::<Counter>(on_b.clone());
    let started = p.dir_a.lookups.load(Ordering::SeqCst);
    let ask =
        tokio::spawn(async move { from_a.ask(Cmd::Add(3)).within(Duration::from_secs(8)).await });
    wait_until(
        WAIT,
        "node-a retries after 'not here' answers",
        async || p.dir_a.lookups.load(Ordering::SeqCst) >= started + 3,
    )
    .await;
    assert!(!ask.is_finished(), "the ask is still being retried");
    p.dir_b.inner.assign(ShardId::new(1), Placement::Local);
    let out = ask
        .await
        .expect("task")
        .expect("succeeds once node-b owns the shard");
    assert_eq!(out.version, Version::new(1));
    assert_eq!(p.b.active_actors(), 1);
    assert_eq!(
        p.store
            .get_latest_version(&id(format!("counter:{on_b}")))
            .await
            .expect("v"),
        Version::new(1),
        "applied once"
    );
    p.a.shutdown().await;
    p.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_nobody_answers_for_is_unavailable_at_the_deadline() {
    let p = pair().await;
    let on_b = actor_in(1, "ghost");
    p.dir_a
        .inner
        .assign(ShardId::new(1), Placement::Remote(node("node-c")));
    let deadline = Duration::from_millis(300);
    let started = Instant::now();
    let out =
        p.a.actor::<Counter>(on_b)
            .ask(Cmd::Add(1))
            .within(deadline)
            .await;
    assert!(matches!(out, Err(AskError::Unavailable(_))), "{out:?}");
    assert!(
        started.elapsed() >= deadline - Duration::from_millis(20),
        "retried until the deadline, gave up after {:?}",
        started.elapsed()
    );
    assert_eq!(p.store.actor_count(), 0, "nothing was run");
    p.a.shutdown().await;
    p.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_nodes_subject_gets_a_typed_error_reply() {
    let p = pair().await;
    let raw = connect(&p.url).await;
    let subject = format!(
        "aether.rt.{}.{}",
        encode_token(&p.cluster),
        encode_token("node-b")
    );
    let bad_request = |bytes: &[u8]| -> WireError {
        let reply: BTreeMap<String, WireError> =
            rmp_serde::from_slice(bytes).expect("a typed reply");
        reply.get("BadRequest").cloned().expect("BadRequest")
    };
    for garbage in [
        &b""[..],
        b"\xc1\xc1",
        b"{\"json\": true}",
        &[0x81, 0xa1, b'x', 0x01],
    ] {
        let msg = tokio::time::timeout(WAIT, raw.request(subject.clone(), garbage.to_vec().into()))
            .await
            .expect("answered in time")
            .expect("answered");
        assert!(matches!(bad_request(&msg.payload), WireError::Malformed(_)));
    }
    #[derive(serde::Serialize)]
    struct Newer {
        format: u32,
        something: &'static str,
    }
    let newer = rmp_serde::to_vec_named(&Newer {
        format: WIRE_FORMAT + 1,
        something: "else",
    })
    .expect("encode");
    let msg = raw
        .request(subject.clone(), newer.into())
        .await
        .expect("answered");
    assert_eq!(
        bad_request(&msg.payload),
        WireError::UnsupportedFormat {
            found: WIRE_FORMAT + 1
        }
    );
    // The node still serves real commands.
    let out =
        p.a.actor::<Counter>(actor_in(1, "after-garbage"))
            .ask(Cmd::Add(1))
            .await
            .expect("served after garbage");
    assert_eq!(out.version, Version::new(1));
    p.a.shutdown().await;
    p.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_of_a_shard_that_moves_away_passivate_and_their_commands_follow() {
    let p = pair().await;
    let acct = actor_in(1, "mover");
    let first =
        p.b.actor::<Counter>(acct.clone())
            .ask(Cmd::Add(1))
            .await
            .expect("on b");
    assert_eq!(first.version, Version::new(1));
    assert_eq!(p.b.active_actors(), 1);
    // The shard moves from node-b to node-a.
    p.dir_a.inner.assign(ShardId::new(1), Placement::Local);
    p.dir_b
        .inner
        .assign(ShardId::new(1), Placement::Remote(node("node-a")));
    wait_until(WAIT, "node-b passivates the moved actor", async || {
        p.b.active_actors() == 0
    })
    .await;
    // Sent to the old owner, the command is routed to the new one.
    let next =
        p.b.actor::<Counter>(acct.clone())
            .ask(Cmd::Add(2))
            .await
            .expect("follows");
    assert_eq!((next.version, next.state.total), (Version::new(2), 3));
    assert_eq!(p.a.active_actors(), 1);
    assert_eq!(p.b.active_actors(), 0);
    // A handoff releases the shard's actors and returns once they stopped.
    p.a.release_shard(ShardId::new(1)).await;
    assert_eq!(p.a.active_actors(), 0);
    let again =
        p.a.actor::<Counter>(acct)
            .ask(Cmd::Add(4))
            .await
            .expect("reactivated");
    assert_eq!((again.version, again.state.total), (Version::new(3), 7));
    p.a.shutdown().await;
    p.b.shutdown().await;
}

/// A flood of requests at a node whose store is stuck: the node serves at
/// most `max_remote_requests` at once (one task each) and answers the rest
/// `Busy` at once; every caller gets `Busy` or success, none hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_remote_requests_is_served_by_a_bounded_number_of_tasks() {
    use common::GatedStore;
    const FLOOD: usize = 200;
    const SERVED: usize = 4;

    let server = NatsServer::start().await;
    let url = server.url();
    let cluster = unique_name("flood");
    let memory = Arc::new(InMemoryEventStore::new());
    let gated = Arc::new(GatedStore::new(memory.clone()));
    let a = ActorSystem::builder(memory.clone())
        .register::<Counter>()
        .cluster(&NatsNode::new(
            connect(&url).await,
            cluster.clone(),
            directory("node-a"),
        ))
        .start()
        .await
        .expect("start a");
    let b = ActorSystem::builder(gated.clone())
        .register::<Counter>()
        .cluster(&NatsNode::new(
            connect(&url).await,
            cluster.clone(),
            directory("node-b"),
        ))
        .max_remote_requests(SERVED)
        .start()
        .await
        .expect("start b");
    gated.close();

    let busy = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (b, most, stop) = (b.clone(), most.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            while !stop.load(Ordering::SeqCst) {
                most.fetch_max(b.serving_remote(), Ordering::SeqCst);
                tick.tick().await;
            }
        })
    };
    let started = Instant::now();
    let callers: Vec<_> = (0..FLOOD)
        .map(|i| {
            let r = a.actor::<Counter>(actor_in(1, &format!("flood{}", i % 50)));
            let busy = busy.clone();
            tokio::spawn(async move {
                let result = r.ask(Cmd::Add(1)).within(Duration::from_secs(20)).await;
                if matches!(result, Err(AskError::Busy)) {
                    busy.fetch_add(1, Ordering::SeqCst);
                }
                result
            })
        })
        .collect();
    wait_until(
        WAIT,
        "all but the served requests are turned away",
        async || busy.load(Ordering::SeqCst) == FLOOD - SERVED && b.serving_remote() == SERVED,
    )
    .await;
    gated.open();
    let mut ok = 0;
    for c in callers {
        match tokio::time::timeout(WAIT, c)
            .await
            .expect("no caller hangs")
            .expect("task")
        {
            Ok(_) => ok += 1,
            Err(AskError::Busy) => {}
            Err(e) => panic!("neither Busy nor success: {e:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    sampler.await.expect("sampler");
    assert_eq!((ok, busy.load(Ordering::SeqCst)), (SERVED, FLOOD - SERVED));
    assert!(
        most.load(Ordering::SeqCst) <= SERVED,
        "at most {SERVED} requests served at once, saw {}",
        most.load(Ordering::SeqCst)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "within the deadline"
    );
    wait_until(WAIT, "the served slots are released", async || {
        b.serving_remote() == 0
    })
    .await;
    // Only the served commands were stored.
    let mut stored = 0;
    for i in 0..50 {
        let sid = aether_actor::persistence_id("counter", &actor_in(1, &format!("flood{i}")))
            .expect("id");
        stored += memory
            .get_events(&sid, Version::ZERO)
            .await
            .expect("read")
            .len();
    }
    assert_eq!(stored, SERVED, "Busy requests never ran");
    a.shutdown().await;
    b.shutdown().await;
}
