//! Test kits (feature `testkit`): the backend [`conformance`] suite every
//! store runs unchanged, and the given/when/then [`AggregateTest`] for users'
//! aggregate tests.

pub mod conformance;
mod given;

pub use conformance::{ForeignRecord, StoreFactory};
pub use given::{AggregateTest, Then};
