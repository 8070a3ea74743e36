//! Reading a few envelope fields without the payload: the versions the trust
//! rule checks while it reads, and [`inspect_event`] /
//! [`inspect_snapshot_version`] for tools that scan a stream.

use aether_core::{CodecError, Version};
use serde::Deserialize;

use super::{FORMAT_1, FORMAT_2, Origin, Shape, not_aether, shape, v1, v2};

#[derive(Deserialize)]
struct VersionIn {
    aether: u8,
    version: u64,
}

/// Reads only the version of a stored event or snapshot of format 1.
fn read_version_v1(body: &[u8], origin: Origin<'_>) -> Result<Version, CodecError> {
    let v: VersionIn = v1::decode(body, origin)?;
    v1::check_version(v.aether, origin)?;
    Ok(Version::new(v.version))
}

/// Reads only the version of a stored event (the payload is skipped).
pub(crate) fn read_event_version(body: &[u8], origin: Origin<'_>) -> Result<Version, CodecError> {
    match shape(body) {
        Shape::Map => read_version_v1(body, origin),
        Shape::Array => {
            let mut r = v2::open(body, 10, origin)?;
            let w = |e| v2::wire(origin, e);
            r.str().map_err(w)?;
            r.str().map_err(w)?;
            Ok(Version::new(r.uint().map_err(w)?))
        }
        Shape::Other => Err(not_aether(origin)),
    }
}

/// Reads only the version of a stored snapshot (the state is skipped).
pub(crate) fn read_snapshot_version(
    body: &[u8],
    origin: Origin<'_>,
) -> Result<Version, CodecError> {
    match shape(body) {
        Shape::Map => read_version_v1(body, origin),
        Shape::Array => {
            let mut r = v2::open(body, 7, origin)?;
            Ok(Version::new(r.uint().map_err(|e| v2::wire(origin, e))?))
        }
        Shape::Other => Err(not_aether(origin)),
    }
}

/// The envelope fields of a stored event, read without the payload (for
/// tools that scan a stream: see [`inspect_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredEnvelope {
    /// The envelope format (1 or 2).
    pub format: u8,
    /// The event type.
    pub event_type: String,
    /// The actor id the envelope names (it must be the one of the subject).
    pub actor: String,
    /// The per-actor version the envelope claims.
    pub version: u64,
}

/// Where an inspected body comes from, for error messages.
const INSPECTED: Origin<'static> = Origin {
    stream: "the inspected record",
    sequence: 0,
};

/// Reads the envelope fields of a stored event's body in either format,
/// without decoding the payload. It checks the form only: whether the
/// message is part of the actor's history also depends on its subject, its
/// `Nats-Msg-Id` and the versions before it (the trust rule).
///
/// # Errors
/// [`CodecError`] when the body is not an event envelope of a known format
/// (never a panic, whatever the bytes).
pub fn inspect_event(body: &[u8]) -> Result<StoredEnvelope, CodecError> {
    match shape(body) {
        Shape::Map => {
            #[derive(Deserialize)]
            struct Fields<'a> {
                aether: u8,
                #[serde(rename = "type")]
                event_type: &'a str,
                actor: &'a str,
                version: u64,
            }
            let f: Fields<'_> = v1::decode(body, INSPECTED)?;
            v1::check_version(f.aether, INSPECTED)?;
            Ok(StoredEnvelope {
                format: FORMAT_1,
                event_type: f.event_type.to_owned(),
                actor: f.actor.to_owned(),
                version: f.version,
            })
        }
        Shape::Array => {
            let mut r = v2::open(body, 10, INSPECTED)?;
            let w = |e| v2::wire(INSPECTED, e);
            Ok(StoredEnvelope {
                format: FORMAT_2,
                event_type: r.str().map_err(w)?.to_owned(),
                actor: r.str().map_err(w)?.to_owned(),
                version: r.uint().map_err(w)?,
            })
        }
        Shape::Other => Err(not_aether(INSPECTED)),
    }
}

/// Reads the version of a stored snapshot's body in either format.
///
/// # Errors
/// [`CodecError`] when the body is not a snapshot envelope of a known format.
pub fn inspect_snapshot_version(body: &[u8]) -> Result<u64, CodecError> {
    read_snapshot_version(body, INSPECTED).map(Version::get)
}
