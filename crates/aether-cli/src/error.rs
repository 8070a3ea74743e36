//! The errors the tool reports: one line each, on stderr, exit code 2.

use std::path::PathBuf;

/// Everything that stops a command before it could do its job.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to {url}: {detail}")]
    Connect {
        /// The server URL tried.
        url: String,
        /// What the client said.
        detail: String,
    },
    /// A credentials file could not be read.
    #[error("cannot read the credentials file {path}: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An NKey seed file could not be read.
    #[error("cannot read the NKey seed file {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server is older than Aether needs, or has no JetStream.
    #[error("{0}")]
    Unsupported(String),
    /// The namespace has no Aether streams on the server.
    #[error(
        "namespace `{namespace}` has no Aether streams on this server (no stream `{stream}`; is the prefix `{prefix}` right? `aether streams` lists what is there)"
    )]
    NoStreams {
        /// The namespace asked for.
        namespace: String,
        /// The events stream name looked for.
        stream: String,
        /// The store prefix used.
        prefix: String,
    },
    /// The server has no Aether cluster of that name (or none at all).
    #[error(
        "{} on this server (clusters here: {})",
        match cluster { Some(name) => format!("no Aether cluster named `{name}`"), None => "no Aether cluster".to_owned() },
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )]
    NoCluster {
        /// The cluster asked for (`None`: any).
        cluster: Option<String>,
        /// The clusters the server has.
        known: Vec<String>,
    },
    /// No `--cluster` given and the server has several.
    #[error("{} clusters on this server ({}): choose one with --cluster", known.len(), known.join(", "))]
    ChooseCluster {
        /// The clusters the server has.
        known: Vec<String>,
    },
    /// Reading a cluster's buckets failed.
    #[error("cluster: {0}")]
    Cluster(#[from] aether_cluster::ClusterError),
    /// A command-line argument is not valid (a namespace or actor id, a pattern).
    #[error("invalid {what} `{value}`: {detail}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        detail: String,
    },
    /// The event store failed.
    #[error("event store: {0}")]
    Store(#[from] aether_core::StoreError),
    /// The bus failed.
    #[error("event bus: {0}")]
    Bus(String),
    /// A JetStream request failed.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A model file could not be loaded.
    #[error("{0}")]
    ModelLoad(#[from] aether_model::LoadError),
    /// Graphviz `dot` is needed for SVG and could not be run.
    #[error(
        "rendering SVG needs Graphviz: cannot run `{program}` ({detail}); install Graphviz (e.g. `apt-get install graphviz`), pass --graphviz PATH, or use --format dot|mermaid"
    )]
    Graphviz {
        /// The program tried.
        program: String,
        /// What went wrong.
        detail: String,
    },
    /// Writing the output failed.
    #[error("cannot write {what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl CliError {
    pub(crate) fn js(context: &str, error: impl std::fmt::Display) -> Self {
        CliError::JetStream(format!("{context}: {error}"))
    }

    pub(crate) fn stdout(source: std::io::Error) -> Self {
        CliError::Io {
            what: "to standard output".to_owned(),
            source,
        }
    }
}
