use std::fmt::Debug;

use crate::aggregate::Aggregate;

/// A given/when/then test of an aggregate's decisions, without any store.
///
/// ```
/// # use aether_core::{Aggregate, DomainEvent};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Default, Serialize, Deserialize)] struct Counter { value: u64 }
/// # #[derive(Serialize, Deserialize)] enum Cmd { Add(u64) }
/// # #[derive(Debug, PartialEq, Serialize, Deserialize)] enum Ev { Added(u64) }
/// # impl DomainEvent for Ev { fn event_type(&self) -> &'static str { "Added" } }
/// # #[derive(Debug, PartialEq, thiserror::Error, Serialize, Deserialize)] #[error("overflow")] struct Overflow;
/// # impl Aggregate for Counter {
/// #     type Command = Cmd; type Event = Ev; type Error = Overflow; const KIND: &'static str = "counter";
/// #     fn handle(&self, c: Cmd) -> Result<Vec<Ev>, Overflow> {
/// #         match c { Cmd::Add(n) => { self.value.checked_add(n).ok_or(Overflow)?; Ok(vec![Ev::Added(n)]) } }
/// #     }
/// #     fn apply(&mut self, e: &Ev) { match e { Ev::Added(n) => self.value += n } }
/// # }
/// use aether_core::testkit::AggregateTest;
///
/// AggregateTest::<Counter>::given([Ev::Added(2)])
///     .when(Cmd::Add(3))
///     .then_expect_events([Ev::Added(3)])
///     .then_state(|c| assert_eq!(c.value, 5));
///
/// AggregateTest::<Counter>::given([Ev::Added(u64::MAX)])
///     .when(Cmd::Add(1))
///     .then_expect_error(Overflow);
/// ```
pub struct AggregateTest<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> AggregateTest<A> {
    /// Starts from the state these events fold into.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for e in events {
            state.apply(&e);
        }
        AggregateTest { state }
    }

    /// Starts from the default (empty) state.
    pub fn given_no_previous_events() -> Self {
        AggregateTest {
            state: A::default(),
        }
    }

    /// Runs `command` against the given state.
    pub fn when(self, command: A::Command) -> Then<A> {
        let result = self.state.handle(command);
        Then {
            state: self.state,
            result,
        }
    }
}

/// The outcome of [`AggregateTest::when`], to assert on.
pub struct Then<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A> {
    /// Asserts that the command produced exactly these events, in order.
    ///
    /// # Panics
    /// If the command failed or produced other events.
    #[track_caller]
    pub fn then_expect_events(self, expected: impl IntoIterator<Item = A::Event>) -> Self
    where
        A::Event: PartialEq + Debug,
        A::Error: Debug,
    {
        let expected: Vec<_> = expected.into_iter().collect();
        match &self.result {
            Ok(events) => assert_eq!(
                events, &expected,
                "the command produced other events than expected"
            ),
            Err(e) => panic!("expected events {expected:?}, but the command failed: {e:?}"),
        }
        self
    }

    /// Asserts that the command failed with exactly `expected`.
    ///
    /// # Panics
    /// If the command succeeded or failed differently.
    #[track_caller]
    pub fn then_expect_error(self, expected: A::Error) -> Self
    where
        A::Event: Debug,
        A::Error: PartialEq + Debug,
    {
        match &self.result {
            Ok(events) => {
                panic!("expected error {expected:?}, but the command produced {events:?}")
            }
            Err(e) => assert_eq!(e, &expected, "the command failed with another error"),
        }
        self
    }

    /// Asserts that the command failed with an error whose message is `message`.
    ///
    /// # Panics
    /// If the command succeeded or the message differs.
    #[track_caller]
    pub fn then_expect_error_message(self, message: &str) -> Self
    where
        A::Event: Debug,
    {
        match &self.result {
            Ok(events) => panic!("expected error {message:?}, but the command produced {events:?}"),
            Err(e) => assert_eq!(e.to_string(), message),
        }
        self
    }

    /// Checks the state after the produced events are applied (the given state
    /// if the command failed). Ends the test.
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&A)) {
        let mut state = self.state;
        if let Ok(events) = &self.result {
            for e in events {
                state.apply(e);
            }
        }
        check(&state);
    }

    /// The raw result, for custom assertions.
    pub fn into_result(self) -> Result<Vec<A::Event>, A::Error> {
        self.result
    }
}
