//! Drawing a model as a Mermaid flowchart or a Graphviz digraph.
//!
//! Both renderers draw the same board: contexts as clusters holding their
//! aggregates, commands, events, policies and read models; actors, external
//! systems (with their commands and events) and free hotspots outside.
//! Edges: actor → command → aggregate (or external system) → event →
//! policy → command, event → read model, and a dashed line from a hotspot
//! to what it is attached to (a hotspot on a context is drawn inside it).
//!
//! Node identifiers are generated (`cmd3`, `evt0`), never taken from names,
//! and every label is escaped, so any name is safe. References that do not
//! resolve are skipped: an invalid model still draws. Output order is the
//! model's declaration order, so the same model always gives the same text.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::model::{ElementKind, Model};

impl ElementKind {
    /// The sticky-note colour of this kind on an EventStorming board, as
    /// `#RRGGBB` (`None` for kinds that are not stickies).
    pub fn sticky_colour(self) -> Option<&'static str> {
        Some(match self {
            ElementKind::Command => "#A7C7E7",
            ElementKind::Event => "#FFA94D",
            ElementKind::Aggregate => "#FFE066",
            ElementKind::Policy => "#D7B8F3",
            ElementKind::ReadModel => "#B5E48C",
            ElementKind::ExternalSystem => "#F7A8C8",
            ElementKind::Actor => "#FFF59D",
            ElementKind::Hotspot => "#FF5C7A",
            ElementKind::Domain | ElementKind::Context | ElementKind::Field => return None,
        })
    }

    /// Class name used for the kind in Mermaid output (`"readmodel"`).
    fn class(self) -> &'static str {
        match self {
            ElementKind::Command => "command",
            ElementKind::Event => "event",
            ElementKind::Aggregate => "aggregate",
            ElementKind::Policy => "policy",
            ElementKind::ReadModel => "readmodel",
            ElementKind::ExternalSystem => "external",
            ElementKind::Actor => "actor",
            ElementKind::Hotspot => "hotspot",
            ElementKind::Domain | ElementKind::Context | ElementKind::Field => "other",
        }
    }
}

/// Kinds that get a node, in the order their styles are declared.
const NODE_KINDS: [ElementKind; 8] = [
    ElementKind::Command,
    ElementKind::Event,
    ElementKind::Aggregate,
    ElementKind::Policy,
    ElementKind::ReadModel,
    ElementKind::ExternalSystem,
    ElementKind::Actor,
    ElementKind::Hotspot,
];

struct Node {
    id: String,
    label: String,
    kind: ElementKind,
}

struct Cluster {
    id: String,
    label: String,
    nodes: Vec<Node>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Line {
    /// A flow: command to aggregate, event to policy, …
    Flow,
    /// A draft command's possible outcome.
    Draft,
    /// A hotspot attached to an element (no arrow head).
    Note,
}

/// The board, independent of the output syntax.
struct Board {
    title: String,
    clusters: Vec<Cluster>,
    free: Vec<Node>,
    edges: Vec<(String, String, Line)>,
}

/// First node id per name, per kind.
#[derive(Default)]
struct Ids {
    by_kind: HashMap<ElementKind, HashMap<String, String>>,
    counters: HashMap<ElementKind, usize>,
}

impl Ids {
    fn add(&mut self, kind: ElementKind, name: &str) -> String {
        let counter = self.counters.entry(kind).or_default();
        let prefix = match kind {
            ElementKind::Context => "ctx",
            ElementKind::Aggregate => "agg",
            ElementKind::Command => "cmd",
            ElementKind::Event => "evt",
            ElementKind::Policy => "pol",
            ElementKind::ReadModel => "rm",
            ElementKind::Actor => "act",
            ElementKind::ExternalSystem => "ext",
            ElementKind::Hotspot => "hot",
            ElementKind::Domain | ElementKind::Field => "x",
        };
        let id = format!("{prefix}{counter}");
        *counter += 1;
        self.by_kind
            .entry(kind)
            .or_default()
            .entry(name.to_owned())
            .or_insert_with(|| id.clone());
        id
    }

    fn get(&self, kind: ElementKind, name: &str) -> Option<&str> {
        self.by_kind.get(&kind)?.get(name).map(String::as_str)
    }
}

impl Board {
    fn build(model: &Model) -> Board {
        let mut ids = Ids::default();
        let mut clusters = Vec::new();
        let mut free = Vec::new();
        // Pass 1: every node, so that edges can find them by name.
        for context in &model.contexts {
            let id = ids.add(ElementKind::Context, &context.name);
            let mut nodes = Vec::new();
            for aggregate in &context.aggregates {
                for c in &aggregate.commands {
                    nodes.push(node_of(&mut ids, ElementKind::Command, &c.name));
                }
                nodes.push(node_of(&mut ids, ElementKind::Aggregate, &aggregate.name));
                for e in &aggregate.events {
                    nodes.push(node_of(&mut ids, ElementKind::Event, &e.name));
                }
            }
            for c in &context.commands {
                nodes.push(node_of(&mut ids, ElementKind::Command, &c.name));
            }
            for e in &context.events {
                nodes.push(node_of(&mut ids, ElementKind::Event, &e.name));
            }
            for p in &context.policies {
                nodes.push(node_of(&mut ids, ElementKind::Policy, &p.name));
            }
            for r in &context.read_models {
                nodes.push(node_of(&mut ids, ElementKind::ReadModel, &r.name));
            }
            clusters.push(Cluster {
                id,
                label: context.name.clone(),
                nodes,
            });
        }
        for system in &model.external_systems {
            for c in &system.commands {
                free.push(node_of(&mut ids, ElementKind::Command, &c.name));
            }
            free.push(node_of(&mut ids, ElementKind::ExternalSystem, &system.name));
            for e in &system.events {
                free.push(node_of(&mut ids, ElementKind::Event, &e.name));
            }
        }
        for actor in &model.actors {
            free.push(node_of(&mut ids, ElementKind::Actor, &actor.name));
        }

        // Pass 2: edges, in model order, without duplicates.
        let mut edges = Vec::new();
        let mut seen = HashSet::new();
        let mut edge = |from: Option<&str>, to: Option<&str>, line: Line| {
            if let (Some(from), Some(to)) = (from, to) {
                let e = (from.to_owned(), to.to_owned(), line);
                if seen.insert(e.clone()) {
                    edges.push(e);
                }
            }
        };
        let cmd = |name: &str| ids.get(ElementKind::Command, name);
        let evt = |name: &str| ids.get(ElementKind::Event, name);
        for actor in &model.actors {
            let from = ids.get(ElementKind::Actor, &actor.name);
            for c in &actor.issues {
                edge(from, cmd(c), Line::Flow);
            }
        }
        for context in &model.contexts {
            for aggregate in &context.aggregates {
                let owner = ids.get(ElementKind::Aggregate, &aggregate.name);
                for c in &aggregate.commands {
                    edge(cmd(&c.name), owner, Line::Flow);
                }
                for e in &aggregate.events {
                    edge(owner, evt(&e.name), Line::Flow);
                }
            }
            for c in &context.commands {
                for e in &c.emits {
                    edge(cmd(&c.name), evt(e), Line::Draft);
                }
            }
        }
        for system in &model.external_systems {
            let owner = ids.get(ElementKind::ExternalSystem, &system.name);
            for c in &system.commands {
                edge(cmd(&c.name), owner, Line::Flow);
            }
            for e in &system.events {
                edge(owner, evt(&e.name), Line::Flow);
            }
        }
        for (_, policy) in model.policies() {
            let id = ids.get(ElementKind::Policy, &policy.name);
            edge(evt(&policy.on), id, Line::Flow);
            for c in &policy.issues {
                edge(id, cmd(c), Line::Flow);
            }
        }
        for (_, read_model) in model.read_models() {
            let id = ids.get(ElementKind::ReadModel, &read_model.name);
            for e in &read_model.fed_by {
                edge(evt(e), id, Line::Flow);
            }
        }

        // Hotspots last: inside the context they are attached to, else free
        // with a dashed line to their element.
        for (i, hotspot) in model.hotspots.iter().enumerate() {
            let id = format!("hot{i}");
            let node = Node {
                id: id.clone(),
                label: hotspot.question.clone(),
                kind: ElementKind::Hotspot,
            };
            let target = hotspot.on.as_deref().and_then(|on| {
                let (kinds, name) = ElementKind::reference_targets(on);
                kinds
                    .into_iter()
                    .find_map(|k| ids.get(k, name).map(|id| (k, id)))
            });
            match target {
                Some((ElementKind::Context, ctx)) => {
                    match clusters.iter_mut().find(|c| c.id == ctx) {
                        Some(cluster) => cluster.nodes.push(node),
                        None => free.push(node),
                    }
                }
                Some((_, to)) => {
                    free.push(node);
                    edge(Some(&id), Some(to), Line::Note);
                }
                None => free.push(node),
            }
        }

        Board {
            title: model.domain.clone(),
            clusters,
            free,
            edges,
        }
    }
}

fn node_of(ids: &mut Ids, kind: ElementKind, name: &str) -> Node {
    Node {
        id: ids.add(kind, name),
        label: name.to_owned(),
        kind,
    }
}

/// Characters left as they are in Mermaid labels, besides letters and digits.
///
/// `:` is not among them: Mermaid's own preprocessing rewrites
/// `style …:…#…;` anywhere on a line, which would corrupt an entity code
/// that follows a colon.
const MERMAID_PLAIN: &str = " _-.,/!?'+=@~*$^";

/// Escapes text for a double-quoted Mermaid label.
///
/// Letters, digits, spaces and harmless punctuation pass through; every
/// other character becomes a numeric entity code (`"` → `#34;`, `#` →
/// `#35;`, `:` → `#58;`), which Mermaid decodes back. Line breaks and other
/// control characters become spaces.
pub fn escape_mermaid(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push(' ');
        } else if c.is_alphanumeric() || MERMAID_PLAIN.contains(c) {
            out.push(c);
        } else {
            let _ = write!(out, "#{};", u32::from(c));
        }
    }
    out
}

/// Escapes text for a double-quoted Graphviz string.
///
/// `"` and `\` are backslash-escaped (so Graphviz's `\N`, `\l` escapes
/// cannot be triggered), line breaks become `\n`, other control characters
/// become spaces.
pub fn escape_dot(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

impl Model {
    /// Draws the model as a Mermaid `flowchart LR`.
    ///
    /// One statement per line: a `classDef` per sticky colour, a `subgraph`
    /// per context, nodes as `id["label"]:::class` (actors `(["…"])`,
    /// external systems `[["…"]]`, hotspots `{{"…"}}`), then edges
    /// (`-->` flows, `-.->` draft outcomes, `-.-` hotspot notes). See the
    /// [module docs](crate::render) for what is drawn.
    pub fn to_mermaid(&self) -> String {
        let board = Board::build(self);
        let mut out = String::new();
        out.push_str("flowchart LR\n");
        let _ = writeln!(
            out,
            "  %% EventStorming board: {}",
            escape_mermaid(&board.title)
        );
        for kind in NODE_KINDS {
            let fill = kind.sticky_colour().unwrap_or("#FFFFFF");
            let text = if kind == ElementKind::Hotspot {
                "#FFFFFF"
            } else {
                "#000000"
            };
            let extra = if kind == ElementKind::Actor {
                ",font-size:11px"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  classDef {} fill:{fill},stroke:#555555,color:{text}{extra}",
                kind.class()
            );
        }
        let mermaid_node = |out: &mut String, indent: &str, node: &Node| {
            let (open, close) = match node.kind {
                ElementKind::Actor => ("([", "])"),
                ElementKind::ExternalSystem => ("[[", "]]"),
                ElementKind::Hotspot => ("{{", "}}"),
                _ => ("[", "]"),
            };
            let _ = writeln!(
                out,
                "{indent}{}{open}\"{}\"{close}:::{}",
                node.id,
                escape_mermaid(&node.label),
                node.kind.class()
            );
        };
        for cluster in &board.clusters {
            let _ = writeln!(
                out,
                "  subgraph {}[\"{}\"]",
                cluster.id,
                escape_mermaid(&cluster.label)
            );
            out.push_str("    direction LR\n");
            for node in &cluster.nodes {
                mermaid_node(&mut out, "    ", node);
            }
            out.push_str("  end\n");
        }
        for node in &board.free {
            mermaid_node(&mut out, "  ", node);
        }
        for (from, to, line) in &board.edges {
            let arrow = match line {
                Line::Flow => "-->",
                Line::Draft => "-.->",
                Line::Note => "-.-",
            };
            let _ = writeln!(out, "  {from} {arrow} {to}");
        }
        out
    }

    /// Draws the model as a Graphviz `digraph` (left to right).
    ///
    /// Contexts are `subgraph cluster_…`; every node is a filled box in its
    /// sticky colour with a quoted, escaped `label`; edges are
    /// `from -> to;` (draft outcomes dashed, hotspot notes dashed without an
    /// arrow head). Render with `dot -Tsvg`. See the
    /// [module docs](crate::render) for what is drawn.
    pub fn to_dot(&self) -> String {
        let board = Board::build(self);
        let mut out = String::new();
        let _ = writeln!(out, "digraph \"{}\" {{", escape_dot(&board.title));
        out.push_str("  rankdir=LR;\n");
        out.push_str("  graph [fontname=\"Helvetica\", labelloc=t];\n");
        out.push_str(
            "  node [shape=box, style=\"filled\", fontname=\"Helvetica\", color=\"#555555\"];\n",
        );
        out.push_str("  edge [color=\"#444444\"];\n");
        let _ = writeln!(out, "  label=\"{}\";", escape_dot(&board.title));
        let dot_node = |out: &mut String, indent: &str, node: &Node| {
            let fill = node.kind.sticky_colour().unwrap_or("#FFFFFF");
            let extra = match node.kind {
                ElementKind::Actor => ", fontsize=10, width=0.6, height=0.3",
                ElementKind::Aggregate => ", height=0.9",
                ElementKind::ExternalSystem => ", shape=box3d",
                ElementKind::Hotspot => ", shape=note, fontcolor=\"#FFFFFF\"",
                _ => "",
            };
            let _ = writeln!(
                out,
                "{indent}{} [label=\"{}\", fillcolor=\"{fill}\"{extra}];",
                node.id,
                escape_dot(&node.label)
            );
        };
        for (i, cluster) in board.clusters.iter().enumerate() {
            let _ = writeln!(out, "  subgraph cluster_{i} {{");
            let _ = writeln!(out, "    label=\"{}\";", escape_dot(&cluster.label));
            out.push_str("    style=\"rounded,dashed\";\n");
            for node in &cluster.nodes {
                dot_node(&mut out, "    ", node);
            }
            out.push_str("  }\n");
        }
        for node in &board.free {
            dot_node(&mut out, "  ", node);
        }
        for (from, to, line) in &board.edges {
            let attrs = match line {
                Line::Flow => "",
                Line::Draft => " [style=dashed]",
                Line::Note => " [style=dashed, arrowhead=none, color=\"#FF5C7A\"]",
            };
            let _ = writeln!(out, "  {from} -> {to}{attrs};");
        }
        out.push_str("}\n");
        out
    }
}
