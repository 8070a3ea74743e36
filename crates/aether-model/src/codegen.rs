//! The bridge to code: Rust skeletons from a model, and drift checks between
//! a model and the types an aggregate declares at run time.

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};

use crate::model::{Aggregate, BoundedContext, Command, DomainEvent, Field, Model};
use crate::naming;
use crate::validate::ValidationReport;

/// A model that passed [`Model::validate`] with no error: every reference
/// resolves, names are unique, field types are usable.
///
/// Obtain it with [`Model::into_validated`]; it keeps the warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedModel {
    model: Model,
    report: ValidationReport,
}

impl ValidatedModel {
    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The validation report (warnings only).
    pub fn report(&self) -> &ValidationReport {
        &self.report
    }

    /// Gives the model back.
    pub fn into_inner(self) -> Model {
        self.model
    }

    /// The Rust skeleton a user would write for `aggregate`, as source text.
    ///
    /// It holds a `{Name}State` struct, a `{Name}Command` enum and a
    /// `{Name}Event` enum (one variant per command/event, with its fields,
    /// all deriving `Debug, Clone, PartialEq, Serialize, Deserialize`), and an
    /// `impl {Name}State` with `handle` and `apply` whose match arms list each
    /// command's possible events and end in `todo!()` for the user to fill.
    /// Names become Rust identifiers (`"order placed"` → `OrderPlaced`,
    /// keywords made raw); descriptions become doc comments. It needs only
    /// `serde` (with `derive`) to compile.
    ///
    /// Returns `None` if the model has no aggregate of that name.
    pub fn rust_skeleton(&self, aggregate: &str) -> Option<String> {
        let (context, aggregate) = self.model.aggregates().find(|(_, a)| a.name == aggregate)?;
        Some(skeleton(&self.model, context, aggregate))
    }
}

impl Model {
    /// Validates the model and, when it has no error, wraps it as a
    /// [`ValidatedModel`].
    ///
    /// # Errors
    /// The full [`ValidationReport`] (errors and warnings) when it has an
    /// error.
    pub fn into_validated(self) -> Result<ValidatedModel, ValidationReport> {
        let report = self.validate();
        if report.is_ok() {
            Ok(ValidatedModel {
                model: self,
                report,
            })
        } else {
            Err(report)
        }
    }

    /// Compares the events the model gives `aggregate` with the event type
    /// names the aggregate declares in code (for example the `event_type()` of
    /// every variant of its event enum).
    ///
    /// Names are compared exactly; duplicates in `declared` are ignored.
    ///
    /// # Errors
    /// [`Drift::UnknownAggregate`] if the model has no such aggregate;
    /// [`Drift::Mismatch`] listing, sorted, the events the model has and the
    /// code lacks (`missing`) and those the code has and the model lacks
    /// (`unexpected`).
    pub fn check_event_types<I, S>(&self, aggregate: &str, declared: I) -> Result<(), Drift>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let found = self.find_aggregate(aggregate)?;
        compare(
            aggregate,
            DriftOf::Events,
            found.events.iter().map(|e| e.name.as_str()),
            declared,
        )
    }

    /// Like [`Model::check_event_types`], for the command types the aggregate
    /// handles.
    ///
    /// # Errors
    /// As [`Model::check_event_types`].
    pub fn check_command_types<I, S>(&self, aggregate: &str, declared: I) -> Result<(), Drift>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let found = self.find_aggregate(aggregate)?;
        compare(
            aggregate,
            DriftOf::Commands,
            found.commands.iter().map(|c| c.name.as_str()),
            declared,
        )
    }

    fn find_aggregate(&self, name: &str) -> Result<&Aggregate, Drift> {
        self.aggregate(name).ok_or_else(|| Drift::UnknownAggregate {
            aggregate: name.to_owned(),
        })
    }
}

/// What a drift check compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DriftOf {
    /// Event types.
    Events,
    /// Command types.
    Commands,
}

impl fmt::Display for DriftOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriftOf::Events => "event",
            DriftOf::Commands => "command",
        })
    }
}

/// How the code and the model disagree about an aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Drift {
    /// The model has no aggregate of that name.
    #[error("the model has no aggregate named {aggregate:?}")]
    UnknownAggregate {
        /// The name asked for.
        aggregate: String,
    },
    /// The type names differ.
    #[error(
        "{what} types of aggregate {aggregate:?} drifted from the model: missing in code {missing:?}, not in the model {unexpected:?}"
    )]
    Mismatch {
        /// The aggregate.
        aggregate: String,
        /// Events or commands.
        what: DriftOf,
        /// In the model, not in the code (sorted).
        missing: Vec<String>,
        /// In the code, not in the model (sorted).
        unexpected: Vec<String>,
    },
}

fn compare<'m, I, S>(
    aggregate: &str,
    what: DriftOf,
    model: impl Iterator<Item = &'m str>,
    declared: I,
) -> Result<(), Drift>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let model: BTreeSet<&str> = model.collect();
    let declared: Vec<S> = declared.into_iter().collect();
    let code: BTreeSet<&str> = declared.iter().map(AsRef::as_ref).collect();
    let missing: Vec<String> = model.difference(&code).map(|s| (*s).to_owned()).collect();
    let unexpected: Vec<String> = code.difference(&model).map(|s| (*s).to_owned()).collect();
    if missing.is_empty() && unexpected.is_empty() {
        Ok(())
    } else {
        Err(Drift::Mismatch {
            aggregate: aggregate.to_owned(),
            what,
            missing,
            unexpected,
        })
    }
}

/// Unique identifiers for a list of names (a clash gets `2`, `3`, …).
fn unique_idents<'a>(
    names: impl Iterator<Item = &'a str>,
    make: fn(&str) -> String,
) -> Vec<String> {
    let mut used = BTreeSet::new();
    names
        .map(|name| {
            let base = make(name);
            let mut ident = base.clone();
            let mut n = 2;
            while !used.insert(ident.clone()) {
                ident = format!("{base}{n}");
                n += 1;
            }
            ident
        })
        .collect()
}

fn doc(out: &mut String, indent: &str, text: Option<&str>) {
    let Some(text) = text else { return };
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            let _ = writeln!(out, "{indent}///");
        } else {
            let _ = writeln!(out, "{indent}/// {line}");
        }
    }
}

fn variant(out: &mut String, ident: &str, description: Option<&str>, fields: &[Field]) {
    doc(out, "    ", description);
    if fields.is_empty() {
        let _ = writeln!(out, "    {ident},");
        return;
    }
    let _ = writeln!(out, "    {ident} {{");
    let idents = unique_idents(fields.iter().map(|f| f.name.as_str()), naming::snake_ident);
    for (field, ident) in fields.iter().zip(&idents) {
        doc(out, "        ", field.description.as_deref());
        let _ = writeln!(out, "        {ident}: {},", field.ty.trim());
    }
    let _ = writeln!(out, "    }},");
}

/// A documented enum with one variant per `(ident, description, fields)`.
fn enum_decl<'a>(
    out: &mut String,
    summary: &str,
    enum_name: &str,
    variants: impl Iterator<Item = (&'a str, Option<&'a str>, &'a [Field])>,
) {
    let _ = writeln!(out, "/// {summary}");
    out.push_str("#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n");
    let mut variants = variants.peekable();
    if variants.peek().is_none() {
        let _ = writeln!(out, "pub enum {enum_name} {{}}\n");
        return;
    }
    let _ = writeln!(out, "pub enum {enum_name} {{");
    for (ident, description, fields) in variants {
        variant(out, ident, description, fields);
    }
    out.push_str("}\n\n");
}

fn pattern(enum_name: &str, ident: &str, fields: &[Field]) -> String {
    if fields.is_empty() {
        format!("{enum_name}::{ident}")
    } else {
        format!("{enum_name}::{ident} {{ .. }}")
    }
}

fn skeleton(model: &Model, context: &BoundedContext, aggregate: &Aggregate) -> String {
    // A keyword gets a trailing `_` from `pascal_ident`; with a suffix it is
    // no keyword, and `Self_State` would not be UpperCamelCase.
    let ident = naming::pascal_ident(&aggregate.name);
    let base = ident.trim_end_matches('_');
    let name = aggregate.name.escape_default();
    let state = format!("{base}State");
    let command_enum = format!("{base}Command");
    let event_enum = format!("{base}Event");
    let commands: &[Command] = &aggregate.commands;
    let events: &[DomainEvent] = &aggregate.events;
    let command_idents = unique_idents(
        commands.iter().map(|c| c.name.as_str()),
        naming::pascal_ident,
    );
    let event_idents = unique_idents(events.iter().map(|e| e.name.as_str()), naming::pascal_ident);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "//! Aggregate `{name}` of context `{}`, generated from the EventStorming model {:?}.",
        context.name.escape_default(),
        model.domain
    );
    out.push_str("//!\n//! A starting point: fill in the state and the `todo!()`s.\n\n");
    out.push_str("use serde::{Deserialize, Serialize};\n\n");

    let _ = writeln!(
        out,
        "/// State of the `{name}` aggregate, folded from its events."
    );
    if aggregate.description.is_some() {
        out.push_str("///\n");
        doc(&mut out, "", aggregate.description.as_deref());
    }
    out.push_str("#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]\n");
    let _ = writeln!(out, "pub struct {state} {{}}\n");

    enum_decl(
        &mut out,
        &format!("Commands handled by `{name}`."),
        &command_enum,
        commands.iter().zip(&command_idents).map(|(c, ident)| {
            (
                ident.as_str(),
                c.description.as_deref(),
                c.fields.as_slice(),
            )
        }),
    );
    enum_decl(
        &mut out,
        &format!("Events emitted by `{name}`."),
        &event_enum,
        events.iter().zip(&event_idents).map(|(e, ident)| {
            (
                ident.as_str(),
                e.description.as_deref(),
                e.fields.as_slice(),
            )
        }),
    );

    let _ = writeln!(out, "impl {event_enum} {{");
    out.push_str("    /// The event type name, as in the model.\n");
    out.push_str("    pub fn event_type(&self) -> &'static str {\n");
    if events.is_empty() {
        out.push_str("        match *self {}\n");
    } else {
        out.push_str("        match self {\n");
        for (e, ident) in events.iter().zip(&event_idents) {
            let _ = writeln!(
                out,
                "            {} => {:?},",
                pattern("Self", ident, &e.fields),
                e.name
            );
        }
        out.push_str("        }\n");
    }
    out.push_str("    }\n}\n\n");

    let _ = writeln!(out, "impl {state} {{");
    out.push_str("    /// Decides which events a command leads to. Pure: no I/O.\n");
    let _ = writeln!(
        out,
        "    pub fn handle(&self, command: {command_enum}) -> Result<Vec<{event_enum}>, String> {{"
    );
    if commands.is_empty() {
        out.push_str("        match command {}\n");
    } else {
        out.push_str("        match command {\n");
        for (c, ident) in commands.iter().zip(&command_idents) {
            let outcomes: Vec<String> = c
                .emits
                .iter()
                .filter_map(|name| {
                    events
                        .iter()
                        .zip(&event_idents)
                        .find(|(e, _)| &e.name == name)
                        .map(|(_, ident)| format!("{event_enum}::{ident}"))
                })
                .collect();
            let _ = writeln!(
                out,
                "            {} => {{",
                pattern(&command_enum, ident, &c.fields)
            );
            if !outcomes.is_empty() {
                let _ = writeln!(out, "                // May emit: {}.", outcomes.join(", "));
            }
            let _ = writeln!(
                out,
                "                todo!(\"handle {}\")",
                ident.trim_start_matches("r#")
            );
            out.push_str("            }\n");
        }
        out.push_str("        }\n");
    }
    out.push_str("    }\n\n");
    out.push_str("    /// Folds one event into the state.\n");
    let _ = writeln!(out, "    pub fn apply(&mut self, event: &{event_enum}) {{");
    if events.is_empty() {
        out.push_str("        match *event {}\n");
    } else {
        out.push_str("        match event {\n");
        for (e, ident) in events.iter().zip(&event_idents) {
            let _ = writeln!(
                out,
                "            {} => todo!(\"apply {}\"),",
                pattern(&event_enum, ident, &e.fields),
                ident.trim_start_matches("r#")
            );
        }
        out.push_str("        }\n");
    }
    out.push_str("    }\n}\n");
    out
}
