//! Aggregate `self` of context `Ctx */ \"x\"`, generated from the EventStorming model "Tricky \"domain\"\nwith a second line".
//!
//! A starting point: fill in the state and the `todo!()`s.

use serde::{Deserialize, Serialize};

/// State of the `self` aggregate, folded from its events.
///
/// Line one.
///
/// Line */ three.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfState {}

/// Commands handled by `self`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SelfCommand {
    /// Quotes "and" brackets [].
    DoItNow {
        r#type: String,
        self_: u8,
        /// Two
        /// lines
        order_id: u64,
        order_id2: Option<u64>,
        r#match: [u8; 4],
    },
    DoItNow2,
    Match,
}

/// Events emitted by `self`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SelfEvent {
    _3ThingsHappened {
        r#async: (u8, String),
    },
    Done,
}

impl SelfEvent {
    /// The event type name, as in the model.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::_3ThingsHappened { .. } => "3 things happened",
            Self::Done => "Done",
        }
    }
}

impl SelfState {
    /// Decides which events a command leads to. Pure: no I/O.
    pub fn handle(&self, command: SelfCommand) -> Result<Vec<SelfEvent>, String> {
        match command {
            SelfCommand::DoItNow { .. } => {
                // May emit: SelfEvent::_3ThingsHappened.
                todo!("handle DoItNow")
            }
            SelfCommand::DoItNow2 => {
                // May emit: SelfEvent::Done.
                todo!("handle DoItNow2")
            }
            SelfCommand::Match => {
                // May emit: SelfEvent::Done.
                todo!("handle Match")
            }
        }
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &SelfEvent) {
        match event {
            SelfEvent::_3ThingsHappened { .. } => todo!("apply _3ThingsHappened"),
            SelfEvent::Done => todo!("apply Done"),
        }
    }
}
