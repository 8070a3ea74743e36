//! Aggregate `Order` of context `Ordering`, generated from the EventStorming model "Order fulfilment".
//!
//! A starting point: fill in the state and the `todo!()`s.

use serde::{Deserialize, Serialize};

/// State of the `Order` aggregate, folded from its events.
///
/// One customer order, from placement to completion or cancellation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderState {}

/// Commands handled by `Order`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderCommand {
    /// A customer places an order for some products.
    PlaceOrder {
        order_id: String,
        customer_id: String,
        /// Product SKU and quantity.
        lines: Vec<(String, u32)>,
    },
    ConfirmOrder,
    CancelOrder {
        reason: String,
    },
    CompleteOrder,
}

/// Events emitted by `Order`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced {
        order_id: String,
        customer_id: String,
        lines: Vec<(String, u32)>,
    },
    /// Stock is reserved and payment captured.
    OrderConfirmed,
    OrderCancelled {
        reason: String,
    },
    OrderCompleted,
}

impl OrderEvent {
    /// The event type name, as in the model.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::OrderConfirmed => "OrderConfirmed",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderCompleted => "OrderCompleted",
        }
    }
}

impl OrderState {
    /// Decides which events a command leads to. Pure: no I/O.
    pub fn handle(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, String> {
        match command {
            OrderCommand::PlaceOrder { .. } => {
                // May emit: OrderEvent::OrderPlaced.
                todo!("handle PlaceOrder")
            }
            OrderCommand::ConfirmOrder => {
                // May emit: OrderEvent::OrderConfirmed.
                todo!("handle ConfirmOrder")
            }
            OrderCommand::CancelOrder { .. } => {
                // May emit: OrderEvent::OrderCancelled.
                todo!("handle CancelOrder")
            }
            OrderCommand::CompleteOrder => {
                // May emit: OrderEvent::OrderCompleted.
                todo!("handle CompleteOrder")
            }
        }
    }

    /// Folds one event into the state.
    pub fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced { .. } => todo!("apply OrderPlaced"),
            OrderEvent::OrderConfirmed => todo!("apply OrderConfirmed"),
            OrderEvent::OrderCancelled { .. } => todo!("apply OrderCancelled"),
            OrderEvent::OrderCompleted => todo!("apply OrderCompleted"),
        }
    }
}
