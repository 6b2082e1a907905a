//! The worker's reasoning in words, for the operator's `plan --user` and `sync`: what was
//! read, what was recorded, what was planned. Names and ids, never attribute values.

use super::read::Truth;
use crate::scim::{DesiredUser, ScimPlan};
use crate::state::UserState;

/// What the directory read found.
pub(super) fn truth(truth: &Truth) -> String {
    match truth {
        Truth::Present(user) => {
            let names: Vec<&str> = user.attributes.keys().map(String::as_str).collect();
            let groups = if user.groups.is_empty() {
                String::new()
            } else {
                format!("; {} configured groups", user.groups.len())
            };
            // Role ids are the org's, not the person's: shown, so a plan says which roles.
            let roles = match user.attributes.get("roles").and_then(|r| r.as_array()) {
                Some(roles) => format!(
                    "; roles: {}",
                    roles
                        .iter()
                        .filter_map(|r| r["value"].as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => String::new(),
            };
            format!(
                "found: userName {}, status {}, {}; mapped attributes: {}{groups}{roles}",
                user.user_name,
                user.lifecycle,
                if user.active {
                    "to have an active account"
                } else {
                    "not to have an active account"
                },
                names.join(", ")
            )
        }
        Truth::Deleted => "not found (deleted)".into(),
        Truth::HardDeleted => "gone for good (hard-deleted)".into(),
        Truth::LeaveAsIs => "suspended; okta.suspended = keep".into(),
    }
}

/// What the relay recorded of the user.
pub(super) fn record(recorded: Option<&UserState>) -> String {
    match recorded {
        None => "no record: the relay has never provisioned this user".into(),
        Some(r) => {
            let hold = r
                .held
                .as_ref()
                .map(|h| format!(", {} held ({})", h.action, h.state.name()))
                .unwrap_or_default();
            format!(
                "userName {}, account {}, {}, lifecycle {}, version {}{hold}",
                r.user_name,
                r.scim_id.as_deref().unwrap_or("none"),
                if r.active { "active" } else { "inactive" },
                r.lifecycle,
                r.version
            )
        }
    }
}

/// The planner's answer: paths, never values.
pub(super) fn plan(plan: &ScimPlan) -> String {
    match plan {
        ScimPlan::Nothing { reason } => format!("nothing: {reason}"),
        ScimPlan::Create { user } => format!(
            "create (look up userName {} first, adopt what is found)",
            user.user_name
        ),
        ScimPlan::Update { scim_id, ops } => format!(
            "PATCH /Users/{scim_id}: {}",
            ops.iter()
                .map(|op| op.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ScimPlan::DeactivateUnrecorded { user_name } => {
            format!("look up userName {user_name} and switch off what is found")
        }
        ScimPlan::Delete { scim_id } => format!("DELETE /Users/{scim_id}"),
    }
}

/// Why a deprovision: what the directory says of the user.
pub(super) fn why_off(desired: Option<&DesiredUser>) -> String {
    match desired {
        None => "gone from the directory".into(),
        Some(d) if d.lifecycle.ends_with("(out of scope)") => {
            "out of scope (not assigned / not in the configured groups)".into()
        }
        Some(d) => format!("{} in the IdP", d.lifecycle),
    }
}
