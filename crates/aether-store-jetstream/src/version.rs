//! nats-server versions: the one parser the store (and tools built on it)
//! use to compare what a server announces with what a feature needs.

use std::fmt;

/// A nats-server version, `major.minor.patch`, ordered by those numbers.
///
/// ```
/// use aether_store_jetstream::ServerVersion;
///
/// let v = ServerVersion::parse("v2.12.0-RC.1").unwrap();
/// assert_eq!(v, ServerVersion::new(2, 12, 0));
/// assert!(v >= ServerVersion::MIN_SUPPORTED);
/// assert!(ServerVersion::parse("2.9.10").unwrap() < ServerVersion::MIN_SUPPORTED);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// The major version.
    pub major: u32,
    /// The minor version.
    pub minor: u32,
    /// The patch version (0 when the text has none).
    pub patch: u32,
}

impl ServerVersion {
    /// The oldest nats-server the store works with: 2.12.0 (atomic batch
    /// publish).
    pub const MIN_SUPPORTED: ServerVersion = ServerVersion::new(2, 12, 0);

    /// The version `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        ServerVersion {
            major,
            minor,
            patch,
        }
    }

    /// Reads `major.minor[.patch]` from a version as a server announces it
    /// (`2.15.1`, `v2.9.10`, `2.12.0-RC.1`, `2.11`): a leading `v` and any
    /// pre-release or build suffix (after `-` or `+`) are ignored. `None`
    /// when the text has no such numbers; never panics.
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let text = text.trim().trim_start_matches('v');
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next()?.ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(ServerVersion::new(major, minor, patch))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl From<ServerVersion> for (u32, u32, u32) {
    fn from(v: ServerVersion) -> Self {
        (v.major, v.minor, v.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        let p = |s| ServerVersion::parse(s);
        assert_eq!(p("2.15.1"), Some(ServerVersion::new(2, 15, 1)));
        assert_eq!(p("2.12.0-RC.1"), Some(ServerVersion::new(2, 12, 0)));
        assert_eq!(p(" v2.9.10+build "), Some(ServerVersion::new(2, 9, 10)));
        assert_eq!(p("2.11"), Some(ServerVersion::new(2, 11, 0)));
        for bad in ["garbage", "", "2", "2.x.1", "2.12.0.1", "-1.2.3", "v"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert!(p("2.9.10").unwrap() < ServerVersion::MIN_SUPPORTED);
        assert!(p("2.12.0").unwrap() >= ServerVersion::MIN_SUPPORTED);
        assert!(p("2.10.99").unwrap() < p("2.11.0").unwrap());
        assert!(p("10.0.0").unwrap() > p("9.99.99").unwrap());
        assert_eq!(ServerVersion::MIN_SUPPORTED.to_string(), "2.12.0");
        assert_eq!(
            <(u32, u32, u32)>::from(ServerVersion::MIN_SUPPORTED),
            (2, 12, 0)
        );
    }
}
