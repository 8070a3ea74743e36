//! The NATS permissions that keep other clients off Aether's subjects,
//! tested with the example configuration of the crate README: the Aether
//! application's user writes, a reader user reads through the store but
//! cannot publish on an events subject (the server refuses it, nothing is
//! stored).

mod common;

use std::time::Duration;

use aether_core::testkit::conformance::test_event;
use aether_core::{ActorId, EventStore, EventStoreExt, Namespace, StoreError, Version};
use aether_store_jetstream::JetStreamEventStore;
use aether_testkit_nats::{NatsServer, connect_options, wait_for};

/// The example configuration from the README (keep the two in step).
const ACCOUNTS: &str = r#"
accounts {
  APP {
    jetstream: enabled
    users: [
      # The Aether application: its subjects, the JetStream API, replies.
      { user: aether, password: aether-secret, permissions: {
          publish: { allow: ["aether.>", "$JS.API.>"] }
          subscribe: { allow: ["_INBOX.>"] }
      } }
      # A read-only client (projections, tools) of namespace "perm": reads
      # and ordered consumers on its two streams, and nothing it could write
      # with. (Subject wildcards match whole tokens, so stream names are
      # spelled out.)
      { user: reader, password: reader-secret, permissions: {
          publish: { allow: [
            "$JS.API.INFO",
            "$JS.API.STREAM.INFO.AETHER_EVENTS_perm",
            "$JS.API.STREAM.INFO.AETHER_SNAPSHOTS_perm",
            "$JS.API.DIRECT.GET.AETHER_EVENTS_perm",
            "$JS.API.DIRECT.GET.AETHER_EVENTS_perm.>",
            "$JS.API.DIRECT.GET.AETHER_SNAPSHOTS_perm.>",
            "$JS.API.STREAM.MSG.GET.AETHER_EVENTS_perm",
            "$JS.API.STREAM.MSG.GET.AETHER_SNAPSHOTS_perm",
            "$JS.API.CONSUMER.CREATE.AETHER_EVENTS_perm.>",
            "$JS.API.CONSUMER.MSG.NEXT.AETHER_EVENTS_perm.>",
            "$JS.API.CONSUMER.DELETE.AETHER_EVENTS_perm.>"
          ] }
          subscribe: { allow: ["_INBOX.>"] }
      } }
    ]
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_aether_user_can_publish_on_event_subjects() {
    let server = NatsServer::builder().config(ACCOUNTS).start().await;
    let writer_client = connect_options()
        .user_and_password("aether".into(), "aether-secret".into())
        .connect(server.url().as_str())
        .await
        .expect("the aether user connects");
    let (violations_tx, mut violations) = tokio::sync::mpsc::unbounded_channel();
    let reader_client = connect_options()
        .user_and_password("reader".into(), "reader-secret".into())
        .event_callback(move |event| {
            let violations_tx = violations_tx.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(m)) = event
                    && m.to_ascii_lowercase().contains("permissions violation")
                {
                    let _ = violations_tx.send(m);
                }
            }
        })
        .connect(server.url().as_str())
        .await
        .expect("the reader connects");

    let ns = Namespace::new("perm").unwrap();
    let writer = JetStreamEventStore::builder(writer_client.clone())
        .namespace(ns.clone())
        .open()
        .await
        .expect("the aether user creates the streams");
    let a = ActorId::new("account-1").unwrap();
    let events: Vec<_> = (1..=3).map(|v| test_event(&a, v, "ok")).collect();
    writer
        .append(&a, Version::ZERO, events.clone())
        .await
        .expect("the aether user writes");

    // The reader reads through the store (streams validated, not created).
    let reader = JetStreamEventStore::builder(reader_client.clone())
        .namespace(ns)
        .create_streams(false)
        .timeout(Duration::from_secs(1))
        .open()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the reader opens the store read-only: {e:?}; violations: {:?}",
                std::iter::from_fn(|| violations.try_recv().ok()).collect::<Vec<_>>()
            )
        });
    assert_eq!(reader.get_events(&a, Version::ZERO).await.unwrap(), events);
    assert_eq!(reader.get_latest_version(&a).await.unwrap().get(), 3);

    // A raw publish by the reader on the events subject is refused.
    let subject = writer.event_subject(&a);
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(reader_client.clone());
    let published = match js
        .publish(subject.clone(), b"forged by the reader".as_ref().into())
        .await
    {
        Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(
        published.is_err(),
        "the server must not acknowledge it: {published:?}"
    );
    let violation = tokio::time::timeout(Duration::from_secs(5), violations.recv())
        .await
        .expect("the server reports the violation")
        .expect("a violation message");
    assert!(violation.contains(&subject), "{violation}");

    // So does an append through the store (the server drops the publish; the
    // store sees no acknowledgement).
    match reader.save_event(test_event(&a, 4, "reader")).await {
        Err(StoreError::Timeout(_)) => {}
        other => panic!("the reader's append must not succeed, got {other:?}"),
    }

    // Independently (the aether user's raw reader): only the three events.
    let stored = wait_for(Duration::from_secs(5), "a raw read", async || {
        Ok::<_, ()>(
            common::raw_messages(&writer_client, writer.events_stream_name(), &subject).await,
        )
    })
    .await;
    assert_eq!(
        stored
            .iter()
            .map(|m| (m.version, m.event_id().map(str::to_owned)))
            .collect::<Vec<_>>(),
        events
            .iter()
            .map(|e| (Some(e.version.get()), Some(e.id.to_string())))
            .collect::<Vec<_>>()
    );
    writer
        .save_event(test_event(&a, 4, "aether"))
        .await
        .expect("the aether user still writes");
}
