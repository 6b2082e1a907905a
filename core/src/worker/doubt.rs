//! A create is written down before it is sent: whatever becomes of it (an answer lost, the
//! process killed between the target acting and the state being recorded), the next attempt
//! finds a create in doubt and looks the account up before anything else. Without it, a crash
//! in that window leaves an account the relay has no record of, which a later deletion in the
//! directory can never reach.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Worker, CREATE_IN_DOUBT};
use crate::scim::{DesiredUser, ScimRecord};
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
        let state = in_doubt(
            &user.user_name,
            recorded,
            UserState::version_after(recorded),
            self.clock.now(),
        );
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

/// A create in doubt for `user_name`: no SCIM id, `active`, so the next attempt looks the account
/// up before anything else.
fn in_doubt(
    user_name: &str,
    recorded: Option<&UserState>,
    version: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> UserState {
    UserState {
        scim_id: None,
        user_name: user_name.to_string(),
        attributes: Default::default(),
        attributes_hash: String::new(),
        active: true,
        lifecycle: CREATE_IN_DOUBT.into(),
        invite: None,
        groups: Default::default(),
        groups_pending: Default::default(),
        group_names: Default::default(),
        hard_delete_seen: None,
        held: None,
        version,
        last_event_at: recorded.and_then(|r| r.last_event_at),
        updated_at: now,
    }
}

/// The lifecycle recorded with a claim written ahead of a write to an account found by
/// userName (an adoption, a switch-off).
pub const CLAIMED_AHEAD: &str = "claimed";

impl Worker {
    /// Claims `found` for this user before anything is written to it. Two IdP users sharing a
    /// userName, worked at once (a cutover's full pass queues them together, in different FIFO
    /// groups), both find the account; the claim is conditional in the store, so the second one
    /// fails here ([`StoreError::Claimed`]: an ownership conflict, dead-lettered) before it
    /// sends anything. Returns whether this attempt wrote a claim, to give it up if the write
    /// then fails.
    ///
    /// The record it writes is what a crash right after should leave: the account's id, the
    /// account's `active` as found, and no attributes known, so the next attempt sends every
    /// attribute (as an adoption does) or switches the account off.
    pub(super) async fn claim_ahead(
        &self,
        doubt: &Doubt<'_>,
        found: &ScimRecord,
        user_name: &str,
    ) -> Result<bool, WorkError> {
        if doubt
            .recorded
            .and_then(|r| r.scim_id.as_deref())
            .is_some_and(|id| id == found.id)
        {
            return Ok(false);
        }
        let expected = doubt
            .written_version()
            .or(doubt.recorded.map(|r| r.version));
        let state = UserState {
            scim_id: Some(found.id.clone()),
            user_name: user_name.to_string(),
            attributes: Default::default(),
            attributes_hash: crate::state::attributes_hash(&Default::default()),
            active: found.active != Some(false),
            lifecycle: CLAIMED_AHEAD.into(),
            invite: None,
            groups: Default::default(),
            groups_pending: Default::default(),
            group_names: Default::default(),
            hard_delete_seen: None,
            held: doubt.recorded.and_then(|r| r.held.clone()),
            version: expected.map_or(1, |v| v + 1),
            last_event_at: doubt.recorded.and_then(|r| r.last_event_at),
            updated_at: self.clock.now(),
        };
        let marker = ProcessedEvent {
            key: format!("{}#claim-ahead", doubt.processed.key),
            expires_at: doubt.processed.expires_at,
        };
        match self
            .store
            .commit(doubt.key, Some(&state), expected, &marker)
            .await
        {
            Ok(()) => {
                doubt.written.store(state.version, Ordering::SeqCst);
                Ok(true)
            }
            Err(StoreError::Conflict) => {
                doubt.raced.store(true, Ordering::SeqCst);
                Err(WorkError::retry(
                    "state of the user changed before the account was claimed; trying again",
                ))
            }
            // Another user claimed it between the check and now: a race lost, refused alike.
            Err(StoreError::Claimed { scim_id, owner }) => Err(super::apply::ownership_conflict(
                doubt.key, &scim_id, &owner,
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives up a claim [`Self::claim_ahead`] wrote, after the write it was for failed: the
    /// record goes back to what it was (as its next version: no account of its own, so the
    /// next attempt looks the account up again), then the claim is released. Best effort: a
    /// claim not released stays with a user whose userName matched and whom nobody else
    /// claimed first, and the next attempt of that user goes on from it.
    pub(super) async fn release_claim_ahead(
        &self,
        doubt: &Doubt<'_>,
        found: &ScimRecord,
        user_name: &str,
    ) {
        let Some(written) = doubt.written_version() else {
            return;
        };
        let state = match doubt.recorded {
            Some(r) => {
                let mut s = r.successor(self.clock.now());
                s.version = written + 1;
                s
            }
            None => in_doubt(user_name, None, written + 1, self.clock.now()),
        };
        let marker = ProcessedEvent {
            key: format!("{}#claim-released", doubt.processed.key),
            expires_at: doubt.processed.expires_at,
        };
        let reverted = self
            .store
            .commit(doubt.key, Some(&state), Some(written), &marker)
            .await;
        match reverted {
            Ok(()) => {
                if let Err(e) = self.store.release_claim(&found.id, doubt.key).await {
                    tracing::warn!(user = %doubt.key.user_id, "claim not released: {e}");
                }
            }
            Err(e) => tracing::warn!(user = %doubt.key.user_id, "claim not given up: {e}"),
        }
    }
}
