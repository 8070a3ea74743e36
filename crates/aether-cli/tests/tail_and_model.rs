//! `aether tail` against a real server's bus, and `aether model` against the
//! repository's example board.

mod common;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aether_bus::NatsEventBus;
use aether_core::{ActorId, Event, EventBus, Namespace, Version};
use aether_testkit_nats::{NatsServer, connect, wait_until};
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn tail_prints_live_events_of_the_pattern_and_type() {
    let server = NatsServer::start().await;
    let root = fresh_namespace("cli-tail");
    let child_ns = Namespace::new(format!("{root}.eu")).unwrap();
    let mut child = aether()
        .args(["--server", &server.url(), "tail"])
        .arg(format!("{root}.>"))
        .args(["--type", "ItemAdded", "--count", "2", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it listens (it says so on stderr once subscribed).
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stderr.read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .expect("tail starts listening in time")
        .unwrap()
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");

    let bus = NatsEventBus::new(connect(&server.url()).await);
    let actor = ActorId::new("cart-1").unwrap();
    let other = fresh_namespace("cli-elsewhere");
    let ev = |v: u64, ty: &str| {
        Event::new(
            actor.clone(),
            Version::new(v),
            ty,
            &serde_json::json!({"n": v}),
        )
        .unwrap()
    };
    bus.publish(&other, ev(1, "ItemAdded")).await.unwrap();
    bus.publish(&root, ev(2, "ItemRemoved")).await.unwrap();
    bus.publish(&root, ev(3, "ItemAdded")).await.unwrap();
    bus.publish(&child_ns, ev(4, "ItemAdded")).await.unwrap();

    wait_until(
        Duration::from_secs(20),
        "tail exits after 2 events",
        async || matches!(child.try_wait(), Ok(Some(_))),
    )
    .await;
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["namespace"], root.as_str());
    assert_eq!(lines[0]["version"], 3);
    assert_eq!(lines[0]["data"], serde_json::json!({"n": 3}));
    assert_eq!(lines[1]["namespace"], child_ns.as_str());
    assert_eq!(lines[1]["type"], "ItemAdded");
}

fn example_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/order_fulfilment.model.json")
}

fn model(args: &[&str]) -> std::process::Output {
    aether().arg("model").args(args).output().unwrap()
}

#[test]
fn model_check_accepts_the_example_and_rejects_a_broken_board() {
    let example = example_model();
    let out = model(&["check", example.to_str().unwrap()]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("valid — 0 error(s)"),
        "{}",
        stdout(&out)
    );

    let dir = std::env::temp_dir().join(aether_testkit_nats::unique_name("cli-model"));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.model.json");
    std::fs::write(
        &broken,
        r#"{"domain": "Shop", "contexts": [{"name": "Ordering",
            "aggregates": [{"name": "Order", "commands": [{"name": "PlaceOrder", "emits": "Nowhere"}], "events": []}]}]}"#,
    )
    .unwrap();
    let out = model(&["check", broken.to_str().unwrap()]);
    assert_code(&out, 1);
    let text = stdout(&out);
    assert!(
        text.contains("contexts[0].aggregates[0].commands[0]"),
        "{text}"
    );
    assert!(text.contains("invalid"), "{text}");

    let typo = dir.join("typo.model.json");
    std::fs::write(&typo, r#"{"domian": "Shop"}"#).unwrap();
    let out = model(&["check", typo.to_str().unwrap()]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("domian"), "{}", stderr(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_render_draws_mermaid_dot_and_svg() {
    let example = example_model();
    let example = example.to_str().unwrap();
    let out = model(&["render", example]);
    assert_code(&out, 0);
    assert!(stdout(&out).starts_with("flowchart LR"), "{}", stdout(&out));

    let dir = std::env::temp_dir().join(aether_testkit_nats::unique_name("cli-render"));
    std::fs::create_dir_all(&dir).unwrap();
    let dot_file = dir.join("board.dot");
    let out = model(&[
        "render",
        example,
        "--format",
        "dot",
        "-o",
        dot_file.to_str().unwrap(),
    ]);
    assert_code(&out, 0);
    assert!(stdout(&out).is_empty());
    let dot = std::fs::read_to_string(&dot_file).unwrap();
    assert!(dot.starts_with("digraph"), "{dot}");

    // No Graphviz: a clear error, exit 2.
    let out = model(&[
        "render",
        example,
        "--format",
        "svg",
        "--graphviz",
        "/nonexistent/dot",
    ]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("rendering SVG needs Graphviz"),
        "{}",
        stderr(&out)
    );

    // With Graphviz (when installed), an SVG drawing.
    let has_dot = std::process::Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let out = model(&["render", example, "--format", "svg"]);
    if has_dot {
        assert_code(&out, 0);
        assert!(stdout(&out).contains("<svg"), "{}", stdout(&out));
    } else {
        assert_code(&out, 2);
        assert!(stderr(&out).contains("needs Graphviz"), "{}", stderr(&out));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_stops_cleanly_on_ctrl_c() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("cli-sigint");
    let mut child = aether()
        .args(["--server", &server.url(), "tail", ns.as_str()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        stderr.read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(20), ready)
        .await
        .expect("tail starts listening in time")
        .unwrap()
        .unwrap();
    assert!(line.starts_with("listening on"), "{line}");
    let bus = NatsEventBus::new(connect(&server.url()).await);
    let actor = ActorId::new("a").unwrap();
    bus.publish(
        &ns,
        Event::new(actor, Version::FIRST, "Seen", &1u8).unwrap(),
    )
    .await
    .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        out.read_line(&mut line).map(|_| line)
    });
    let first = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("the event is printed in time")
        .unwrap()
        .unwrap();
    assert!(first.contains(" a v1 Seen 1"), "{first}");

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    wait_until(
        Duration::from_secs(20),
        "tail exits on SIGINT",
        async || matches!(child.try_wait(), Ok(Some(_))),
    )
    .await;
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
