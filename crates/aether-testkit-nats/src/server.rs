//! A single `nats-server` process: [`NatsServer`] and [`NatsServerBuilder`].

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::binary::nats_server_binary;
use crate::{monitor, unique_name};

/// How long a server may take to start (or restart) before the harness panics.
///
/// Generous on purpose: a loaded 2-core CI machine runs many test binaries at once.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Set this environment variable (to anything) to keep the servers' temporary
/// directories (config, log, JetStream store) after the test; their paths are printed.
pub const KEEP_DIR_ENV: &str = "AETHER_NATS_KEEP_DIR";

const LOG_TAIL_LINES: usize = 60;

/// Configures and starts a [`NatsServer`].
///
/// Defaults: JetStream on (file store in the server's temporary directory), a unique
/// server name, no extra configuration, [`DEFAULT_STARTUP_TIMEOUT`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct NatsServerBuilder {
    name: Option<String>,
    jetstream: bool,
    config: String,
    jetstream_config: String,
    startup_timeout: Duration,
    pub(crate) cluster: Option<ClusterSpec>,
}

/// Route settings of a cluster member (set by `NatsCluster`).
#[derive(Debug, Clone)]
pub(crate) struct ClusterSpec {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) routes: Vec<u16>,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            name: None,
            jetstream: true,
            config: String::new(),
            jetstream_config: String::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            cluster: None,
        }
    }
}

impl NatsServerBuilder {
    /// Enables or disables JetStream (enabled by default).
    pub fn jetstream(mut self, enabled: bool) -> Self {
        self.jetstream = enabled;
        self
    }

    /// Sets the server name (`server_name`); by default a unique `nats-<id>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Appends raw server configuration (top level), e.g. `"max_payload: 65536"`.
    ///
    /// It is written after the generated configuration, so a key given here overrides
    /// a generated one. Do not add a `jetstream { .. }` block here (it would replace the
    /// generated one, store directory included): use [`Self::jetstream_config`].
    /// Listen address and ports are given on the command line and always win.
    /// May be called several times; the texts are joined with newlines.
    pub fn config(mut self, text: impl AsRef<str>) -> Self {
        self.config.push_str(text.as_ref());
        self.config.push('\n');
        self
    }

    /// Appends raw configuration inside the generated `jetstream { .. }` block,
    /// e.g. `"max_memory_store: 256MB"`.
    pub fn jetstream_config(mut self, text: impl AsRef<str>) -> Self {
        self.jetstream_config.push_str(text.as_ref());
        self.jetstream_config.push('\n');
        self
    }

    /// How long start and restart may take before the harness panics.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the server and waits until it is ready: it listens for clients and
    /// `/healthz` reports OK (JetStream included).
    ///
    /// # Panics
    ///
    /// When no usable `nats-server` is found, when the server exits during start-up
    /// (the panic shows its log), or when it is not ready within the startup timeout.
    pub async fn start(self) -> NatsServer {
        match self.launch().await {
            Ok(server) => {
                if server.cluster_port.is_none() {
                    let deadline = Instant::now() + server.startup_timeout;
                    server.wait_healthy(deadline).await;
                }
                server
            }
            Err(err) => panic!("{}", err.message()),
        }
    }

    /// Spawns the process and waits until it listens for clients (no health check).
    pub(crate) async fn launch(self) -> Result<NatsServer, LaunchError> {
        // Panics with instructions when there is no usable binary.
        nats_server_binary();
        let dir = tempfile::Builder::new()
            .prefix("aether-nats-")
            .tempdir()
            .unwrap_or_else(|err| {
                panic!("cannot create a temporary directory for nats-server: {err}")
            });
        let name = self.name.clone().unwrap_or_else(|| unique_name("nats"));
        let store_dir = dir.path().join("store");
        let config_path = dir.path().join("nats.conf");
        let log_path = dir.path().join("nats.log");
        let stdio_path = dir.path().join("stdio.log");
        fs::write(&config_path, self.render_config(&name, &store_dir))
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", config_path.display()));

        let paths = Paths {
            config: config_path,
            log: log_path,
            stdio: stdio_path,
        };
        let mut child = paths.spawn(None);
        let deadline = Instant::now() + self.startup_timeout;
        let routes = self.cluster.is_some();
        let listening = wait_listening(&paths, 0, deadline, &name, routes, || {
            child.try_wait().ok().flatten()
        })
        .await;
        let listening = match listening {
            Ok(listening) => listening,
            Err(err) => {
                // The child may still run when the wait timed out.
                kill_and_reap(&mut child);
                return Err(err);
            }
        };
        Ok(NatsServer {
            name,
            port: listening.port,
            cluster_port: self.cluster.as_ref().map(|spec| spec.port),
            startup_timeout: self.startup_timeout,
            store_dir,
            paths,
            state: Mutex::new(State {
                child: Some(child),
                monitor_port: listening.monitor_port,
                paused: false,
            }),
            dir,
        })
    }

    fn render_config(&self, name: &str, store_dir: &Path) -> String {
        let mut config = String::from("# Generated by aether-testkit-nats.\n");
        let _ = writeln!(config, "server_name: {}", quote(name));
        if self.jetstream {
            let _ = writeln!(config, "jetstream {{");
            let _ = writeln!(
                config,
                "  store_dir: {}",
                quote(&store_dir.to_string_lossy())
            );
            config.push_str(&self.jetstream_config);
            let _ = writeln!(config, "}}");
        }
        if let Some(cluster) = &self.cluster {
            let _ = writeln!(config, "cluster {{");
            let _ = writeln!(config, "  name: {}", quote(&cluster.name));
            let _ = writeln!(config, "  listen: \"127.0.0.1:{}\"", cluster.port);
            let _ = writeln!(config, "  routes: [");
            for port in &cluster.routes {
                let _ = writeln!(config, "    \"nats-route://127.0.0.1:{port}\"");
            }
            let _ = writeln!(config, "  ]");
            let _ = writeln!(config, "}}");
        }
        config.push_str(&self.config);
        config
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""))
}

/// A running `nats-server` process for tests, with JetStream in a temporary directory.
///
/// Architecture Invariant: the server listens on 127.0.0.1 only, on a port the kernel
/// chose (`-p -1`, read back from the server's log), so parallel tests never collide;
/// the client port and the store directory stay the same across [`Self::restart`].
///
/// Dropping it kills the process (SIGKILL) and removes the directory. When dropped
/// during a panic (a failing test), it first prints the tail of the server log.
///
/// All methods take `&self`, so a server can be shared (e.g. in an `Arc`) with tasks
/// that kill or pause it.
#[derive(Debug)]
pub struct NatsServer {
    name: String,
    port: u16,
    cluster_port: Option<u16>,
    startup_timeout: Duration,
    store_dir: PathBuf,
    paths: Paths,
    state: Mutex<State>,
    // Last field: removed only after the process is dead (see `Drop`).
    dir: TempDir,
}

#[derive(Debug)]
struct State {
    child: Option<Child>,
    monitor_port: u16,
    paused: bool,
}

impl NatsServer {
    /// Starts a server with the default settings (JetStream on). See [`NatsServerBuilder::start`].
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A builder for a server with non-default settings.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// The server name (`server_name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Client URL, `nats://127.0.0.1:<port>`; the same before and after a restart.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Client port (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Client address, e.g. to put a [`TcpProxy`](crate::TcpProxy) in front of the server.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Port of the HTTP monitoring endpoint (`/healthz`, `/jsz`, `/varz`, ...).
    /// It changes when the server restarts.
    pub fn monitor_port(&self) -> u16 {
        self.lock().monitor_port
    }

    /// Route (cluster) port when the server is a cluster member.
    pub fn cluster_port(&self) -> Option<u16> {
        self.cluster_port
    }

    /// The JetStream `store_dir` (the server keeps its data under `store_dir/jetstream`).
    /// Kept across restarts; removed when the server is dropped.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The temporary directory holding config, log and store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Path of the server log (`-l`); restarts append to it.
    pub fn log_path(&self) -> &Path {
        &self.paths.log
    }

    /// The whole server log so far (all runs), for debugging.
    pub fn log_contents(&self) -> String {
        fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    /// OS process id while a process exists (running or paused).
    pub fn pid(&self) -> Option<u32> {
        self.lock().child.as_ref().map(Child::id)
    }

    /// Whether the process is alive (a paused process counts as running).
    pub fn is_running(&self) -> bool {
        let mut state = self.lock();
        match state.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Whether the server is paused by [`Self::pause`].
    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Kills the process with SIGKILL (a crash: nothing is flushed) and waits until it
    /// is gone. Does nothing when it is not running. The store directory is kept.
    pub fn kill(&self) {
        let child = {
            let mut state = self.lock();
            state.paused = false;
            state.child.take()
        };
        if let Some(mut child) = child {
            kill_and_reap(&mut child);
        }
    }

    /// Restarts the server on the same client port with the same store directory and
    /// configuration, and waits until it is ready. A running server is killed first
    /// (SIGKILL), so this models a crash and recovery.
    ///
    /// A standalone server is ready when `/healthz` is OK (JetStream recovered). A
    /// cluster member is ready when it listens; use `NatsCluster::restart` to also wait
    /// for the cluster to be healthy.
    ///
    /// # Panics
    ///
    /// When the server does not become ready within the startup timeout, e.g. because
    /// another process took its port meanwhile (retried until the deadline).
    pub async fn restart(&self) {
        self.kill();
        let deadline = Instant::now() + self.startup_timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            let offset = fs::metadata(&self.paths.log).map_or(0, |meta| meta.len());
            let child = self.paths.spawn(Some(self.port));
            self.lock().child = Some(child);
            let routes = self.cluster_port.is_some();
            let result = wait_listening(&self.paths, offset, deadline, &self.name, routes, || {
                let mut state = self.lock();
                match state.child.as_mut() {
                    Some(child) => child.try_wait().ok().flatten(),
                    None => Some(ExitStatus::default()),
                }
            })
            .await;
            match result {
                Ok(listening) => {
                    assert_eq!(
                        listening.port, self.port,
                        "nats-server {} restarted on port {} instead of {}",
                        self.name, listening.port, self.port
                    );
                    self.lock().monitor_port = listening.monitor_port;
                    break;
                }
                Err(LaunchError::AddrInUse(_)) if Instant::now() + backoff < deadline => {
                    self.kill();
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(err) => {
                    self.kill();
                    panic!("restart failed: {}", err.message());
                }
            }
        }
        if self.cluster_port.is_none() {
            self.wait_healthy(deadline).await;
        }
    }

    /// Freezes the process with SIGSTOP: connections stay open but nothing is answered
    /// (a hung server or a network partition). Returns once the OS reports the process
    /// stopped (checked on Linux via `/proc`).
    ///
    /// # Panics
    ///
    /// When the server is not running.
    pub fn pause(&self) {
        let pid = {
            let mut state = self.lock();
            let pid = self.running_pid(&state, "pause");
            send_signal(pid, Signal::SIGSTOP, &self.name);
            state.paused = true;
            pid
        };
        wait_proc_state(pid, true);
    }

    /// Continues a paused process with SIGCONT.
    ///
    /// # Panics
    ///
    /// When the server is not running.
    pub fn resume(&self) {
        let pid = {
            let mut state = self.lock();
            let pid = self.running_pid(&state, "resume");
            send_signal(pid, Signal::SIGCONT, &self.name);
            state.paused = false;
            pid
        };
        wait_proc_state(pid, false);
    }

    /// Waits until `/healthz` answers OK (for JetStream: the server is current with the
    /// meta leader and its streams).
    pub(crate) async fn wait_healthy(&self, deadline: Instant) {
        let mut backoff = Duration::from_millis(5);
        loop {
            let last = match monitor::healthz(self.monitor_port()).await {
                Ok(()) => return,
                Err(err) => err,
            };
            if Instant::now() >= deadline {
                panic!(
                    "nats-server {} ({}) not healthy within {:?}: {last}",
                    self.name,
                    self.url(),
                    self.startup_timeout
                );
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_contents(), lines)
    }

    fn running_pid(&self, state: &MutexGuard<'_, State>, action: &str) -> u32 {
        match state.child.as_ref() {
            Some(child) => child.id(),
            None => panic!(
                "cannot {action} nats-server {}: it is not running",
                self.name
            ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let child = self
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .child
            .take();
        if let Some(mut child) = child {
            kill_and_reap(&mut child);
        }
        let keep = std::env::var_os(KEEP_DIR_ENV).is_some();
        if std::thread::panicking() {
            eprintln!(
                "---- nats-server {} ({}) log tail, {} ----\n{}\n---- end of nats-server {} log ----",
                self.name,
                self.url(),
                self.paths.log.display(),
                self.log_tail(LOG_TAIL_LINES),
                self.name
            );
            let stdio = fs::read_to_string(&self.paths.stdio).unwrap_or_default();
            if !stdio.trim().is_empty() {
                eprintln!(
                    "---- nats-server {} stdout/stderr ----\n{}",
                    self.name,
                    tail(&stdio, 20)
                );
            }
        }
        if keep {
            self.dir.disable_cleanup(true);
            eprintln!(
                "{KEEP_DIR_ENV} is set: keeping {} (nats-server {})",
                self.dir.path().display(),
                self.name
            );
        }
    }
}

/// Files of one server.
#[derive(Debug)]
struct Paths {
    config: PathBuf,
    log: PathBuf,
    stdio: PathBuf,
}

impl Paths {
    /// Spawns `nats-server` on `port` (`None`: a kernel-chosen port).
    fn spawn(&self, port: Option<u16>) -> Child {
        let binary = nats_server_binary();
        let stdio = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stdio)
            .unwrap_or_else(|err| panic!("cannot open {}: {err}", self.stdio.display()));
        let stderr = stdio
            .try_clone()
            .unwrap_or_else(|err| panic!("cannot clone a file handle: {err}"));
        let port = port.map_or_else(|| "-1".to_owned(), |port| port.to_string());
        Command::new(binary.path())
            .arg("-c")
            .arg(&self.config)
            .args(["-a", "127.0.0.1", "-p", &port, "-m", "-1"])
            .arg("-l")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(stdio)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot spawn {}: {err}", binary.path().display()))
    }
}

/// Ports a freshly started server listens on.
struct Listening {
    port: u16,
    monitor_port: u16,
}

/// Why a server did not start.
#[derive(Debug)]
pub(crate) enum LaunchError {
    /// A port was taken (worth retrying with other ports).
    AddrInUse(String),
    /// Anything else.
    Other(String),
}

impl LaunchError {
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::AddrInUse(message) | Self::Other(message) => message,
        }
    }
}

/// Polls the log (from byte `offset`, i.e. this run only) until the server has printed
/// its client and monitor ports and "Server is ready" and, for a cluster member
/// (`routes`), that it listens for routes.
///
/// A cluster member prints "Server is ready" *before* it binds its route port, and a
/// route port taken meanwhile is fatal ("Error listening on router port"): reporting
/// such a node as started would hand a test a server that is about to exit.
async fn wait_listening(
    paths: &Paths,
    offset: u64,
    deadline: Instant,
    name: &str,
    routes: bool,
    mut exited: impl FnMut() -> Option<ExitStatus>,
) -> Result<Listening, LaunchError> {
    let mut backoff = Duration::from_millis(2);
    loop {
        let log = read_from(&paths.log, offset);
        let port = find_port(&log, "Listening for client connections on ");
        let monitor_port = find_port(&log, "Starting http monitor on ");
        let routes_ready = !routes || log.contains("Listening for route connections on ");
        if let (Some(port), Some(monitor_port), true, true) = (
            port,
            monitor_port,
            log.contains("Server is ready"),
            routes_ready,
        ) {
            return Ok(Listening { port, monitor_port });
        }
        if let Some(status) = exited() {
            // Let the last log lines land.
            let log = read_from(&paths.log, offset);
            let stdio = fs::read_to_string(&paths.stdio).unwrap_or_default();
            let message = format!(
                "nats-server {name} exited during start-up ({status}).\nconfig {}:\n{}\nlog:\n{}\n\
                 stdout/stderr:\n{}",
                paths.config.display(),
                fs::read_to_string(&paths.config).unwrap_or_default(),
                tail(&log, LOG_TAIL_LINES),
                tail(&stdio, 20)
            );
            return Err(
                if log.contains("address already in use")
                    || stdio.contains("address already in use")
                {
                    LaunchError::AddrInUse(message)
                } else {
                    LaunchError::Other(message)
                },
            );
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::Other(format!(
                "nats-server {name} did not report \"Server is ready\" in time.\nlog:\n{}",
                tail(&log, LOG_TAIL_LINES)
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Port at the end of the first log line containing `marker` (`... on 127.0.0.1:4222`).
fn find_port(log: &str, marker: &str) -> Option<u16> {
    let line = log.lines().find(|line| line.contains(marker))?;
    let address = line.split(marker).nth(1)?.trim();
    address.rsplit(':').next()?.parse().ok()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kill_and_reap(child: &mut Child) {
    // Fails only when the process has exited already; `wait` then reaps it.
    let _ = child.kill();
    let _ = child.wait();
}

fn send_signal(pid: u32, signal: Signal, name: &str) {
    let raw = i32::try_from(pid).unwrap_or_else(|_| panic!("pid {pid} out of range"));
    signal::kill(Pid::from_raw(raw), signal).unwrap_or_else(|err| {
        panic!("cannot send {signal} to nats-server {name} (pid {pid}): {err}")
    });
}

/// Waits (briefly, blocking) until `/proc/<pid>/stat` shows the process stopped or not.
/// Without `/proc` (not Linux) it returns at once.
fn wait_proc_state(pid: u32, stopped: bool) {
    let stat_path = format!("/proc/{pid}/stat");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok(stat) = fs::read_to_string(&stat_path) else {
            return;
        };
        // Format: `pid (comm) S ...`; comm may contain spaces and parentheses.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        let is_stopped = matches!(state, Some('T' | 't'));
        if is_stopped == stopped {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ports_in_log_lines() {
        let log = "[1] 2026/11/24 07:16:40.546936 [INF] Starting http monitor on 127.0.0.1:38875\n\
                   [1] 2026/11/24 07:16:40.548384 [INF] Listening for client connections on 127.0.0.1:45963\n";
        assert_eq!(
            find_port(log, "Listening for client connections on "),
            Some(45963)
        );
        assert_eq!(find_port(log, "Starting http monitor on "), Some(38875));
        assert_eq!(find_port(log, "Listening for route connections on "), None);
    }

    #[test]
    fn renders_cluster_config() {
        let mut builder = NatsServerBuilder::default().config("max_payload: 1024");
        builder.cluster = Some(ClusterSpec {
            name: "c1".into(),
            port: 6222,
            routes: vec![6223, 6224],
        });
        let config = builder.render_config("n0", Path::new("/tmp/x"));
        assert!(config.contains("server_name: \"n0\""));
        assert!(config.contains("store_dir: \"/tmp/x\""));
        assert!(config.contains("listen: \"127.0.0.1:6222\""));
        assert!(config.contains("\"nats-route://127.0.0.1:6224\""));
        assert!(config.ends_with("max_payload: 1024\n"));
    }

    /// A cluster member says "Server is ready" before it binds its route port; a
    /// route port another process holds must come back as `AddrInUse` (which the
    /// cluster start retries), never as a started node that then exits.
    #[tokio::test]
    async fn a_taken_route_port_is_reported_not_started() {
        let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = squatter.local_addr().unwrap().port();
        // JetStream clustering refuses to start without a route; this one leads nowhere.
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer_port = peer.local_addr().unwrap().port();
        drop(peer);
        let mut builder = NatsServerBuilder::default()
            .name("route-port-taken")
            .startup_timeout(Duration::from_secs(30));
        builder.cluster = Some(ClusterSpec {
            name: "route-port-taken".into(),
            port,
            routes: vec![peer_port],
        });
        match builder.launch().await {
            Err(LaunchError::AddrInUse(message)) => {
                assert!(message.contains("router port"), "{message}");
            }
            Err(LaunchError::Other(message)) => panic!("wrong error kind: {message}"),
            Ok(server) => panic!(
                "{} reported as started on a taken route port",
                server.name()
            ),
        }
        drop(squatter);
    }
}
