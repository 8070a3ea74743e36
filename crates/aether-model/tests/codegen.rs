//! The bridge to code: generated skeletons (checked against golden files
//! that this test compiles) and drift checks.
//!
//! After an intended change to the generator, refresh the golden files with
//! `AETHER_MODEL_BLESS=1 cargo test -p aether-model --test codegen`.

use std::path::PathBuf;

use aether_model::{Drift, DriftOf, Model};

const EXAMPLE: &str = include_str!("../../../examples/order_fulfilment.model.json");

/// Names that are not Rust identifiers, keywords, clashes after cleaning,
/// multi-line descriptions, and an aggregate with nothing in it.
const TRICKY: &str = r#"{
  "domain": "Tricky \"domain\"\nwith a second line",
  "contexts": [{
    "name": "Ctx */ \"x\"",
    "aggregates": [
      {
        "name": "self",
        "description": "Line one.\n\nLine */ three.",
        "commands": [
          {
            "name": "Do \"it\" [now]",
            "description": "Quotes \"and\" brackets [].",
            "emits": ["3 things happened"],
            "fields": [
              { "name": "type", "type": "String" },
              { "name": "self", "type": "u8" },
              { "name": "Order Id", "type": "u64", "description": "Two\nlines" },
              { "name": "order-id", "type": "Option<u64>" },
              { "name": "match", "type": "[u8; 4]" }
            ]
          },
          { "name": "do it now", "emits": "Done" },
          { "name": "match", "emits": "Done" }
        ],
        "events": [
          { "name": "3 things happened", "fields": [{ "name": "async", "type": "(u8, String)" }] },
          { "name": "Done" }
        ]
      },
      { "name": "Empty" }
    ]
  }]
}"#;

#[expect(
    clippy::todo,
    clippy::enum_variant_names,
    unreachable_pub,
    reason = "a generated skeleton is user code: public items, todo!() placeholders, \
              and variants named like the model's events (OrderPlaced, OrderShipped)"
)]
#[rustfmt::skip] // The golden files are byte-for-byte generator output.
#[path = "skeletons/order.rs"]
mod order;

#[expect(
    clippy::todo,
    unreachable_pub,
    reason = "a generated skeleton is user code: public items and todo!() placeholders"
)]
#[rustfmt::skip] // The golden files are byte-for-byte generator output.
#[path = "skeletons/tricky.rs"]
mod tricky;

#[expect(
    unreachable_pub,
    reason = "a generated skeleton is user code: public items"
)]
#[rustfmt::skip] // The golden files are byte-for-byte generator output.
#[path = "skeletons/empty.rs"]
mod empty;

fn golden(name: &str, generated: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/skeletons")
        .join(name);
    if std::env::var_os("AETHER_MODEL_BLESS").is_some() {
        std::fs::write(&path, generated).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(
        generated,
        expected,
        "{} is stale; rerun with AETHER_MODEL_BLESS=1 if the change is intended",
        path.display()
    );
}

#[test]
fn order_skeleton_matches_the_compiled_golden_file() {
    let model = Model::from_json_str(EXAMPLE).expect("example");
    let valid = model.into_validated().expect("example is valid");
    let code = valid.rust_skeleton("Order").expect("Order exists");
    golden("order.rs", &code);

    // The golden file is compiled into this test: the types work.
    use order::{OrderCommand, OrderEvent, OrderState};
    let command = OrderCommand::PlaceOrder {
        order_id: "o-1".into(),
        customer_id: "c-1".into(),
        lines: vec![("sku-1".into(), 2)],
    };
    let json = serde_json::to_string(&command).expect("serialize");
    assert_eq!(
        serde_json::from_str::<OrderCommand>(&json).expect("deserialize"),
        command
    );
    assert_eq!(OrderEvent::OrderConfirmed.event_type(), "OrderConfirmed");
    let events = [
        OrderEvent::OrderPlaced {
            order_id: String::new(),
            customer_id: String::new(),
            lines: Vec::new(),
        },
        OrderEvent::OrderConfirmed,
        OrderEvent::OrderCancelled {
            reason: String::new(),
        },
        OrderEvent::OrderCompleted,
    ];
    let names: Vec<&str> = events.iter().map(OrderEvent::event_type).collect();
    // What the code declares at run time matches the model.
    assert_eq!(valid.model().check_event_types("Order", &names), Ok(()));
    let _: fn(&OrderState, OrderCommand) -> Result<Vec<OrderEvent>, String> = OrderState::handle;
    let _: fn(&mut OrderState, &OrderEvent) = OrderState::apply;
    assert_eq!(OrderState::default(), OrderState {});
}

#[test]
fn awkward_names_become_valid_identifiers() {
    let valid = Model::from_json_str(TRICKY)
        .expect("parses")
        .into_validated()
        .expect("valid");
    let code = valid.rust_skeleton("self").expect("exists");
    golden("tricky.rs", &code);
    assert!(code.contains("pub struct SelfState {}"), "{code}");
    assert!(code.contains("    DoItNow {"), "{code}");
    assert!(
        code.contains("    DoItNow2,"),
        "clash gets a suffix: {code}"
    );
    assert!(code.contains("        r#type: String,"), "{code}");
    assert!(code.contains("        self_: u8,"), "{code}");
    assert!(code.contains("        order_id2: Option<u64>,"), "{code}");
    assert!(code.contains("    _3ThingsHappened {"), "{code}");
    assert!(
        code.contains("            Self::Done => \"Done\","),
        "{code}"
    );
    assert!(code.contains("/// Two\n        /// lines"), "{code}");

    use tricky::{SelfCommand, SelfEvent, SelfState};
    let command = SelfCommand::DoItNow {
        r#type: "t".into(),
        self_: 1,
        order_id: 2,
        order_id2: None,
        r#match: [0; 4],
    };
    let json = serde_json::to_string(&command).expect("serialize");
    assert_eq!(
        serde_json::from_str::<SelfCommand>(&json).expect("deserialize"),
        command
    );
    let event = SelfEvent::_3ThingsHappened {
        r#async: (1, "x".into()),
    };
    assert_eq!(event.event_type(), "3 things happened");
    assert_eq!(SelfEvent::Done.event_type(), "Done");
    let _ = (SelfCommand::DoItNow2, SelfCommand::Match);
    let _: fn(&SelfState, SelfCommand) -> Result<Vec<SelfEvent>, String> = SelfState::handle;
    let _: fn(&mut SelfState, &SelfEvent) = SelfState::apply;

    let empty = valid.rust_skeleton("Empty").expect("exists");
    golden("empty.rs", &empty);
    let _: fn(&empty::EmptyState, empty::EmptyCommand) -> Result<Vec<empty::EmptyEvent>, String> =
        empty::EmptyState::handle;
    let _: fn(&mut empty::EmptyState, &empty::EmptyEvent) = empty::EmptyState::apply;
    let _: fn(&empty::EmptyEvent) -> &'static str = empty::EmptyEvent::event_type;
}

#[test]
fn skeletons_need_a_known_aggregate_and_a_valid_model() {
    let valid = Model::from_json_str(EXAMPLE)
        .expect("example")
        .into_validated()
        .expect("valid");
    assert_eq!(valid.rust_skeleton("Nope"), None);
    assert!(valid.rust_skeleton("Shipment").is_some());

    let mut broken = valid.into_inner();
    broken.contexts[0].policies[0].on = "Nope".into();
    assert!(broken.into_validated().is_err());
}

#[test]
fn drift_reports_missing_and_unexpected_types() {
    let model = Model::from_json_str(EXAMPLE).expect("example");
    assert_eq!(
        model.check_event_types(
            "Order",
            [
                "OrderPlaced",
                "OrderConfirmed",
                "OrderCancelled",
                "OrderCompleted",
                "OrderPlaced"
            ]
        ),
        Ok(())
    );
    let drift = model
        .check_event_types("Order", ["OrderPlaced", "OrderShipped"])
        .expect_err("drifted");
    assert_eq!(
        drift,
        Drift::Mismatch {
            aggregate: "Order".into(),
            what: DriftOf::Events,
            missing: vec![
                "OrderCancelled".into(),
                "OrderCompleted".into(),
                "OrderConfirmed".into()
            ],
            unexpected: vec!["OrderShipped".into()],
        }
    );
    assert_eq!(
        drift.to_string(),
        "event types of aggregate \"Order\" drifted from the model: missing in code \
         [\"OrderCancelled\", \"OrderCompleted\", \"OrderConfirmed\"], not in the model [\"OrderShipped\"]"
    );

    let declared: Vec<String> = vec!["ReserveStock".into(), "ReleaseStock".into()];
    let drift = model
        .check_command_types("StockItem", &declared)
        .expect_err("RestockItem missing");
    assert!(matches!(
        &drift,
        Drift::Mismatch { what: DriftOf::Commands, missing, unexpected, .. }
            if missing == &["RestockItem"] && unexpected.is_empty()
    ));

    assert_eq!(
        model.check_event_types("Basket", Vec::<&str>::new()),
        Err(Drift::UnknownAggregate {
            aggregate: "Basket".into()
        })
    );
}
