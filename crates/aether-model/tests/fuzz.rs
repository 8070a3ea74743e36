//! Fuzz-style robustness: random bytes, random mutations and every
//! truncation of a valid model never panic, and whatever parses can be
//! validated, drawn, saved and turned into code without panicking.
//!
//! Deterministic: a tiny PRNG with fixed seeds, no dependency.

use aether_model::{LoadError, Model};

const EXAMPLE: &str = include_str!("../../../examples/order_fulfilment.model.json");

/// SplitMix64: small, fast, good enough to shuffle test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Everything a user could do with a parsed model.
fn exercise(model: &Model) {
    let report = model.validate();
    let _ = report.to_string();
    let _ = model.to_mermaid();
    let _ = model.to_dot();
    let _ = model.to_json_string();
    let _ = model.to_toml_string();
    for (_, aggregate) in model.aggregates() {
        let _ = model.check_event_types(&aggregate.name, ["OrderPlaced"]);
        let _ = model.check_command_types(&aggregate.name, ["PlaceOrder"]);
    }
    if let Ok(valid) = model.clone().into_validated() {
        for (_, aggregate) in model.aggregates() {
            assert!(valid.rust_skeleton(&aggregate.name).is_some());
        }
    }
}

/// Parses as JSON (and TOML when built in); exercises what parses. Returns
/// whether the JSON parse succeeded.
fn try_all(text: &str) -> bool {
    #[cfg(feature = "toml")]
    if let Ok(model) = Model::from_toml_str(text) {
        exercise(&model);
    }
    match Model::from_json_str(text) {
        Ok(model) => {
            exercise(&model);
            true
        }
        Err(LoadError::Parse { line, column, .. }) => {
            let lines = text.split('\n').count();
            assert!(line >= 1 && line <= lines + 1, "line {line} of {lines}");
            let width = text.split('\n').nth(line - 1).map_or(0, str::len);
            assert!(column <= width + 1, "column {column} past {width}");
            false
        }
        Err(other) => panic!("unexpected error kind {other:?}"),
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xA37E_0001);
    for _ in 0..3000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        try_all(&String::from_utf8_lossy(&bytes));
    }
}

/// Random sequences of JSON tokens reach deeper into the parser than bytes.
#[test]
fn random_json_tokens_never_panic() {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"domain\"",
        "\"contexts\"",
        "\"name\"",
        "\"aggregates\"",
        "\"commands\"",
        "\"events\"",
        "\"emits\"",
        "\"policies\"",
        "\"on\"",
        "\"issues\"",
        "\"hotspots\"",
        "\"question\"",
        "\"X\"",
        "null",
        "true",
        "0",
        "-1",
        "1e999",
        "\"\\u0000\"",
        "\"\\ud800\"",
        " ",
        "\n",
    ];
    let mut rng = Rng(0xA37E_0002);
    for _ in 0..3000 {
        let len = rng.below(60);
        let text: String = (0..len).map(|_| *rng.pick(TOKENS)).collect();
        try_all(&text);
    }
}

#[test]
fn random_mutations_of_a_valid_model_never_panic() {
    let names: Vec<String> = {
        let model = Model::from_json_str(EXAMPLE).expect("example");
        let mut names: Vec<String> = model.commands().map(|(_, c)| c.name.clone()).collect();
        names.extend(model.events().map(|(_, e)| e.name.clone()));
        names.extend(model.policies().map(|(_, p)| p.name.clone()));
        names.extend(model.aggregates().map(|(_, a)| a.name.clone()));
        names.extend(["".into(), "end".into(), "\\\"]\\n".into()]);
        names
    };
    const SNIPPETS: &[&str] = &[
        "{", "}", "[", "]", ",", "\"", ":", "null", "[]", "{}", "\"x\"", "7",
    ];
    let mut rng = Rng(0xA37E_0003);
    let mut parsed = 0;
    for round in 0..2000 {
        let mut text = EXAMPLE.to_owned();
        for _ in 0..=rng.below(4) {
            if round % 2 == 0 {
                // Semantic mutation: keep the JSON valid, swap a quoted name
                // for another (dangling references, duplicates, cycles, …).
                let quoted: Vec<usize> = text.match_indices("\": \"").map(|(i, _)| i + 4).collect();
                let start = *rng.pick(&quoted);
                let Some(len) = text[start..].find('"') else {
                    continue;
                };
                let name: &String = rng.pick(&names);
                text.replace_range(start..start + len, name);
            } else {
                // Syntactic mutation on bytes.
                let mut bytes = text.into_bytes();
                let at = rng.below(bytes.len().max(1));
                match rng.below(4) {
                    0 => {
                        let byte = rng.next() as u8;
                        if let Some(b) = bytes.get_mut(at) {
                            *b = byte;
                        }
                    }
                    1 => {
                        let end = (at + rng.below(40)).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    2 => {
                        let snippet = rng.pick(SNIPPETS).as_bytes().to_vec();
                        bytes.splice(at..at, snippet);
                    }
                    _ => {
                        let end = (at + rng.below(200)).min(bytes.len());
                        let copy = bytes[at..end].to_vec();
                        let to = rng.below(bytes.len());
                        bytes.splice(to..to, copy);
                    }
                }
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        if try_all(&text) {
            parsed += 1;
        }
    }
    assert!(
        parsed > 500,
        "semantic mutations must parse and be exercised ({parsed})"
    );
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let mut cut = 0;
    for (i, _) in EXAMPLE.char_indices() {
        let prefix = &EXAMPLE[..i];
        if prefix.trim_end().ends_with('}') && prefix.trim().len() > 2 && i > EXAMPLE.len() - 3 {
            continue; // the whole document minus trailing whitespace
        }
        assert!(!try_all(prefix), "truncation at {i} parsed");
        cut += 1;
    }
    assert!(cut > 1000);
}

#[cfg(feature = "toml")]
#[test]
fn every_truncation_of_a_toml_model_never_panics() {
    let text = Model::from_json_str(EXAMPLE)
        .expect("example")
        .to_toml_string()
        .expect("toml");
    for (i, _) in text.char_indices() {
        match Model::from_toml_str(&text[..i]) {
            Ok(model) => exercise(&model),
            Err(LoadError::Parse { line, .. }) => assert!(line >= 1),
            Err(other) => panic!("unexpected error kind {other:?}"),
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for open in ["[", "{\"domain\":", "{\"contexts\":["] {
        let text = open.repeat(100_000);
        assert!(!try_all(&text));
    }
}
