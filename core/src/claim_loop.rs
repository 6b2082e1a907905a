//! The pull side of the one consumer, for queues a worker claims from (SQLite, memory): claim
//! the next message a user is not already being worked on for, consume it, and wait while the
//! credential breaker is open. Several loops on one queue work different users at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::consumer::{ClaimQueue, Consumed, Consumer};

/// How a claim loop waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimTiming {
    /// How long a claimed message is this loop's alone: a loop that dies mid-work gives it up
    /// when this runs out. Longer than any one message's work.
    pub lease: Duration,
    /// How often an idle loop looks for delayed messages that became visible.
    pub idle_poll: Duration,
}

/// Runs until `stopped` turns true; `on_consumed` sees every message's result (counters,
/// health).
pub async fn run(
    consumer: Arc<Consumer>,
    queue: Arc<dyn ClaimQueue>,
    timing: ClaimTiming,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
    on_consumed: impl Fn(&Consumed) + Send + Sync,
) {
    loop {
        if *stopped.borrow() {
            return;
        }
        if let Some(until) = consumer.paused_until().await {
            // Every message would be refused the same way: wait for the breaker, then the
            // next message is the probe.
            let wait = (until - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
                .min(consumer.policy().credential_pause)
                .max(timing.idle_poll);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        match queue.claim(chrono::Utc::now(), timing.lease).await {
            Ok(Some(delivery)) => {
                let consumed = consumer.consume(queue.as_ref(), &delivery).await;
                if consumed.settled.is_err() {
                    // The message stays claimed and comes back when its lease runs out.
                    tokio::time::sleep(timing.idle_poll).await;
                }
                on_consumed(&consumed);
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(timing.idle_poll) => {}
                    _ = stopped.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!("cannot read the queue: {e}");
                tokio::time::sleep(timing.idle_poll).await;
            }
        }
    }
}
