//! `cargo xtask readme`: the README compiles for a newcomer.
//!
//! Writes a fresh cargo project under `<target>/readme-check/` that depends
//! on the facade alone (path dependency, every feature) plus the crates the
//! README's `[dependencies]` block names, turns every ```` ```rust ```` block
//! of `README.md` into a file, and checks it with `cargo check
//! --all-targets`:
//!
//! * a block with `fn main` becomes `examples/readme_<line>.rs`;
//! * a block without one becomes `tests/readme_<line>.rs`, its code wrapped
//!   in a function;
//! * lines hidden from readers (`# ` prefix, as in rustdoc) are compiled;
//! * ```` ```rust,ignore ```` blocks are skipped, and must say why in a
//!   comment on their first line; `compile_fail` blocks are skipped (the
//!   facade's doc tests run them).
//!
//! Every file starts with `#![deny(warnings)]` (dead code and unused
//! variables allowed), as the facade's doc tests do. The workspace's
//! `Cargo.lock` is copied in so the versions are the ones CI tested, and the
//! build shares the workspace's target directory so nothing is built twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One ```` ```rust ```` block of the README.
#[derive(Debug, PartialEq, Eq)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    /// The fence's attributes after `rust` (`no_run`, `ignore`, …).
    attrs: Vec<String>,
    /// The code, hidden lines included (their `#` removed).
    code: String,
}

/// The ```` ```rust ```` blocks of `markdown`, in order.
fn rust_blocks(markdown: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut words = info.split(',').map(str::trim).filter(|w| !w.is_empty());
        let lang = words.next().unwrap_or("");
        let attrs: Vec<String> = words.map(str::to_owned).collect();
        let is_rust =
            lang == "rust" || matches!(lang, "no_run" | "should_panic" | "ignore" | "compile_fail");
        let mut code = String::new();
        let mut closed = false;
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                closed = true;
                break;
            }
            code.push_str(&unhide(l));
            code.push('\n');
        }
        if !closed {
            return Err(format!("README.md:{}: code block never closed", i + 1));
        }
        if is_rust {
            let mut attrs = attrs;
            if lang != "rust" {
                attrs.insert(0, lang.to_owned());
            }
            blocks.push(Block {
                line: i + 1,
                attrs,
                code,
            });
        }
    }
    Ok(blocks)
}

/// A line as the compiler sees it: rustdoc's hidden lines (`# code`, a lone
/// `#`) lose their marker, `##` stands for a literal `#`.
fn unhide(line: &str) -> String {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    if trimmed == "#" {
        String::new()
    } else if let Some(rest) = trimmed.strip_prefix("##") {
        format!("{indent}#{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("# ") {
        format!("{indent}{rest}")
    } else {
        line.to_owned()
    }
}

/// The dependency lines of the README's first ```` ```toml ```` block
/// holding `[dependencies]`, without the facade's own line.
fn readme_dependencies(markdown: &str) -> Result<Vec<String>, String> {
    let mut in_toml = false;
    let mut in_deps = false;
    let mut deps = Vec::new();
    for line in markdown.lines() {
        let t = line.trim();
        if !in_toml {
            in_toml = t == "```toml";
            continue;
        }
        if t.starts_with("```") {
            if in_deps {
                return Ok(deps);
            }
            in_toml = false;
            continue;
        }
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        let name = t.split(['=', ' ']).next().unwrap_or("");
        if in_deps && !name.is_empty() && !name.starts_with('#') && name != "aether" {
            deps.push(line.to_owned());
        }
    }
    Err("README.md has no ```toml block with a [dependencies] table".to_owned())
}

const HEADER: &str = "#![deny(warnings)]\n#![allow(dead_code, unused_variables)]\n";

/// The file a block becomes: its path in the project, and its text.
fn file_for(block: &Block) -> Result<Option<(String, String)>, String> {
    let has = |a: &str| block.attrs.iter().any(|x| x == a);
    if has("ignore") {
        let first = block.code.lines().next().unwrap_or("").trim();
        if !first.starts_with("//") {
            return Err(format!(
                "README.md:{}: a ```rust,ignore block must say why on its first line (`// not compiled: …`)",
                block.line
            ));
        }
        return Ok(None);
    }
    if has("compile_fail") {
        return Ok(None);
    }
    let n = block.line;
    if block.code.contains("fn main") {
        return Ok(Some((
            format!("examples/readme_{n}.rs"),
            format!("{HEADER}// README.md line {n}\n{}", block.code),
        )));
    }
    let body = block.code.trim_end();
    let tail = if body.ends_with("Ok(())") || body.ends_with(">(())") {
        ""
    } else {
        "\n    #[allow(unreachable_code)]\n    Ok(())"
    };
    Ok(Some((
        format!("tests/readme_{n}.rs"),
        format!(
            "{HEADER}// README.md line {n}\n#[test]\nfn readme_block() -> Result<(), Box<dyn std::error::Error>> {{\n{body}{tail}\n}}\n"
        ),
    )))
}

/// Writes the project for `root`'s README into `dir` and returns how many
/// blocks became files.
fn write_project(root: &Path, dir: &Path) -> Result<usize, String> {
    let readme = fs::read_to_string(root.join("README.md"))
        .map_err(|e| format!("cannot read README.md: {e}"))?;
    let deps = readme_dependencies(&readme)?;
    let blocks = rust_blocks(&readme)?;
    let io = |what: &Path, e: std::io::Error| format!("{}: {e}", what.display());
    for sub in ["examples", "tests", "src"] {
        let d = dir.join(sub);
        if d.exists() {
            fs::remove_dir_all(&d).map_err(|e| io(&d, e))?;
        }
        fs::create_dir_all(&d).map_err(|e| io(&d, e))?;
    }
    let facade = root.join("crates").join("aether");
    let manifest = format!(
        "# Written by `cargo xtask readme` from README.md; do not edit.\n\
         [package]\nname = \"readme-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
         [workspace]\n\n\
         [dependencies]\naether = {{ path = {:?}, features = [\"full\"] }}\n{}\n",
        facade.to_string_lossy(),
        deps.join("\n")
    );
    let write = |path: PathBuf, text: &str| fs::write(&path, text).map_err(|e| io(&path, e));
    write(dir.join("Cargo.toml"), &manifest)?;
    write(
        dir.join("src").join("lib.rs"),
        "//! The README's code blocks live in examples/ and tests/.\n",
    )?;
    let lock = root.join("Cargo.lock");
    fs::copy(&lock, dir.join("Cargo.lock")).map_err(|e| io(&lock, e))?;
    let mut files = 0;
    for block in &blocks {
        if let Some((path, text)) = file_for(block)? {
            write(dir.join(path), &text)?;
            files += 1;
        }
    }
    if files == 0 {
        return Err("README.md has no ```rust block to check".to_owned());
    }
    Ok(files)
}

/// `cargo xtask readme`: write the project and `cargo check --all-targets` it.
pub(crate) fn readme(root: &Path, target: &Path, cargo: &std::ffi::OsStr) -> Result<(), String> {
    let dir = target.join("readme-check");
    let files = write_project(root, &dir)?;
    println!(
        "    {files} README block(s) written to {} (facade with all features)",
        dir.display()
    );
    let mut cmd = Command::new(cargo);
    cmd.args(["check", "--all-targets", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", target);
    println!("    $ cd {} && cargo check --all-targets", dir.display());
    let status = cmd
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the README's code does not compile in a fresh project ({status})\n  how to fix: the errors above name `examples/readme_<line>.rs` / `tests/readme_<line>.rs`, where <line> is the block's line in README.md; fix the block (facade paths only: `aether::…`) or the dependencies block, then `cargo xtask readme`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "\
intro
```toml
[dependencies]
aether = { version = \"0.1\" } # the facade
serde = { version = \"1\", features = [\"derive\"] }
tokio = \"1\"
```
```rust
# use aether::prelude::*;
fn main() {}
```
```rust,no_run
let x = 1;
## not hidden
```
```rust,ignore
// not compiled: needs a live server
```
```sh
cargo run
```
";

    #[test]
    fn blocks_and_dependencies_are_read() {
        let blocks = rust_blocks(MD).unwrap();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].line, 8);
        assert_eq!(blocks[0].code, "use aether::prelude::*;\nfn main() {}\n");
        assert_eq!(blocks[1].attrs, vec!["no_run".to_owned()]);
        assert_eq!(blocks[1].code, "let x = 1;\n# not hidden\n");
        let deps = readme_dependencies(MD).unwrap();
        assert_eq!(deps.len(), 2);
        assert!(deps[0].starts_with("serde"));
    }

    #[test]
    fn blocks_become_examples_tests_or_nothing() {
        let blocks = rust_blocks(MD).unwrap();
        let (path, text) = file_for(&blocks[0]).unwrap().unwrap();
        assert_eq!(path, "examples/readme_8.rs");
        assert!(text.starts_with(HEADER));
        let (path, text) = file_for(&blocks[1]).unwrap().unwrap();
        assert_eq!(path, "tests/readme_12.rs");
        assert!(text.contains("fn readme_block()") && text.contains("Ok(())"));
        assert_eq!(file_for(&blocks[2]).unwrap(), None);
        let unexplained = Block {
            line: 1,
            attrs: vec!["ignore".to_owned()],
            code: "fn main() {}\n".to_owned(),
        };
        assert!(file_for(&unexplained).is_err());
    }
}
