//! `events`, `streams`, `actor-stats` and the connection errors, run as the
//! real binary against a real nats-server.

mod common;

use aether_core::{ActorId, Event, EventStore, Version};
use aether_testkit_nats::NatsServer;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn events_prints_history_as_json_lines_and_table() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("cli-events");
    let store = open_store(&server, &ns).await;
    write_events(&store, "cart-7", 0, 3).await;
    // A payload that is not MessagePack is shown, not fatal.
    let actor = ActorId::new("cart-7").unwrap();
    store
        .append(
            &actor,
            Version::new(3),
            vec![Event::from_raw(
                actor.clone(),
                Version::new(4),
                "Raw",
                vec![0xc1u8, 0xff],
            )],
        )
        .await
        .unwrap();

    let out = run(&server, &["events", ns.as_str(), "cart-7", "--json"]);
    assert_code(&out, 0);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4, "{lines:?}");
    for (i, line) in lines.iter().take(3).enumerate() {
        let v = i as u64 + 1;
        assert_eq!(line["version"], v);
        assert_eq!(line["type"], "ItemAdded");
        assert_eq!(line["actor"], "cart-7");
        assert_eq!(line["namespace"], ns.as_str());
        assert_eq!(
            line["data"],
            serde_json::json!({"sku": format!("sku-{v}"), "qty": v})
        );
        assert_eq!(line["id"].as_str().unwrap().len(), 36);
    }
    assert_eq!(lines[3]["type"], "Raw");
    assert_eq!(lines[3]["data"]["undecoded"]["hex"], "c1ff");

    let from = run(
        &server,
        &["events", ns.as_str(), "cart-7", "--from", "3", "--json"],
    );
    assert_code(&from, 0);
    let versions: Vec<u64> = json_lines(&from)
        .iter()
        .map(|l| l["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 4]);

    let table = run(&server, &["events", ns.as_str(), "cart-7"]);
    assert_code(&table, 0);
    let text = stdout(&table);
    assert!(
        text.contains("ItemAdded") && text.contains("sku-2"),
        "{text}"
    );
    assert!(text.contains("4 event(s) of actor `cart-7`"), "{text}");

    let none = run(&server, &["events", ns.as_str(), "nobody"]);
    assert_code(&none, 0);
    assert!(stdout(&none).contains("has no events"), "{}", stdout(&none));
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_an_unknown_actor_suggest_its_actor_system_ids() {
    let server = NatsServer::start().await;
    let ns = fresh_namespace("cli-kinds");
    let store = open_store(&server, &ns).await;
    // The actor system stores actor `cart-7` of kind `k` as `k:cart-7`.
    for actor in [
        "order:cart-7",
        "cart:cart-7",
        "cart:cart-77",
        "x:y:cart-7",
        ":cart-7",
    ] {
        write_events(&store, actor, 0, 1).await;
    }

    let table = run(&server, &["events", ns.as_str(), "cart-7"]);
    assert_code(&table, 0);
    let text = stdout(&table);
    assert!(
        text.contains(&format!(
            "actor `cart-7` in namespace `{ns}` has no events; \
             did you mean `cart:cart-7` or `order:cart-7`?"
        )),
        "{text}"
    );
    // With --json the hint goes to stderr and stdout stays JSON lines.
    let json = run(&server, &["events", ns.as_str(), "cart-7", "--json"]);
    assert_code(&json, 0);
    assert_eq!(stdout(&json), "");
    let err = stderr(&json);
    assert!(
        err.starts_with("aether: actor `cart-7`") && err.contains("did you mean `cart:cart-7` or"),
        "{err}"
    );
    // A suggested id reads, and an actor with no `<kind>:` twin gets no hint.
    let found = run(&server, &["events", ns.as_str(), "cart:cart-7", "--json"]);
    assert_code(&found, 0);
    assert_eq!(json_lines(&found)[0]["actor"], "cart:cart-7");
    let none = run(&server, &["events", ns.as_str(), "cart-8"]);
    assert_code(&none, 0);
    let text = stdout(&none);
    assert!(text.contains("has no events from version 1"), "{text}");
    assert!(!text.contains("did you mean"), "{text}");
    // An actor with events but none from `--from` on exists: no hint either.
    let later = run(
        &server,
        &["events", ns.as_str(), "cart:cart-7", "--from", "5"],
    );
    assert_code(&later, 0);
    assert!(
        !stdout(&later).contains("did you mean"),
        "{}",
        stdout(&later)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_and_actor_stats_count_events_and_actors() {
    let server = NatsServer::start().await;
    let shop = fresh_namespace("cli-shop");
    let other = fresh_namespace("cli-other");
    let store = open_store(&server, &shop).await;
    write_events(&store, "big", 0, 5).await;
    write_events(&store, "mid", 0, 2).await;
    write_events(&store, "small.one", 0, 1).await;
    let other_store = open_store(&server, &other).await;
    write_events(&other_store, "x", 0, 1).await;

    let out = run(&server, &["streams", "--json"]);
    assert_code(&out, 0);
    let rows = json(&out);
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{rows:?}");
    let shop_row = rows
        .iter()
        .find(|r| r["namespace"] == shop.as_str())
        .expect("the shop namespace is listed");
    assert_eq!(shop_row["events"], 8);
    assert_eq!(shop_row["actors"], 3);
    assert_eq!(shop_row["replicas"], 1);
    assert!(shop_row["bytes"].as_u64().unwrap() > 0);
    let other_row = rows
        .iter()
        .find(|r| r["namespace"] == other.as_str())
        .unwrap();
    assert_eq!(other_row["events"], 1);

    let table = run(&server, &["streams"]);
    assert_code(&table, 0);
    let text = stdout(&table);
    assert!(
        text.contains(shop.as_str()) && text.contains("NAMESPACE"),
        "{text}"
    );

    let stats = run(
        &server,
        &["actor-stats", shop.as_str(), "--top", "2", "--json"],
    );
    assert_code(&stats, 0);
    let stats = json(&stats);
    assert_eq!(stats["actors"], 3);
    assert_eq!(stats["events"], 8);
    assert_eq!(
        stats["top"],
        serde_json::json!([{"actor": "big", "events": 5}, {"actor": "mid", "events": 2}])
    );
    let table = run(&server, &["actor-stats", shop.as_str()]);
    assert_code(&table, 0);
    let text = stdout(&table);
    assert!(
        text.contains("small.one") && text.contains("62.5%"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_one_line_and_exit_2() {
    // No server at all.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", closed.local_addr().unwrap());
    drop(closed);
    let out = aether()
        .args(["--server", &url, "--timeout", "2", "streams"])
        .output()
        .unwrap();
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.starts_with("aether: error: cannot connect to"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    // A namespace with no streams.
    let server = NatsServer::start().await;
    for args in [
        vec!["events", "ghost", "a"],
        vec!["actor-stats", "ghost"],
        vec!["check", "ghost"],
    ] {
        let out = run(&server, &args);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("namespace `ghost` has no Aether streams"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
    // The tool never creates streams.
    let listed = run(&server, &["streams", "--json"]);
    assert_code(&listed, 0);
    assert_eq!(json(&listed), serde_json::json!([]));

    // Invalid names.
    let out = run(&server, &["events", "bad ns", "a"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("invalid namespace `bad ns`"),
        "{}",
        stderr(&out)
    );

    // A server without JetStream.
    let plain = NatsServer::builder().jetstream(false).start().await;
    let out = run(&plain, &["streams"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("JetStream disabled"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_and_password_reach_a_server_with_authorization() {
    let server = NatsServer::builder()
        .config("authorization { user: ops, password: s3cret }")
        .start()
        .await;
    let ok = run(
        &server,
        &["--user", "ops", "--password", "s3cret", "streams", "--json"],
    );
    assert_code(&ok, 0);
    assert_eq!(json(&ok), serde_json::json!([]));
    // The same from the environment, like the `nats` CLI.
    let env = aether()
        .args(["--server", &server.url(), "streams", "--json"])
        .env("NATS_USER", "ops")
        .env("NATS_PASSWORD", "s3cret")
        .output()
        .unwrap();
    assert_code(&env, 0);

    let wrong = run(&server, &["--user", "ops", "--password", "nope", "streams"]);
    assert_code(&wrong, 2);
    let err = stderr(&wrong);
    assert!(err.starts_with("aether: error: cannot connect to"), "{err}");
    assert!(!err.contains("nope"), "the password is not echoed: {err}");
    let none = run(&server, &["streams"]);
    assert_code(&none, 2);
}
