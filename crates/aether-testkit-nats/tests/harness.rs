//! Tests of the harness itself, against real `nats-server` processes.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use async_nats::jetstream::{self, stream};
use futures::StreamExt as _;
use tokio::io::AsyncReadExt as _;

use aether_testkit_nats::{
    MIN_VERSION, NatsCluster, NatsServer, TcpProxy, connect, nats_server_binary, unique_name,
    wait_for, wait_until,
};

const WAIT: Duration = Duration::from_secs(20);
/// Stream leader elections take 4-9 s; more on a loaded machine.
const FAILOVER: Duration = Duration::from_secs(45);

fn stream_config(name: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{name}.>")],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

async fn wait_connected(client: &async_nats::Client) {
    wait_until(WAIT, "the client is connected", async || {
        client.connection_state() == State::Connected
    })
    .await;
}

#[test]
fn finds_a_supported_binary() {
    let binary = nats_server_binary();
    assert!(binary.path().is_file(), "{}", binary.path().display());
    assert!(binary.version() >= MIN_VERSION, "{}", binary.version());
}

#[tokio::test]
async fn publish_and_subscribe() {
    let server = NatsServer::start().await;
    assert!(server.is_running());
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    let client = connect(&server.url()).await;
    let subject = unique_name("greetings");
    let mut subscriber = client.subscribe(subject.clone()).await.unwrap();
    client
        .publish(subject.clone(), "hello".into())
        .await
        .unwrap();
    let message = tokio::time::timeout(WAIT, subscriber.next())
        .await
        .expect("no message within the deadline")
        .expect("subscription ended");
    assert_eq!(message.payload, "hello");
}

#[tokio::test]
async fn jetstream_publish_is_acked() {
    let server = NatsServer::start().await;
    let js = jetstream::new(connect(&server.url()).await);
    let name = unique_name("orders");
    js.create_stream(stream_config(&name, 1)).await.unwrap();
    let ack = js
        .publish(format!("{name}.1"), "created".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.stream, name);
    assert_eq!(ack.sequence, 1);
}

#[tokio::test]
async fn extra_config_is_applied() {
    let server = NatsServer::builder()
        .config("max_payload: 4096")
        .jetstream(false)
        .start()
        .await;
    let client = connect(&server.url()).await;
    assert_eq!(client.server_info().max_payload, 4096);
    assert!(!client.server_info().jetstream);
    assert!(server.log_contents().contains("Server is ready"));
}

#[tokio::test]
async fn kill_and_restart_keep_a_file_stream_and_the_url() {
    let server = NatsServer::start().await;
    let url = server.url();
    let client = connect(&url).await;
    let js = jetstream::new(client.clone());
    let name = unique_name("durable");
    js.create_stream(stream_config(&name, 1)).await.unwrap();
    for i in 0..3 {
        js.publish(format!("{name}.{i}"), "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    server.kill();
    assert!(!server.is_running());
    wait_until(WAIT, "the client notices the server is gone", async || {
        client.connection_state() != State::Connected
    })
    .await;

    server.restart().await;
    assert!(server.is_running());
    assert_eq!(server.url(), url);

    // The old client reconnects to the same URL by itself ...
    wait_connected(&client).await;
    let mut stream = js.get_stream(&name).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
    // ... and a new one can connect too.
    let js = jetstream::new(connect(&url).await);
    let ack = js
        .publish(format!("{name}.3"), "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 4);
}

#[tokio::test]
async fn pause_makes_requests_time_out_and_resume_heals() {
    let server = NatsServer::start().await;
    let client = connect(&server.url()).await;
    // `$JS.API.INFO` is answered by the server itself.
    let info = async |timeout: Duration| {
        client
            .send_request(
                "$JS.API.INFO",
                async_nats::Request::new().timeout(Some(timeout)),
            )
            .await
    };
    info(WAIT).await.unwrap();

    server.pause();
    assert!(server.is_paused());
    assert!(server.is_running(), "a paused server is still running");
    let err = info(Duration::from_millis(500))
        .await
        .expect_err("a paused server must not answer");
    assert_eq!(err.kind(), RequestErrorKind::TimedOut, "{err}");

    server.resume();
    assert!(!server.is_paused());
    wait_for(WAIT, "a request succeeds after resume", async || {
        info(Duration::from_secs(1)).await
    })
    .await;
}

#[tokio::test]
async fn dropping_a_paused_server_kills_it() {
    let server = NatsServer::start().await;
    let pid = server.pid().expect("running");
    server.pause();
    drop(server);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived the drop"
    );
}

#[tokio::test]
async fn restart_waits_for_its_port_to_be_free() {
    let server = NatsServer::start().await;
    server.kill();
    // Another process holds the port for a moment.
    let squatter = std::net::TcpListener::bind(server.addr()).unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(squatter);
    });
    server.restart().await;
    release.await.unwrap();
    assert!(server.is_running());
    connect(&server.url()).await.flush().await.unwrap();
}

#[tokio::test]
#[should_panic(expected = "exited during start-up")]
async fn a_bad_config_fails_loudly() {
    NatsServer::builder()
        .config("this is { not valid")
        .start()
        .await;
}

#[tokio::test]
async fn parallel_servers_do_not_collide() {
    let servers = futures::future::join_all((0..4).map(|_| NatsServer::start())).await;
    let ports: HashSet<u16> = servers.iter().map(NatsServer::port).collect();
    let dirs: HashSet<_> = servers
        .iter()
        .map(|server| server.store_dir().to_owned())
        .collect();
    assert_eq!(ports.len(), 4);
    assert_eq!(dirs.len(), 4);
    let dir = servers[0].dir().to_owned();
    drop(servers);
    assert!(!dir.exists(), "dropping a server removes its directory");
}

#[tokio::test]
async fn proxy_cut_disconnects_and_restore_reconnects() {
    let server = NatsServer::start().await;
    let proxy = TcpProxy::start(server.addr()).await;
    let client = connect(&proxy.url()).await;
    let subject = unique_name("through-proxy");
    let mut subscriber = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(proxy.active_connections(), 1);

    // Cut in the middle of a stream of writes.
    let publisher = {
        let client = client.clone();
        let subject = subject.clone();
        tokio::spawn(async move {
            for i in 0..10_000_u32 {
                if client
                    .publish(subject.clone(), i.to_string().into())
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    proxy.cut().await;
    assert!(proxy.is_cut());
    assert_eq!(proxy.active_connections(), 0);
    wait_until(WAIT, "the client sees the disconnect", async || {
        client.connection_state() != State::Connected
    })
    .await;

    // While cut, new connections are closed at once.
    let mut raw = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0_u8; 64];
    let read = tokio::time::timeout(WAIT, raw.read(&mut buf))
        .await
        .expect("not closed");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "a cut proxy must close new connections"
    );

    proxy.restore();
    wait_connected(&client).await;
    publisher.await.unwrap();
    assert!(proxy.accepted_connections() >= 2);

    // The subscription is re-established after the reconnect.
    client.flush().await.unwrap();
    client
        .publish(subject.clone(), "after".into())
        .await
        .unwrap();
    // (Skipping whatever the publisher got through before the cut.)
    tokio::time::timeout(WAIT, async {
        while let Some(message) = subscriber.next().await {
            if message.payload == "after" {
                return;
            }
        }
        panic!("subscription ended");
    })
    .await
    .expect("the message published after restore did not arrive");
}

#[tokio::test]
async fn cluster_r3_stream_survives_a_killed_leader() {
    let cluster = NatsCluster::start(3).await;
    assert_eq!(cluster.node_count(), 3);
    assert!(cluster.meta_leader().await.is_some());
    let client = connect(&cluster.urls()).await;
    let js = jetstream::new(client.clone());
    let name = unique_name("replicated");
    js.create_stream(stream_config(&name, 3)).await.unwrap();
    js.publish(format!("{name}.1"), "one".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let mut stream = js.get_stream(&name).await.unwrap();
    let leader = stream
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|cluster| cluster.leader)
        .expect("an R3 stream has a leader");
    let leader = cluster.node_index(&leader).expect("the leader is a node");
    cluster.kill(leader);

    let ack = wait_for(FAILOVER, "a publish is acked after the leader died", || {
        let js = js.clone();
        let subject = format!("{name}.2");
        async move { js.publish(subject, "two".into()).await?.await }
    })
    .await;
    assert_eq!(ack.stream, name);

    cluster.restart(leader).await;
    wait_until(
        WAIT,
        "the stream has both messages",
        async || matches!(stream.info().await, Ok(info) if info.state.messages >= 2),
    )
    .await;
}

#[tokio::test]
async fn cluster_node_pause_and_resume() {
    let cluster = NatsCluster::start(3).await;
    cluster.pause(2);
    assert!(cluster.node(2).is_paused());
    // The two others still form a healthy cluster.
    cluster.wait_healthy().await;
    cluster.resume(2);
    cluster.wait_healthy().await;
}
