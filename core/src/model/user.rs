//! Who a user is to the relay, and what it remembers of them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Hold;

/// Which IdP a user (or an event) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Okta,
    Entra,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Okta => "okta",
            Source::Entra => "entra",
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// The last state the worker applied to the target for one user. `Default` is no account, no
/// memberships, nothing held: what a test's record leaves out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// The name each mirrored group had when last applied (IdP group id → name): a different
    /// name from the directory is a rename of the target group, never a second group.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_names: BTreeMap<String, String>,
    /// When a directory read first found the user deleted for good, while the `delete` policy
    /// waits for a second read to confirm it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_delete_seen: Option<DateTime<Utc>>,
    /// What a breaker held (a deactivation or delete, or removals from groups), and the
    /// operator's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
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
