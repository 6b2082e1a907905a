//! A create is written down before it is sent: whatever becomes of it (an answer lost, the
//! process killed between the target acting and the state being recorded), the next attempt
//! finds a create in doubt and looks the account up before anything else. Without it, a crash
//! in that window leaves an account the relay has no record of, which a later deletion in the
//! directory can never reach.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Worker, CREATE_IN_DOUBT};
use crate::scim::DesiredUser;
use crate::state::{ProcessedEvent, StoreError, UserKey, UserState};
use crate::work::WorkError;

/// Where a create gets written down before it is sent.
pub(super) struct Doubt<'a> {
    pub key: &'a UserKey,
    pub recorded: Option<&'a UserState>,
    pub processed: &'a ProcessedEvent,
    /// The version this attempt wrote ahead of its create (0: none), which the attempt's own
    /// commit then follows.
    pub written: AtomicU64,
    /// Whether another worker changed the user's state first: the attempt plans again.
    pub raced: AtomicBool,
}

impl Doubt<'_> {
    /// The version the store holds after this attempt's write-ahead, if it made one.
    pub fn written_version(&self) -> Option<u64> {
        Some(self.written.load(Ordering::SeqCst)).filter(|v| *v > 0)
    }

    pub fn raced(&self) -> bool {
        self.raced.load(Ordering::SeqCst)
    }
}

impl Worker {
    /// Records, before the create is sent, that a create is in doubt: no SCIM id, but the
    /// userName and `active`, so any later attempt looks the account up first. A concurrent
    /// change of the user's state makes this attempt retry instead of creating.
    pub(super) async fn write_create_ahead(
        &self,
        doubt: &Doubt<'_>,
        user: &DesiredUser,
    ) -> Result<(), WorkError> {
        let Doubt {
            key,
            recorded,
            processed,
            ..
        } = doubt;
        let recorded = *recorded;
        if doubt.written_version().is_some() {
            return Ok(());
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
            hard_delete_seen: None,
            held: None,
            version: UserState::version_after(recorded),
            last_event_at: recorded.and_then(|r| r.last_event_at),
            updated_at: self.clock.now(),
        };
        let marker = ProcessedEvent {
            key: format!("{}#create-ahead", processed.key),
            expires_at: processed.expires_at,
        };
        let expected = recorded.map(|r| r.version);
        match self
            .store
            .commit(key, Some(&state), expected, &marker)
            .await
        {
            Ok(()) => {
                doubt.written.store(state.version, Ordering::SeqCst);
                Ok(())
            }
            Err(StoreError::Conflict) => {
                doubt.raced.store(true, Ordering::SeqCst);
                Err(WorkError::retry(
                    "state of the user changed before the create; trying again",
                ))
            }
            Err(e) => Err(e.into()),
        }
    }
}
