//! Per-actor event versions.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The version of one actor's event history.
///
/// Versions are per actor, start at 1 for the first event and have no gaps.
/// [`Version::ZERO`] means "no events yet": it is the latest version of an
/// unknown actor, the expected version for a first append, and, as a
/// `from_version` for reads, "from the beginning".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// No events.
    pub const ZERO: Version = Version(0);
    /// The version of an actor's first event.
    pub const FIRST: Version = Version(1);

    /// Wraps a raw version number.
    pub const fn new(v: u64) -> Self {
        Version(v)
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one, or `None` at `u64::MAX` (no version
    /// follows it: a store refuses to write past it rather than wrap or
    /// repeat a version).
    #[must_use]
    pub const fn next(self) -> Option<Self> {
        match self.0.checked_add(1) {
            Some(v) => Some(Version(v)),
            None => None,
        }
    }

    /// The version before this one, or `None` for [`Version::ZERO`].
    pub const fn prev(self) -> Option<Self> {
        match self.0.checked_sub(1) {
            Some(v) => Some(Version(v)),
            None => None,
        }
    }

    /// This version plus `n`, or `None` if that is past `u64::MAX`.
    #[must_use]
    pub const fn checked_add(self, n: u64) -> Option<Self> {
        match self.0.checked_add(n) {
            Some(v) => Some(Version(v)),
            None => None,
        }
    }

    /// Whether this is [`Version::ZERO`].
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u64> for Version {
    fn from(v: u64) -> Self {
        Version(v)
    }
}

impl From<Version> for u64 {
    fn from(v: Version) -> Self {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Version::ZERO.next(), Some(Version::FIRST));
        assert_eq!(Version::new(u64::MAX).next(), None);
        assert_eq!(
            Version::new(u64::MAX - 1).next(),
            Some(Version::new(u64::MAX))
        );
        assert_eq!(Version::new(5).checked_add(3), Some(Version::new(8)));
        assert_eq!(Version::new(u64::MAX - 2).checked_add(3), None);
        assert_eq!(Version::ZERO.prev(), None);
    }
}
