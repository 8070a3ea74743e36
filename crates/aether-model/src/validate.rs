//! Validation: located diagnostics about a [`Model`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use crate::model::{Command, DomainEvent, ElementKind, Field, Model};
use crate::naming;

/// Where in a model a diagnostic points.
///
/// `path` follows the file's structure (`contexts[0].aggregates[1].commands[2]`,
/// with a trailing field such as `.emits[0]` when one reference is at fault);
/// `kind` and `name` say which element that is, when it has a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    /// Path from the root of the model, e.g. `contexts[1].policies[0].on`.
    pub path: String,
    /// Kind of the element at (or owning) the path.
    pub kind: ElementKind,
    /// Name of that element, when it has one.
    pub name: Option<String>,
}

impl Location {
    fn new(path: impl Into<String>, kind: ElementKind, name: Option<&str>) -> Self {
        Location {
            path: path.into(),
            kind,
            name: name.map(str::to_owned),
        }
    }

    /// The same element with `.suffix` appended to the path.
    fn field(&self, suffix: &str) -> Location {
        Location {
            path: format!("{}.{suffix}", self.path),
            ..self.clone()
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) if !name.is_empty() => write!(f, "{} {:?} ({})", self.kind, name, self.path),
            _ => f.write_str(if self.path.is_empty() {
                "model"
            } else {
                &self.path
            }),
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The model is wrong: it cannot be trusted for code generation.
    Error,
    /// The model is valid but probably not what was meant (naming, loose ends).
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// The relation a reference expresses, used in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Relation {
    /// A command's `emits`: names an event.
    Emits,
    /// A policy's `on`: names an event.
    ReactsTo,
    /// A policy's or actor's `issues`: names a command.
    Issues,
    /// A read model's `fed_by`: names an event.
    FedBy,
    /// A hotspot's `on`: names any element.
    AttachedTo,
}

impl Relation {
    /// The kind of element the reference must name (`None`: any kind).
    pub fn expected(self) -> Option<ElementKind> {
        match self {
            Relation::Emits | Relation::ReactsTo | Relation::FedBy => Some(ElementKind::Event),
            Relation::Issues => Some(ElementKind::Command),
            Relation::AttachedTo => None,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Relation::Emits => "emits",
            Relation::ReactsTo => "reacts to",
            Relation::Issues => "issues",
            Relation::FedBy => "is fed by",
            Relation::AttachedTo => "is attached to",
        }
    }
}

/// One step of a policy cycle: `event` triggers `policy`, which issues
/// `command`; handling `command` emits the next step's event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CycleStep {
    /// The event that triggers the policy.
    pub event: String,
    /// The policy.
    pub policy: String,
    /// The command the policy issues.
    pub command: String,
}

/// What a diagnostic is about. Each kind has a fixed [`Severity`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiagnosticKind {
    /// Error: an element has an empty (or blank) name.
    EmptyName,
    /// Error: two elements of the same kind share a name (commands and
    /// events model-wide; fields within their command or event).
    DuplicateName {
        /// The shared name.
        name: String,
        /// Path of the first element with that name.
        first: String,
    },
    /// Error: a reference names nothing of the expected kind.
    UnknownReference {
        /// What the reference expresses.
        relation: Relation,
        /// The name that was not found.
        name: String,
        /// A close existing name, if there is one.
        suggestion: Option<String>,
    },
    /// Error: a hotspot's bare name matches elements of several kinds.
    AmbiguousReference {
        /// The name.
        name: String,
        /// The kinds it matches.
        candidates: Vec<ElementKind>,
    },
    /// Error: a command emits an event owned by another aggregate or system.
    ForeignEvent {
        /// The event.
        event: String,
        /// Its owner, or `None` when it is a draft outside any aggregate.
        owner: Option<String>,
    },
    /// Error: a command is on the board but no aggregate or external system
    /// handles it.
    UnhandledCommand,
    /// Error: an event is emitted by no command of its aggregate, or is a
    /// draft no aggregate or external system owns.
    UnemittedEvent,
    /// Error: policies form a loop that can never end: every outcome of every
    /// command in it triggers the loop again.
    ///
    /// A loop has a way out when a command in it may emit an event that leads
    /// elsewhere (or emits nothing); such loops (retries) are not reported.
    PolicyCycle {
        /// The loop, starting from its first event in declaration order.
        steps: Vec<CycleStep>,
    },
    /// Error: a field's type is not one code generation can use.
    InvalidFieldType {
        /// The type as written.
        ty: String,
    },
    /// Warning: a command name reads as past tense (commands are imperative).
    CommandNotImperative,
    /// Warning: an event name does not read as past tense.
    EventNotPastTense,
    /// Warning: an aggregate command lists no event it emits.
    CommandEmitsNothing,
    /// Warning: a policy issues no command.
    PolicyIssuesNothing,
    /// Warning: a read model is fed by no event.
    ReadModelNotFed,
}

impl DiagnosticKind {
    /// The fixed severity of this kind.
    pub fn severity(&self) -> Severity {
        match self {
            DiagnosticKind::EmptyName
            | DiagnosticKind::DuplicateName { .. }
            | DiagnosticKind::UnknownReference { .. }
            | DiagnosticKind::AmbiguousReference { .. }
            | DiagnosticKind::ForeignEvent { .. }
            | DiagnosticKind::UnhandledCommand
            | DiagnosticKind::UnemittedEvent
            | DiagnosticKind::PolicyCycle { .. }
            | DiagnosticKind::InvalidFieldType { .. } => Severity::Error,
            DiagnosticKind::CommandNotImperative
            | DiagnosticKind::EventNotPastTense
            | DiagnosticKind::CommandEmitsNothing
            | DiagnosticKind::PolicyIssuesNothing
            | DiagnosticKind::ReadModelNotFed => Severity::Warning,
        }
    }

    /// A short stable code for the kind, e.g. `"unknown-reference"`.
    pub fn code(&self) -> &'static str {
        match self {
            DiagnosticKind::EmptyName => "empty-name",
            DiagnosticKind::DuplicateName { .. } => "duplicate-name",
            DiagnosticKind::UnknownReference { .. } => "unknown-reference",
            DiagnosticKind::AmbiguousReference { .. } => "ambiguous-reference",
            DiagnosticKind::ForeignEvent { .. } => "foreign-event",
            DiagnosticKind::UnhandledCommand => "unhandled-command",
            DiagnosticKind::UnemittedEvent => "unemitted-event",
            DiagnosticKind::PolicyCycle { .. } => "policy-cycle",
            DiagnosticKind::InvalidFieldType { .. } => "invalid-field-type",
            DiagnosticKind::CommandNotImperative => "command-not-imperative",
            DiagnosticKind::EventNotPastTense => "event-not-past-tense",
            DiagnosticKind::CommandEmitsNothing => "command-emits-nothing",
            DiagnosticKind::PolicyIssuesNothing => "policy-issues-nothing",
            DiagnosticKind::ReadModelNotFed => "read-model-not-fed",
        }
    }
}

impl fmt::Display for DiagnosticKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiagnosticKind::EmptyName => f.write_str("name is empty"),
            DiagnosticKind::DuplicateName { name, first } => {
                write!(f, "name {name:?} is already used at {first}")
            }
            DiagnosticKind::UnknownReference {
                relation,
                name,
                suggestion,
            } => {
                let what = relation.expected().map_or("element", ElementKind::as_str);
                write!(f, "{} unknown {what} {name:?}", relation.verb())?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean {s:?}?)")?;
                }
                Ok(())
            }
            DiagnosticKind::AmbiguousReference { name, candidates } => {
                write!(f, "{name:?} names more than one element (")?;
                for (i, kind) in candidates.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{kind}")?;
                }
                let prefix = candidates.first().map_or("aggregate", |k| k.prefix());
                write!(f, "); write it as \"{prefix}:{name}\" to pick one")
            }
            DiagnosticKind::ForeignEvent { event, owner } => match owner {
                Some(owner) => write!(f, "emits event {event:?}, which belongs to {owner:?}"),
                None => write!(
                    f,
                    "emits event {event:?}, which is a draft of its context; move it into the aggregate's events"
                ),
            },
            DiagnosticKind::UnhandledCommand => {
                f.write_str("no aggregate or external system handles this command")
            }
            DiagnosticKind::UnemittedEvent => {
                f.write_str("no command of an aggregate or external system emits this event")
            }
            DiagnosticKind::PolicyCycle { steps } => {
                f.write_str("policies loop forever with no way out: ")?;
                for step in steps {
                    write!(
                        f,
                        "{} → [{}] → {} → ",
                        step.event, step.policy, step.command
                    )?;
                }
                match steps.first() {
                    Some(first) => f.write_str(&first.event),
                    None => Ok(()),
                }
            }
            DiagnosticKind::InvalidFieldType { ty } => write!(
                f,
                "type {ty:?} is not an owned Rust type code generation can use"
            ),
            DiagnosticKind::CommandNotImperative => f.write_str(
                "command name reads as past tense; commands are imperative (PlaceOrder)",
            ),
            DiagnosticKind::EventNotPastTense => {
                f.write_str("event name does not read as past tense (OrderPlaced)")
            }
            DiagnosticKind::CommandEmitsNothing => f.write_str("command lists no event in `emits`"),
            DiagnosticKind::PolicyIssuesNothing => f.write_str("policy issues no command"),
            DiagnosticKind::ReadModelNotFed => f.write_str("read model is fed by no event"),
        }
    }
}

/// One finding of [`Model::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Where it is.
    pub location: Location,
    /// What it is.
    pub kind: DiagnosticKind,
}

impl Diagnostic {
    /// The severity of its kind.
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] {}: {}",
            self.severity(),
            self.kind.code(),
            self.location,
            self.kind
        )
    }
}

/// The result of [`Model::validate`]: every diagnostic, errors first.
///
/// Within a severity, diagnostics come check by check (names, references,
/// ownership, cycles, naming), each check in model order; the same model
/// always gives the same report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    /// All diagnostics: errors, then warnings.
    pub diagnostics: Vec<Diagnostic>,
}

impl ValidationReport {
    /// Whether there is no error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity() == Severity::Warning)
    }

    /// Whether some diagnostic has the given code (see
    /// [`DiagnosticKind::code`]).
    pub fn has(&self, code: &str) -> bool {
        self.diagnostics.iter().any(|d| d.kind.code() == code)
    }
}

impl fmt::Display for ValidationReport {
    /// One line per diagnostic, then a summary line
    /// (`2 errors, 1 warning`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.diagnostics {
            writeln!(f, "{d}")?;
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        write!(
            f,
            "{errors} error{}, {warnings} warning{}",
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        )
    }
}

/// Who owns a command or event, as a comparable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OwnerKey {
    Aggregate(usize, usize),
    External(usize),
    Draft(usize),
    /// Actors, contexts and the like own nothing and are owned by nobody.
    None,
}

struct Declared<'a> {
    name: &'a str,
    location: Location,
    owner: OwnerKey,
    owner_name: Option<&'a str>,
}

/// Every named element in model order (duplicates included), with its
/// location and owner.
struct Index<'a> {
    contexts: Vec<Declared<'a>>,
    aggregates: Vec<Declared<'a>>,
    commands: Vec<(Declared<'a>, &'a Command)>,
    events: Vec<(Declared<'a>, &'a DomainEvent)>,
    policies: Vec<Declared<'a>>,
    read_models: Vec<Declared<'a>>,
    actors: Vec<Declared<'a>>,
    external_systems: Vec<Declared<'a>>,
}

impl<'a> Index<'a> {
    fn build(model: &'a Model) -> Self {
        let mut index = Index {
            contexts: Vec::new(),
            aggregates: Vec::new(),
            commands: Vec::new(),
            events: Vec::new(),
            policies: Vec::new(),
            read_models: Vec::new(),
            actors: Vec::new(),
            external_systems: Vec::new(),
        };
        let declared = |name: &'a str, path: String, kind, owner, owner_name| Declared {
            name,
            location: Location::new(path, kind, Some(name)),
            owner,
            owner_name,
        };
        // Contexts, aggregates, policies, read models, actors and systems
        // own nothing and are owned by nobody.
        let plain =
            |name: &'a str, path: String, kind| declared(name, path, kind, OwnerKey::None, None);
        for (ci, context) in model.contexts.iter().enumerate() {
            let cpath = format!("contexts[{ci}]");
            index
                .contexts
                .push(plain(&context.name, cpath.clone(), ElementKind::Context));
            for (ai, aggregate) in context.aggregates.iter().enumerate() {
                let apath = format!("{cpath}.aggregates[{ai}]");
                let owner = OwnerKey::Aggregate(ci, ai);
                let oname = Some(aggregate.name.as_str());
                index.aggregates.push(plain(
                    &aggregate.name,
                    apath.clone(),
                    ElementKind::Aggregate,
                ));
                for (i, c) in aggregate.commands.iter().enumerate() {
                    let path = format!("{apath}.commands[{i}]");
                    let d = declared(&c.name, path, ElementKind::Command, owner, oname);
                    index.commands.push((d, c));
                }
                for (i, e) in aggregate.events.iter().enumerate() {
                    let path = format!("{apath}.events[{i}]");
                    let d = declared(&e.name, path, ElementKind::Event, owner, oname);
                    index.events.push((d, e));
                }
            }
            let draft = OwnerKey::Draft(ci);
            for (i, c) in context.commands.iter().enumerate() {
                let path = format!("{cpath}.commands[{i}]");
                let d = declared(&c.name, path, ElementKind::Command, draft, None);
                index.commands.push((d, c));
            }
            for (i, e) in context.events.iter().enumerate() {
                let path = format!("{cpath}.events[{i}]");
                let d = declared(&e.name, path, ElementKind::Event, draft, None);
                index.events.push((d, e));
            }
            for (i, p) in context.policies.iter().enumerate() {
                let path = format!("{cpath}.policies[{i}]");
                index
                    .policies
                    .push(plain(&p.name, path, ElementKind::Policy));
            }
            for (i, r) in context.read_models.iter().enumerate() {
                let path = format!("{cpath}.read_models[{i}]");
                index
                    .read_models
                    .push(plain(&r.name, path, ElementKind::ReadModel));
            }
        }
        for (si, system) in model.external_systems.iter().enumerate() {
            let spath = format!("external_systems[{si}]");
            let owner = OwnerKey::External(si);
            let oname = Some(system.name.as_str());
            index.external_systems.push(plain(
                &system.name,
                spath.clone(),
                ElementKind::ExternalSystem,
            ));
            for (i, c) in system.commands.iter().enumerate() {
                let path = format!("{spath}.commands[{i}]");
                let d = declared(&c.name, path, ElementKind::Command, owner, oname);
                index.commands.push((d, c));
            }
            for (i, e) in system.events.iter().enumerate() {
                let path = format!("{spath}.events[{i}]");
                let d = declared(&e.name, path, ElementKind::Event, owner, oname);
                index.events.push((d, e));
            }
        }
        for (i, a) in model.actors.iter().enumerate() {
            let path = format!("actors[{i}]");
            index.actors.push(plain(&a.name, path, ElementKind::Actor));
        }
        index
    }

    /// The names declared for `kind`, in model order, without allocating.
    fn names_of(&self, kind: ElementKind) -> impl Iterator<Item = &'a str> + '_ {
        let plain: &[Declared<'a>] = match kind {
            ElementKind::Context => &self.contexts,
            ElementKind::Aggregate => &self.aggregates,
            ElementKind::Policy => &self.policies,
            ElementKind::ReadModel => &self.read_models,
            ElementKind::Actor => &self.actors,
            ElementKind::ExternalSystem => &self.external_systems,
            ElementKind::Command
            | ElementKind::Event
            | ElementKind::Domain
            | ElementKind::Hotspot
            | ElementKind::Field => &[],
        };
        let commands: &[(Declared<'a>, &'a Command)] = if kind == ElementKind::Command {
            &self.commands
        } else {
            &[]
        };
        let events: &[(Declared<'a>, &'a DomainEvent)] = if kind == ElementKind::Event {
            &self.events
        } else {
            &[]
        };
        plain
            .iter()
            .chain(commands.iter().map(|(d, _)| d))
            .chain(events.iter().map(|(d, _)| d))
            .map(|d| d.name)
    }
}

/// Accumulates diagnostics.
struct Checker<'a> {
    model: &'a Model,
    index: Index<'a>,
    /// First declaration of each command name: index into `index.commands`.
    command_by_name: HashMap<&'a str, usize>,
    /// First declaration of each event name: index into `index.events`.
    event_by_name: HashMap<&'a str, usize>,
    out: Vec<Diagnostic>,
}

impl Model {
    /// Checks the model and returns every finding; never fails and never
    /// panics.
    ///
    /// Errors: empty or duplicate names, dangling references (with a "did you
    /// mean" when a close name exists), ambiguous hotspot references, commands
    /// emitting another owner's events, unhandled commands, unemitted events,
    /// policy loops with no way out, unusable field types. Warnings: command
    /// and event naming, commands emitting nothing, policies issuing nothing,
    /// read models fed by nothing. See [`DiagnosticKind`].
    ///
    /// The report is deterministic: see [`ValidationReport`] for its order.
    pub fn validate(&self) -> ValidationReport {
        let index = Index::build(self);
        let mut checker = Checker {
            model: self,
            command_by_name: first_by_name(index.commands.iter().map(|(d, _)| d.name)),
            event_by_name: first_by_name(index.events.iter().map(|(d, _)| d.name)),
            index,
            out: Vec::new(),
        };
        checker.names();
        checker.references();
        checker.ownership();
        checker.cycles();
        checker.naming();
        let mut diagnostics = checker.out;
        // Stable: keeps check order within each severity.
        diagnostics.sort_by_key(Diagnostic::severity);
        ValidationReport { diagnostics }
    }
}

impl<'a> Checker<'a> {
    fn push(&mut self, location: Location, kind: DiagnosticKind) {
        self.out.push(Diagnostic { location, kind });
    }

    /// Pushes findings gathered while `self` was borrowed.
    fn extend(&mut self, found: Vec<(Location, DiagnosticKind)>) {
        self.out.extend(
            found
                .into_iter()
                .map(|(location, kind)| Diagnostic { location, kind }),
        );
    }

    /// Empty and duplicate names.
    fn names(&mut self) {
        let mut found = Vec::new();
        let mut unique = |decls: &mut dyn Iterator<Item = &Declared<'a>>| {
            let mut seen: HashMap<&str, &Location> = HashMap::new();
            for d in decls {
                if d.name.trim().is_empty() {
                    found.push((d.location.clone(), DiagnosticKind::EmptyName));
                    continue;
                }
                match seen.get(d.name) {
                    Some(first) => found.push((
                        d.location.clone(),
                        DiagnosticKind::DuplicateName {
                            name: d.name.to_owned(),
                            first: first.path.clone(),
                        },
                    )),
                    None => {
                        seen.insert(d.name, &d.location);
                    }
                }
            }
        };
        let ix = &self.index;
        unique(&mut ix.contexts.iter());
        unique(&mut ix.aggregates.iter());
        unique(&mut ix.commands.iter().map(|(d, _)| d));
        unique(&mut ix.events.iter().map(|(d, _)| d));
        unique(&mut ix.policies.iter());
        unique(&mut ix.read_models.iter());
        unique(&mut ix.actors.iter());
        unique(&mut ix.external_systems.iter());
        self.extend(found);

        // Hotspot questions and fields.
        for (i, h) in self.model.hotspots.iter().enumerate() {
            if h.question.trim().is_empty() {
                let location = Location::new(format!("hotspots[{i}]"), ElementKind::Hotspot, None);
                self.push(location.field("question"), DiagnosticKind::EmptyName);
            }
        }
        let mut field_findings = Vec::new();
        for (d, c) in &self.index.commands {
            check_fields(&d.location, &c.fields, &mut field_findings);
        }
        for (d, e) in &self.index.events {
            check_fields(&d.location, &e.fields, &mut field_findings);
        }
        self.extend(field_findings);
    }

    fn unknown(&self, relation: Relation, name: &str) -> DiagnosticKind {
        match relation.expected() {
            Some(kind) => self.unknown_among(relation, &[kind], name),
            None => self.unknown_among(relation, &ElementKind::ATTACHABLE, name),
        }
    }

    /// An unknown reference, suggesting a close name of one of `kinds`.
    fn unknown_among(
        &self,
        relation: Relation,
        kinds: &[ElementKind],
        name: &str,
    ) -> DiagnosticKind {
        let candidates = kinds.iter().flat_map(|k| self.index.names_of(*k));
        DiagnosticKind::UnknownReference {
            relation,
            name: name.to_owned(),
            suggestion: naming::suggest(name, candidates),
        }
    }

    /// Dangling and ambiguous references, empty reference lists.
    fn references(&mut self) {
        let mut found = Vec::new();
        for (d, c) in &self.index.commands {
            for (i, event) in c.emits.iter().enumerate() {
                if !self.event_by_name.contains_key(event.as_str()) {
                    found.push((
                        d.location.field(&format!("emits[{i}]")),
                        self.unknown(Relation::Emits, event),
                    ));
                }
            }
        }
        // The index lists policies, read models and actors in model order.
        for (d, (_, p)) in self.index.policies.iter().zip(self.model.policies()) {
            let loc = &d.location;
            if !self.event_by_name.contains_key(p.on.as_str()) {
                found.push((loc.field("on"), self.unknown(Relation::ReactsTo, &p.on)));
            }
            if p.issues.is_empty() {
                found.push((loc.clone(), DiagnosticKind::PolicyIssuesNothing));
            }
            for (i, command) in p.issues.iter().enumerate() {
                if !self.command_by_name.contains_key(command.as_str()) {
                    found.push((
                        loc.field(&format!("issues[{i}]")),
                        self.unknown(Relation::Issues, command),
                    ));
                }
            }
        }
        for (d, (_, r)) in self.index.read_models.iter().zip(self.model.read_models()) {
            let loc = &d.location;
            if r.fed_by.is_empty() {
                found.push((loc.clone(), DiagnosticKind::ReadModelNotFed));
            }
            for (i, event) in r.fed_by.iter().enumerate() {
                if !self.event_by_name.contains_key(event.as_str()) {
                    found.push((
                        loc.field(&format!("fed_by[{i}]")),
                        self.unknown(Relation::FedBy, event),
                    ));
                }
            }
        }
        for (d, a) in self.index.actors.iter().zip(&self.model.actors) {
            let loc = &d.location;
            for (i, command) in a.issues.iter().enumerate() {
                if !self.command_by_name.contains_key(command.as_str()) {
                    found.push((
                        loc.field(&format!("issues[{i}]")),
                        self.unknown(Relation::Issues, command),
                    ));
                }
            }
        }
        for (hi, h) in self.model.hotspots.iter().enumerate() {
            let Some(target) = &h.on else { continue };
            let loc = Location::new(format!("hotspots[{hi}].on"), ElementKind::Hotspot, None);
            let (kinds, name) = ElementKind::reference_targets(target);
            let matches: Vec<ElementKind> = kinds
                .iter()
                .copied()
                .filter(|k| self.index.names_of(*k).any(|n| n == name))
                .collect();
            match matches.len() {
                0 => found.push((loc, self.unknown_among(Relation::AttachedTo, &kinds, name))),
                1 => {}
                _ => found.push((
                    loc,
                    DiagnosticKind::AmbiguousReference {
                        name: name.to_owned(),
                        candidates: matches,
                    },
                )),
            }
        }
        self.extend(found);
    }

    /// Unhandled commands, unemitted events, foreign events, empty `emits`.
    fn ownership(&mut self) {
        let mut found = Vec::new();
        for (d, c) in &self.index.commands {
            match d.owner {
                OwnerKey::Draft(_) => {
                    found.push((d.location.clone(), DiagnosticKind::UnhandledCommand));
                    continue;
                }
                OwnerKey::Aggregate(..) if c.emits.is_empty() => {
                    found.push((d.location.clone(), DiagnosticKind::CommandEmitsNothing));
                }
                _ => {}
            }
            for (i, event) in c.emits.iter().enumerate() {
                let Some(&ei) = self.event_by_name.get(event.as_str()) else {
                    continue;
                };
                let Some((owner, _)) = self.index.events.get(ei) else {
                    continue;
                };
                if owner.owner != d.owner {
                    found.push((
                        d.location.field(&format!("emits[{i}]")),
                        DiagnosticKind::ForeignEvent {
                            event: event.clone(),
                            owner: owner.owner_name.map(str::to_owned),
                        },
                    ));
                }
            }
        }
        let emitted_by: HashSet<(OwnerKey, &str)> = self
            .index
            .commands
            .iter()
            .flat_map(|(cd, c)| c.emits.iter().map(move |e| (cd.owner, e.as_str())))
            .collect();
        for (d, _) in &self.index.events {
            let emitted = match d.owner {
                OwnerKey::Draft(_) => false,
                OwnerKey::External(_) | OwnerKey::None => true,
                OwnerKey::Aggregate(..) => emitted_by.contains(&(d.owner, d.name)),
            };
            if !emitted {
                found.push((d.location.clone(), DiagnosticKind::UnemittedEvent));
            }
        }
        self.extend(found);
    }

    /// Policy loops with no way out.
    fn cycles(&mut self) {
        let events = self.index.events.len();
        let commands = self.index.commands.len();
        // Nodes: events 0..events, commands events..events+commands, first
        // declaration of each name only (duplicates are reported elsewhere).
        let n = events + commands;
        let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
        // (event node, command node) -> first policy name.
        let mut via: HashMap<(usize, usize), &'a str> = HashMap::new();
        for (_, p) in self.model.policies() {
            let Some(&e) = self.event_by_name.get(p.on.as_str()) else {
                continue;
            };
            for command in &p.issues {
                if let Some(&c) = self.command_by_name.get(command.as_str()) {
                    let c = events + c;
                    if !adj[e].contains(&c) {
                        adj[e].push(c);
                    }
                    via.entry((e, c)).or_insert(&p.name);
                }
            }
        }
        for &ci in self.command_by_name.values() {
            let Some((_, c)) = self.index.commands.get(ci) else {
                continue;
            };
            for event in &c.emits {
                if let Some(&e) = self.event_by_name.get(event.as_str())
                    && !adj[events + ci].contains(&e)
                {
                    adj[events + ci].push(e);
                }
            }
        }
        for list in &mut adj {
            list.sort_unstable();
        }

        // Least fixpoint of "can terminate": an event when every command its
        // policies issue can; a command when it emits nothing or one of its
        // events can.
        let mut ends = vec![false; n];
        let mut changed = true;
        while changed {
            changed = false;
            for v in 0..n {
                if ends[v] {
                    continue;
                }
                let now = if v < events {
                    adj[v].iter().all(|&c| ends[c])
                } else {
                    adj[v].is_empty() || adj[v].iter().any(|&e| ends[e])
                };
                if now {
                    ends[v] = true;
                    changed = true;
                }
            }
        }

        let stuck: Vec<Vec<usize>> = adj
            .iter()
            .enumerate()
            .map(|(v, next)| {
                if ends[v] {
                    Vec::new()
                } else {
                    next.iter().copied().filter(|&w| !ends[w]).collect()
                }
            })
            .collect();
        let mut components: Vec<Vec<usize>> = strongly_connected(&stuck)
            .into_iter()
            .filter(|comp| comp.len() > 1 || comp.iter().any(|&v| stuck[v].contains(&v)))
            .map(|mut comp| {
                comp.sort_unstable();
                comp
            })
            .collect();
        components.sort();

        for comp in components {
            let Some(&start) = comp.iter().find(|&&v| v < events) else {
                continue;
            };
            let Some(path) = shortest_cycle(&stuck, &comp, start) else {
                continue;
            };
            // path: event, command, event, command, ... (back to start).
            let mut steps = Vec::new();
            for pair in path.chunks(2) {
                let [e, c] = pair else { continue };
                let (Some((ed, _)), Some((cd, _))) = (
                    self.index.events.get(*e),
                    self.index.commands.get(c - events),
                ) else {
                    continue;
                };
                steps.push(CycleStep {
                    event: ed.name.to_owned(),
                    policy: via.get(&(*e, *c)).copied().unwrap_or_default().to_owned(),
                    command: cd.name.to_owned(),
                });
            }
            let location = steps
                .first()
                .and_then(|s| {
                    self.index
                        .policies
                        .iter()
                        .find(|p| p.name == s.policy)
                        .map(|p| p.location.clone())
                })
                .unwrap_or_else(|| Location::new("", ElementKind::Policy, None));
            self.push(location, DiagnosticKind::PolicyCycle { steps });
        }
    }

    fn naming(&mut self) {
        let mut found = Vec::new();
        for (d, _) in &self.index.commands {
            if !d.name.trim().is_empty() && naming::command_reads_as_past(d.name) {
                found.push((d.location.clone(), DiagnosticKind::CommandNotImperative));
            }
        }
        for (d, _) in &self.index.events {
            if !d.name.trim().is_empty() && !naming::reads_as_past_tense(d.name) {
                found.push((d.location.clone(), DiagnosticKind::EventNotPastTense));
            }
        }
        self.extend(found);
    }
}

/// Position of the first occurrence of each name.
fn first_by_name<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<&'a str, usize> {
    let mut first = HashMap::new();
    for (i, name) in names.enumerate() {
        first.entry(name).or_insert(i);
    }
    first
}

fn check_fields(owner: &Location, fields: &[Field], out: &mut Vec<(Location, DiagnosticKind)>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, field) in fields.iter().enumerate() {
        let loc = Location::new(
            format!("{}.fields[{i}]", owner.path),
            ElementKind::Field,
            Some(&field.name),
        );
        if field.name.trim().is_empty() {
            out.push((loc.clone(), DiagnosticKind::EmptyName));
        } else if let Some(first) = seen.get(field.name.as_str()) {
            out.push((
                loc.clone(),
                DiagnosticKind::DuplicateName {
                    name: field.name.clone(),
                    first: format!("{}.fields[{first}]", owner.path),
                },
            ));
        } else {
            seen.insert(&field.name, i);
        }
        if !naming::is_plausible_type(&field.ty) {
            out.push((
                loc.field("type"),
                DiagnosticKind::InvalidFieldType {
                    ty: field.ty.clone(),
                },
            ));
        }
    }
}

/// Tarjan's strongly connected components, iterative (no recursion, so no
/// stack overflow on large models).
fn strongly_connected(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = adj.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut calls: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(v, i)) = calls.last() {
            if let Some(&w) = adj[v].get(i) {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(comp);
                }
            }
        }
    }
    out
}

/// The shortest cycle through `start` inside `comp`, as the node list from
/// `start` up to (not including) its return to `start`.
fn shortest_cycle(adj: &[Vec<usize>], comp: &[usize], start: usize) -> Option<Vec<usize>> {
    let mut parent: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &adj[v] {
            if comp.binary_search(&w).is_err() {
                continue;
            }
            if w == start {
                let mut path = vec![v];
                let mut at = v;
                while at != start {
                    at = *parent.get(&at)?;
                    path.push(at);
                }
                path.reverse();
                return Some(path);
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = parent.entry(w) {
                slot.insert(v);
                queue.push_back(w);
            }
        }
    }
    None
}
