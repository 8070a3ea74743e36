//! Validated names: [`Namespace`] and [`ActorId`], and the collision-free token
//! encoding every NATS backend uses to carry them in subjects and stream names.
//!
//! # Rules
//!
//! | name | length | characters |
//! |---|---|---|
//! | [`Namespace`] | 1–[`Namespace::MAX_LEN`] bytes | one or more `.`-separated segments, each of `A-Z a-z 0-9 _ -` |
//! | [`ActorId`] | 1–[`ActorId::MAX_LEN`] bytes | any UTF-8 except control characters |
//!
//! Anything a NATS subject or stream name cannot carry is encoded by
//! [`encode_token`]: ASCII letters, digits and `-` stand for themselves and every
//! other byte becomes `_XX` (two upper-case hex digits). Because `_` itself is
//! always escaped the encoding is injective: `a.b` → `a_2Eb` and `a_b` → `a_5Fb`
//! never collide, and [`decode_token`] reverses it.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::NameError;

/// Which kind of name a [`NameError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameKind {
    /// A [`Namespace`].
    Namespace,
    /// An [`ActorId`].
    ActorId,
    /// A cluster node's id.
    NodeId,
    /// An aggregate kind (`Aggregate::KIND`).
    ActorKind,
    /// The first token of an Aether subject (the actor runtime's request
    /// subjects, the bus).
    SubjectPrefix,
}

impl NameKind {
    /// What the name is, in words ("namespace", "node id", …).
    pub const fn as_str(self) -> &'static str {
        match self {
            NameKind::Namespace => "namespace",
            NameKind::ActorId => "actor id",
            NameKind::NodeId => "node id",
            NameKind::ActorKind => "actor kind",
            NameKind::SubjectPrefix => "subject prefix",
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest subject prefix accepted by [`validate_subject_prefix`], in bytes.
pub const MAX_SUBJECT_PREFIX: usize = 64;

/// Checks a subject prefix: the first tokens of the subjects an Aether
/// component publishes on (the actor runtime's requests, the bus). One to
/// [`MAX_SUBJECT_PREFIX`] bytes of `.`-separated, non-empty tokens of
/// `A-Z a-z 0-9 - _`, so it can never hold a wildcard, a space or an empty
/// token.
///
/// # Errors
/// [`NameError`] of kind [`NameKind::SubjectPrefix`] saying what is wrong.
pub fn validate_subject_prefix(prefix: &str) -> Result<(), NameError> {
    match subject_prefix_problem(prefix) {
        Some(reason) => Err(invalid(NameKind::SubjectPrefix, prefix, reason)),
        None => Ok(()),
    }
}

/// What is wrong with `prefix` as a subject prefix, by the rule of
/// [`validate_subject_prefix`]; `None` if nothing is. For a crate that
/// reports the rule's verdict in an error type of its own.
#[must_use]
pub fn subject_prefix_problem(prefix: &str) -> Option<&'static str> {
    if prefix.is_empty() {
        return Some("must not be empty");
    }
    if prefix.len() > MAX_SUBJECT_PREFIX {
        return Some("is longer than 64 bytes");
    }
    prefix.split('.').find_map(|token| {
        if token.is_empty() {
            Some("has an empty `.`-separated token")
        } else if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Some("tokens may only hold A-Z a-z 0-9 - _")
        } else {
            None
        }
    })
}

/// A [`NameError`] of `kind` for `name` (shown truncated to 80 characters).
pub fn invalid(kind: NameKind, name: &str, reason: impl Into<String>) -> NameError {
    // Keep error messages bounded even for absurdly long input.
    let shown: String = name.chars().take(80).collect();
    NameError {
        kind,
        name: shown,
        reason: reason.into(),
    }
}

/// A logical boundary for events, snapshots and bus traffic.
///
/// Data of one namespace is never visible from another. Namespaces are
/// hierarchical: `acme.orders` lies *under* `acme` (see
/// [`Namespace::is_within`]), which bus subscriptions use for prefix patterns.
/// `acme-corp` is not under `acme`.
///
/// Cloning is cheap (reference counted).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(Arc<str>);

impl Namespace {
    /// Longest accepted namespace, in bytes.
    pub const MAX_LEN: usize = 128;
    /// The namespace used when none is given.
    pub const DEFAULT: &'static str = "default";

    /// Validates and creates a namespace.
    ///
    /// # Errors
    /// [`NameError`] if the name is empty, longer than [`Self::MAX_LEN`], has an
    /// empty segment (`a..b`, `.a`, `a.`) or a character outside `A-Z a-z 0-9 _ -`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, NameError> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(invalid(NameKind::Namespace, name, "must not be empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(invalid(
                NameKind::Namespace,
                name,
                format!("is {} bytes, the limit is {}", name.len(), Self::MAX_LEN),
            ));
        }
        for segment in name.split('.') {
            if segment.is_empty() {
                return Err(invalid(
                    NameKind::Namespace,
                    name,
                    "has an empty `.`-separated segment",
                ));
            }
            if let Some(bad) = segment
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                return Err(invalid(
                    NameKind::Namespace,
                    name,
                    format!(
                        "contains {bad:?}; allowed are A-Z a-z 0-9 _ - and `.` between segments"
                    ),
                ));
            }
        }
        Ok(Self(Arc::from(name)))
    }

    /// The `default` namespace.
    pub fn default_namespace() -> Self {
        Self(Arc::from(Self::DEFAULT))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `.`-separated segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Whether `self` equals `ancestor` or lies under it (`acme.orders` is within
    /// `acme`; `acme-corp` is not).
    pub fn is_within(&self, ancestor: &Namespace) -> bool {
        let (me, other) = (self.as_str(), ancestor.as_str());
        me == other || (me.starts_with(other) && me.as_bytes().get(other.len()) == Some(&b'.'))
    }

    /// The name encoded as one NATS subject token / stream-name fragment
    /// (see [`encode_token`]).
    pub fn encoded(&self) -> String {
        encode_token(self.as_str())
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self::default_namespace()
    }
}

/// A stable identifier of one actor (entity, aggregate instance) within a
/// namespace. Cloning is cheap (reference counted).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(Arc<str>);

impl ActorId {
    /// Longest accepted actor id, in bytes of UTF-8. Chosen so that the encoded
    /// id (at most three times longer) fits comfortably in a NATS subject.
    pub const MAX_LEN: usize = 256;

    /// Validates and creates an actor id.
    ///
    /// Any UTF-8 text is accepted, including `.`, `*`, `>`, spaces and
    /// non-ASCII characters, except control characters.
    ///
    /// # Errors
    /// [`NameError`] if the id is empty, longer than [`Self::MAX_LEN`] bytes or
    /// contains a control character.
    pub fn new(id: impl AsRef<str>) -> Result<Self, NameError> {
        let id = id.as_ref();
        if id.is_empty() {
            return Err(invalid(NameKind::ActorId, id, "must not be empty"));
        }
        if id.len() > Self::MAX_LEN {
            return Err(invalid(
                NameKind::ActorId,
                id,
                format!("is {} bytes, the limit is {}", id.len(), Self::MAX_LEN),
            ));
        }
        if let Some(bad) = id.chars().find(|c| c.is_control()) {
            return Err(invalid(
                NameKind::ActorId,
                id,
                format!("contains the control character {bad:?}"),
            ));
        }
        Ok(Self(Arc::from(id)))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id encoded as one NATS subject token (see [`encode_token`]).
    pub fn encoded(&self) -> String {
        encode_token(self.as_str())
    }
}

macro_rules! name_impls {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($ty), &*self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&*s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_impls!(Namespace);
name_impls!(ActorId);

/// Encodes arbitrary text as one NATS subject token that is also valid in a
/// JetStream stream name.
///
/// ASCII letters, digits and `-` are kept; every other byte (including `_`,
/// `.`, `*`, `>`, whitespace and each byte of non-ASCII characters) becomes
/// `_XX` with two upper-case hex digits. The mapping is injective, so distinct
/// names never share a subject, and [`decode_token`] inverts it.
///
/// ```
/// use aether_core::name::{decode_token, encode_token};
/// assert_eq!(encode_token("a.b"), "a_2Eb");
/// assert_eq!(encode_token("a_b"), "a_5Fb");
/// assert_eq!(decode_token(&encode_token("ünï code >*")).as_deref(), Some("ünï code >*"));
/// ```
pub fn encode_token(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('_');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Reverses [`encode_token`]. Returns `None` for text that no call of
/// [`encode_token`] produces (bad escapes, or bytes that are not UTF-8).
pub fn decode_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'_' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = hex_value(hex[0])?;
            let lo = hex_value(hex[1])?;
            let decoded = (hi << 4) | lo;
            if decoded.is_ascii_alphanumeric() || decoded == b'-' {
                return None; // never escaped by encode_token
            }
            out.push(decoded);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subject_prefixes_are_tokens_without_wildcards() {
        for good in ["aether", "a.b", "my-app_1.rt"] {
            assert!(validate_subject_prefix(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "a..b",
            "a.",
            "*",
            "a.>",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            let err = validate_subject_prefix(bad).unwrap_err();
            assert_eq!(err.kind, NameKind::SubjectPrefix, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn namespace_rules() {
        for ok in [
            "default",
            "tenant-abc",
            "a.b",
            "a_b",
            "acme.orders.eu-1",
            "A9",
        ] {
            assert!(Namespace::new(ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", ".", "a.", ".a", "a..b", "a b", "a*", "a>", "ü", "a/b"] {
            let err = Namespace::new(bad).unwrap_err();
            assert_eq!(err.kind, NameKind::Namespace, "{bad}");
        }
        assert!(Namespace::new("x".repeat(Namespace::MAX_LEN)).is_ok());
        assert!(Namespace::new("x".repeat(Namespace::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn hierarchy_is_segment_based() {
        let acme = Namespace::new("acme").unwrap();
        assert!(Namespace::new("acme").unwrap().is_within(&acme));
        assert!(Namespace::new("acme.orders").unwrap().is_within(&acme));
        assert!(!Namespace::new("acme-corp").unwrap().is_within(&acme));
        assert!(!Namespace::new("acme_x").unwrap().is_within(&acme));
        assert!(!acme.is_within(&Namespace::new("acme.orders").unwrap()));
    }

    #[test]
    fn actor_id_rules() {
        for ok in ["order-1", "a.b", "a*b>c", "with space", "ünïcödé ✓", "x"] {
            assert!(ActorId::new(ok).is_ok(), "{ok} should be valid");
        }
        assert!(ActorId::new("").is_err());
        assert!(ActorId::new("a\nb").is_err());
        assert!(ActorId::new("a\0b").is_err());
        assert!(ActorId::new("x".repeat(ActorId::MAX_LEN)).is_ok());
        assert!(ActorId::new("x".repeat(ActorId::MAX_LEN + 1)).is_err());
    }

    #[test]
    fn encoding_is_injective_and_reversible() {
        let names = [
            "a.b", "a_b", "a-b", "a b", "a*b", "a>b", "a_2Eb", "_", "__", "ü", "u\u{308}", "A",
            "a", "",
        ];
        let mut seen = std::collections::HashSet::new();
        for n in names {
            let e = encode_token(n);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{e}"
            );
            assert!(seen.insert(e.clone()), "collision on {n:?} -> {e}");
            assert_eq!(decode_token(&e).as_deref(), Some(n));
        }
        assert_eq!(decode_token("a.b"), None);
        assert_eq!(decode_token("_4"), None);
        assert_eq!(decode_token("_41"), None, "A is never escaped");
        assert_eq!(decode_token("_FF"), None, "not UTF-8");
    }

    #[test]
    fn encoding_round_trips_random_text() {
        // A small deterministic xorshift generator: many random strings drawn
        // from a pool of awkward characters must round-trip and never collide.
        let pool: Vec<char> = "aZ09-_. *>$\u{0}\u{7f}éü✓😀\u{308}/\\\"'".chars().collect();
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let s: String = (0..len)
                .map(|_| pool[(next() % pool.len() as u64) as usize])
                .collect();
            let e = encode_token(&s);
            assert_eq!(decode_token(&e).as_deref(), Some(s.as_str()), "{s:?}");
            if let Some(prev) = seen.insert(e.clone(), s.clone()) {
                assert_eq!(prev, s, "collision: {prev:?} and {s:?} both encode to {e}");
            }
        }
    }

    #[test]
    fn serde_validates() {
        let ok: Namespace = serde_json::from_str("\"a.b\"").unwrap();
        assert_eq!(ok.as_str(), "a.b");
        assert!(serde_json::from_str::<Namespace>("\"a..b\"").is_err());
        assert!(serde_json::from_str::<ActorId>("\"\"").is_err());
    }
}
