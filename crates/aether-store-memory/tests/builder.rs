//! The constructor convention: `new()` = the default namespace,
//! `builder()…build()` = settings, `with_namespace` = same data, other
//! namespace.

use aether_core::{
    ActorId, Event, EventStore, EventStoreExt, Namespace, StoreError, TrustPolicy, Version,
};
use aether_store_memory::InMemoryEventStore;

fn event(actor: &ActorId, version: u64, payload: &str) -> Event {
    Event::new(actor.clone(), Version::new(version), "Noted", &payload).unwrap()
}

#[tokio::test]
async fn new_is_the_default_namespace_with_default_settings() {
    let store = InMemoryEventStore::new();
    assert_eq!(store.namespace(), &Namespace::default());
    assert_eq!(store.policy(), TrustPolicy::default());
    assert_eq!(
        store.event_size_limit(),
        InMemoryEventStore::DEFAULT_MAX_EVENT_SIZE
    );
}

#[tokio::test]
async fn the_builder_sets_namespace_policy_and_size_limit() {
    let bank = Namespace::new("bank").unwrap();
    let store = InMemoryEventStore::builder()
        .namespace(bank.clone())
        .trust_policy(TrustPolicy::Strict)
        .max_event_size(400)
        .build();
    assert_eq!(store.namespace(), &bank);
    assert_eq!(store.policy(), TrustPolicy::Strict);
    let a = ActorId::new("a").unwrap();
    store.save_event(event(&a, 1, "small")).await.unwrap();
    let refused = store.save_event(event(&a, 2, &"x".repeat(1000))).await;
    assert!(matches!(
        refused,
        Err(StoreError::TooLarge { max: 400, .. })
    ));
    assert_eq!(store.get_latest_version(&a).await.unwrap(), Version::FIRST);
    // Two builds are two backends.
    let other = InMemoryEventStore::builder().namespace(bank).build();
    assert_eq!(other.get_latest_version(&a).await.unwrap(), Version::ZERO);
}

#[tokio::test]
async fn with_namespace_shares_the_backend_and_keeps_the_settings() {
    let store = InMemoryEventStore::builder()
        .namespace(Namespace::new("bank").unwrap())
        .trust_policy(TrustPolicy::Strict)
        .max_event_size(1000)
        .build();
    let audit = store.with_namespace(Namespace::new("bank.audit").unwrap());
    assert_eq!(audit.policy(), TrustPolicy::Strict);
    assert_eq!(audit.event_size_limit(), 1000);
    let a = ActorId::new("a").unwrap();
    audit.save_event(event(&a, 1, "audited")).await.unwrap();
    assert_eq!(store.get_latest_version(&a).await.unwrap(), Version::ZERO);
    // A second handle on the same namespace sees what the first wrote.
    let again = store.with_namespace(Namespace::new("bank.audit").unwrap());
    assert_eq!(again.get_latest_version(&a).await.unwrap(), Version::FIRST);
}
