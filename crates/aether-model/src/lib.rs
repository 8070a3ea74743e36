//! EventStorming models for Aether: typed, validated, drawn, and bridged to
//! code.
//!
//! An EventStorming board — commands, the aggregates that handle them, the
//! events they emit, the policies that react to events, read models, actors,
//! external systems and hotspots — is written down as a [`Model`], loaded from
//! a JSON (or, with the `toml` feature, TOML) file. Elements refer to each
//! other by name. Then:
//!
//! - [`Model::validate`] gives a [`ValidationReport`]: located errors
//!   (dangling references, duplicate names, unhandled commands, unemitted
//!   events, policy loops with no way out, …) and naming warnings, each with a
//!   path such as `contexts[0].aggregates[1].commands[2]`;
//! - [`Model::to_mermaid`] and [`Model::to_dot`] draw the board in sticky-note
//!   colours;
//! - [`Model::into_validated`] and [`ValidatedModel::rust_skeleton`] write the
//!   state, command and event types of an aggregate;
//!   [`Model::check_event_types`] tells when code and model drift apart.
//!
//! This crate depends on `serde`, `serde_json` and `thiserror` only (plus
//! `toml` with its feature): no runtime, no NATS, no other Aether crate.
//!
//! # Example
//!
//! ```
//! use aether_model::{DiagnosticKind, Model};
//!
//! let model = Model::from_json_str(r#"{
//!   "domain": "Shop",
//!   "contexts": [{
//!     "name": "Ordering",
//!     "aggregates": [{
//!       "name": "Order",
//!       "commands": [{ "name": "PlaceOrder", "emits": "OrderPlaced" }],
//!       "events": [{ "name": "OrderPlaced" }]
//!     }],
//!     "policies": [{ "name": "ThankOnOrder", "on": "OrderPlaced", "issues": "SendThanks" }]
//!   }],
//!   "actors": [{ "name": "Customer", "issues": "PlaceOrder" }]
//! }"#)?;
//!
//! // The policy issues a command nobody declared.
//! let report = model.validate();
//! assert!(!report.is_ok());
//! let error = report.errors().next().unwrap();
//! assert!(matches!(error.kind, DiagnosticKind::UnknownReference { .. }));
//! assert_eq!(error.location.path, "contexts[0].policies[0].issues[0]");
//! println!("{report}");
//!
//! // Drawing works on any model; unresolved references are left out.
//! assert!(model.to_mermaid().starts_with("flowchart LR"));
//! assert!(model.to_dot().contains("fillcolor=\"#FFA94D\""));
//!
//! // The code declares one event the model does not know.
//! let drift = model.check_event_types("Order", ["OrderPlaced", "OrderShipped"]);
//! assert!(drift.is_err());
//! # Ok::<(), aether_model::LoadError>(())
//! ```
//!
//! # File format
//!
//! The root holds `domain`, an optional `description`, and lists `contexts`,
//! `actors`, `external_systems` and `hotspots`. A context holds `aggregates`
//! (each with `commands` and `events`), `policies` (`on` an event, `issues`
//! commands), `read_models` (`fed_by` events), and draft `commands` and
//! `events` not yet given to an aggregate. Reference lists (`emits`,
//! `issues`, `fed_by`) may be a single string. Unknown fields are refused, so
//! a typo is an error with its line and column, not a silent default.
//! `examples/order_fulfilment.model.json` in the repository is a complete
//! board.
//!
//! # Feature flags
//!
//! - `toml` (off by default): load and save models as TOML, which allows
//!   comments in hand-written boards. Adds the `toml` crate.
#![doc(test(attr(deny(warnings), allow(dead_code, unused_variables))))]
#![warn(missing_docs, unreachable_pub)]

mod codegen;
mod io;
mod model;
mod naming;
pub mod render;
mod validate;

pub use codegen::{Drift, DriftOf, ValidatedModel};
pub use io::{Format, LoadError, SaveError};
pub use model::{
    Actor, Aggregate, BoundedContext, Command, DomainEvent, ElementKind, ExternalSystem, Field,
    Hotspot, Model, Owner, Policy, ReadModel,
};
pub use validate::{
    CycleStep, Diagnostic, DiagnosticKind, Location, Relation, Severity, ValidationReport,
};
