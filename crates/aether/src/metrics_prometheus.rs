//! A Prometheus exporter for Aether's `aether_*` metrics (feature `prometheus`).
//!
//! Library crates only *emit* metrics through the `metrics` facade; an
//! application installs one recorder. This module installs the Prometheus one.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;
pub use metrics_exporter_prometheus::{BuildError, PrometheusHandle};

/// Installs a global Prometheus recorder and returns a handle whose
/// [`PrometheusHandle::render`] produces the text exposition format (serve it
/// from your own HTTP endpoint).
///
/// Install it first thing in `main`: the memory store and `Repository`
/// look their metrics up as they emit them, but crates that keep metric
/// handles take them when a store or bus is created (each says so in its
/// docs), and those would report to no recorder.
///
/// # Errors
/// [`BuildError`] if a global recorder is already installed.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new().install_recorder()
}

/// Installs a global Prometheus recorder and serves `/metrics` on `addr`
/// (needs a running Tokio runtime).
///
/// # Errors
/// [`BuildError`] if a recorder is already installed or the listener fails.
pub fn install_http(addr: SocketAddr) -> Result<(), BuildError> {
    PrometheusBuilder::new().with_http_listener(addr).install()
}
