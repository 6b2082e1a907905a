//! Invitations on the target: Datadog mails one when SCIM creates a user, and its link dies
//! after 48 hours. The sweeper asks whether the user is still pending and sends a new one.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::ScimError;

/// What the target says of an invited user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetUserStatus {
    /// Invited, never signed in; `user_id` is the target's id for re-sending.
    Pending { user_id: String },
    /// Signed in: the invitation was accepted.
    Active,
    /// Disabled on the target (deprovisioned since).
    Disabled,
    /// The target has no such user.
    Missing,
}

#[async_trait]
pub trait InvitationApi: Send + Sync {
    async fn status(&self, user_name: &str) -> Result<TargetUserStatus, ScimError>;

    /// Sends a new invitation; returns the new link's expiry when the target gives it.
    async fn resend(&self, user_id: &str) -> Result<Option<DateTime<Utc>>, ScimError>;
}
