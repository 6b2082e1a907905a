//! The durable queue between ingress and worker.

#[cfg(feature = "aws")]
pub mod sqs;

use async_trait::async_trait;

pub use crate::envelope::QueueMessage;

#[derive(Debug, thiserror::Error)]
#[error("queue: {0}")]
pub struct QueueError(pub String);

/// Where ingress puts verified triggers. `enqueue` returns only once every message is durably
/// stored; an error means the caller must make the IdP retry.
#[async_trait]
pub trait Queue: Send + Sync {
    async fn enqueue(&self, messages: &[QueueMessage]) -> Result<(), QueueError>;
}

/// A work queue as an operator reads it (`scim-relay status`): how much waits, and for how
/// long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueFigures {
    /// Messages on the queue, in whatever state.
    pub messages: u64,
    /// Of those, visible: ready to be worked (on FIFO, possibly behind an earlier message of
    /// the same user).
    pub visible: u64,
    /// Being worked, or hidden until their retry is due.
    pub not_visible: u64,
    /// Sent with a delay that has not run out (SQS only; the relay itself sends none).
    pub delayed: Option<u64>,
    /// How long the oldest message has waited; `None` where the queue cannot tell without
    /// receiving it (SQS: its `ApproximateAgeOfOldestMessage` metric has it).
    pub oldest_age_seconds: Option<u64>,
}

/// The dead letters as an operator reads them: how many, and the reasons of those read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterReasons {
    /// Dead letters on the queue (SQS: approximate).
    pub total: u64,
    /// The reason of each dead letter read, oldest first where the queue keeps an order; at
    /// most the limit asked for. A message SQS itself moved after `maxReceiveCount` has none.
    pub reasons: Vec<Option<String>>,
}

/// Read-only figures of a deployment's work queue and dead letters. Never takes work from the
/// queue: on SQS a receive would count as an attempt.
#[async_trait]
pub trait QueueMonitor: Send + Sync {
    async fn figures(&self, now: chrono::DateTime<chrono::Utc>)
        -> Result<QueueFigures, QueueError>;

    /// The dead letters' count and the reasons of at most `limit` of them; they stay where
    /// they are, as visible as before.
    async fn dead_letters(&self, limit: usize) -> Result<DeadLetterReasons, QueueError>;
}
