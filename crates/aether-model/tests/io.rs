//! Loading and saving: round trips per format, and clear errors for bad files.

use std::path::PathBuf;

use aether_model::{
    Actor, Aggregate, BoundedContext, Command, DomainEvent, ExternalSystem, Field, Format, Hotspot,
    LoadError, Model, Policy, ReadModel, SaveError,
};

const EXAMPLE: &str = include_str!("../../../examples/order_fulfilment.model.json");

/// A model that uses every field, including single- and multi-element
/// reference lists and optional descriptions.
fn everything() -> Model {
    let field = |name: &str, ty: &str| Field {
        name: name.into(),
        ty: ty.into(),
        description: Some(format!("the {name}")),
    };
    Model {
        domain: "Everything \"quoted\" & [bracketed]".into(),
        description: Some("line one\nline two".into()),
        contexts: vec![BoundedContext {
            name: "Sales".into(),
            description: Some("sells".into()),
            aggregates: vec![Aggregate {
                name: "Order".into(),
                description: None,
                commands: vec![Command {
                    name: "PlaceOrder".into(),
                    description: Some("place".into()),
                    emits: vec!["OrderPlaced".into(), "OrderRejected".into()],
                    fields: vec![field("id", "u64"), field("lines", "Vec<(String, u32)>")],
                }],
                events: vec![
                    DomainEvent {
                        name: "OrderPlaced".into(),
                        description: None,
                        fields: vec![field("id", "u64")],
                    },
                    DomainEvent {
                        name: "OrderRejected".into(),
                        ..DomainEvent::default()
                    },
                ],
            }],
            commands: vec![Command {
                name: "RefundOrder".into(),
                emits: vec!["OrderRefunded".into()],
                ..Command::default()
            }],
            events: vec![DomainEvent {
                name: "OrderRefunded".into(),
                ..DomainEvent::default()
            }],
            policies: vec![Policy {
                name: "NotifyOnOrder".into(),
                description: Some("notify".into()),
                on: "OrderPlaced".into(),
                issues: vec!["SendMail".into()],
            }],
            read_models: vec![ReadModel {
                name: "Orders".into(),
                description: None,
                fed_by: vec!["OrderPlaced".into(), "OrderRejected".into()],
            }],
        }],
        actors: vec![Actor {
            name: "Customer".into(),
            description: Some("buys".into()),
            issues: vec!["PlaceOrder".into()],
        }],
        external_systems: vec![ExternalSystem {
            name: "Mailer".into(),
            description: None,
            commands: vec![Command {
                name: "SendMail".into(),
                emits: vec!["MailSent".into()],
                ..Command::default()
            }],
            events: vec![DomainEvent {
                name: "MailSent".into(),
                ..DomainEvent::default()
            }],
        }],
        hotspots: vec![
            Hotspot {
                question: "Refunds?".into(),
                on: Some("event:OrderRefunded".into()),
            },
            Hotspot {
                question: "Free-floating".into(),
                on: None,
            },
        ],
    }
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("aether-model-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

#[test]
fn json_round_trip_keeps_every_field() {
    for model in [
        everything(),
        Model::new("Empty"),
        Model::from_json_str(EXAMPLE).expect("example"),
    ] {
        let text = model.to_json_string().expect("save");
        let back = Model::from_json_str(&text).expect("load saved text");
        assert_eq!(back, model);
        // Saving again is byte-identical: the format is stable.
        assert_eq!(back.to_json_string().expect("save again"), text);
    }
}

#[test]
fn json_round_trip_through_files() {
    let path = temp_path("everything.model.json");
    everything().save(&path).expect("save");
    assert_eq!(Model::load(&path).expect("load"), everything());
}

#[test]
fn single_reference_is_written_as_a_string_and_read_back_as_a_list() {
    let model =
        Model::from_json_str(r#"{"domain": "D", "actors": [{"name": "A", "issues": "DoIt"}]}"#)
            .expect("load");
    assert_eq!(model.actors[0].issues, ["DoIt"]);
    let text = model.to_json_string().expect("save");
    assert!(text.contains(r#""issues": "DoIt""#), "{text}");
    let lists = Model::from_json_str(
        r#"{"domain": "D", "actors": [{"name": "A", "issues": ["DoIt", "DoThat"]}]}"#,
    )
    .expect("load");
    assert_eq!(lists.actors[0].issues, ["DoIt", "DoThat"]);
}

#[test]
fn empty_collections_are_left_out_of_the_file() {
    let text = Model::new("D").to_json_string().expect("save");
    assert_eq!(text, "{\n  \"domain\": \"D\"\n}\n");
}

#[cfg(feature = "toml")]
#[test]
fn toml_round_trip_keeps_every_field() {
    for model in [
        everything(),
        Model::new("Empty"),
        Model::from_json_str(EXAMPLE).expect("example"),
    ] {
        let text = model.to_toml_string().expect("save");
        let back = Model::from_toml_str(&text).expect("load saved text");
        assert_eq!(back, model, "{text}");
        assert_eq!(back.to_toml_string().expect("save again"), text);
    }
    let path = temp_path("everything.model.toml");
    everything().save(&path).expect("save");
    assert_eq!(Model::load(&path).expect("load"), everything());
}

#[cfg(feature = "toml")]
#[test]
fn toml_is_hand_writable_with_comments() {
    let model = Model::from_toml_str(
        r#"
        # A board written by hand.
        domain = "Shop"

        [[contexts]]
        name = "Sales"

        [[contexts.aggregates]]
        name = "Order"
        commands = [{ name = "PlaceOrder", emits = "OrderPlaced" }]
        events = [{ name = "OrderPlaced" }]
        "#,
    )
    .expect("load");
    assert_eq!(
        model.contexts[0].aggregates[0].commands[0].emits,
        ["OrderPlaced"]
    );
    assert!(model.validate().is_ok());
}

#[cfg(feature = "toml")]
#[test]
fn bad_toml_points_at_line_and_column() {
    let err = Model::from_toml_str("domain = \"Shop\"\n\n[[contexts]]\nname = 42\n")
        .expect_err("wrong type");
    match &err {
        LoadError::Parse {
            format: Format::Toml,
            line,
            column,
            message,
            ..
        } => {
            assert_eq!((*line, *column), (4, 8), "{err}");
            assert!(message.contains("string"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let err = Model::from_toml_str("domain = \"Shop\"\nnope =\n").expect_err("syntax");
    assert!(matches!(err, LoadError::Parse { line: 2, .. }), "{err}");
}

#[cfg(not(feature = "toml"))]
#[test]
fn toml_without_the_feature_is_a_clear_error() {
    let err = Model::from_toml_str("domain = \"D\"").expect_err("disabled");
    assert!(matches!(
        err,
        LoadError::FormatDisabled {
            format: Format::Toml,
            ..
        }
    ));
    assert!(err.to_string().contains("`toml` feature"), "{err}");
    let err = Model::new("D").to_toml_string().expect_err("disabled");
    assert!(matches!(err, SaveError::FormatDisabled { .. }));
}

fn parse_error(text: &str) -> (usize, usize, String) {
    match Model::from_json_str(text) {
        Err(LoadError::Parse {
            format: Format::Json,
            line,
            column,
            message,
            path: None,
        }) => (line, column, message),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn invalid_json_points_at_line_and_column() {
    let (line, column, message) = parse_error("{\n  \"domain\": \"D\",\n  \"contexts\": [,]\n}");
    assert_eq!((line, column), (3, 16));
    assert!(message.contains("expected value"), "{message}");
    assert!(
        !message.contains("line"),
        "position is not repeated: {message}"
    );
}

#[test]
fn wrong_types_point_at_line_and_column() {
    let (line, column, message) =
        parse_error("{\n  \"domain\": \"D\",\n  \"actors\": [{\"name\": 7}]\n}");
    assert_eq!(line, 3);
    assert!(column > 0);
    assert!(
        message.contains("invalid type: integer `7`, expected a string"),
        "{message}"
    );

    let (line, _, message) =
        parse_error("{\"domain\": \"D\",\n\"actors\": [{\"name\": \"A\", \"issues\": 3}]}");
    assert_eq!(line, 2);
    assert!(message.contains("a name or a list of names"), "{message}");
}

#[test]
fn unknown_and_missing_fields_are_errors() {
    let (line, _, message) =
        parse_error("{\"domain\": \"D\",\n \"contexts\": [{\"name\": \"C\", \"agregates\": []}]}");
    assert_eq!(line, 2);
    assert!(message.contains("unknown field `agregates`"), "{message}");
    let (_, _, message) = parse_error("{\"contexts\": []}");
    assert!(message.contains("missing field `domain`"), "{message}");
}

#[test]
fn empty_and_non_object_input_are_errors() {
    for text in ["", "   ", "null", "[]", "42", "\"model\""] {
        let (line, _, _) = parse_error(text);
        assert!(line >= 1);
    }
}

#[test]
fn file_errors_carry_the_path() {
    let path = temp_path("broken.model.json");
    std::fs::write(&path, "{\n  \"domain\": 1\n}\n").expect("write");
    let err = Model::load(&path).expect_err("broken");
    assert!(matches!(&err, LoadError::Parse { path: Some(p), line: 2, .. } if *p == path));
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:2:", path.display())),
        "{shown}"
    );

    let missing = temp_path("missing.model.json");
    assert!(matches!(Model::load(&missing), Err(LoadError::Io { .. })));
    assert!(matches!(
        Model::load(temp_path("model.yaml")),
        Err(LoadError::UnknownFormat { .. })
    ));
    assert!(matches!(
        Model::new("D").save(temp_path("model")),
        Err(SaveError::UnknownFormat { .. })
    ));
}

#[test]
fn format_from_path() {
    assert_eq!(
        Format::from_path("a/b.model.JSON".as_ref()),
        Some(Format::Json)
    );
    assert_eq!(Format::from_path("b.toml".as_ref()), Some(Format::Toml));
    assert_eq!(Format::from_path("b".as_ref()), None);
    assert!(Format::Json.is_enabled());
    assert_eq!(Format::Toml.is_enabled(), cfg!(feature = "toml"));
}
