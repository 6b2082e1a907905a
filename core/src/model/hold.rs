//! A deprovision (or a membership removal) a breaker held on a user's record, and the
//! operator's decision on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Trigger;

/// The event type of the trigger an approval enqueues.
pub const APPROVED_EVENT: &str = "relay.hold.approved";

/// The action of a hold the membership breaker made: removals from mirrored groups of an
/// account that stays active.
pub const LEAVE_GROUPS: &str = "leave groups";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// What was held: `deactivate` or `delete` (the deprovisioning breaker), or
    /// [`LEAVE_GROUPS`] (the membership breaker).
    pub action: String,
    /// Why: the breaker's count when it refused.
    pub reason: String,
    pub held_at: DateTime<Utc>,
    /// The trigger that asked for it: `<event type> <event id>`.
    pub asked_by: String,
    #[serde(default)]
    pub state: HoldState,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum HoldState {
    /// Waiting for an operator; the account is left as it is.
    #[default]
    Pending,
    /// Apply it, once, with the trigger enqueued with the approval (`event`: its event id).
    /// No other trigger for the user is let through by it: an approval is not a standing pass
    /// around the breaker.
    Approved {
        at: DateTime<Utc>,
        /// The approved trigger's event id (absent in approvals recorded before it was kept:
        /// those let through the approval event type only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// Leave the account as it is until the directory shows the user active again.
    Rejected { at: DateTime<Utc> },
}

impl Hold {
    /// Whether the deprovisioning breaker made it (not the membership breaker): each breaker
    /// reads and settles only its own holds.
    pub fn is_deprovision(&self) -> bool {
        self.action != LEAVE_GROUPS
    }
}

impl HoldState {
    /// Whether this is an approval of `trigger` itself: the one trigger it lets past the
    /// breaker (and its redeliveries).
    pub fn approves(&self, trigger: &Trigger) -> bool {
        match self {
            HoldState::Approved { event: Some(e), .. } => *e == trigger.event_id,
            HoldState::Approved { event: None, .. } => trigger.event_type == APPROVED_EVENT,
            _ => false,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            HoldState::Pending => "pending",
            HoldState::Approved { .. } => "approved",
            HoldState::Rejected { .. } => "rejected",
        }
    }
}
