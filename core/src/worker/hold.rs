//! The worker's side of the deprovisioning breaker: before a plan that switches an account off
//! or deletes it, take a slot in the window or hold the plan on the user's record.

use chrono::{DateTime, Utc};

use super::Worker;
use crate::deprovision::{take_membership_slot, take_slot_read, user_slot, Hold, HoldState, Slot};
use crate::envelope::Trigger;
use crate::model::LEAVE_GROUPS;
use crate::scim::{ScimPlan, ScimRecord};
use crate::state::{UserKey, UserState};
use crate::work::WorkError;

/// What becomes of a plan at the breaker.
pub(super) enum Gate {
    /// Apply it. For a deactivation of an account the relay has no record of, the look-up the
    /// breaker made first (so the apply does not repeat it).
    Go(Option<LookedUp>),
    /// Do not apply it: record this state (the hold on it) instead.
    Hold(Box<UserState>),
    /// Do not apply it; the record already says why (a pending or rejected hold).
    Keep(&'static str),
}

/// What a look-up by userName found: the account, if any.
pub(super) type LookedUp = Option<ScimRecord>;

impl Worker {
    pub(super) async fn gate(
        &self,
        key: &UserKey,
        plan: &ScimPlan,
        recorded: Option<&UserState>,
        trigger: &Trigger,
        ledger: &mut Option<Option<(String, u64)>>,
    ) -> Result<Gate, WorkError> {
        if !plan.deprovisions() {
            return Ok(Gate::Go(None));
        }
        let held = recorded.and_then(|r| r.held.as_ref());
        match held.filter(|h| h.is_deprovision()).map(|h| &h.state) {
            Some(approval) if approval.approves(trigger) => return Ok(Gate::Go(None)),
            Some(HoldState::Approved { .. }) => {
                return Ok(Gate::Keep(
                    "approved: applied by the approval's own trigger, not by this one",
                ))
            }
            Some(HoldState::Pending) => return Ok(Gate::Keep("held for an operator")),
            Some(HoldState::Rejected { .. }) => {
                return Ok(Gate::Keep("an operator rejected this deprovision"))
            }
            None => {}
        }
        // An account the relay has no record of is looked up first: a slot (and a hold, an
        // alarm) only for an account there is to switch off. A first pass over a directory full
        // of disabled users who never had an account must not fill the window.
        let mut looked_up = None;
        if let ScimPlan::DeactivateUnrecorded { user_name } = plan {
            let found = self.target.find_user(user_name).await?;
            if found.as_ref().is_none_or(|r| r.active == Some(false)) {
                return Ok(Gate::Go(Some(found)));
            }
            looked_up = Some(found);
        }
        let now = self.clock.now();
        let slot = take_slot_read(
            self.store.as_ref(),
            &user_slot(key),
            now,
            &self.deprovision,
            ledger.take(),
        )
        .await?;
        let (taken, allowed) = match slot {
            Slot::Taken => return Ok(Gate::Go(looked_up)),
            Slot::Refused { taken, allowed } => (taken, allowed),
        };
        let window = self.deprovision.window.as_secs() / 60;
        let hold = Hold {
            action: match plan {
                ScimPlan::Delete { .. } => "delete",
                _ => "deactivate",
            }
            .into(),
            reason: format!(
                "{taken} deprovisions in the last {window} minutes reached the limit of {allowed}"
            ),
            held_at: now,
            asked_by: format!("{} {}", trigger.event_type, trigger.event_id),
            state: HoldState::Pending,
        };
        // The metric filter in infra/template.yaml counts these lines (DeprovisionsHeld).
        tracing::error!(
            alarm = "deprovision_held",
            source = %key.source,
            user = %key.user_id,
            action = %hold.action,
            taken,
            allowed,
            "deprovisioning breaker: held for an operator (scim-relay held list)"
        );
        Ok(Gate::Hold(Box::new(held_record(recorded, plan, hold, now))))
    }
}

/// The record that carries a hold. A user the relay never recorded (an account made before it
/// ran) is recorded as a create in doubt: no SCIM id, active, so the planner keeps asking to
/// look the account up and switch it off once the hold is approved.
fn held_record(
    recorded: Option<&UserState>,
    plan: &ScimPlan,
    hold: Hold,
    now: DateTime<Utc>,
) -> UserState {
    let mut state = match recorded {
        Some(r) => r.successor(now),
        None => UserState {
            scim_id: None,
            user_name: match plan {
                ScimPlan::DeactivateUnrecorded { user_name } => user_name.clone(),
                _ => String::new(),
            },
            attributes: Default::default(),
            attributes_hash: String::new(),
            active: true,
            lifecycle: "held".into(),
            invite: None,
            groups: Default::default(),
            groups_pending: Default::default(),
            group_names: Default::default(),
            hard_delete_seen: None,
            held: None,
            version: UserState::version_after(None),
            last_event_at: None,
            updated_at: now,
        },
    };
    state.held = Some(hold);
    state
}

/// What the membership breaker lets through of a groups step's removals.
pub(super) struct MembershipGate {
    /// The removals to make now.
    pub allowed: Vec<(String, String)>,
    /// The record's hold once the step is done: kept, new, or none (settled or lapsed).
    pub hold: Option<Hold>,
}

impl Worker {
    /// Weighs the removals of an account that stays active (`counted`) from mirrored groups:
    /// each takes a slot in its group's window or waits, with the others, on a hold. A
    /// leaver's removals (`counted` false) pass: the deprovisioning breaker weighed them.
    pub(super) async fn membership_gate(
        &self,
        key: &UserKey,
        recorded: &UserState,
        leaves: Vec<(String, String)>,
        counted: bool,
        trigger: &Trigger,
    ) -> Result<MembershipGate, WorkError> {
        let held = recorded.held.clone();
        if held.as_ref().is_some_and(|h| h.is_deprovision()) {
            // Not this breaker's hold: left as it is, and the memberships with it.
            return Ok(MembershipGate {
                allowed: Vec::new(),
                hold: held,
            });
        }
        if !counted || leaves.is_empty() {
            // Nothing to weigh: a hold asked for earlier is no longer asked for.
            return Ok(MembershipGate {
                allowed: leaves,
                hold: None,
            });
        }
        match held.as_ref().map(|h| &h.state) {
            Some(approval) if approval.approves(trigger) => {
                return Ok(MembershipGate {
                    allowed: leaves,
                    hold: None,
                })
            }
            Some(_) => {
                return Ok(MembershipGate {
                    allowed: Vec::new(),
                    hold: held,
                })
            }
            None => {}
        }
        let now = self.clock.now();
        let who = user_slot(key);
        let mut allowed = Vec::new();
        let mut refused = Vec::new();
        for (idp_group, scim_group) in leaves {
            match take_membership_slot(self.store.as_ref(), &idp_group, &who, now, &self.membership)
                .await?
            {
                Slot::Taken => allowed.push((idp_group, scim_group)),
                Slot::Refused { taken, allowed } => refused.push((idp_group, taken, allowed)),
            }
        }
        if refused.is_empty() {
            return Ok(MembershipGate {
                allowed,
                hold: None,
            });
        }
        let window = self.membership.window.as_secs() / 60;
        let reason = refused
            .iter()
            .map(|(group, taken, limit)| {
                format!("group {group} lost {taken} members in the last {window} minutes, the limit is {limit}")
            })
            .collect::<Vec<_>>()
            .join("; ");
        // The metric filter in infra/template.yaml counts these lines (MembershipRemovalsHeld).
        tracing::error!(
            alarm = "membership_held",
            source = %key.source,
            user = %key.user_id,
            groups = refused.len(),
            "membership breaker: removals held for an operator (scim-relay held list)"
        );
        Ok(MembershipGate {
            allowed,
            hold: Some(Hold {
                action: LEAVE_GROUPS.into(),
                reason,
                held_at: now,
                asked_by: format!("{} {}", trigger.event_type, trigger.event_id),
                state: HoldState::Pending,
            }),
        })
    }
}
