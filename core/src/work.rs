//! What one unit of work ends in, shared by everything that does work (the worker, the
//! sweeper's tenant events) and everything that disposes of it (the consumer). It sits below
//! both, so neither imports the other for it.

use std::time::Duration;

use async_trait::async_trait;

use crate::directory::DirectoryError;
pub use crate::model::Outcome;
use crate::model::Trigger;
use crate::scim::{ScimError, ScimFailure};
use crate::state::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkError {
    /// Try again later (the queue's retry), after `retry_after` when the target said so.
    #[error("retryable: {reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Can never succeed as it is: park it in the dead-letter queue with this reason.
    #[error("permanent: {0}")]
    Permanent(String),
    /// The account found for the user is not the relay's to act on (another IdP user's record
    /// claims it, its externalId names someone else, or one userName names several accounts):
    /// permanent like [`WorkError::Permanent`], and what `plan` reports as a conflict.
    #[error("permanent: {0}")]
    NotOurs(String),
    /// The target rejected its credential (401/403). Every message would fail the same way:
    /// stop consuming, keep the messages queued, alarm. Never dead-letter for this.
    #[error("target credential rejected: {0}")]
    CredentialRejected(String),
    /// The directory (Okta, Graph) is unavailable (timeouts, 5xx, 429): retried with backoff
    /// like any retryable failure, but never dead-lettered for it: an IdP outage is waited
    /// out, however long, and the message is not at fault.
    #[error("directory unavailable: {0}")]
    DirectoryUnavailable(String),
    /// The directory's rate limit asks the relay to wait `wait`: the message comes back then,
    /// never dead-lettered for it (the relay's budget, not the message, is at fault).
    #[error("directory rate limit: {reason}")]
    DirectoryThrottled { reason: String, wait: Duration },
    /// The directory (Okta, Graph) refused the relay's credential: the same pause as the
    /// target's, never a dead letter.
    #[error("directory credential rejected: {0}")]
    DirectoryRefused(String),
    /// The message names a queue key this worker does not hold (yet): a rotation reached the
    /// inbound first. The worker re-reads its secrets and the message is tried again shortly;
    /// only a key still unknown after `key_attempts` makes it a dead letter (a forgery).
    #[error("queue key not held: {0}")]
    KeyNotHeld(String),
}

impl WorkError {
    pub(crate) fn retry(reason: impl Into<String>) -> Self {
        WorkError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl From<StoreError> for WorkError {
    fn from(e: StoreError) -> Self {
        match e {
            // Waiting changes nothing: an operator must see it.
            StoreError::Claimed { .. } => WorkError::NotOurs(e.to_string()),
            _ => WorkError::retry(e.to_string()),
        }
    }
}

impl From<DirectoryError> for WorkError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Retryable(r) => WorkError::DirectoryUnavailable(r),
            DirectoryError::Permanent(r) => WorkError::Permanent(r),
            DirectoryError::Refused(r) => WorkError::DirectoryRefused(r),
            DirectoryError::Throttled { reason, wait } => {
                WorkError::DirectoryThrottled { reason, wait }
            }
        }
    }
}

impl From<ScimError> for WorkError {
    fn from(e: ScimError) -> Self {
        match e.failure {
            ScimFailure::Permanent | ScimFailure::NotFound => WorkError::Permanent(e.to_string()),
            ScimFailure::Ambiguous => WorkError::NotOurs(e.to_string()),
            ScimFailure::Credential => WorkError::CredentialRejected(e.to_string()),
            // A create's 409 is handled (look up and adopt) before it gets here; a 409 on
            // anything else (a userName taken by another account) cannot heal by itself.
            ScimFailure::Conflict => WorkError::Permanent(e.to_string()),
            ScimFailure::Retryable => WorkError::Retryable {
                reason: e.to_string(),
                retry_after: e.retry_after,
            },
        }
    }
}

/// Handles tenant-level triggers (Graph subscription lifecycle, group changes): the worker
/// hands them to whoever owns subscriptions and catch-ups (the sweeper).
#[async_trait]
pub trait TenantEventHandler: Send + Sync {
    /// Acts on one such trigger; returns what was done, for the log.
    async fn on_tenant_event(&self, trigger: &Trigger) -> Result<String, WorkError>;
}
