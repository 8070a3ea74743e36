//! Finding the `nats-server` binary and checking its version.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Environment variable that names the `nats-server` binary to use.
///
/// When it is set, the harness uses that binary or panics; it never falls back to
/// another one, so an explicit choice is never silently ignored.
pub const NATS_SERVER_BIN_ENV: &str = "NATS_SERVER_BIN";

/// The server version the project pins (and `cargo xtask nats-server` provisions).
pub const PINNED_VERSION: ServerVersion = ServerVersion::new(2, 15, 1);

/// The oldest server the harness accepts (atomic batch publish appeared in 2.12).
pub const MIN_VERSION: ServerVersion = ServerVersion::new(2, 12, 0);

/// A `major.minor.patch` server version, as printed by `nats-server --version`.
///
/// Pre-release suffixes (`-RC.1`, `-beta`) are ignored, so `2.12.0-RC.1` counts as `2.12.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch version.
    pub patch: u32,
}

impl ServerVersion {
    /// Creates a version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses the output of `nats-server --version` (`nats-server: v2.15.1`) or a bare
    /// version (`2.15.1`, `v2.12.0-RC.1`). Returns `None` when no version is found.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.rsplit(": ").next().unwrap_or(text).trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let core = text
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap_or_default();
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().unwrap_or("0").parse().ok()?;
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Where the `nats-server` binary was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinarySource {
    /// The [`NATS_SERVER_BIN_ENV`] environment variable.
    EnvVar,
    /// The path `cargo xtask nats-server` provisions (see [`provisioned_path`]).
    Provisioned,
    /// The first `nats-server` on `PATH`.
    Path,
}

/// A usable `nats-server` binary: its path and version (always >= [`MIN_VERSION`]).
#[derive(Debug, Clone)]
pub struct NatsServerBinary {
    path: PathBuf,
    version: ServerVersion,
    source: BinarySource,
}

impl NatsServerBinary {
    /// Path of the binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Version the binary reported with `--version`.
    pub fn version(&self) -> ServerVersion {
        self.version
    }

    /// Where the binary was found.
    pub fn source(&self) -> BinarySource {
        self.source
    }
}

/// The workspace root (`<this crate>/../..`).
pub fn workspace_root() -> PathBuf {
    let raw = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    raw.canonicalize().unwrap_or(raw)
}

/// Path where `cargo xtask nats-server` installs the pinned server:
/// `<workspace root>/target/nats-server/<PINNED_VERSION>/bin/nats-server`.
pub fn provisioned_path() -> PathBuf {
    workspace_root()
        .join("target")
        .join("nats-server")
        .join(PINNED_VERSION.to_string())
        .join("bin")
        .join("nats-server")
}

/// The `nats-server` binary every server of this crate runs.
///
/// Looked up once per process (later calls return the cached answer), in this order:
/// 1. `$NATS_SERVER_BIN` — if set, it must be usable; there is no fallback;
/// 2. [`provisioned_path`] — what `cargo xtask nats-server` installs;
/// 3. `nats-server` on `PATH`.
///
/// A candidate is usable when `<bin> --version` runs and reports at least [`MIN_VERSION`].
///
/// # Panics
///
/// When no usable binary is found. The message lists every candidate tried and says
/// how to get one. Tests never skip silently for want of a server.
pub fn nats_server_binary() -> &'static NatsServerBinary {
    static BINARY: OnceLock<Result<NatsServerBinary, String>> = OnceLock::new();
    match BINARY.get_or_init(find_binary) {
        Ok(binary) => binary,
        Err(message) => panic!("{message}"),
    }
}

fn find_binary() -> Result<NatsServerBinary, String> {
    let mut tried = Vec::new();

    if let Some(value) = std::env::var_os(NATS_SERVER_BIN_ENV) {
        let path = PathBuf::from(value);
        return probe(&path, BinarySource::EnvVar).map_err(|reason| {
            no_binary_message(&[format!(
                "${NATS_SERVER_BIN_ENV}={}: {reason} (an explicit ${NATS_SERVER_BIN_ENV} is never \
                 replaced by another binary; unset it to use the provisioned one)",
                path.display()
            )])
        });
    }
    tried.push(format!("${NATS_SERVER_BIN_ENV}: not set"));

    let provisioned = provisioned_path();
    if provisioned.is_file() {
        match probe(&provisioned, BinarySource::Provisioned) {
            Ok(binary) => return Ok(binary),
            Err(reason) => tried.push(format!("{} (provisioned): {reason}", provisioned.display())),
        }
    } else {
        tried.push(format!(
            "{} (provisioned): not found",
            provisioned.display()
        ));
    }

    match find_on_path() {
        Some(path) => match probe(&path, BinarySource::Path) {
            Ok(binary) => return Ok(binary),
            Err(reason) => tried.push(format!("{} (on PATH): {reason}", path.display())),
        },
        None => tried.push("`nats-server` on PATH: not found".to_owned()),
    }

    Err(no_binary_message(&tried))
}

fn no_binary_message(tried: &[String]) -> String {
    let mut message = format!(
        "aether-testkit-nats: no usable nats-server binary (need >= {MIN_VERSION}, the project pins \
         {PINNED_VERSION}). Tried:\n"
    );
    for line in tried {
        message.push_str("  - ");
        message.push_str(line);
        message.push('\n');
    }
    message.push_str(&format!(
        "To fix: run `cargo xtask nats-server` in {} (installs nats-server {PINNED_VERSION} into \
         target/nats-server/), or set {NATS_SERVER_BIN_ENV}=/path/to/nats-server (>= {MIN_VERSION}).",
        workspace_root().display()
    ));
    message
}

fn find_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

fn probe(path: &Path, source: BinarySource) -> Result<NatsServerBinary, String> {
    let output = Command::new(path)
        .arg("--version")
        .output()
        .map_err(|err| format!("cannot run `{} --version`: {err}", path.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!(
            "`--version` failed ({}): {}{}",
            output.status,
            stdout.trim(),
            stderr.trim()
        ));
    }
    let version = ServerVersion::parse(&stdout)
        .or_else(|| ServerVersion::parse(&stderr))
        .ok_or_else(|| format!("cannot parse the `--version` output {:?}", stdout.trim()))?;
    if version < MIN_VERSION {
        return Err(format!(
            "version {version} is too old (need >= {MIN_VERSION})"
        ));
    }
    Ok(NatsServerBinary {
        path: path.to_path_buf(),
        version,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            ServerVersion::parse("nats-server: v2.15.1\n"),
            Some(ServerVersion::new(2, 15, 1))
        );
        assert_eq!(
            ServerVersion::parse("v2.12.0-RC.1"),
            Some(ServerVersion::new(2, 12, 0))
        );
        assert_eq!(
            ServerVersion::parse("2.9"),
            Some(ServerVersion::new(2, 9, 0))
        );
        assert_eq!(ServerVersion::parse("nats-server: garbage"), None);
        assert!(ServerVersion::new(2, 9, 10) < MIN_VERSION);
        assert!(PINNED_VERSION >= MIN_VERSION);
    }
}
