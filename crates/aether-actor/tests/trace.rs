//! Trace context over NATS: one command asked on node A of an actor owned
//! by node B is one trace. B's `aether.handle` span has A's `aether.ask`
//! trace id and A's span id as its parent; the actor's command span is a
//! child of `aether.handle`. Two actor systems on one real nats-server, a
//! subscriber that captures span fields.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aether_actor::{ActorSystem, NatsNode, Placement, StaticDirectory, TraceContext};
use aether_actor::{NodeId, shard_of};
use aether_core::ActorId;
use aether_store_memory::InMemoryEventStore;
use aether_testkit_nats::{NatsServer, connect, unique_name};
use common::{Cmd, Counter, id};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const SHARDS: u32 = 2;

#[derive(Debug, Clone)]
struct SpanRec {
    id: u64,
    name: &'static str,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Captured {
    spans: Mutex<Vec<SpanRec>>,
    stack: Mutex<Vec<u64>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A subscriber that keeps every span with its fields and parent.
#[derive(Clone, Default)]
struct Capture(Arc<Captured>);

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let parent = if attrs.is_root() {
            None
        } else if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else {
            self.0.stack.lock().unwrap().last().copied()
        };
        let mut spans = self.0.spans.lock().unwrap();
        let id = spans.len() as u64 + 1;
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        spans.push(SpanRec {
            id,
            name: attrs.metadata().name(),
            parent,
            fields,
        });
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut spans = self.0.spans.lock().unwrap();
        let rec = &mut spans[span.into_u64() as usize - 1];
        values.record(&mut Fields(&mut rec.fields));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, span: &Id) {
        self.0.stack.lock().unwrap().push(span.into_u64());
    }
    fn exit(&self, span: &Id) {
        let mut stack = self.0.stack.lock().unwrap();
        if let Some(i) = stack.iter().rposition(|s| *s == span.into_u64()) {
            stack.remove(i);
        }
    }
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<SpanRec> {
        let spans = self.0.spans.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

fn node(n: &str) -> NodeId {
    NodeId::new(n).expect("node id")
}

fn actor_in(shard: u32, tag: &str) -> ActorId {
    (0..)
        .map(|i| id(format!("{tag}-{i}")))
        .find(|a| shard_of("counter", a, SHARDS).get() == shard)
        .expect("some id falls in every shard")
}

async fn system(url: &str, cluster: &str, store: Arc<InMemoryEventStore>, me: &str) -> ActorSystem {
    let me_id = node(me);
    let mine = me.to_owned();
    let dir = Arc::new(StaticDirectory::new(me_id, SHARDS, move |s| {
        let owner = if s.get() == 0 { "node-a" } else { "node-b" };
        if owner == mine {
            Placement::Local
        } else {
            Placement::Remote(node(owner))
        }
    }));
    ActorSystem::builder(store)
        .register::<Counter>()
        .cluster(&NatsNode::new(connect(url).await, cluster, dir))
        .start()
        .await
        .expect("start")
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Current-thread runtime: every task (both systems, the NATS clients)
/// runs on this thread, under the capturing subscriber.
#[tokio::test(flavor = "current_thread")]
async fn one_remote_command_is_one_trace_over_two_nodes() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let server = NatsServer::start().await;
    let cluster = unique_name("trace");
    let store = Arc::new(InMemoryEventStore::new());
    let a = system(&server.url(), &cluster, store.clone(), "node-a").await;
    let b = system(&server.url(), &cluster, store, "node-b").await;
    let on_b = actor_in(1, "traced");

    a.actor::<Counter>(on_b.clone())
        .ask(Cmd::Add(1))
        .await
        .expect("remote ask");

    let asks = capture.spans("aether.ask");
    let handles = capture.spans("aether.handle");
    assert_eq!((asks.len(), handles.len()), (1, 1), "one ask, one handle");
    let (ask, handle) = (&asks[0], &handles[0]);
    let trace = &ask.fields["trace_id"];
    assert!(is_hex(trace, 32), "trace id {trace:?}");
    assert!(is_hex(&ask.fields["span_id"], 16));
    assert!(!ask.fields.contains_key("parent_span_id"), "a new trace");
    assert_eq!(&handle.fields["trace_id"], trace, "same trace on the owner");
    assert_eq!(
        handle.fields["parent_span_id"], ask.fields["span_id"],
        "the owner's span is a child of the caller's"
    );
    assert_ne!(handle.fields["span_id"], ask.fields["span_id"]);
    assert_eq!(handle.fields["actor"], on_b.as_str());
    // The actor's command span on B hangs under B's handle span.
    let commands = capture.spans("aether.actor.command");
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].parent, Some(handle.id));

    // A caller that is itself in a trace (e.g. from an incoming
    // `traceparent`) continues it, over the wire too.
    let incoming =
        TraceContext::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
    incoming
        .scope(
            a.actor::<Counter>(on_b.clone())
                .ask(Cmd::Add(2))
                .into_future(),
        )
        .await
        .expect("remote ask in a trace");
    let asks = capture.spans("aether.ask");
    let handles = capture.spans("aether.handle");
    assert_eq!((asks.len(), handles.len()), (2, 2));
    assert_eq!(
        asks[1].fields["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(asks[1].fields["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(
        handles[1].fields["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        handles[1].fields["parent_span_id"],
        asks[1].fields["span_id"]
    );

    // A local ask gets its own trace and the command span is its child.
    let on_a = actor_in(0, "local");
    a.actor::<Counter>(on_a)
        .ask(Cmd::Add(3))
        .await
        .expect("local ask");
    let asks = capture.spans("aether.ask");
    assert_eq!(asks.len(), 3);
    assert!(is_hex(&asks[2].fields["trace_id"], 32));
    assert_ne!(asks[2].fields["trace_id"], asks[0].fields["trace_id"]);
    let commands = capture.spans("aether.actor.command");
    assert_eq!(commands.last().and_then(|c| c.parent), Some(asks[2].id));
    a.shutdown().await;
    b.shutdown().await;
}
