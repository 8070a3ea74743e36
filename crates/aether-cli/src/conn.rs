//! Connection options shared by every command that talks to a server, named
//! like the `nats` CLI's.

use std::path::PathBuf;
use std::time::Duration;

use aether_core::{Namespace, name::encode_token};
use aether_store_jetstream::{JetStreamEventStore, ServerVersion};
use async_nats::jetstream;
use clap::Args;

use crate::error::CliError;

/// How to reach the server and where Aether's streams are.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection (like the `nats` CLI)")]
pub(crate) struct ConnArgs {
    /// NATS server URL(s), comma separated.
    #[arg(
        short = 's',
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    pub(crate) server: String,
    /// User credentials file (JWT and NKey seed).
    #[arg(long, env = "NATS_CREDS", global = true)]
    pub(crate) creds: Option<PathBuf>,
    /// User name (with --password).
    #[arg(long, env = "NATS_USER", global = true, requires = "password")]
    pub(crate) user: Option<String>,
    /// Password (with --user).
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        global = true,
        requires = "user"
    )]
    pub(crate) password: Option<String>,
    /// User NKey seed file (the seed's public key must be a user of the server).
    #[arg(
        long,
        env = "NATS_NKEY",
        global = true,
        value_name = "FILE",
        conflicts_with_all = ["creds", "user", "token"]
    )]
    pub(crate) nkey: Option<PathBuf>,
    /// Token authentication.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true, global = true)]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) to verify the server with; turns TLS on.
    #[arg(
        long,
        alias = "tlsca",
        env = "NATS_CA",
        global = true,
        value_name = "FILE"
    )]
    pub(crate) tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS (with --tls-key).
    #[arg(
        long,
        alias = "tlscert",
        env = "NATS_CERT",
        global = true,
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS (with --tls-cert).
    #[arg(
        long,
        alias = "tlskey",
        env = "NATS_KEY",
        global = true,
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,
    /// Start TLS before the server's INFO (for servers configured with
    /// `handshake_first`); turns TLS on.
    #[arg(long, alias = "tlsfirst", global = true)]
    pub(crate) tls_first: bool,
    /// Subject prefix of the event store (streams are named `<PREFIX>_EVENTS_<ns>`).
    #[arg(long, env = "AETHER_PREFIX", default_value = "aether", global = true)]
    pub(crate) prefix: String,
    /// Seconds to wait for the connection and for each request.
    #[arg(long, default_value_t = 5.0, global = true, value_name = "SECONDS")]
    pub(crate) timeout: f64,
}

impl ConnArgs {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(5))
    }

    /// Connects (once: a missing server is an error at once, not a retry
    /// loop).
    pub(crate) async fn connect(&self) -> Result<async_nats::Client, CliError> {
        let mut options = match &self.creds {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|source| CliError::Credentials {
                    path: path.clone(),
                    source,
                })?,
            None => async_nats::ConnectOptions::new(),
        };
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &self.nkey {
            let seed = std::fs::read_to_string(path).map_err(|source| CliError::KeyFile {
                path: path.clone(),
                source,
            })?;
            options = options.nkey(seed.trim().to_owned());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        if self.tls_first {
            options = options.tls_first().require_tls(true);
        }
        options = options
            .connection_timeout(self.timeout())
            .request_timeout(Some(self.timeout()))
            .name("aether-cli");
        options
            .connect(self.server.as_str())
            .await
            .map_err(|e| CliError::Connect {
                url: self.server.clone(),
                detail: e.to_string(),
            })
    }

    /// Connects and checks that the server has JetStream and is recent
    /// enough for Aether's store.
    pub(crate) async fn connect_jetstream(
        &self,
    ) -> Result<(async_nats::Client, jetstream::Context), CliError> {
        let client = self.connect().await?;
        let info = client.server_info();
        match ServerVersion::parse(&info.version) {
            Some(v) if v >= ServerVersion::MIN_SUPPORTED => {}
            _ => {
                return Err(CliError::Unsupported(format!(
                    "nats-server {} at {} is too old: Aether needs nats-server {} or newer",
                    info.version,
                    self.server,
                    ServerVersion::MIN_SUPPORTED
                )));
            }
        }
        if !info.jetstream {
            return Err(CliError::Unsupported(format!(
                "nats-server {} at {} has JetStream disabled (start it with -js)",
                info.version, self.server
            )));
        }
        let js = jetstream::ContextBuilder::new()
            .timeout(self.timeout())
            .build(client.clone());
        Ok((client, js))
    }

    /// The name of the events stream of `namespace`.
    pub(crate) fn events_stream(&self, namespace: &Namespace) -> String {
        format!(
            "{}_EVENTS_{}",
            self.prefix.to_ascii_uppercase(),
            namespace.encoded()
        )
    }

    /// The name of the snapshots stream of `namespace`.
    pub(crate) fn snapshots_stream(&self, namespace: &Namespace) -> String {
        format!(
            "{}_SNAPSHOTS_{}",
            self.prefix.to_ascii_uppercase(),
            namespace.encoded()
        )
    }

    /// The events subject of one actor (`<prefix>.<ns>.events.<actor>`).
    pub(crate) fn events_subject_root(&self, namespace: &Namespace) -> String {
        format!("{}.{}.events", self.prefix, namespace.encoded())
    }

    /// The snapshots subject root (`<prefix>.<ns>.snapshots`).
    pub(crate) fn snapshots_subject_root(&self, namespace: &Namespace) -> String {
        format!("{}.{}.snapshots", self.prefix, namespace.encoded())
    }

    /// The events stream of `namespace`, or [`CliError::NoStreams`].
    pub(crate) async fn events_stream_of(
        &self,
        js: &jetstream::Context,
        namespace: &Namespace,
    ) -> Result<jetstream::stream::Stream, CliError> {
        let name = self.events_stream(namespace);
        get_stream(js, &name)
            .await?
            .ok_or_else(|| CliError::NoStreams {
                namespace: namespace.to_string(),
                stream: name,
                prefix: self.prefix.clone(),
            })
    }

    /// Opens the store of `namespace` read-only (it never creates streams).
    pub(crate) async fn open_store(
        &self,
        client: async_nats::Client,
        js: &jetstream::Context,
        namespace: &Namespace,
    ) -> Result<JetStreamEventStore, CliError> {
        self.events_stream_of(js, namespace).await?;
        Ok(JetStreamEventStore::builder(client)
            .namespace(namespace.clone())
            .prefix(self.prefix.clone())
            .timeout(self.timeout())
            .create_streams(false)
            .open()
            .await?)
    }
}

/// A stream by name; `None` when the server has no such stream.
pub(crate) async fn get_stream(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<jetstream::stream::Stream>, CliError> {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::GetStreamErrorKind;
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(js_err)
                if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(CliError::js(&format!("reading stream {name}"), e)),
        },
    }
}

/// Parses a namespace argument.
pub(crate) fn namespace(text: &str) -> Result<Namespace, CliError> {
    Namespace::new(text).map_err(|e| CliError::InvalidArgument {
        what: "namespace",
        value: text.to_owned(),
        detail: e.to_string(),
    })
}

/// The actor token of a subject `<root>.<token>`, decoded; `None` when the
/// subject is not under `root` or the token is not a valid encoding.
pub(crate) fn actor_of_subject(root: &str, subject: &str) -> Option<String> {
    let token = subject.strip_prefix(root)?.strip_prefix('.')?;
    let decoded = aether_core::name::decode_token(token)?;
    (encode_token(&decoded) == token).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_tokens_decode() {
        assert_eq!(
            actor_of_subject("aether.shop.events", "aether.shop.events.a_2Eb"),
            Some("a.b".to_owned())
        );
        assert_eq!(actor_of_subject("aether.shop.events", "other.x"), None);
    }
}
