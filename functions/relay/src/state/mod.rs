//! What the worker remembers per user, and which events it has already applied.

#[cfg(feature = "dynamodb")]
pub mod dynamodb;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::envelope::{Source, Trigger};

/// Identifies a user across the relay: which IdP, which tenant of it, which user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserKey {
    pub source: Source,
    pub tenant: String,
    pub user_id: String,
}

impl UserKey {
    pub fn storage_id(&self) -> String {
        format!("{}#{}#{}", self.source, self.tenant, self.user_id)
    }
}

/// A pending invitation on the target (Datadog mails one on create; its link dies after 48 h).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteState {
    pub sent_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub count: u32,
}

/// The last state the worker applied to the target for one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    /// The target's id for the user; `None` while the user does not exist there.
    pub scim_id: Option<String>,
    pub user_name: String,
    /// The attributes last applied, by SCIM path (without `active`).
    pub attributes: BTreeMap<String, serde_json::Value>,
    pub attributes_hash: String,
    pub active: bool,
    /// The IdP's status at the last apply (Okta `ACTIVE`, `SUSPENDED`…; Graph `enabled`…).
    pub lifecycle: String,
    #[serde(default)]
    pub invite: Option<InviteState>,
    /// Group memberships applied on the target: IdP group id → SCIM group id.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
    /// Incremented on every write; writes are conditional on the previous value.
    pub version: u64,
    #[serde(default)]
    pub last_event_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A stable digest of an attribute set, to tell "nothing changed" without comparing fields.
pub fn attributes_hash(attributes: &BTreeMap<String, serde_json::Value>) -> String {
    let json = serde_json::to_string(attributes).unwrap_or_default();
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// The dedupe record of one applied trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedEvent {
    pub key: String,
    pub expires_at: DateTime<Utc>,
}

impl ProcessedEvent {
    pub fn of(trigger: &Trigger, expires_at: DateTime<Utc>) -> Self {
        Self {
            key: trigger.dedupe_key(),
            expires_at,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the user since we read it: re-read and re-plan.
    #[error("state of the user changed concurrently")]
    Conflict,
    #[error("state store: {0}")]
    Backend(String),
}

#[async_trait]
pub trait StateStore: Send + Sync {
    async fn load_user(&self, key: &UserKey) -> Result<Option<UserState>, StoreError>;

    /// True if this event was applied and its dedupe record has not expired at `now`.
    async fn event_seen(&self, event_key: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Atomically: writes `state` (when given) if the stored version is still `expected_version`
    /// (`None`: no record yet), and records the event as processed.
    async fn commit(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
    ) -> Result<(), StoreError>;
}
