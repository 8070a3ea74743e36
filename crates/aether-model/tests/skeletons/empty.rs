//! Aggregate `Empty` of context `Ctx */ \"x\"`, generated from the EventStorming model "Tricky \"domain\"\nwith a second line".
//!
//! A starting point: fill in the state and the `todo!()`s.

use serde::{Deserialize, Serialize};

/// State of the `Empty` aggregate, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmptyState {}

/// Commands handled by `Empty`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmptyCommand {}

/// Events emitted by `Empty`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EmptyEvent {}

impl EmptyEvent {
    /// The event type name, as in the model.
    pub fn event_type(&self) -> &'static str {
        match *self {}
    }
}

impl EmptyState {
    /// Decides which events a command leads to. Pure: no I/O.
    pub fn handle(&self, command: EmptyCommand) -> Result<Vec<EmptyEvent>, String> {
        match command {}
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &EmptyEvent) {
        match *event {}
    }
}
