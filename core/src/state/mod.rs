//! What the worker remembers per user, and which events it has already applied.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::model::Trigger;
pub use crate::model::{
    attributes_hash, InvitationCounts, InviteOutcome, InviteState, UserKey, UserState,
};

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

/// A finished trigger's history entry, as the worker hands it to the store with its commit.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// The user's userName fingerprint, to file the user under (`None`: not known).
    pub fingerprint: Option<String>,
    pub entry: crate::model::HistoryEntry,
    pub expires_at: DateTime<Utc>,
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

    /// What the worker reads first for a trigger: whether its event was applied and, if not,
    /// the user's record and (when named) a document the trigger will likely need, the
    /// deprovisioning ledger for a deactivation. A store with a round trip per read answers
    /// all in one (DynamoDB: one `BatchGetItem`).
    async fn first_read(
        &self,
        event_key: &str,
        key: &UserKey,
        document: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<FirstRead, StoreError> {
        one_read_after_the_other(self, event_key, key, document, now).await
    }

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
        entry: &crate::model::HistoryEntry,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The user's history not expired at `now`, newest first, at most `limit` entries.
    async fn history(
        &self,
        key: &UserKey,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<crate::model::HistoryEntry>, StoreError>;

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

    /// [`Self::commit`] of a trigger that this commit finishes, with its history entry. A store
    /// with a round trip per write writes the entry in the commit's own transaction (DynamoDB:
    /// one `TransactWriteItems`, not a separate `BatchWriteItem`); by default, the entry follows
    /// the commit, and a failure to record it is logged, never the commit's failure (history
    /// is told, never relied on).
    async fn commit_finished(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
        history: &HistoryRecord,
    ) -> Result<(), StoreError> {
        self.commit(key, state, expected_version, event).await?;
        if let Err(e) = self
            .record_history(
                key,
                history.fingerprint.as_deref(),
                &history.entry,
                history.expires_at,
            )
            .await
        {
            tracing::warn!(user = %key.user_id, "history entry not recorded: {e}");
        }
        Ok(())
    }
}

/// What [`StateStore::first_read`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FirstRead {
    /// The event was applied (nothing else was read).
    pub seen: bool,
    pub user: Option<UserState>,
    /// The document asked for, if asked (`Some(None)`: there is none yet).
    pub document: Option<Option<(String, u64)>>,
}

/// [`StateStore::first_read`] as one read after the other: the dedupe record, then (for an
/// event not applied yet) the user's record and the document.
pub async fn one_read_after_the_other<S: StateStore + ?Sized>(
    store: &S,
    event_key: &str,
    key: &UserKey,
    document: Option<&str>,
    now: DateTime<Utc>,
) -> Result<FirstRead, StoreError> {
    if store.event_seen(event_key, now).await? {
        return Ok(FirstRead {
            seen: true,
            ..FirstRead::default()
        });
    }
    let user = store.load_user(key).await?;
    let document = match document {
        Some(name) => Some(store.load_document(name).await?),
        None => None,
    };
    Ok(FirstRead {
        seen: false,
        user,
        document,
    })
}
