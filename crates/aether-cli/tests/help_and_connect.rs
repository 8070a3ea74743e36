//! `--help` texts, and the `nats`-style connection options the other tests
//! do not use (NKey, the `nats` CLI's TLS spellings).

mod common;

use aether_testkit_nats::{NatsServer, unique_name};
use common::*;

#[test]
fn every_command_has_help_with_an_example() {
    let commands: [&[&str]; 8] = [
        &["events"],
        &["tail"],
        &["streams"],
        &["actor-stats"],
        &["check"],
        &["model", "check"],
        &["model", "render"],
        &["cluster", "status"],
    ];
    for command in commands {
        let out = aether().args(command).arg("--help").output().unwrap();
        assert_code(&out, 0);
        let text = stdout(&out);
        let example = format!("  aether {}", command.join(" "));
        assert!(
            text.contains("Example") && text.contains(&example),
            "{command:?} --help has no example line `{example}`:\n{text}"
        );
    }
    let out = aether().arg("--help").output().unwrap();
    assert_code(&out, 0);
    let text = stdout(&out);
    for needle in [
        "events",
        "tail",
        "streams",
        "actor-stats",
        "check",
        "model",
        "cluster",
        "--server",
        "NATS_URL",
        "--creds",
        "--nkey",
        "--user",
        "--password",
        "--token",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--tls-first",
        "Exit codes",
    ] {
        assert!(
            text.contains(needle),
            "`aether --help` lacks {needle}:\n{text}"
        );
    }
}

/// A user NKey: its seed and public key.
const SEED: &str = "SUACH75SWCM5D2JMJM6EKLR2WDARVGZT4QC6LX3AGHSWOMVAKERABBBRWM";
const PUBLIC: &str = "UAFHG6FUD2UU4SDFVAFUL5LDFO2XM4WYM76UNXTPJYJK7EEMYRBHT2VE";

#[tokio::test(flavor = "multi_thread")]
async fn an_nkey_seed_file_reaches_a_server_with_nkey_users() {
    let server = NatsServer::builder()
        .config(format!(
            "authorization {{ users: [ {{ nkey: {PUBLIC} }} ] }}"
        ))
        .start()
        .await;
    let dir = std::env::temp_dir().join(unique_name("cli-nkey"));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("user.nk");
    std::fs::write(&seed, format!("{SEED}\n")).unwrap();
    let seed = seed.to_str().unwrap();

    let ok = run(&server, &["--nkey", seed, "streams", "--json"]);
    assert_code(&ok, 0);
    assert_eq!(json(&ok), serde_json::json!([]));
    let env = aether()
        .args(["--server", &server.url(), "streams", "--json"])
        .env("NATS_NKEY", seed)
        .output()
        .unwrap();
    assert_code(&env, 0);

    let none = run(&server, &["streams"]);
    assert_code(&none, 2);
    assert!(
        stderr(&none).starts_with("aether: error: cannot connect to"),
        "{}",
        stderr(&none)
    );
    let missing = dir.join("missing.nk");
    let out = run(&server, &["--nkey", missing.to_str().unwrap(), "streams"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("cannot read the NKey seed file"),
        "{}",
        stderr(&out)
    );
    // One way to authenticate at a time.
    let out = run(&server, &["--nkey", seed, "--token", "t", "streams"]);
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_nats_cli_tls_spellings_are_accepted() {
    // A client certificate needs its key, whichever spelling names it.
    let out = aether()
        .args(["--tlscert", "/nonexistent/cert.pem", "streams"])
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--tls-key"), "{}", stderr(&out));
    // Both given: the tool gets as far as connecting, and says why it cannot.
    let out = aether()
        .args([
            "--server",
            "nats://127.0.0.1:1",
            "--tlscert",
            "/nonexistent/cert.pem",
            "--tlskey",
            "/nonexistent/key.pem",
            "--tlsca",
            "/nonexistent/ca.pem",
            "--tlsfirst",
            "--timeout",
            "2",
            "streams",
        ])
        .output()
        .unwrap();
    assert_code(&out, 2);
    assert!(
        stderr(&out).starts_with("aether: error: cannot connect to nats://127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
}
