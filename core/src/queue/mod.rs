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
