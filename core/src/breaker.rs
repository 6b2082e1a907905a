//! The target-credential breaker: one per deployment, shared by every worker and the sweeper.
//! A 401/403 from the target (to a worker's call or to the sweeper's probe) opens it; while it
//! is open no worker consumes, so an outage of the credential is waited out on the queue
//! instead of burning every message's retries. It closes by itself when its time runs out: the
//! next message is the probe.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::state::StoreError;

#[async_trait]
pub trait CredentialBreaker: Send + Sync {
    /// When the breaker closes again, if it is open at `now`.
    async fn open_until(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Opens the breaker until `until` (the last writer wins: every writer saw the same 401).
    async fn open(&self, until: DateTime<Utc>) -> Result<(), StoreError>;
}
