//! The durable queue between ingress and worker: the port whole — sending (`Queue`), watching
//! (`QueueMonitor`), and taking delivery (`WorkQueue`, and `ClaimQueue` for a queue a worker
//! pulls from). Its adapters: `aws::sqs_queue`, `sqlite::queue`, `memory::queue`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

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

/// One message as the queue handed it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue's id for the message (SQS message id, SQLite row id).
    pub id: String,
    /// The FIFO group (source/tenant/user): dead letters keep it.
    pub group_id: String,
    pub body: String,
    /// Which attempt this is, from 1 (SQS: the receive count).
    pub attempt: u32,
    /// What the queue needs to act on this delivery (SQS receipt handle, a claim token).
    pub handle: String,
}

/// The delivery side of the work queue: what becomes of a message once it was worked.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    /// Finished with: removed from the queue.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Visible again at `at`. `counted`: whether this was an attempt of the message's own (a
    /// rejected credential or a hold-back is not).
    async fn retry_at(
        &self,
        delivery: &Delivery,
        at: DateTime<Utc>,
        reason: &str,
        counted: bool,
    ) -> Result<(), QueueError>;

    /// Moved to the dead-letter queue with its reason; an `Ok` means it is there and gone from
    /// the work queue (or will be once the batch is reported).
    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError>;
}

/// A queue a worker pulls from (SQLite, memory): the next visible message that is first in its
/// group, held by the caller for `lease`.
#[async_trait]
pub trait ClaimQueue: WorkQueue {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Delivery>, QueueError>;

    /// Extends a claim the worker still holds to `now + lease`; false when it holds it no
    /// more (settled, or claimed again after it lapsed).
    async fn renew(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, QueueError>;
}
