//! The command and reply envelopes a remote ask sends over NATS
//! request/reply: MessagePack maps (fields by name), versioned.
//!
//! **Wire contract.** A request is a map with `format` (currently
//! [`WIRE_FORMAT`]), `command_id` (UUID), `correlation_id` (optional text),
//! `kind`, `actor` (the id without the kind), `deadline_ms` (time left when
//! sent, in milliseconds: clocks of two nodes are never compared), `epoch`
//! (the sender's map epoch), `trace` (text pairs for a trace propagator:
//! this release sends and reads W3C `traceparent`, see
//! [`TraceContext`](super::TraceContext); other keys are ignored) and
//! `command` (the aggregate's command, itself
//! MessagePack). A node refuses a request of another format with a typed
//! reply, and answers bytes that are not a request with one, never a panic.

use std::collections::BTreeMap;

use aether_core::{CommandId, Event, Version};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The request format this release writes and reads.
pub const WIRE_FORMAT: u32 = 1;

/// Why bytes on a node's subject were not a request it can serve, or a
/// reply was not one the caller can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WireError {
    /// Not a MessagePack envelope of the expected shape.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// An envelope of a format this release does not know.
    #[error("unsupported wire format {found} (this node speaks {WIRE_FORMAT})")]
    UnsupportedFormat {
        /// The format found.
        found: u32,
    },
    /// The command, error or state inside could not be encoded or decoded
    /// as the aggregate's type.
    #[error("payload codec: {0}")]
    Payload(String),
}

/// A command on its way to the node that owns its actor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) format: u32,
    pub(crate) command_id: CommandId,
    #[serde(default)]
    pub(crate) correlation_id: Option<String>,
    pub(crate) kind: String,
    pub(crate) actor: String,
    pub(crate) deadline_ms: u64,
    #[serde(default)]
    pub(crate) epoch: u64,
    #[serde(default)]
    pub(crate) trace: BTreeMap<String, String>,
    pub(crate) command: Bytes,
}

/// Why a remote ask failed on the owner, beyond the aggregate's refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Failure {
    Store,
    Rehydrate,
    Codec,
    Panicked,
    NotRegistered,
    InvalidId,
}

/// The owner's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The outcome; `state` is the aggregate's state, MessagePack.
    Done {
        version: Version,
        events: Vec<Event>,
        state: Bytes,
        duplicate: bool,
        retries: u32,
    },
    /// The aggregate's error, MessagePack.
    Rejected(Bytes),
    /// The node does not host the actor's shard at `epoch`: refresh, retry.
    NotHere {
        epoch: u64,
    },
    Busy,
    Timeout,
    Unavailable(String),
    Failed {
        failure: Failure,
        message: String,
    },
    /// The request could not be read.
    BadRequest(WireError),
}

impl Request {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, WireError> {
        rmp_serde::to_vec_named(self).map_err(|e| WireError::Malformed(e.to_string()))
    }

    /// Reads a request, checking the format first so that a newer format is
    /// told apart from garbage.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Request, WireError> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe =
            rmp_serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
        if probe.format != WIRE_FORMAT {
            return Err(WireError::UnsupportedFormat {
                found: probe.format,
            });
        }
        rmp_serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

impl Reply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match rmp_serde::to_vec_named(self) {
            Ok(bytes) => bytes,
            // Only user payloads can fail to encode, and those are already
            // bytes here; answer with an error the caller can still read.
            Err(e) => {
                rmp_serde::to_vec_named(&Reply::BadRequest(WireError::Payload(e.to_string())))
                    .unwrap_or_default()
            }
        }
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Reply, WireError> {
        rmp_serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            format: WIRE_FORMAT,
            command_id: CommandId::new(),
            correlation_id: Some("c".into()),
            kind: "account".into(),
            actor: "a.b *>".into(),
            deadline_ms: 250,
            epoch: 7,
            trace: BTreeMap::from([("traceparent".into(), "00-abc-def-01".into())]),
            command: Bytes::from_static(&[0x92, 0x01, 0x02]),
        }
    }

    #[test]
    fn requests_round_trip_and_other_formats_are_told_apart_from_garbage() {
        let r = request();
        let back = Request::decode(&r.encode().unwrap()).unwrap();
        assert_eq!(
            (
                back.command_id,
                back.actor.as_str(),
                back.deadline_ms,
                back.epoch
            ),
            (r.command_id, "a.b *>", 250, 7)
        );
        assert_eq!(back.trace, r.trace);
        let newer = Request {
            format: WIRE_FORMAT + 1,
            ..request()
        };
        assert_eq!(
            Request::decode(&newer.encode().unwrap()).unwrap_err(),
            WireError::UnsupportedFormat {
                found: WIRE_FORMAT + 1
            }
        );
        for garbage in [&b""[..], b"\xc1", b"hello", &[0x81, 0xa1, b'x', 0x01]] {
            assert!(matches!(
                Request::decode(garbage),
                Err(WireError::Malformed(_))
            ));
        }
    }

    #[test]
    fn replies_round_trip() {
        let r = Reply::NotHere { epoch: 9 };
        assert!(matches!(
            Reply::decode(&r.encode()).unwrap(),
            Reply::NotHere { epoch: 9 }
        ));
        assert!(Reply::decode(b"\xc1").is_err());
    }
}
