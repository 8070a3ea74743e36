//! Trace context for asks: W3C `traceparent` ids carried over NATS, with
//! `tracing` spans only (no OpenTelemetry dependency).
//!
//! Every ask runs in a span `aether.ask` with the fields `trace_id` (32 hex
//! digits), `span_id` (16 hex digits) and, when it continues a trace,
//! `parent_span_id`. A remote ask sends `traceparent` =
//! `00-<trace_id>-<span_id>-01` in the request's `trace` map; the owner runs
//! the command in a span `aether.handle` with the same `trace_id`, a fresh
//! `span_id` and the caller's span id as `parent_span_id`, so one command is
//! one trace over two nodes. The actor's `aether.actor.command` span is a
//! child of the `aether.ask` (local) or `aether.handle` (remote) span.
//!
//! An ask continues the trace of [`TraceContext::current`]: the context of
//! the `aether.handle` being served (so a nested ask made while serving
//! stays in its trace), or one the caller set with [`TraceContext::scope`]
//! (e.g. parsed from an incoming HTTP `traceparent`). Otherwise it starts a
//! new trace.

use std::fmt;
use std::future::Future;

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A position in a trace: the trace id and the id of the span that is the
/// parent of whatever runs next. Ids are never zero (W3C).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
}

impl TraceContext {
    /// A new trace with a random trace id and span id.
    pub fn new_root() -> Self {
        let bits = uuid::Uuid::new_v4().as_u128();
        TraceContext {
            trace_id: bits.max(1),
            span_id: random_span_id(),
        }
    }

    /// A context of `trace_id` and `span_id`, or `None` if either is zero
    /// (invalid in W3C trace context).
    pub fn new(trace_id: u128, span_id: u64) -> Option<Self> {
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id })
    }

    /// A child position in the same trace: same trace id, a fresh span id.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id,
            span_id: random_span_id(),
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The span id.
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// The trace id as 32 lowercase hex digits (as span fields carry it).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lowercase hex digits (as span fields carry it).
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The W3C `traceparent` header value: `00-<trace id>-<span id>-01`.
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }

    /// Reads a W3C `traceparent` value (version `00`, or a later version
    /// with at least the same four fields). `None` for anything else,
    /// including all-zero ids: a bad header starts a new trace, never an
    /// error.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(version, 2) || version == "ff" || !hex(flags, 2) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if !hex(trace, 32) || !hex(span, 16) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        Self::new(trace_id, span_id)
    }

    /// The context asks made now continue: the one set by [`scope`](Self::scope)
    /// around the current task's future (the runtime sets it while serving
    /// a remote ask), if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| *c).ok()
    }

    /// Runs `fut` with `self` as [`current`](Self::current): asks made in it
    /// join this trace, as children of this span id.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, fut)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

fn random_span_id() -> u64 {
    // The low half of a v4 UUID: random bits.
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    bits.max(1)
}

/// The name of the request's `trace` map entry that carries the context.
#[cfg(feature = "nats")]
pub(crate) const TRACEPARENT: &str = "traceparent";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_values_are_refused() {
        let c = TraceContext::new_root();
        let back = TraceContext::from_traceparent(&c.traceparent()).unwrap();
        assert_eq!(back, c);
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceContext::from_traceparent(w3c).unwrap();
        assert_eq!(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id_hex(), "00f067aa0ba902b7");
        assert_eq!(p.traceparent(), w3c);
        let child = p.child();
        assert_eq!(child.trace_id(), p.trace_id());
        assert_ne!(child.span_id(), p.span_id());
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad:?}");
        }
        // A later version may append fields.
        assert!(
            TraceContext::from_traceparent(
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"
            )
            .is_some()
        );
    }

    #[tokio::test]
    async fn scope_sets_the_current_context() {
        assert_eq!(TraceContext::current(), None);
        let c = TraceContext::new_root();
        let seen = c.scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(c));
    }
}
