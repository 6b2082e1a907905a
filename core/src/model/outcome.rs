//! What became of a trigger: the worker's outcome, history's word for it, and the worker's
//! own account of its reasoning.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What working one trigger did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target was changed with this many SCIM calls.
    Applied { scim_calls: u32 },
    /// The target already matched (zero or only read calls).
    Unchanged { scim_calls: u32 },
    /// The event was applied before.
    Duplicate,
    /// A deactivation or delete the deprovisioning breaker holds for an operator.
    Held,
}

/// What became of one trigger, as history and the finished-trigger log line tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Finish {
    /// The target was changed.
    Applied,
    /// Worked; the target already matched.
    Unchanged,
    /// Recognised as a redelivery of an event already applied.
    Duplicate,
    /// A deactivation or delete the deprovisioning breaker holds for an operator.
    Held,
    /// Parked in the dead-letter queue; the entry's `reason` says why.
    DeadLettered,
    /// An operator's `sync` that could not finish now (a confirming read minutes off, an
    /// outage): its trigger was put on the queue, which finishes it as any other.
    Queued,
    /// An operator's `sync` that failed; nothing was parked (the operator sees the reason).
    Failed,
}

impl Finish {
    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Applied { .. } => Self::Applied,
            Outcome::Unchanged { .. } => Self::Unchanged,
            Outcome::Duplicate => Self::Duplicate,
            Outcome::Held => Self::Held,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Unchanged => "unchanged",
            Self::Duplicate => "duplicate",
            Self::Held => "held",
            Self::DeadLettered => "dead-lettered",
            Self::Queued => "queued",
            Self::Failed => "failed",
        }
    }
}

/// One finished trigger of one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the relay finished with it.
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub event_id: String,
    /// The plan the worker applied (`create`, `update`, `deactivate-unrecorded`…); empty when
    /// it never got that far (a duplicate, a dead letter before planning).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub plan: String,
    #[serde(default)]
    pub scim_calls: u32,
    /// The SCIM paths an update changed: names only, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    pub outcome: Finish,
    /// Why it was dead-lettered (or held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// From the IdP's `published` time (else the relay's receipt) to finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
}

/// One step of the worker's reasoning for a user: what was read, what was decided. Names and
/// ids, never attribute values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub detail: String,
}

/// What the worker says of its own decision while it works a trigger, for an operator: the
/// steps, and the verdicts a preview cannot tell from the calls alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explanation {
    pub steps: Vec<Step>,
    /// The userName the directory gives the user.
    pub user_name: Option<String>,
    /// Why the directory no longer asks for an active account, when it does not.
    pub off_because: Option<String>,
    /// A guard that kept the plan from the target: `protected_users`, the credential's owner,
    /// the deprovisioning breaker or an operator's hold.
    pub kept_by: Option<KeptBy>,
}

/// The guard that kept a plan from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptBy {
    /// `target.protected_users` or the credential's owner: never touched.
    Protected(String),
    /// The deprovisioning breaker (or an operator's decision on its hold).
    Held(String),
}
