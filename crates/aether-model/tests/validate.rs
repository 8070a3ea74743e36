//! Every validation rule, with a failing and a passing case.

use aether_model::{
    Command, CycleStep, Diagnostic, DiagnosticKind, DomainEvent, ElementKind, Field, Hotspot,
    Model, Policy, ReadModel, Relation, Severity,
};

const EXAMPLE: &str = include_str!("../../../examples/order_fulfilment.model.json");

/// A small clean board: two aggregates, two policies, a read model, an
/// actor, an external system and a hotspot.
fn base() -> Model {
    Model::from_json_str(
        r#"{
          "domain": "Shop",
          "contexts": [{
            "name": "Sales",
            "aggregates": [
              {
                "name": "Order",
                "commands": [
                  { "name": "PlaceOrder", "emits": "OrderPlaced" },
                  { "name": "ShipOrder", "emits": "OrderShipped" }
                ],
                "events": [{ "name": "OrderPlaced" }, { "name": "OrderShipped" }]
              },
              {
                "name": "Stock",
                "commands": [{ "name": "ReserveStock", "emits": ["StockReserved"] }],
                "events": [{ "name": "StockReserved" }]
              }
            ],
            "policies": [
              { "name": "ReserveOnOrder", "on": "OrderPlaced", "issues": "ReserveStock" },
              { "name": "ShipOnReservation", "on": "StockReserved", "issues": "ShipOrder" }
            ],
            "read_models": [{ "name": "Orders", "fed_by": ["OrderPlaced", "OrderShipped"] }]
          }],
          "actors": [{ "name": "Customer", "issues": "PlaceOrder" }],
          "external_systems": [{
            "name": "Mailer",
            "commands": [{ "name": "SendMail", "emits": "MailSent" }],
            "events": [{ "name": "MailSent" }, { "name": "MailBounced" }]
          }],
          "hotspots": [{ "question": "Partial shipments?", "on": "OrderShipped" }]
        }"#,
    )
    .expect("base model parses")
}

fn diagnostics(model: &Model) -> Vec<Diagnostic> {
    model.validate().diagnostics
}

/// The only diagnostic of the model.
fn only(model: &Model) -> Diagnostic {
    let found = diagnostics(model);
    assert_eq!(found.len(), 1, "expected one diagnostic, got {found:#?}");
    found.into_iter().next().expect("one")
}

fn command(name: &str, emits: &[&str]) -> Command {
    Command {
        name: name.into(),
        emits: emits.iter().map(|s| (*s).into()).collect(),
        ..Command::default()
    }
}

fn event(name: &str) -> DomainEvent {
    DomainEvent {
        name: name.into(),
        ..DomainEvent::default()
    }
}

fn policy(name: &str, on: &str, issues: &[&str]) -> Policy {
    Policy {
        name: name.into(),
        description: None,
        on: on.into(),
        issues: issues.iter().map(|s| (*s).into()).collect(),
    }
}

#[test]
fn clean_models_have_no_diagnostics() {
    assert_eq!(diagnostics(&base()), []);
    assert!(base().validate().is_ok());
    let example = Model::from_json_str(EXAMPLE).expect("example parses");
    assert_eq!(diagnostics(&example), [], "the shipped example is clean");
    assert_eq!(diagnostics(&Model::new("Empty board")), []);
}

#[test]
fn empty_names_are_errors() {
    let mut m = base();
    m.contexts[0].aggregates[0].commands[1].name = "  ".into();
    // Remove the now dangling reference so only the empty name is reported.
    m.contexts[0].policies[1].issues.clear();
    m.contexts[0].policies.remove(1);
    let d = only(&m);
    assert_eq!(d.kind, DiagnosticKind::EmptyName);
    assert_eq!(d.location.path, "contexts[0].aggregates[0].commands[1]");
    assert_eq!(d.location.kind, ElementKind::Command);
    assert_eq!(d.severity(), Severity::Error);

    let mut m = base();
    m.hotspots[0].question = String::new();
    assert_eq!(only(&m).location.path, "hotspots[0].question");
}

#[test]
fn duplicate_names_are_errors_with_the_first_location() {
    let mut m = base();
    m.contexts[0].aggregates[1]
        .commands
        .push(command("PlaceOrder", &["StockReserved"]));
    let d = only(&m);
    assert_eq!(d.location.path, "contexts[0].aggregates[1].commands[1]");
    assert_eq!(
        d.kind,
        DiagnosticKind::DuplicateName {
            name: "PlaceOrder".into(),
            first: "contexts[0].aggregates[0].commands[0]".into(),
        }
    );

    // Events are unique model-wide, across aggregates and external systems.
    let mut m = base();
    m.external_systems[0].events.push(event("OrderPlaced"));
    let d = only(&m);
    assert_eq!(d.location.path, "external_systems[0].events[2]");
    assert!(matches!(d.kind, DiagnosticKind::DuplicateName { .. }));

    // Fields are unique within their command or event.
    let mut m = base();
    let f = Field {
        name: "id".into(),
        ty: "u64".into(),
        description: None,
    };
    m.contexts[0].aggregates[0].commands[0].fields = vec![f.clone(), f];
    let d = only(&m);
    assert_eq!(
        d.location.path,
        "contexts[0].aggregates[0].commands[0].fields[1]"
    );
    assert_eq!(d.location.kind, ElementKind::Field);

    // Passing: one name for elements of different kinds.
    let mut m = base();
    m.contexts[0].name = "Order".into();
    m.actors[0].name = "Order".into();
    assert_eq!(diagnostics(&m), []);
}

/// A mutation, then the path, relation, name and suggestion it must cause.
type DanglingCase = (
    fn(&mut Model),
    &'static str,
    Relation,
    &'static str,
    Option<&'static str>,
);

#[test]
fn dangling_references_are_errors_with_suggestions() {
    let cases: Vec<DanglingCase> = vec![
        (
            |m| m.contexts[0].policies[0].on = "OrderPlacd".into(),
            "contexts[0].policies[0].on",
            Relation::ReactsTo,
            "OrderPlacd",
            Some("OrderPlaced"),
        ),
        (
            |m| m.contexts[0].policies[0].issues = vec!["Teleport".into()],
            "contexts[0].policies[0].issues[0]",
            Relation::Issues,
            "Teleport",
            None,
        ),
        (
            |m| m.contexts[0].read_models[0].fed_by[1] = "OrderShiped".into(),
            "contexts[0].read_models[0].fed_by[1]",
            Relation::FedBy,
            "OrderShiped",
            Some("OrderShipped"),
        ),
        (
            |m| m.actors[0].issues.push("PlaceOrders".into()),
            "actors[0].issues[1]",
            Relation::Issues,
            "PlaceOrders",
            Some("PlaceOrder"),
        ),
        (
            |m| {
                m.external_systems[0].commands[0]
                    .emits
                    .push("MailLost".into())
            },
            "external_systems[0].commands[0].emits[1]",
            Relation::Emits,
            "MailLost",
            None,
        ),
        (
            |m| m.hotspots[0].on = Some("Nowhere".into()),
            "hotspots[0].on",
            Relation::AttachedTo,
            "Nowhere",
            None,
        ),
        (
            |m| m.hotspots[0].on = Some("command:OrderShipped".into()),
            "hotspots[0].on",
            Relation::AttachedTo,
            "OrderShipped",
            None,
        ),
    ];
    for (mutate, path, relation, name, suggestion) in cases {
        let mut m = base();
        mutate(&mut m);
        let report = m.validate();
        let d = report
            .errors()
            .find(|d| matches!(d.kind, DiagnosticKind::UnknownReference { .. }))
            .unwrap_or_else(|| panic!("no unknown reference for {path}: {report}"));
        assert_eq!(d.location.path, path);
        assert_eq!(
            d.kind,
            DiagnosticKind::UnknownReference {
                relation,
                name: name.into(),
                suggestion: suggestion.map(Into::into),
            }
        );
    }

    // The message names the element, its path, the name and the suggestion.
    let mut m = base();
    m.contexts[0].policies[0].on = "OrderPlacd".into();
    let shown = only(&m).to_string();
    assert_eq!(
        shown,
        "error[unknown-reference] policy \"ReserveOnOrder\" (contexts[0].policies[0].on): \
         reacts to unknown event \"OrderPlacd\" (did you mean \"OrderPlaced\"?)"
    );
}

#[test]
fn ambiguous_hotspot_references_need_a_kind_prefix() {
    let mut m = base();
    m.contexts[0].name = "Stock".into();
    m.hotspots[0].on = Some("Stock".into());
    let d = only(&m);
    assert_eq!(
        d.kind,
        DiagnosticKind::AmbiguousReference {
            name: "Stock".into(),
            candidates: vec![ElementKind::Context, ElementKind::Aggregate],
        }
    );
    assert!(d.to_string().contains("\"context:Stock\""), "{d}");

    for on in [
        "aggregate:Stock",
        "context:Stock",
        "read_model:Orders",
        "external:Mailer",
    ] {
        m.hotspots[0].on = Some(on.into());
        assert_eq!(diagnostics(&m), [], "{on}");
    }
}

#[test]
fn commands_may_only_emit_their_owners_events() {
    let mut m = base();
    m.contexts[0].aggregates[0].commands[0]
        .emits
        .push("StockReserved".into());
    let d = only(&m);
    assert_eq!(
        d.location.path,
        "contexts[0].aggregates[0].commands[0].emits[1]"
    );
    assert_eq!(
        d.kind,
        DiagnosticKind::ForeignEvent {
            event: "StockReserved".into(),
            owner: Some("Stock".into()),
        }
    );
}

#[test]
fn commands_no_aggregate_handles_are_errors() {
    let mut m = base();
    m.contexts[0].commands.push(command("CancelOrder", &[]));
    let d = only(&m);
    assert_eq!(d.kind, DiagnosticKind::UnhandledCommand);
    assert_eq!(d.location.path, "contexts[0].commands[0]");
    assert_eq!(d.location.name.as_deref(), Some("CancelOrder"));

    // Passing: handled by an aggregate, or by an external system.
    let mut m = base();
    let cancel = command("CancelOrder", &["OrderCancelled"]);
    m.contexts[0].aggregates[0].commands.push(cancel);
    m.contexts[0].aggregates[0]
        .events
        .push(event("OrderCancelled"));
    m.external_systems[0].commands.push(command("SendSms", &[]));
    assert_eq!(diagnostics(&m), []);
}

#[test]
fn events_no_aggregate_emits_are_errors() {
    // Owned by an aggregate, emitted by none of its commands.
    let mut m = base();
    m.contexts[0].aggregates[0]
        .events
        .push(event("OrderArchived"));
    let d = only(&m);
    assert_eq!(d.kind, DiagnosticKind::UnemittedEvent);
    assert_eq!(d.location.path, "contexts[0].aggregates[0].events[2]");

    // A draft event of a context.
    let mut m = base();
    m.contexts[0].events.push(event("OrderLost"));
    let d = only(&m);
    assert_eq!(d.kind, DiagnosticKind::UnemittedEvent);
    assert_eq!(d.location.path, "contexts[0].events[0]");

    // Passing: external systems may emit events on their own (MailBounced).
    assert_eq!(diagnostics(&base()), []);
}

#[test]
fn policy_cycles_without_a_way_out_are_errors() {
    let ping_pong = |pong_emits: &[&str]| {
        let mut m = base();
        let agg = &mut m.contexts[0].aggregates[1];
        agg.commands.push(command("Ping", &["Pinged"]));
        agg.commands.push(command("Pong", pong_emits));
        agg.events.push(event("Pinged"));
        agg.events.push(event("Ponged"));
        agg.events.push(event("PongFailed"));
        let policies = &mut m.contexts[0].policies;
        policies.push(policy("PongOnPing", "Pinged", &["Pong"]));
        policies.push(policy("PingOnPong", "Ponged", &["Ping"]));
        policies.push(policy("PingOnFailure", "PongFailed", &["Ping"]));
        m
    };

    // Every outcome of Pong leads back to Ping: never terminates.
    let m = ping_pong(&["Ponged", "PongFailed"]);
    let report = m.validate();
    let cycles: Vec<&Diagnostic> = report
        .errors()
        .filter(|d| matches!(d.kind, DiagnosticKind::PolicyCycle { .. }))
        .collect();
    assert_eq!(cycles.len(), 1, "{report}");
    let DiagnosticKind::PolicyCycle { steps } = &cycles[0].kind else {
        unreachable!()
    };
    assert_eq!(
        steps,
        &[
            CycleStep {
                event: "Pinged".into(),
                policy: "PongOnPing".into(),
                command: "Pong".into()
            },
            CycleStep {
                event: "Ponged".into(),
                policy: "PingOnPong".into(),
                command: "Ping".into()
            },
        ]
    );
    assert_eq!(cycles[0].location.path, "contexts[0].policies[2]");
    assert!(
        cycles[0]
            .to_string()
            .contains("Pinged → [PongOnPing] → Pong → Ponged → [PingOnPong] → Ping → Pinged"),
        "{}",
        cycles[0]
    );

    // Passing: a loop with a way out (Pong may emit an event nothing reacts
    // to), such as a retry loop, is fine.
    let mut m = ping_pong(&["Ponged", "PongFailed"]);
    m.contexts[0].aggregates[1].commands[2]
        .emits
        .push("PongGaveUp".into());
    m.contexts[0].aggregates[1].events.push(event("PongGaveUp"));
    assert_eq!(diagnostics(&m), []);
    // Passing: a command that emits nothing ends the chain (with a warning).
    let m = ping_pong(&[]);
    assert!(!m.validate().has("policy-cycle"), "{}", m.validate());
}

#[test]
fn a_self_loop_is_a_cycle() {
    let mut m = base();
    m.contexts[0].aggregates[0]
        .commands
        .push(command("Retry", &["Retried"]));
    m.contexts[0].aggregates[0].events.push(event("Retried"));
    m.contexts[0]
        .policies
        .push(policy("RetryAgain", "Retried", &["Retry"]));
    let d = only(&m);
    assert!(
        matches!(&d.kind, DiagnosticKind::PolicyCycle { steps } if steps.len() == 1),
        "{d}"
    );
    assert_eq!(d.location.name.as_deref(), Some("RetryAgain"));
}

#[test]
fn an_event_triggering_a_loop_and_an_exit_still_loops() {
    // OrderShipped fires two policies: one ends, one loops forever.
    let mut m = base();
    m.contexts[0].aggregates[0]
        .commands
        .push(command("Reship", &["OrderShipped"]));
    m.contexts[0].policies.push(policy(
        "ReshipForever",
        "OrderShipped",
        &["Reship", "SendMail"],
    ));
    let report = m.validate();
    assert!(report.has("policy-cycle"), "{report}");
}

#[test]
fn field_types_must_be_usable_in_code() {
    let mut m = base();
    m.contexts[0].aggregates[0].events[0].fields.push(Field {
        name: "id".into(),
        ty: "String }; fn evil() {".into(),
        description: None,
    });
    let d = only(&m);
    assert_eq!(
        d.location.path,
        "contexts[0].aggregates[0].events[0].fields[0].type"
    );
    assert!(matches!(d.kind, DiagnosticKind::InvalidFieldType { .. }));

    m.contexts[0].aggregates[0].events[0].fields[0].ty = "Vec<(String, [u8; 4])>".into();
    assert_eq!(diagnostics(&m), []);
}

#[test]
fn naming_conventions_are_warnings() {
    let mut m = base();
    let agg = &mut m.contexts[0].aggregates[0];
    agg.commands
        .push(command("OrderCancelled", &["CancelOrder"]));
    agg.events.push(event("CancelOrder"));
    let report = m.validate();
    assert!(report.is_ok(), "naming is never an error: {report}");
    let warnings: Vec<_> = report.warnings().collect();
    assert_eq!(warnings.len(), 2, "{report}");
    assert_eq!(warnings[0].kind, DiagnosticKind::CommandNotImperative);
    assert_eq!(
        warnings[0].location.path,
        "contexts[0].aggregates[0].commands[2]"
    );
    assert_eq!(warnings[0].severity(), Severity::Warning);
    assert_eq!(warnings[1].kind, DiagnosticKind::EventNotPastTense);
    assert_eq!(
        warnings[1].location.path,
        "contexts[0].aggregates[0].events[2]"
    );

    // Passing: imperative commands that mention a state, irregular past
    // participles, particles and version tags.
    let mut m = base();
    let agg = &mut m.contexts[0].aggregates[0];
    for (c, e) in [
        ("MarkAsShipped", "OrderSent"),
        ("CheckOut", "OrderCheckedOut"),
        ("Proceed", "StockRanOut"),
        ("Withdraw", "FundsWithdrawn"),
        ("PlaceOrderV2", "OrderPlacedV2"),
    ] {
        agg.commands.push(command(c, &[e]));
        agg.events.push(event(e));
    }
    assert_eq!(diagnostics(&m), []);
}

#[test]
fn loose_ends_are_warnings() {
    let mut m = base();
    m.contexts[0].aggregates[0].commands[1].emits.clear();
    m.contexts[0].aggregates[0].events.pop();
    m.contexts[0].read_models[0].fed_by.pop();
    m.contexts[0]
        .policies
        .push(policy("DoNothing", "OrderPlaced", &[]));
    m.contexts[0].read_models.push(ReadModel {
        name: "Empty".into(),
        description: None,
        fed_by: vec![],
    });
    m.hotspots[0].on = Some("OrderPlaced".into());
    let report = m.validate();
    assert!(report.is_ok(), "{report}");
    let codes: Vec<&str> = report.warnings().map(|d| d.kind.code()).collect();
    assert_eq!(
        codes,
        [
            "policy-issues-nothing",
            "read-model-not-fed",
            "command-emits-nothing"
        ]
    );
}

#[test]
fn the_report_lists_errors_before_warnings_and_sums_up() {
    let mut m = base();
    m.contexts[0].aggregates[0].events.push(event("Archive")); // warning + error
    m.hotspots.push(Hotspot {
        question: "Who?".into(),
        on: Some("Nobody".into()),
    });
    let report = m.validate();
    let severities: Vec<Severity> = report
        .diagnostics
        .iter()
        .map(Diagnostic::severity)
        .collect();
    assert_eq!(
        severities,
        [Severity::Error, Severity::Error, Severity::Warning]
    );
    let shown = report.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 4, "{shown}");
    // References are checked before ownership.
    assert!(lines[0].starts_with(
        "error[unknown-reference] hotspots[1].on: is attached to unknown element \"Nobody\""
    ));
    assert!(lines[1].starts_with(
        "error[unemitted-event] event \"Archive\" (contexts[0].aggregates[0].events[2])"
    ));
    assert!(lines[2].starts_with("warning[event-not-past-tense]"));
    assert_eq!(lines[3], "2 errors, 1 warning");
    assert!(!report.is_ok());
    assert!(report.has("unemitted-event"));
    // Deterministic.
    assert_eq!(m.validate(), report);
}

#[test]
fn into_validated_keeps_warnings_and_refuses_errors() {
    let mut m = base();
    m.contexts[0]
        .policies
        .push(policy("DoNothing", "OrderPlaced", &[]));
    let valid = m.clone().into_validated().expect("warnings only");
    assert_eq!(valid.report().warnings().count(), 1);
    assert_eq!(valid.model(), &m);

    m.contexts[0].policies[0].on = "Nope".into();
    let report = m.into_validated().expect_err("has an error");
    assert!(report.has("unknown-reference"));
}
