//! Noticing a lost connection while a request waits.

use std::time::Duration;

use async_nats::Client;

/// Watches the client's connection state (async-nats offers no
/// notification to a library that did not build the client) and counts the
/// transitions from connected to anything else.
pub(crate) struct ConnectionWatch {
    losses: tokio::sync::watch::Receiver<u64>,
}

/// How often the connection state is sampled: the delay before an append
/// in flight on a lost connection fails.
const CONNECTION_POLL: Duration = Duration::from_millis(20);

impl ConnectionWatch {
    /// Starts the watcher task; it ends when the store (every receiver) is gone.
    pub(crate) fn spawn(client: Client) -> Self {
        use async_nats::connection::State;
        let (tx, losses) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            let mut was_connected = client.connection_state() == State::Connected;
            let mut tick = tokio::time::interval(CONNECTION_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                if tx.is_closed() {
                    break;
                }
                let connected = client.connection_state() == State::Connected;
                if was_connected && !connected {
                    tx.send_modify(|n| *n += 1);
                }
                was_connected = connected;
            }
        });
        ConnectionWatch { losses }
    }

    /// Resolves when the connection is lost after this call (never, if it
    /// was not connected at the call: a request sent then waits in the
    /// client's buffer for the reconnect).
    pub(crate) fn lost(&self, client: &Client) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.losses.clone();
        rx.mark_unchanged();
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        async move {
            if connected && rx.changed().await.is_ok() {
                return;
            }
            std::future::pending::<()>().await;
        }
    }
}
