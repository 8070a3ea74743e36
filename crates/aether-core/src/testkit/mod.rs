//! Test kits (feature `testkit`): the backend [`conformance`] suite every
//! store runs unchanged, the [`feed`] suite every store with an
//! [`crate::EventFeed`] runs, the given/when/then [`AggregateTest`] for users'
//! aggregate tests, and a [`metrics::Recorded`] recorder for metric assertions.

pub mod conformance;
pub mod feed;
mod given;
pub mod metrics;

pub use conformance::{ForeignRecord, StoreFactory};
pub use given::{AggregateTest, Then};
