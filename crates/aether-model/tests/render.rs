//! Rendering: the Mermaid and DOT texts are parsed back into nodes, edges and
//! clusters and compared with what the model says, not with snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command as Process, Stdio};

use aether_model::render::{escape_dot, escape_mermaid};
use aether_model::{
    Actor, Aggregate, BoundedContext, Command, DomainEvent, ElementKind, ExternalSystem, Hotspot,
    Model, Policy, ReadModel,
};

const EXAMPLE: &str = include_str!("../../../examples/order_fulfilment.model.json");

fn example() -> Model {
    Model::from_json_str(EXAMPLE).expect("example parses")
}

/// A node as `(kind, label)`.
type Key = (ElementKind, String);

#[derive(Debug, Default)]
struct Graph {
    /// id → (kind, label)
    nodes: BTreeMap<String, Key>,
    /// (from, to, style) by id.
    edges: Vec<(String, String, &'static str)>,
    /// cluster label → node ids inside.
    clusters: BTreeMap<String, Vec<String>>,
}

impl Graph {
    fn keyed_edges(&self) -> BTreeSet<(Key, Key, &'static str)> {
        self.edges
            .iter()
            .map(|(from, to, style)| {
                let from = self
                    .nodes
                    .get(from)
                    .unwrap_or_else(|| panic!("edge from unknown node {from}"));
                let to = self
                    .nodes
                    .get(to)
                    .unwrap_or_else(|| panic!("edge to unknown node {to}"));
                (from.clone(), to.clone(), *style)
            })
            .collect()
    }

    fn keys(&self) -> BTreeSet<Key> {
        self.nodes.values().cloned().collect()
    }

    fn cluster_of(&self, key: &Key) -> Option<&str> {
        let id = self.nodes.iter().find(|(_, k)| *k == key)?.0;
        self.clusters
            .iter()
            .find(|(_, ids)| ids.contains(id))
            .map(|(label, _)| label.as_str())
    }
}

fn kind_of_class(class: &str) -> ElementKind {
    match class {
        "command" => ElementKind::Command,
        "event" => ElementKind::Event,
        "aggregate" => ElementKind::Aggregate,
        "policy" => ElementKind::Policy,
        "readmodel" => ElementKind::ReadModel,
        "external" => ElementKind::ExternalSystem,
        "actor" => ElementKind::Actor,
        "hotspot" => ElementKind::Hotspot,
        other => panic!("unknown class {other}"),
    }
}

/// Kinds drawn as sticky notes, listed here independently of the renderer.
const STICKY_KINDS: [ElementKind; 8] = [
    ElementKind::Command,
    ElementKind::Event,
    ElementKind::Aggregate,
    ElementKind::Policy,
    ElementKind::ReadModel,
    ElementKind::ExternalSystem,
    ElementKind::Actor,
    ElementKind::Hotspot,
];

fn kind_of_colour(colour: &str) -> ElementKind {
    STICKY_KINDS
        .into_iter()
        .find(|k| k.sticky_colour() == Some(colour))
        .unwrap_or_else(|| panic!("unknown colour {colour}"))
}

const MERMAID_SAFE: &str = " _-.,/!?'+=@~*$^";

/// Decodes Mermaid `#NN;` entity codes, checking that nothing else unsafe is
/// left in the raw label.
fn mermaid_unescape(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if c == '#' {
            let end = rest
                .find(';')
                .unwrap_or_else(|| panic!("unterminated entity in {raw:?}"));
            let code: u32 = rest[1..end]
                .parse()
                .unwrap_or_else(|_| panic!("bad entity in {raw:?}"));
            out.push(char::from_u32(code).expect("valid char"));
            rest = &rest[end + 1..];
        } else {
            assert!(
                c.is_alphanumeric() || MERMAID_SAFE.contains(c),
                "unescaped {c:?} in Mermaid label {raw:?}"
            );
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The node id (ASCII letters and digits) at the start of `s`.
fn leading_id(s: &str) -> String {
    s.chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// The text between the first and the last `"` of `s`.
fn quoted(s: &str) -> &str {
    let start = s.find('"').expect("opening quote") + 1;
    let end = s.rfind('"').expect("closing quote");
    assert!(end >= start, "one quote only in {s:?}");
    &s[start..end]
}

fn parse_mermaid(text: &str) -> Graph {
    let mut graph = Graph::default();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("flowchart LR"));
    let mut cluster: Option<String> = None;
    let mut classes = BTreeMap::new();
    for line in lines {
        let t = line.trim();
        if t.is_empty() || t.starts_with("%% ") || t == "direction LR" {
            continue;
        }
        if let Some(rest) = t.strip_prefix("classDef ") {
            let (class, style) = rest.split_once(' ').expect("classDef NAME STYLE");
            let fill = style
                .split(',')
                .find_map(|s| s.strip_prefix("fill:"))
                .expect("fill");
            classes.insert(class.to_owned(), fill.to_owned());
        } else if let Some(rest) = t.strip_prefix("subgraph ") {
            assert!(cluster.is_none(), "nested subgraph");
            let label = mermaid_unescape(quoted(rest));
            assert!(rest.starts_with("ctx") && rest.contains("[\""), "{rest}");
            graph.clusters.insert(label.clone(), Vec::new());
            cluster = Some(label);
        } else if t == "end" {
            assert!(cluster.take().is_some(), "end without subgraph");
        } else if let Some((head, class)) = t.rsplit_once(":::") {
            let kind = kind_of_class(class);
            let id = leading_id(head);
            let shape = &head[id.len()..];
            let (open, close) = match kind {
                ElementKind::Actor => ("([\"", "\"])"),
                ElementKind::ExternalSystem => ("[[\"", "\"]]"),
                ElementKind::Hotspot => ("{{\"", "\"}}"),
                _ => ("[\"", "\"]"),
            };
            assert!(
                shape.starts_with(open) && shape.ends_with(close),
                "shape of {t}"
            );
            let label = mermaid_unescape(&shape[open.len()..shape.len() - close.len()]);
            assert!(
                graph.nodes.insert(id.clone(), (kind, label)).is_none(),
                "duplicate id {id}"
            );
            if let Some(c) = &cluster {
                graph.clusters.get_mut(c).expect("cluster").push(id);
            }
        } else {
            let parts: Vec<&str> = t.split(' ').collect();
            let [from, arrow, to] = parts[..] else {
                panic!("unexpected Mermaid line {t:?}");
            };
            let style = match arrow {
                "-->" => "flow",
                "-.->" => "draft",
                "-.-" => "note",
                other => panic!("unknown arrow {other}"),
            };
            graph.edges.push((from.to_owned(), to.to_owned(), style));
        }
    }
    assert!(cluster.is_none(), "unclosed subgraph");
    // Every class has its sticky colour.
    for (class, fill) in classes {
        assert_eq!(kind_of_class(&class).sticky_colour(), Some(fill.as_str()));
    }
    graph
}

/// Reads a DOT double-quoted string at the start of `s`; returns the
/// unescaped text and the rest.
fn dot_string(s: &str) -> (String, &str) {
    let mut chars = s.char_indices();
    assert_eq!(
        chars.next().map(|(_, c)| c),
        Some('"'),
        "not a string: {s:?}"
    );
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some('n') => out.push('\n'),
                other => panic!("unexpected escape {other:?} in {s:?}"),
            },
            c => {
                assert!(
                    c == '\t' || !c.is_control(),
                    "raw control character in {s:?}"
                );
                out.push(c);
            }
        }
    }
    panic!("unterminated string {s:?}");
}

/// Parses `key=value, key="value"` up to the closing `]`.
fn dot_attributes(mut s: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix(']') {
            assert_eq!(rest, ";", "trailing text");
            return attrs;
        }
        let (key, rest) = s.split_once('=').expect("key=value");
        let (value, rest) = if rest.starts_with('"') {
            dot_string(rest)
        } else {
            let end = rest.find([',', ']']).expect("end of value");
            (rest[..end].to_owned(), &rest[end..])
        };
        attrs.insert(key.trim().to_owned(), value);
        s = rest;
    }
}

fn parse_dot(text: &str) -> Graph {
    let mut graph = Graph::default();
    let mut lines = text.lines();
    let first = lines.next().expect("header");
    let (_, rest) = dot_string(first.strip_prefix("digraph ").expect("digraph"));
    assert_eq!(rest, " {");
    let mut cluster: Option<String> = None;
    let mut pending_cluster = false;
    let mut closed = false;
    for line in lines {
        let t = line.trim();
        assert!(!closed, "text after the closing brace: {t}");
        if t == "}" {
            if cluster.take().is_none() && !pending_cluster {
                closed = true;
            }
            pending_cluster = false;
            continue;
        }
        if t.starts_with("subgraph cluster_") && t.ends_with(" {") {
            pending_cluster = true;
            continue;
        }
        if let Some(rest) = t.strip_prefix("label=") {
            let (label, rest) = dot_string(rest);
            assert_eq!(rest, ";");
            if pending_cluster {
                graph.clusters.insert(label.clone(), Vec::new());
                cluster = Some(label);
                pending_cluster = false;
            }
            continue;
        }
        if t.starts_with("rankdir=")
            || t.starts_with("style=")
            || t.starts_with("graph [")
            || t.starts_with("node [")
            || t.starts_with("edge [")
        {
            continue;
        }
        let id = leading_id(t);
        assert!(!id.is_empty(), "unexpected DOT line {t:?}");
        let rest = &t[id.len()..];
        if let Some(rest) = rest.strip_prefix(" -> ") {
            let to = leading_id(rest);
            let tail = &rest[to.len()..];
            let style = if tail == ";" {
                "flow"
            } else {
                let attrs = dot_attributes(tail.strip_prefix(" [").expect("edge attributes"));
                match attrs.get("arrowhead").map(String::as_str) {
                    Some("none") => "note",
                    _ => "draft",
                }
            };
            graph.edges.push((id, to, style));
        } else {
            let attrs = dot_attributes(rest.strip_prefix(" [").expect("node attributes"));
            let kind = kind_of_colour(&attrs["fillcolor"]);
            graph
                .nodes
                .insert(id.clone(), (kind, attrs["label"].clone()));
            match &cluster {
                Some(c) => graph.clusters.get_mut(c).expect("cluster").push(id),
                None => assert!(!pending_cluster),
            }
        }
    }
    assert!(closed, "missing closing brace");
    graph
}

/// What the board must show, computed from the model on its own.
fn expected(model: &Model) -> (BTreeSet<Key>, BTreeSet<(Key, Key, &'static str)>) {
    let k = |kind, name: &str| (kind, name.to_owned());
    let mut nodes = BTreeSet::new();
    let mut edges = BTreeSet::new();
    let commands: BTreeSet<&str> = model.commands().map(|(_, c)| c.name.as_str()).collect();
    let events: BTreeSet<&str> = model.events().map(|(_, e)| e.name.as_str()).collect();
    // An aggregate or external system: its commands flow in, its events out.
    let mut owner = |kind, name: &str, commands: &[Command], events: &[DomainEvent]| {
        nodes.insert(k(kind, name));
        for c in commands {
            edges.insert((k(ElementKind::Command, &c.name), k(kind, name), "flow"));
        }
        for e in events {
            edges.insert((k(kind, name), k(ElementKind::Event, &e.name), "flow"));
        }
    };
    for (_, a) in model.aggregates() {
        owner(ElementKind::Aggregate, &a.name, &a.commands, &a.events);
    }
    for s in &model.external_systems {
        owner(ElementKind::ExternalSystem, &s.name, &s.commands, &s.events);
    }
    for c in &commands {
        nodes.insert(k(ElementKind::Command, c));
    }
    for e in &events {
        nodes.insert(k(ElementKind::Event, e));
    }
    for context in &model.contexts {
        for c in &context.commands {
            for e in c.emits.iter().filter(|e| events.contains(e.as_str())) {
                edges.insert((
                    k(ElementKind::Command, &c.name),
                    k(ElementKind::Event, e),
                    "draft",
                ));
            }
        }
    }
    for (_, p) in model.policies() {
        nodes.insert(k(ElementKind::Policy, &p.name));
        if events.contains(p.on.as_str()) {
            edges.insert((
                k(ElementKind::Event, &p.on),
                k(ElementKind::Policy, &p.name),
                "flow",
            ));
        }
        for c in p.issues.iter().filter(|c| commands.contains(c.as_str())) {
            edges.insert((
                k(ElementKind::Policy, &p.name),
                k(ElementKind::Command, c),
                "flow",
            ));
        }
    }
    for (_, r) in model.read_models() {
        nodes.insert(k(ElementKind::ReadModel, &r.name));
        for e in r.fed_by.iter().filter(|e| events.contains(e.as_str())) {
            edges.insert((
                k(ElementKind::Event, e),
                k(ElementKind::ReadModel, &r.name),
                "flow",
            ));
        }
    }
    for a in &model.actors {
        nodes.insert(k(ElementKind::Actor, &a.name));
        for c in a.issues.iter().filter(|c| commands.contains(c.as_str())) {
            edges.insert((
                k(ElementKind::Actor, &a.name),
                k(ElementKind::Command, c),
                "flow",
            ));
        }
    }
    for h in &model.hotspots {
        nodes.insert(k(ElementKind::Hotspot, &h.question));
    }
    (nodes, edges)
}

fn hotspot_edges(model: &Model) -> BTreeSet<(Key, Key, &'static str)> {
    // The example's hotspots, by hand.
    let _ = model;
    [
        (
            "Stock is short: back-order, ship partially, or cancel the order?",
            ElementKind::Event,
            "StockShortageDetected",
        ),
        (
            "Who handles a chargeback after the parcel has left the warehouse?",
            ElementKind::Event,
            "ChargebackReceived",
        ),
        (
            "Authorise at order time and capture at dispatch, or charge once?",
            ElementKind::Aggregate,
            "Payment",
        ),
    ]
    .into_iter()
    .map(|(q, kind, name)| {
        (
            (ElementKind::Hotspot, q.to_owned()),
            (kind, name.to_owned()),
            "note",
        )
    })
    .collect()
}

#[test]
fn mermaid_shows_every_element_and_flow_of_the_example() {
    let model = example();
    let text = model.to_mermaid();
    let graph = parse_mermaid(&text);
    let (nodes, mut edges) = expected(&model);
    assert_eq!(graph.keys(), nodes);
    assert_eq!(graph.nodes.len(), nodes.len(), "one node per element");
    edges.extend(hotspot_edges(&model));
    assert_eq!(graph.keyed_edges(), edges);
    assert_eq!(graph.edges.len(), edges.len(), "no duplicate edges");
    // Contexts are clusters holding their own elements.
    let labels: Vec<&str> = graph.clusters.keys().map(String::as_str).collect();
    assert_eq!(labels, ["Inventory", "Ordering", "Payment", "Shipping"]);
    assert_eq!(
        graph.cluster_of(&(ElementKind::Aggregate, "Order".into())),
        Some("Ordering")
    );
    assert_eq!(
        graph.cluster_of(&(ElementKind::Policy, "ReserveOnOrder".into())),
        Some("Inventory")
    );
    assert_eq!(
        graph.cluster_of(&(ElementKind::ReadModel, "TrackingPage".into())),
        Some("Shipping")
    );
    assert_eq!(
        graph.cluster_of(&(ElementKind::Actor, "Customer".into())),
        None
    );
    assert_eq!(
        graph.cluster_of(&(ElementKind::ExternalSystem, "Payment provider".into())),
        None
    );
}

#[test]
fn dot_shows_every_element_and_flow_of_the_example() {
    let model = example();
    let graph = parse_dot(&model.to_dot());
    let (nodes, mut edges) = expected(&model);
    assert_eq!(graph.keys(), nodes);
    assert_eq!(graph.nodes.len(), nodes.len());
    edges.extend(hotspot_edges(&model));
    assert_eq!(graph.keyed_edges(), edges);
    assert_eq!(graph.edges.len(), edges.len());
    assert_eq!(graph.clusters.len(), 4);
    assert_eq!(
        graph.cluster_of(&(ElementKind::Event, "OrderPlaced".into())),
        Some("Ordering")
    );
}

#[test]
fn sticky_colours_follow_event_storming() {
    let colour = |k: ElementKind| k.sticky_colour().expect("sticky");
    assert_eq!(colour(ElementKind::Command), "#A7C7E7");
    assert_eq!(colour(ElementKind::Event), "#FFA94D");
    let kinds = STICKY_KINDS;
    let distinct: BTreeSet<&str> = kinds.iter().map(|k| colour(*k)).collect();
    assert_eq!(distinct.len(), kinds.len(), "one colour per kind");
    assert_eq!(ElementKind::Context.sticky_colour(), None);
}

#[test]
fn output_is_deterministic() {
    let model = example();
    assert_eq!(model.to_mermaid(), model.to_mermaid());
    assert_eq!(model.to_dot(), model.to_dot());
    let reloaded = Model::from_json_str(&model.to_json_string().expect("save")).expect("load");
    assert_eq!(reloaded.to_mermaid(), model.to_mermaid());
    assert_eq!(reloaded.to_dot(), model.to_dot());
    // Declaration order is output order.
    let text = model.to_mermaid();
    let place = text.find("\"PlaceOrder\"").expect("PlaceOrder");
    let confirm = text.find("\"ConfirmOrder\"").expect("ConfirmOrder");
    assert!(place < confirm);
}

/// Names that break naive renderers.
const EVIL: &[&str] = &[
    r#"Say "hi" [now]"#,
    "a]b\"c{d}|e#f;g<h>&i(j)",
    r"back\slash \n not a newline \",
    "end",
    "%% not a comment",
    "x --> y",
    "Ünïcødé ✓ 注文",
    "tab\tand\nnew line",
    "#quot; #35;",
    "'single' `tick` <b>bold</b>",
    "subgraph",
    "}",
    "a:::b",
    "click x call y()",
    "style cmd0 fill:#f00;",
];

/// Expected nodes and edges with every label passed through `label`, as a
/// renderer that cannot show some characters draws them.
fn relabel(
    nodes: BTreeSet<Key>,
    edges: BTreeSet<(Key, Key, &'static str)>,
    label: impl Fn(&str) -> String,
) -> (BTreeSet<Key>, BTreeSet<(Key, Key, &'static str)>) {
    let nodes = nodes.into_iter().map(|(k, s)| (k, label(&s))).collect();
    let edges = edges
        .into_iter()
        .map(|((a, s), (b, t), style)| ((a, label(&s)), (b, label(&t)), style))
        .collect();
    (nodes, edges)
}

fn evil_model() -> Model {
    let names = || EVIL.iter().map(|s| (*s).to_owned());
    Model {
        domain: EVIL[0].into(),
        description: None,
        contexts: vec![BoundedContext {
            name: EVIL[1].into(),
            aggregates: vec![Aggregate {
                name: EVIL[2].into(),
                description: None,
                commands: names()
                    .map(|n| Command {
                        emits: vec![n.clone()],
                        name: n,
                        ..Command::default()
                    })
                    .collect(),
                events: names()
                    .map(|n| DomainEvent {
                        name: n,
                        ..DomainEvent::default()
                    })
                    .collect(),
            }],
            policies: names()
                .map(|n| Policy {
                    on: n.clone(),
                    issues: vec![EVIL[0].into()],
                    name: n,
                    description: None,
                })
                .collect(),
            read_models: vec![ReadModel {
                name: EVIL[3].into(),
                description: None,
                fed_by: names().collect(),
            }],
            ..BoundedContext::default()
        }],
        actors: names()
            .map(|n| Actor {
                issues: vec![n.clone()],
                name: n,
                description: None,
            })
            .collect(),
        external_systems: vec![ExternalSystem {
            name: EVIL[4].into(),
            ..ExternalSystem::default()
        }],
        hotspots: names()
            .map(|n| Hotspot {
                on: Some(format!("event:{n}")),
                question: n,
            })
            .collect(),
    }
}

#[test]
fn names_with_quotes_and_brackets_do_not_break_mermaid() {
    let model = evil_model();
    let text = model.to_mermaid();
    let graph = parse_mermaid(&text);
    let (nodes, edges) = expected(&model);
    let flatten = |s: &str| {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
    };
    let (nodes, flat_edges) = relabel(nodes, edges, flatten);
    assert_eq!(graph.keys(), nodes);
    let found = graph.keyed_edges();
    assert!(flat_edges.is_subset(&found), "missing edges");
    // One hotspot note per evil event, on top.
    assert_eq!(found.len(), flat_edges.len() + EVIL.len());
    // The context label survived too.
    assert!(graph.clusters.contains_key(EVIL[1]));
    // The escaper itself.
    assert_eq!(
        escape_mermaid(r#"Say "hi" [now]"#),
        "Say #34;hi#34; #91;now#93;"
    );
    assert_eq!(escape_mermaid("a\nb"), "a b");
}

#[test]
fn names_with_quotes_and_brackets_do_not_break_dot() {
    let model = evil_model();
    let graph = parse_dot(&model.to_dot());
    let (nodes, edges) = expected(&model);
    let clean = |s: &str| {
        s.chars()
            .filter(|c| *c != '\r')
            .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
            .collect::<String>()
    };
    let (nodes, edges) = relabel(nodes, edges, clean);
    assert_eq!(graph.keys(), nodes);
    assert!(edges.is_subset(&graph.keyed_edges()));
    assert_eq!(escape_dot(r#"a "b" \c"#), r#"a \"b\" \\c"#);
    assert_eq!(escape_dot("a\nb"), r"a\nb");
}

#[test]
fn dangling_references_are_left_out_of_drawings() {
    let mut model = example();
    model.contexts[0].policies[0].on = "NoSuchEvent".into();
    model.contexts[0].policies[0].issues = vec!["NoSuchCommand".into()];
    model.actors[0].issues.push("Nope".into());
    model.hotspots.push(Hotspot {
        question: "Lost?".into(),
        on: Some("Nowhere".into()),
    });
    for graph in [
        parse_mermaid(&model.to_mermaid()),
        parse_dot(&model.to_dot()),
    ] {
        let (nodes, mut edges) = expected(&model);
        assert_eq!(graph.keys(), nodes);
        edges.extend(hotspot_edges(&model));
        assert_eq!(graph.keyed_edges(), edges);
    }
}

#[test]
fn hotspots_on_a_context_sit_inside_it() {
    let mut model = example();
    model.hotspots = vec![Hotspot {
        question: "Split this context?".into(),
        on: Some("context:Payment".into()),
    }];
    let key = (ElementKind::Hotspot, "Split this context?".to_owned());
    for graph in [
        parse_mermaid(&model.to_mermaid()),
        parse_dot(&model.to_dot()),
    ] {
        assert_eq!(graph.cluster_of(&key), Some("Payment"));
        assert!(graph.keyed_edges().iter().all(|(from, _, _)| *from != key));
    }
}

/// Runs `dot -Tsvg` on `source`; `None` when Graphviz is not installed.
fn graphviz_svg(source: &str) -> Option<String> {
    let mut child = match Process::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("skipping the SVG assertions: Graphviz `dot` is not on PATH ({e})");
            return None;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(source.as_bytes())
        .expect("write DOT to dot");
    let output = child.wait_with_output().expect("dot runs");
    assert!(
        output.status.success(),
        "dot rejected the DOT text: {}\n{source}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).expect("SVG is UTF-8"))
}

/// Text as Graphviz writes it into SVG.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('-', "&#45;")
}

#[test]
fn graphviz_renders_a_real_svg() {
    let model = example();
    let Some(svg) = graphviz_svg(&model.to_dot()) else {
        return;
    };
    assert!(svg.contains("<svg"), "not an SVG");
    let graph = parse_dot(&model.to_dot());
    assert_eq!(svg.matches("class=\"node\"").count(), graph.nodes.len());
    assert_eq!(svg.matches("class=\"edge\"").count(), graph.edges.len());
    assert_eq!(svg.matches("class=\"cluster\"").count(), 4);
    for (_, label) in graph.nodes.values() {
        assert!(
            svg.contains(&format!(">{}</text>", xml_escape(label))),
            "{label} not drawn"
        );
    }
    for colour in ["#A7C7E7", "#FFA94D", "#FFE066"] {
        assert!(
            svg.to_ascii_uppercase().contains(colour),
            "{colour} not used"
        );
    }
}

#[test]
fn graphviz_accepts_hostile_names() {
    let model = evil_model();
    let dot = model.to_dot();
    let Some(svg) = graphviz_svg(&dot) else {
        return;
    };
    let graph = parse_dot(&dot);
    assert_eq!(svg.matches("class=\"node\"").count(), graph.nodes.len());
    assert_eq!(svg.matches("class=\"edge\"").count(), graph.edges.len());
    assert!(svg.contains("Ünïcødé ✓ 注文"));
}
