//! A create whose answer was lost: written down so the next attempt looks before it creates.

use super::{Worker, CREATE_IN_DOUBT};
use crate::scim::DesiredUser;
use crate::state::{ProcessedEvent, UserKey, UserState};

/// Where a create whose answer is lost gets written down (see `remember_create_in_doubt`).
pub(super) struct Doubt<'a> {
    pub key: &'a UserKey,
    pub recorded: Option<&'a UserState>,
    pub processed: &'a ProcessedEvent,
}

impl Worker {
    /// Records a create whose outcome is unknown: no SCIM id, but the userName and `active`, so
    /// the planner looks the account up before anything else (best effort: the retry does the
    /// same look-up when the user is still there).
    pub(super) async fn remember_create_in_doubt(&self, doubt: &Doubt<'_>, user: &DesiredUser) {
        let Doubt {
            key,
            recorded,
            processed,
        } = *doubt;
        if recorded.is_some_and(|r| r.scim_id.is_some()) {
            return;
        }
        let state = UserState {
            scim_id: None,
            user_name: user.user_name.clone(),
            attributes: Default::default(),
            attributes_hash: String::new(),
            active: true,
            lifecycle: CREATE_IN_DOUBT.into(),
            invite: None,
            groups: Default::default(),
            groups_pending: Default::default(),
            version: UserState::version_after(recorded),
            last_event_at: recorded.and_then(|r| r.last_event_at),
            updated_at: self.clock.now(),
        };
        let marker = ProcessedEvent {
            key: format!("{}#create-in-doubt", processed.key),
            expires_at: processed.expires_at,
        };
        let expected = recorded.map(|r| r.version);
        if let Err(e) = self
            .store
            .commit(key, Some(&state), expected, &marker)
            .await
        {
            tracing::warn!(user = %key.user_id, "create in doubt not recorded: {e}");
        }
    }
}
