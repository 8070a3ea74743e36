//! Naming heuristics: splitting names into words, past tense, identifiers.
//!
//! These feed *warnings* only: English is too irregular for more.

/// Words that end in "ed" but are not past tense.
const NOT_PAST_ED: &[&str] = &[
    "bed", "bleed", "breed", "deed", "embed", "exceed", "feed", "freed", "greed", "heed", "need",
    "proceed", "red", "reed", "seed", "shed", "shred", "sled", "speed", "succeed", "wed", "weed",
    "hundred", "sacred", "naked", "wicked", "kindred",
];

/// Irregular past tenses and past participles, lower case.
const IRREGULAR_PAST: &[&str] = &[
    "arisen",
    "arose",
    "ate",
    "awoke",
    "awoken",
    "been",
    "became",
    "become",
    "began",
    "begun",
    "bent",
    "bit",
    "bitten",
    "bled",
    "blew",
    "blown",
    "borne",
    "bought",
    "bound",
    "broke",
    "broken",
    "brought",
    "built",
    "burnt",
    "came",
    "caught",
    "chose",
    "chosen",
    "clung",
    "come",
    "cost",
    "crept",
    "cut",
    "dealt",
    "did",
    "done",
    "drawn",
    "drew",
    "driven",
    "drove",
    "drunk",
    "dug",
    "eaten",
    "fallen",
    "fed",
    "fell",
    "felt",
    "fit",
    "fled",
    "flew",
    "flown",
    "forbidden",
    "forecast",
    "forgave",
    "forgiven",
    "forgot",
    "forgotten",
    "fought",
    "found",
    "froze",
    "frozen",
    "gave",
    "given",
    "gone",
    "got",
    "gotten",
    "grew",
    "ground",
    "grown",
    "held",
    "hid",
    "hidden",
    "hit",
    "hung",
    "hurt",
    "kept",
    "knelt",
    "knew",
    "known",
    "laid",
    "leapt",
    "learnt",
    "led",
    "left",
    "lent",
    "let",
    "lit",
    "lost",
    "made",
    "meant",
    "met",
    "misled",
    "mistaken",
    "overdrawn",
    "overridden",
    "overseen",
    "overtaken",
    "overthrown",
    "paid",
    "proven",
    "put",
    "quit",
    "ran",
    "read",
    "rebuilt",
    "recast",
    "redone",
    "remade",
    "rent",
    "repaid",
    "reset",
    "resent",
    "resold",
    "retaken",
    "rewritten",
    "ridden",
    "risen",
    "rode",
    "rose",
    "rung",
    "run",
    "said",
    "sang",
    "sank",
    "sat",
    "saw",
    "seen",
    "sent",
    "set",
    "sewn",
    "shaken",
    "shook",
    "shot",
    "shown",
    "shrunk",
    "shut",
    "slept",
    "slid",
    "sold",
    "sought",
    "spent",
    "split",
    "spoke",
    "spoken",
    "sprung",
    "spun",
    "stole",
    "stolen",
    "stood",
    "struck",
    "stuck",
    "stung",
    "sung",
    "sunk",
    "swept",
    "swore",
    "sworn",
    "swum",
    "taken",
    "taught",
    "thought",
    "threw",
    "thrown",
    "told",
    "took",
    "tore",
    "torn",
    "undergone",
    "understood",
    "undid",
    "undone",
    "upheld",
    "upset",
    "wept",
    "withdrawn",
    "withdrew",
    "withheld",
    "woke",
    "woken",
    "won",
    "wore",
    "worn",
    "wound",
    "woven",
    "written",
    "wrote",
    "wrung",
];

/// Particles that may follow a past participle ("CheckedOut", "SignedUp").
const PARTICLES: &[&str] = &[
    "out", "up", "down", "off", "in", "on", "over", "back", "away", "through",
];

/// Verbs that make an imperative of a past participle ("MarkAsShipped").
const IMPERATIVE_LEADS: &[&str] = &["mark", "set", "flag", "record", "log", "register"];

/// Splits a name into words at case changes, digits and non-alphanumerics:
/// `"OrderPlaced"`, `"order_placed"` and `"order placed"` all give
/// `["Order"/"order", "Placed"/"placed"]`. `"HTTPRequestSent"` gives
/// `["HTTP", "Request", "Sent"]`.
pub(crate) fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        if let Some(&prev) = current.chars().last().as_ref() {
            let next = chars.get(i + 1).copied();
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_alphabetic() != c.is_alphabetic())
                || (prev.is_uppercase()
                    && c.is_uppercase()
                    && next.is_some_and(char::is_lowercase));
            if boundary {
                words.push(std::mem::take(&mut current));
            }
        }
        current.push(c);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// Whether one lower-case word is a past tense or past participle.
fn word_is_past(word: &str) -> bool {
    if IRREGULAR_PAST.contains(&word) {
        return true;
    }
    word.len() > 3 && word.ends_with("ed") && !NOT_PAST_ED.contains(&word)
}

/// The significant words of a name, lower case, without trailing version
/// tags (`"V2"`, digits).
fn significant_words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = words(name).iter().map(|w| w.to_lowercase()).collect();
    while let Some(last) = words.last() {
        let is_tag = last.chars().all(|c| c.is_ascii_digit()) || (last == "v" && words.len() > 1);
        if is_tag {
            words.pop();
        } else {
            break;
        }
    }
    words
}

/// Whether a name reads as past tense: its last word (or the word before a
/// trailing particle, as in `"CheckedOut"`) is a past form.
pub(crate) fn reads_as_past_tense(name: &str) -> bool {
    let words = significant_words(name);
    let Some(last) = words.last() else {
        return false;
    };
    if word_is_past(last) {
        return true;
    }
    if PARTICLES.contains(&last.as_str()) && words.len() >= 2 {
        return words.get(words.len() - 2).is_some_and(|w| word_is_past(w));
    }
    false
}

/// Whether a command name looks like an event: it ends in a past form
/// ending in "ed" and does not start with an imperative such as "Mark"
/// (`"MarkAsShipped"` is fine).
pub(crate) fn command_reads_as_past(name: &str) -> bool {
    let words = significant_words(name);
    let Some(last) = words.last() else {
        return false;
    };
    let ends_past = last.len() > 3 && last.ends_with("ed") && !NOT_PAST_ED.contains(&last.as_str());
    let leads_imperative = words.len() > 1
        && words
            .first()
            .is_some_and(|w| IMPERATIVE_LEADS.contains(&w.as_str()));
    ends_past && !leads_imperative
}

/// Levenshtein distance, for "did you mean" suggestions. Small inputs only.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            row[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(row[j] + 1);
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

/// The closest candidate to `name` within a small edit distance.
pub(crate) fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    if name.chars().count() > 64 {
        return None;
    }
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .filter(|c| c.chars().count() <= 64)
        .map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_owned())
}

/// Rust keywords that may not be used as plain identifiers.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Makes a valid identifier: keywords get `r#` (or a trailing `_` where a raw
/// identifier is not allowed), a leading digit gets `_`, empty gets
/// `fallback`.
fn finish_ident(mut ident: String, fallback: &str) -> String {
    if ident.is_empty() {
        return fallback.to_owned();
    }
    if ident.starts_with(|c: char| c.is_ascii_digit()) {
        ident.insert(0, '_');
    }
    if ident == "_" {
        return fallback.to_owned();
    }
    if KEYWORDS.contains(&ident.as_str()) {
        if matches!(ident.as_str(), "self" | "Self" | "super" | "crate") {
            ident.push('_');
        } else {
            ident.insert_str(0, "r#");
        }
    }
    ident
}

/// A `PascalCase` Rust identifier for a name (`"order placed"` →
/// `OrderPlaced`). Non-ASCII letters are dropped.
pub(crate) fn pascal_ident(name: &str) -> String {
    let mut ident = String::new();
    for word in words(name) {
        let mut chars = word.chars().filter(char::is_ascii_alphanumeric);
        if let Some(first) = chars.next() {
            ident.push(first.to_ascii_uppercase());
            ident.extend(chars);
        }
    }
    finish_ident(ident, "Unnamed")
}

/// A `snake_case` Rust identifier for a name (`"Order Id"` → `order_id`).
pub(crate) fn snake_ident(name: &str) -> String {
    let parts: Vec<String> = words(name)
        .iter()
        .map(|w| {
            w.chars()
                .filter(char::is_ascii_alphanumeric)
                .map(|c| c.to_ascii_lowercase())
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    finish_ident(parts.join("_"), "field")
}

/// Whether `ty` is a Rust type we are willing to paste into generated code:
/// paths, generics, tuples and arrays of owned types, with balanced brackets.
pub(crate) fn is_plausible_type(ty: &str) -> bool {
    let ty = ty.trim();
    if ty.is_empty() || ty.len() > 200 {
        return false;
    }
    let mut stack = Vec::new();
    for c in ty.chars() {
        match c {
            '<' | '(' | '[' => stack.push(c),
            '>' | ')' | ']' => {
                let open = match c {
                    '>' => '<',
                    ')' => '(',
                    _ => '[',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            ';' => {
                if stack.last() != Some(&'[') {
                    return false;
                }
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | ',' | ' ') => {}
            _ => return false,
        }
    }
    stack.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        assert_eq!(words("OrderPlaced"), ["Order", "Placed"]);
        assert_eq!(words("order_placed v2"), ["order", "placed", "v", "2"]);
        assert_eq!(words("HTTPRequestSent"), ["HTTP", "Request", "Sent"]);
    }

    #[test]
    fn past_tense() {
        for past in [
            "OrderPlaced",
            "PaymentPaid",
            "ItemSent",
            "UserCheckedOut",
            "OrderPlacedV2",
            "Stock Ran Out",
        ] {
            assert!(reads_as_past_tense(past), "{past}");
        }
        for not in ["PlaceOrder", "StockNeed", "Order", "", "PaymentFeed"] {
            assert!(!reads_as_past_tense(not), "{not}");
        }
    }

    #[test]
    fn imperative() {
        assert!(command_reads_as_past("OrderPlaced"));
        assert!(!command_reads_as_past("PlaceOrder"));
        assert!(!command_reads_as_past("MarkAsShipped"));
        assert!(!command_reads_as_past("Proceed"));
    }

    #[test]
    fn identifiers() {
        assert_eq!(pascal_ident("order placed"), "OrderPlaced");
        assert_eq!(pascal_ident("\"Weird\" [name]"), "WeirdName");
        assert_eq!(pascal_ident("3d print"), "_3DPrint");
        assert_eq!(pascal_ident("self"), "Self_");
        assert_eq!(pascal_ident("!!!"), "Unnamed");
        assert_eq!(snake_ident("Order Id"), "order_id");
        assert_eq!(snake_ident("type"), "r#type");
        assert_eq!(snake_ident("self"), "self_");
    }

    #[test]
    fn types() {
        for ok in [
            "u64",
            "Vec<String>",
            "std::collections::BTreeMap<String, u32>",
            "[u8; 32]",
            "(u8, String)",
        ] {
            assert!(is_plausible_type(ok), "{ok}");
        }
        for bad in [
            "",
            "Vec<",
            "u8; drop",
            "&str",
            "String }",
            "fn() -> u8",
            "a\nb",
        ] {
            assert!(!is_plausible_type(bad), "{bad}");
        }
    }
}
