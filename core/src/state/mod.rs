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

    /// The key back from [`UserKey::storage_id`] (tenants are hosts or GUIDs, without `#`).
    pub fn from_storage_id(id: &str) -> Option<Self> {
        let mut parts = id.splitn(3, '#');
        let source = match parts.next()? {
            "okta" => Source::Okta,
            "entra" => Source::Entra,
            _ => return None,
        };
        Some(Self {
            source,
            tenant: parts.next()?.to_string(),
            user_id: parts.next()?.to_string(),
        })
    }
}

/// An invitation on the target (Datadog mails one on create; its link dies after 48 h).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteState {
    /// When the last invitation was sent.
    pub sent_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Invitations sent in all (the one on create included).
    pub count: u32,
    /// `None` while the user has not signed in: only then is the invitation in the sweeper's
    /// index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<InviteOutcome>,
}

/// How an invitation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InviteOutcome {
    /// The user signed in (the target shows them active).
    Accepted { at: DateTime<Utc> },
    /// Every allowed invitation expired unaccepted; reported, not re-sent any more.
    Unaccepted { at: DateTime<Utc> },
    /// The target no longer has a pending user (disabled, deleted): nothing to chase.
    Withdrawn { at: DateTime<Utc> },
}

impl InviteState {
    /// When the sweeper should look at this invitation again, if ever.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        self.outcome.is_none().then_some(self.expires_at)
    }
}

/// Invitations as an operator counts them (`scim-relay status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct InvitationCounts {
    /// Sent and not accepted yet: the sweeper still chases them.
    pub pending: u64,
    /// Of those, past their expiry: the sweeper's next run re-sends them or gives up.
    pub past_expiry: u64,
    /// Every allowed invitation expired unaccepted: reported, not re-sent.
    pub unaccepted: u64,
}

impl InvitationCounts {
    /// Counts one user's invitation as it stands at `now`.
    pub fn count(&mut self, invite: &InviteState, now: DateTime<Utc>) {
        match invite.outcome {
            None => {
                self.pending += 1;
                self.past_expiry += u64::from(invite.expires_at <= now);
            }
            Some(InviteOutcome::Unaccepted { .. }) => self.unaccepted += 1,
            Some(InviteOutcome::Accepted { .. } | InviteOutcome::Withdrawn { .. }) => {}
        }
    }
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
    /// Memberships being added: recorded before the call, so a worker that dies mid-way leaves
    /// a trace, and the next one adds or removes them again (both are idempotent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups_pending: BTreeMap<String, String>,
    /// When a directory read first found the user deleted for good, while the `delete` policy
    /// waits for a second read to confirm it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_delete_seen: Option<DateTime<Utc>>,
    /// A deactivation or delete the deprovisioning breaker held, and the operator's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::deprovision::Hold>,
    /// Incremented on every write; writes are conditional on the previous value.
    pub version: u64,
    #[serde(default)]
    pub last_event_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl UserState {
    /// The version of the write that follows `previous` (`None`: the user's first write). Every
    /// write is conditional on the version it was planned from, so this is the one place the
    /// version moves.
    pub fn version_after(previous: Option<&UserState>) -> u64 {
        previous.map_or(1, |p| p.version + 1)
    }

    /// This state as the write that follows it, made at `now`; the caller changes the rest.
    pub fn successor(&self, now: DateTime<Utc>) -> UserState {
        UserState {
            version: Self::version_after(Some(self)),
            updated_at: now,
            ..self.clone()
        }
    }
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
    /// The target account is claimed by another IdP user's record: the relay never acts on
    /// an account someone else owns.
    #[error("target account {scim_id} belongs to another IdP user ({owner}); the relay leaves it alone. Resolve the duplicate in the IdP (two users with one userName?)")]
    Claimed { scim_id: String, owner: String },
    #[error("state store: {0}")]
    Backend(String),
}

/// What the sweeper keeps besides user state: invitations due, and named cursors (directory
/// change positions, Graph subscriptions).
#[async_trait]
pub trait SweepStore: StateStore {
    /// Users whose pending invitation expires at or before `now`, soonest first (from a sparse
    /// index, never a scan), at most `limit`.
    async fn invites_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(UserKey, UserState)>, StoreError>;

    async fn load_cursor(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// How many accounts the relay keeps active (the deprovisioning breaker's share is of them;
    /// a scan, once a sweep).
    async fn active_account_count(&self) -> Result<u64, StoreError>;

    /// Every user whose record carries a held deprovision (operators list them; a scan).
    async fn held_users(&self) -> Result<Vec<(UserKey, UserState)>, StoreError>;

    /// The userName of every user the relay has a record of, lowercased (the drift report's
    /// "known" side; read rarely, so a scan is acceptable).
    async fn known_user_names(&self) -> Result<std::collections::HashSet<String>, StoreError>;

    /// The ids of `source`/`tenant` users whose account the relay last left active: a full
    /// directory pass checks each is still listed (a scan; full passes are rare).
    async fn active_user_ids(
        &self,
        source: crate::envelope::Source,
        tenant: &str,
    ) -> Result<Vec<String>, StoreError>;

    async fn save_cursor(&self, name: &str, value: &str) -> Result<(), StoreError>;

    /// Invitations pending (and of those, past expiry at `now`) and given up on (an operator's
    /// figure; a scan).
    async fn invitation_counts(&self, now: DateTime<Utc>) -> Result<InvitationCounts, StoreError>;
}

#[async_trait]
pub trait StateStore: Send + Sync {
    /// The target's id for the SCIM group mirroring `name`, once recorded.
    async fn group_id(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Records `name` → `id` unless an id is recorded already; returns the recorded one. Two
    /// workers that each created the group learn which one stays.
    async fn record_group(&self, name: &str, id: &str) -> Result<String, StoreError>;

    /// Forgets `name` → `id` (the group was deleted on the target), if that is what is recorded.
    async fn forget_group(&self, name: &str, id: &str) -> Result<(), StoreError>;

    async fn load_user(&self, key: &UserKey) -> Result<Option<UserState>, StoreError>;

    /// True if this event was applied and its dedupe record has not expired at `now`.
    async fn event_seen(&self, event_key: &str, now: DateTime<Utc>) -> Result<bool, StoreError>;

    /// A small named document (the deprovisioning ledger) and its version.
    async fn load_document(&self, name: &str) -> Result<Option<(String, u64)>, StoreError>;

    /// Writes document `name` if its stored version is still `expected` (`None`: no document
    /// yet), as the next version; [`StoreError::Conflict`] if someone wrote it since.
    async fn save_document(
        &self,
        name: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<(), StoreError>;

    /// The user whose record claims target account `scim_id` (every record written with a
    /// SCIM id claims it), if any.
    async fn claimant(&self, scim_id: &str) -> Result<Option<UserKey>, StoreError>;

    /// Gives up `key`'s claim on target account `scim_id`, if it is `key`'s (a claim written
    /// ahead of a SCIM write that then failed). Another user's claim is left as it is.
    async fn release_claim(&self, scim_id: &str, key: &UserKey) -> Result<(), StoreError>;

    /// Appends a finished trigger to the user's history, kept until `expires_at`, and files
    /// the user under `fingerprint` (their userName's keyed fingerprint) as long. Separate from
    /// the commit: history tells what happened, it never decides anything.
    async fn record_history(
        &self,
        key: &UserKey,
        fingerprint: Option<&str>,
        entry: &crate::history::HistoryEntry,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The user's history not expired at `now`, newest first, at most `limit` entries.
    async fn history(
        &self,
        key: &UserKey,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::history::HistoryEntry>, StoreError>;

    /// The users filed under `fingerprint` whose filing has not expired at `now`.
    async fn users_by_fingerprint(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserKey>, StoreError>;

    /// Atomically: writes `state` (when given) if the stored version is still `expected_version`
    /// (`None`: no record yet), claims its SCIM id unless another user's record has
    /// ([`StoreError::Claimed`]), and records the event as processed.
    async fn commit(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
    ) -> Result<(), StoreError>;
}
