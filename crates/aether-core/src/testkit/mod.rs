//! Test kits (feature `testkit`): the backend [`conformance`] suite every
//! store runs unchanged, the [`feed`] suite every store with an
//! [`crate::EventFeed`] runs, and the given/when/then [`AggregateTest`] for users'
//! aggregate tests.

pub mod conformance;
pub mod feed;
mod given;

pub use conformance::{ForeignRecord, StoreFactory};
pub use given::{AggregateTest, Then};
