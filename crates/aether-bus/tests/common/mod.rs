//! Helpers shared by the bus tests.

use aether_core::{ActorId, Event, Namespace, Version};

pub(crate) fn ns(s: &str) -> Namespace {
    Namespace::new(s).unwrap()
}

pub(crate) fn event(actor: &str, version: u64, ty: &str) -> Event {
    Event::from_raw(
        ActorId::new(actor).unwrap(),
        Version::new(version),
        ty,
        vec![0x90],
    )
}
