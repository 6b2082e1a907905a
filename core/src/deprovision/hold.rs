//! A held deprovision on the user's record, and the operator's decision on it.
//!
//! A hold stays on the record until the directory stops asking for it (the user is back in
//! scope: the hold lapses) or an operator decides. Approving re-enqueues the user, so the
//! deactivation goes through the normal worker path with a fresh directory read; rejecting
//! leaves the account as it is until the directory shows the user active again.

use chrono::{DateTime, Utc};

use crate::envelope::EnvelopeSigner;
use crate::model::Trigger;
pub use crate::model::{Hold, HoldState, APPROVED_EVENT};
use crate::queue::{Queue, QueueError};
use crate::state::{ProcessedEvent, StateStore, StoreError, SweepStore, UserKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// A user whose deprovision is held, as an operator lists them.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldUser {
    pub key: UserKey,
    pub user_name: String,
    pub hold: Hold,
}

impl HeldUser {
    /// Whether an operator's `who` names this user: the IdP's user id, the relay's key, or
    /// the userName (case-insensitive).
    pub fn is_named(&self, who: &str) -> bool {
        let who = who.trim();
        self.key.user_id == who
            || self.key.storage_id() == who
            || self.user_name.eq_ignore_ascii_case(who)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("no held deprovision for {0}")]
    NotHeld(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the decision is recorded, but the user could not be enqueued ({0}); run it again")]
    Queue(#[from] QueueError),
}

/// Every user with a hold on record, oldest hold first.
pub async fn held_users(store: &dyn SweepStore) -> Result<Vec<HeldUser>, StoreError> {
    let mut held: Vec<HeldUser> = store
        .held_users()
        .await?
        .into_iter()
        .filter_map(|(key, state)| {
            Some(HeldUser {
                key,
                hold: state.held?,
                user_name: state.user_name,
            })
        })
        .collect();
    held.sort_by_key(|h| h.hold.held_at);
    Ok(held)
}

/// The operator's listing: one line per held user, oldest first. Names appear here (an
/// operator's console, not a log).
pub fn render_held(held: &[HeldUser]) -> String {
    if held.is_empty() {
        return "no held deprovisions\n".into();
    }
    let mut out = format!(
        "{:<32} {:<6} {:<24} {:<10} {:<20} {:<9} REASON\n",
        "USER", "IDP", "IDP USER ID", "ACTION", "HELD AT (UTC)", "STATE"
    );
    for h in held {
        out.push_str(&format!(
            "{:<32} {:<6} {:<24} {:<10} {:<20} {:<9} {}\n",
            h.user_name,
            h.key.source.as_str(),
            h.key.user_id,
            h.hold.action,
            h.hold.held_at.format("%Y-%m-%d %H:%M:%S"),
            h.hold.state.name(),
            h.hold.reason
        ));
    }
    out
}

/// The listing for scripts: one JSON object per held user, oldest first.
pub fn held_json(held: &[HeldUser]) -> serde_json::Value {
    serde_json::Value::Array(
        held.iter()
            .map(|h| {
                serde_json::json!({
                    "user_name": h.user_name,
                    "source": h.key.source.as_str(),
                    "tenant": h.key.tenant,
                    "user_id": h.key.user_id,
                    "hold": h.hold,
                })
            })
            .collect(),
    )
}

/// Records an operator's decision on `key`'s hold; an approval enqueues the user, so the
/// worker re-reads the directory and applies what it still asks for.
pub async fn decide(
    store: &dyn StateStore,
    queue: &dyn Queue,
    signer: &EnvelopeSigner,
    now: DateTime<Utc>,
    key: &UserKey,
    decision: Decision,
) -> Result<HoldState, DecisionError> {
    let not_held = || DecisionError::NotHeld(key.user_id.clone());
    let mut decided = None;
    let approved_event = format!("hold-{}", uuid::Uuid::new_v4().simple());
    for _ in 0..3 {
        let recorded = store.load_user(key).await?.ok_or_else(not_held)?;
        let hold = recorded.held.clone().ok_or_else(not_held)?;
        let state = match decision {
            Decision::Approve => HoldState::Approved {
                at: now,
                event: Some(approved_event.clone()),
            },
            Decision::Reject => HoldState::Rejected { at: now },
        };
        let mut next = recorded.successor(now);
        next.held = Some(Hold {
            state: state.clone(),
            ..hold
        });
        // The store writes state together with an event record: this one marks the decision.
        let marker = ProcessedEvent {
            key: format!(
                "hold-decision:{}:{}",
                key.storage_id(),
                uuid::Uuid::new_v4().simple()
            ),
            expires_at: now + chrono::Duration::days(1),
        };
        match store
            .commit(key, Some(&next), Some(recorded.version), &marker)
            .await
        {
            Ok(()) => {
                decided = Some(state);
                break;
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let state = decided.ok_or(StoreError::Conflict)?;
    if decision == Decision::Approve {
        let trigger = Trigger::for_user(key, APPROVED_EVENT, approved_event, now);
        queue.enqueue(&[signer.seal(&trigger)]).await?;
    }
    Ok(state)
}
