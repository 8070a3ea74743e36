//! The EventStorming model types.
//!
//! A [`Model`] is plain data: it can be built in code, loaded from a file and
//! saved again. Elements refer to each other by **name** (a policy says
//! `on: "OrderPlaced"`, `issues: ["ReserveStock"]`), so nothing here guarantees
//! that a reference resolves; [`Model::validate`] checks that.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A whole EventStorming board: one domain, its bounded contexts, and the
/// people and systems around them.
///
/// Element order is meaningful only for presentation: renderers and code
/// generation follow declaration order, so the same model always gives the
/// same output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Name of the domain the board explores, e.g. `"Order fulfilment"`.
    pub domain: String,
    /// Free text about the domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Bounded contexts, each holding aggregates, policies and read models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<BoundedContext>,
    /// People or roles who issue commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<Actor>,
    /// Systems outside the domain that handle commands or emit events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_systems: Vec<ExternalSystem>,
    /// Open questions, optionally attached to an element.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hotspots: Vec<Hotspot>,
}

/// A bounded context: a part of the domain with its own language.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoundedContext {
    /// Name of the context, unique among contexts.
    pub name: String,
    /// Free text about the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Aggregates (consistency boundaries) of this context.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aggregates: Vec<Aggregate>,
    /// Commands already on the board but not yet given to an aggregate.
    ///
    /// Validation reports each of them as
    /// [`UnhandledCommand`](crate::DiagnosticKind::UnhandledCommand): they are
    /// how a board in progress is written down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    /// Events already on the board but not yet emitted by an aggregate.
    ///
    /// Validation reports each of them as
    /// [`UnemittedEvent`](crate::DiagnosticKind::UnemittedEvent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<DomainEvent>,
    /// Policies ("whenever *event*, then *command*") of this context.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<Policy>,
    /// Read models (projections) of this context.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_models: Vec<ReadModel>,
}

/// An aggregate: handles commands and emits the events it owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// Name of the aggregate, unique model-wide (e.g. `"Order"`).
    pub name: String,
    /// Free text about the aggregate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Commands this aggregate handles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    /// Events this aggregate owns; each must be emitted by one of its commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<DomainEvent>,
}

/// A command (blue sticky): an intention, named in the imperative
/// (`"PlaceOrder"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Name of the command, unique among all commands of the model.
    pub name: String,
    /// Free text about the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The events handling this command may emit (its possible outcomes).
    ///
    /// Each must be owned by the same aggregate or external system. In a file
    /// this may be a single string or a list.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub emits: Vec<String>,
    /// Payload fields, used by the generated Rust skeleton.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

/// A domain event (orange sticky): a fact, named in the past tense
/// (`"OrderPlaced"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEvent {
    /// Name of the event, unique among all events of the model.
    pub name: String,
    /// Free text about the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Payload fields, used by the generated Rust skeleton.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
}

/// A payload field of a command or event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Field name; turned into a `snake_case` Rust identifier by code
    /// generation.
    pub name: String,
    /// Rust type of the field, written as in Rust (`"u64"`, `"Vec<String>"`).
    ///
    /// Validation accepts owned path types with generics, tuples and arrays;
    /// the type is copied verbatim into generated code.
    #[serde(rename = "type")]
    pub ty: String,
    /// Free text about the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A policy (lilac sticky): "whenever *event* happens, then issue *commands*".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Name of the policy, unique among policies (e.g. `"ReserveOnOrder"`).
    pub name: String,
    /// Free text about the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The event the policy reacts to.
    pub on: String,
    /// The commands the policy issues; a single string or a list in a file.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub issues: Vec<String>,
}

/// A read model (green sticky): a view fed by events, read by people.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadModel {
    /// Name of the read model, unique among read models.
    pub name: String,
    /// Free text about the read model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The events that feed it; a single string or a list in a file.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub fed_by: Vec<String>,
}

/// An actor (small yellow sticky): a person or role who issues commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Name of the actor, unique among actors (e.g. `"Customer"`).
    pub name: String,
    /// Free text about the actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The commands this actor issues; a single string or a list in a file.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "one_or_many")]
    pub issues: Vec<String>,
}

/// An external system (pink sticky): outside the domain, it handles commands
/// and emits events of its own (a payment provider, a carrier).
///
/// Its events need not be emitted by one of its commands: an external system
/// may report facts on its own (a webhook).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSystem {
    /// Name of the system, unique among external systems.
    pub name: String,
    /// Free text about the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Commands the system handles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    /// Events the system emits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<DomainEvent>,
}

/// A hotspot (red sticky): an open question or a known problem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hotspot {
    /// The question or problem.
    pub question: String,
    /// The element it is attached to, if any.
    ///
    /// A bare name (`"PaymentFailed"`) is looked up among all elements; a
    /// prefix picks the kind when a name is shared (`"aggregate:Inventory"`,
    /// `"context:Inventory"`). See [`ElementKind::prefix`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
}

/// The kinds of element of a model, used in locations and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ElementKind {
    /// The model itself (its domain).
    Domain,
    /// A [`BoundedContext`].
    Context,
    /// An [`Aggregate`].
    Aggregate,
    /// A [`Command`].
    Command,
    /// A [`DomainEvent`].
    Event,
    /// A [`Policy`].
    Policy,
    /// A [`ReadModel`].
    ReadModel,
    /// An [`Actor`].
    Actor,
    /// An [`ExternalSystem`].
    ExternalSystem,
    /// A [`Hotspot`].
    Hotspot,
    /// A [`Field`] of a command or event.
    Field,
}

impl ElementKind {
    /// Kinds a [`Hotspot::on`] reference may name, in lookup order.
    pub const ATTACHABLE: [ElementKind; 8] = [
        ElementKind::Context,
        ElementKind::Aggregate,
        ElementKind::Command,
        ElementKind::Event,
        ElementKind::Policy,
        ElementKind::ReadModel,
        ElementKind::Actor,
        ElementKind::ExternalSystem,
    ];

    /// The prefix that selects this kind in a [`Hotspot::on`] reference
    /// (`"aggregate"` for `"aggregate:Inventory"`).
    pub fn prefix(self) -> &'static str {
        match self {
            ElementKind::Domain => "domain",
            ElementKind::Context => "context",
            ElementKind::Aggregate => "aggregate",
            ElementKind::Command => "command",
            ElementKind::Event => "event",
            ElementKind::Policy => "policy",
            ElementKind::ReadModel => "read_model",
            ElementKind::Actor => "actor",
            ElementKind::ExternalSystem => "external_system",
            ElementKind::Hotspot => "hotspot",
            ElementKind::Field => "field",
        }
    }

    /// Human name of the kind, as used in messages (`"read model"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ElementKind::Domain => "domain",
            ElementKind::Context => "context",
            ElementKind::Aggregate => "aggregate",
            ElementKind::Command => "command",
            ElementKind::Event => "event",
            ElementKind::Policy => "policy",
            ElementKind::ReadModel => "read model",
            ElementKind::Actor => "actor",
            ElementKind::ExternalSystem => "external system",
            ElementKind::Hotspot => "hotspot",
            ElementKind::Field => "field",
        }
    }

    /// Splits a hotspot reference into an optional kind and the name.
    ///
    /// `"aggregate:Inventory"` gives `(Some(Aggregate), "Inventory")`; a
    /// string without a known prefix is a bare name, colons included.
    pub fn split_reference(reference: &str) -> (Option<ElementKind>, &str) {
        if let Some((prefix, rest)) = reference.split_once(':') {
            let prefix = prefix.trim();
            for kind in Self::ATTACHABLE {
                if prefix.eq_ignore_ascii_case(kind.prefix())
                    || (kind == ElementKind::ExternalSystem
                        && prefix.eq_ignore_ascii_case("external"))
                {
                    return (Some(kind), rest.trim());
                }
            }
        }
        (None, reference)
    }

    /// The kinds a hotspot reference may name, in lookup order, and the
    /// name: the prefixed kind alone, else every [`ElementKind::ATTACHABLE`]
    /// kind.
    pub(crate) fn reference_targets(reference: &str) -> (Vec<ElementKind>, &str) {
        let (kind, name) = Self::split_reference(reference);
        let kinds = match kind {
            Some(k) => vec![k],
            None => Self::ATTACHABLE.to_vec(),
        };
        (kinds, name)
    }
}

impl fmt::Display for ElementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who handles a command or owns an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// An aggregate, in the context it belongs to.
    Aggregate {
        /// The context holding the aggregate.
        context: &'a BoundedContext,
        /// The aggregate.
        aggregate: &'a Aggregate,
    },
    /// An external system.
    External(&'a ExternalSystem),
    /// Nobody yet: the element is a draft at the level of a context.
    Unassigned(&'a BoundedContext),
}

impl Owner<'_> {
    /// Name of the owning aggregate or external system, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Owner::Aggregate { aggregate, .. } => Some(&aggregate.name),
            Owner::External(system) => Some(&system.name),
            Owner::Unassigned(_) => None,
        }
    }
}

impl Model {
    /// Creates an empty model for `domain`.
    pub fn new(domain: impl Into<String>) -> Self {
        Model {
            domain: domain.into(),
            ..Model::default()
        }
    }

    /// Every aggregate with its context, in declaration order.
    pub fn aggregates(&self) -> impl Iterator<Item = (&BoundedContext, &Aggregate)> {
        self.contexts
            .iter()
            .flat_map(|c| c.aggregates.iter().map(move |a| (c, a)))
    }

    /// The first aggregate named `name`.
    pub fn aggregate(&self, name: &str) -> Option<&Aggregate> {
        self.aggregates().map(|(_, a)| a).find(|a| a.name == name)
    }

    /// Every command with its owner, in declaration order: per context its
    /// aggregates' commands then its drafts, then the external systems'.
    pub fn commands(&self) -> impl Iterator<Item = (Owner<'_>, &Command)> {
        let in_contexts = self.contexts.iter().flat_map(|context| {
            let owned = context.aggregates.iter().flat_map(move |aggregate| {
                aggregate
                    .commands
                    .iter()
                    .map(move |c| (Owner::Aggregate { context, aggregate }, c))
            });
            let drafts = context
                .commands
                .iter()
                .map(move |c| (Owner::Unassigned(context), c));
            owned.chain(drafts)
        });
        let external = self
            .external_systems
            .iter()
            .flat_map(|s| s.commands.iter().map(move |c| (Owner::External(s), c)));
        in_contexts.chain(external)
    }

    /// Every event with its owner, in the same order as [`Model::commands`].
    pub fn events(&self) -> impl Iterator<Item = (Owner<'_>, &DomainEvent)> {
        let in_contexts = self.contexts.iter().flat_map(|context| {
            let owned = context.aggregates.iter().flat_map(move |aggregate| {
                aggregate
                    .events
                    .iter()
                    .map(move |e| (Owner::Aggregate { context, aggregate }, e))
            });
            let drafts = context
                .events
                .iter()
                .map(move |e| (Owner::Unassigned(context), e));
            owned.chain(drafts)
        });
        let external = self
            .external_systems
            .iter()
            .flat_map(|s| s.events.iter().map(move |e| (Owner::External(s), e)));
        in_contexts.chain(external)
    }

    /// The first command named `name`, with its owner.
    pub fn command(&self, name: &str) -> Option<(Owner<'_>, &Command)> {
        self.commands().find(|(_, c)| c.name == name)
    }

    /// The first event named `name`, with its owner.
    pub fn event(&self, name: &str) -> Option<(Owner<'_>, &DomainEvent)> {
        self.events().find(|(_, e)| e.name == name)
    }

    /// Every policy with its context, in declaration order.
    pub fn policies(&self) -> impl Iterator<Item = (&BoundedContext, &Policy)> {
        self.contexts
            .iter()
            .flat_map(|c| c.policies.iter().map(move |p| (c, p)))
    }

    /// Every read model with its context, in declaration order.
    pub fn read_models(&self) -> impl Iterator<Item = (&BoundedContext, &ReadModel)> {
        self.contexts
            .iter()
            .flat_map(|c| c.read_models.iter().map(move |r| (c, r)))
    }
}

/// Serde helper: a list that may be written as a single string.
///
/// A one-element list is written back as a plain string, which loads to the
/// same value.
mod one_or_many {
    use std::fmt;

    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(value: &[String], s: S) -> Result<S::Ok, S::Error> {
        match value {
            [one] => s.serialize_str(one),
            many => s.collect_seq(many),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        struct OneOrMany;

        impl<'de> Visitor<'de> for OneOrMany {
            type Value = Vec<String>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a list of names")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(vec![v.to_owned()])
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(names)
            }
        }

        d.deserialize_any(OneOrMany)
    }
}
